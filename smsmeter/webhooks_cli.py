"""`smsmeter webhooks ...`: outbound event webhooks from a script (docs/operations.md §6.1a). `list` the
subscriptions, `add` one (its signing secret is printed this once), `rotate-secret` of one (the new secret printed
this once; `--keep-previous-hours` lets the old one go on signing beside it), `disable` / `enable` one, list
`deliveries` (`--state dead`: the failures), `resend` one delivery or every dead one (`--dead`), audited."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hooks = sub.add_parser("webhooks", help="outbound event webhooks: subscriptions and deliveries")
    h_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    h_sub.add_parser("list", help="the subscriptions, with their deliveries by state")
    add = h_sub.add_parser("add", help="a new subscription; prints its signing secret (shown only this once)")
    add.add_argument("--url", required=True, help="where the signed POSTs go (http:// or https://)")
    add.add_argument("--kinds", default="reading,alarm,command,payment", help="comma-separated event kinds")
    add.add_argument("--description", help="e.g. the system that receives them")
    rotate = h_sub.add_parser("rotate-secret", help="a new signing secret for a subscription, printed this once")
    rotate.add_argument("id", type=int, help="the subscription's id")
    rotate.add_argument(
        "--keep-previous-hours",
        type=int,
        default=24,
        help="the secret replaced goes on signing beside the new one this long (0: stops at once; at most 168)",
    )
    for name in ("disable", "enable"):
        one = h_sub.add_parser(name, help=f"{name} a subscription")
        one.add_argument("id", type=int, help="the subscription's id")
    deliveries = h_sub.add_parser("deliveries", help="the deliveries, newest first")
    deliveries.add_argument("--state", choices=("pending", "delivered", "dead"))
    deliveries.add_argument("--limit", type=int, default=50)
    resend = h_sub.add_parser("resend", help="send a delivery again (same event id), or every dead one")
    which = resend.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, help="one delivery")
    which.add_argument("--dead", action="store_true", help="every dead delivery")
    resend.add_argument("--subscription", type=int, help="with --dead: only this subscription's")
    for parser in (add, rotate, resend, *(h_sub.choices[n] for n in ("disable", "enable"))):
        parser.add_argument("--operator", default="cli", help="the name the audit log records (default: cli)")


async def _with_uow(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from billing.errors import BillingError
    from store import migrate
    from store.engine import create_engine
    from store.uow import UnitOfWork

    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        return await work(UnitOfWork(engine))
    except BillingError as exc:
        print(f"smsmeter webhooks: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from billing import event_hooks as hooks
    from gateway.keys import KeyRing
    from smsmeter.masterkey import load_master_key
    from store.audit import Actor

    now = datetime.now(UTC)
    actor = Actor("operator", getattr(args, "operator", "cli"))
    command = args.webhooks_command

    async def work(uow: Any) -> int:
        if command == "list":
            async with uow.connect() as conn:
                for s in await hooks.list_subscriptions(conn):
                    d = s["deliveries"]
                    state = "enabled" if s["active"] else "disabled"
                    print(
                        f"{s['id']}\t{state}\t{s['url']}\t{','.join(s['kinds'])}\t"
                        f"pending {d['pending']}\tdelivered {d['delivered']}\tdead {d['dead']}"
                    )
        elif command == "add":
            fields = hooks.SubscriptionFields(args.url, args.kinds, args.description)
            created = await hooks.create_subscription(uow, actor, fields, now, KeyRing(load_master_key(settings)))
            print(f"subscription {created['id']}: {created['url']} ({','.join(created['kinds'])})")
            print(f"secret: {created['secret']}")
        elif command == "rotate-secret":
            keep = timedelta(hours=args.keep_previous_hours)
            box = KeyRing(load_master_key(settings))
            rotated = await hooks.rotate_secret(uow, actor, args.id, now, box, keep_previous=keep)
            until = rotated["previous_until"]
            print(
                f"subscription {rotated['id']}: new secret; the old one signs too until {until.isoformat()}"
                if until
                else f"subscription {rotated['id']}: new secret; the old one no longer signs"
            )
            print(f"secret: {rotated['secret']}")
        elif command in ("disable", "enable"):
            changed = await hooks.change_subscription(uow, actor, args.id, now, active=command == "enable")
            print(f"subscription {changed['id']} {'enabled' if changed['active'] else 'disabled'}")
        elif command == "deliveries":
            async with uow.connect() as conn:
                items, total = await hooks.list_deliveries(conn, state=args.state, limit=args.limit)
            for d in items:
                print(f"{d['id']}\t{d['state']}\t{d['event_id']}\t{d['attempts']}\t{d['last_error'] or ''}\t{d['url']}")
            print(f"{total} deliveries", file=sys.stderr)
        elif args.dead:
            print(f"{await hooks.resend_dead(uow, actor, now, args.subscription)} dead deliveries queued again")
        else:
            again = await hooks.resend_delivery(uow, actor, args.id, now)
            print(f"delivery {again['id']} ({again['event_id']}) queued again")
        return 0

    return await _with_uow(settings, work)


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))
