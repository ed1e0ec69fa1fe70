"""The registry's doors for scripts: `smsmeter subscribers add/edit`, `smsmeter meters install/replace/archive`,
`smsmeter tariffs create/add-version/push` and `smsmeter alarm-rules list/add/remove`. Each calls the same use
case of billing as the console and the API (audited as `--operator NAME`, else `cli:<system user>`), prints
one line of JSON for the script to read, and exits 1 with the reason on stderr when billing refuses."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Any

from config import Settings

EXIT_FAILED = 1
_SUBSCRIBER_FIELDS = ("name", "father_name", "phone", "email", "language", "contract_number", "identity_document")
_METER_FIELDS = ("msisdn", "make", "model", "profile", "kind")


def _operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator", default=None, help="the name the audit log records (default: cli:<user>)")


def _subscriber_arguments(parser: argparse.ArgumentParser) -> None:
    for name in _SUBSCRIBER_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    parser.add_argument("--tariff", default=None, metavar="CODE", help="the tariff's code")


def _meter_arguments(parser: argparse.ArgumentParser, *, msisdn_required: bool) -> None:
    parser.add_argument("code", metavar="METER_CODE", help="the new meter's code (with its check digit)")
    parser.add_argument("--msisdn", required=msisdn_required, help="the meter's SIM number")
    for name in _METER_FIELDS[1:]:
        parser.add_argument(f"--{name}", default=None)
    parser.add_argument("--phases", type=int, default=1)
    parser.add_argument("--app-port", type=int, default=None, help="the SMS application port the module listens on")
    parser.add_argument("--key-hex", default=None, help="the factory key (32 hex digits); default: a new random key")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subs = sub.add_parser("subscribers", help="create and edit subscribers (as the console's form and the API)")
    s_sub = subs.add_subparsers(dest="subscribers_command", required=True)
    add = s_sub.add_parser("add", help="a new subscriber and its account")
    add.add_argument("code", metavar="CODE", help="the 15-digit subscriber code (region, settlement, street, ...)")
    _subscriber_arguments(add)
    _operator(add)
    edit = s_sub.add_parser("edit", help="change a subscriber's fields (only those given)")
    edit.add_argument("code", metavar="CODE")
    _subscriber_arguments(edit)
    edit.add_argument("--status", default=None, choices=["active", "suspended", "closed"])
    _operator(edit)

    tariffs = sub.add_parser("tariffs", help="define tariffs and their price versions, push a version to the meters")
    t_sub = tariffs.add_subparsers(dest="tariffs_command", required=True)
    create = t_sub.add_parser("create", help="a new tariff (no price yet: add a version)")
    create.add_argument("code", metavar="CODE")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--kind", required=True, choices=["flat", "block", "time_of_use"])
    _operator(create)
    version = t_sub.add_parser("add-version", help="a price version from a date (the API's JSON body)")
    version.add_argument("code", metavar="CODE")
    version.add_argument(
        "--prices",
        required=True,
        metavar="JSON",
        help='e.g. {"price_minor_per_kwh": 15} or {"steps": [[0, 120000], [100000, 180000]]}',
    )
    version.add_argument("--from", dest="effective_from", required=True, metavar="WHEN", help="UTC date or ISO time")
    _operator(version)
    push = t_sub.add_parser("push", help="send the newest version to every meter on the tariff (a bulk job)")
    push.add_argument("code", metavar="CODE")
    _operator(push)

    rules = sub.add_parser("alarm-rules", help="who is told of which alarm, and the automatic action")
    r_sub = rules.add_subparsers(dest="rules_command", required=True)
    r_sub.add_parser("list", help="the rules, one JSON line each")
    radd = r_sub.add_parser("add", help="a new rule")
    radd.add_argument("name", metavar="NAME")
    radd.add_argument("--kind", required=True, help="an alarm kind, or * for any")
    radd.add_argument("--min-severity", default="warning", choices=["info", "warning", "critical"])
    radd.add_argument("--no-email", action="store_true")
    radd.add_argument("--sms", action="store_true")
    radd.add_argument("--role", default=None)
    radd.add_argument("--recipient", action="append", default=[], help="an e-mail address or phone (repeatable)")
    radd.add_argument("--action", default="none", choices=["none", "relay_off"])
    _operator(radd)
    rdel = r_sub.add_parser("remove", help="remove a rule")
    rdel.add_argument("rule_id", type=int, metavar="ID")
    _operator(rdel)


def add_meter_parsers(m_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`meters install/replace/archive`, beside the key-file commands of `smsmeter meters`."""
    install = m_sub.add_parser("install", help="install a meter for a subscriber (or a transformer's balance meter)")
    _meter_arguments(install, msisdn_required=False)
    install.add_argument("--subscriber", metavar="CODE", default=None, help="the subscriber's code")
    install.add_argument("--transformer-id", type=int, default=None)
    install.add_argument("--balance-meter", action="store_true", help="the transformer's balance meter")
    _operator(install)
    replace = m_sub.add_parser("replace", help="a new meter in place of OLD_CODE (which is archived)")
    replace.add_argument("old_code", metavar="OLD_CODE")
    _meter_arguments(replace, msisdn_required=False)
    replace.add_argument("--carried-credit-minor", type=int, default=0, help="credit the old meter still held")
    _operator(replace)
    archive = m_sub.add_parser("archive", help="take a meter out of service (its keys are retired)")
    archive.add_argument("code", metavar="METER_CODE")
    archive.add_argument("--reason", required=True)
    _operator(archive)


REGISTRY_METER_COMMANDS = ("install", "replace", "archive")


def _actor(args: argparse.Namespace) -> Any:
    from store.audit import Actor

    name = getattr(args, "operator", None)
    if not name:
        try:
            name = f"cli:{getpass.getuser()}"
        except (KeyError, OSError):
            name = "cli"
    return Actor("operator", name)


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: Any) -> str:
    def default(v: Any) -> Any:
        if isinstance(v, datetime | date):
            return v.isoformat()
        return str(v)

    return json.dumps(value, default=default, ensure_ascii=False, sort_keys=True)


async def _with_database(settings: Settings, work: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    from gateway.keys import KeyRing
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.engine import create_engine
    from store.uow import UnitOfWork

    engine = create_engine(settings.database.url)
    try:
        await migrate.upgrade(engine)
        return await work(UnitOfWork(engine), KeyRing(load_master_key(settings)))
    finally:
        await engine.dispose()


def _fields(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


async def _tariff_id(conn: Any, code: str) -> int:
    from sqlalchemy import select

    from billing.errors import NotFound
    from store.schema.ledger import tariffs

    found = await conn.scalar(select(tariffs.c.id).where(tariffs.c.code == code))
    if found is None:
        raise NotFound("tariff", code)
    return int(found)


async def _subscribers(settings: Settings, args: argparse.Namespace) -> Any:
    from billing import registry

    async def work(uow: Any, keys: Any) -> Any:
        now = datetime.now(UTC)
        fields = _fields(args, (*_SUBSCRIBER_FIELDS, "status"))
        async with uow.begin() as conn:
            if args.tariff:
                fields["tariff_id"] = await _tariff_id(conn, args.tariff)
            if args.subscribers_command == "add":
                sub = await registry.create_subscriber(
                    conn, _actor(args), args.code, fields, currency=settings.utility.currency, now=now
                )
            else:
                sub = await registry.get_subscriber_by_code(conn, args.code)
                sub = await registry.update_subscriber(conn, _actor(args), sub.id, fields, now)
        return {"id": sub.id, "code": sub.code, "name": sub.name}

    return await _with_database(settings, work)


def _new_meter(args: argparse.Namespace, msisdn: str | None) -> tuple[Any, bytes | None]:
    from billing.errors import InvalidField
    from billing.meter_registry import NewMeter

    if not msisdn:
        raise InvalidField("msisdn", "the meter's SIM number is required")
    try:
        key = bytes.fromhex(args.key_hex) if args.key_hex else None
    except ValueError:
        raise InvalidField("key_hex", "32 hexadecimal digits") from None
    values = _fields(args, _METER_FIELDS[1:])
    new = NewMeter(
        code=args.code,
        msisdn=msisdn,
        phases=args.phases,
        app_port=args.app_port,
        transformer_id=getattr(args, "transformer_id", None),
        is_balance_meter=bool(getattr(args, "balance_meter", False)),
        **values,
    )
    return new, key


async def _meters(settings: Settings, args: argparse.Namespace) -> Any:
    from billing import meter_registry, registry

    async def work(uow: Any, keys: Any) -> Any:
        now = datetime.now(UTC)
        async with uow.begin() as conn:
            if args.meters_command == "install":
                subscriber_id = None
                if args.subscriber:
                    subscriber_id = (await registry.get_subscriber_by_code(conn, args.subscriber)).id
                new, key = _new_meter(args, args.msisdn)
                meter = await meter_registry.install_meter(
                    conn, _actor(args), subscriber_id, new, master_key=keys, now=now, meter_key=key
                )
            elif args.meters_command == "replace":
                old = await meter_registry.get_meter_by_code(conn, args.old_code)
                new, key = _new_meter(args, args.msisdn or old.msisdn)
                meter = await meter_registry.replace_meter(
                    conn,
                    _actor(args),
                    old.id,
                    new,
                    master_key=keys,
                    now=now,
                    carried_credit_minor=args.carried_credit_minor,
                    meter_key=key,
                )
            else:
                meter = await meter_registry.get_meter_by_code(conn, args.code)
                meter = await meter_registry.archive_meter(conn, _actor(args), meter.id, args.reason.strip(), now)
        return {"id": meter.id, "code": meter.code, "status": meter.status, "subscriber_id": meter.subscriber_id}

    return await _with_database(settings, work)


async def _tariffs(settings: Settings, args: argparse.Namespace) -> Any:
    from billing import tariffs
    from billing.errors import InvalidField
    from billing.rules.tariffs import TariffBody, TariffKind

    async def work(uow: Any, keys: Any) -> Any:
        now = datetime.now(UTC)
        actor = _actor(args)
        if args.tariffs_command == "push":
            async with uow.connect() as conn:
                tariff_id = await _tariff_id(conn, args.code)
            job_id, meter_ids = await tariffs.start_push(uow, actor, tariff_id, now)
            job = await tariffs.run_assignment(
                uow,
                actor,
                job_id,
                tariff_id,
                meter_ids,
                now,
                keys=keys,
                heat_in_gcal=settings.utility.heat_unit == "Gcal",
            )
            return {"job_id": job.id, "status": job.status, "meters": job.total, "queued": job.done}
        async with uow.begin() as conn:
            if args.tariffs_command == "create":
                tariff_id = await tariffs.create_tariff(conn, actor, args.code, args.name, TariffKind(args.kind), now)
                return {"id": tariff_id, "code": args.code}
            tariff_id = await _tariff_id(conn, args.code)
            current = await tariffs.get_tariff(conn, tariff_id)
            try:
                prices = json.loads(args.prices)
                effective_from = _when(args.effective_from)
            except ValueError as exc:
                raise InvalidField("prices", f"unreadable: {exc}") from None
            if not isinstance(prices, dict):
                raise InvalidField("prices", "a JSON object")
            body = TariffBody.from_json({**prices, "kind": current.kind.value})
            number = await tariffs.add_version(conn, actor, tariff_id, body, effective_from, now)
        return {"id": tariff_id, "code": args.code, "version": number}

    return await _with_database(settings, work)


async def _alarm_rules(settings: Settings, args: argparse.Namespace) -> Any:
    from billing import alarm_rules
    from web.queries.operators import OPERATORS

    async def work(uow: Any, keys: Any) -> Any:
        now = datetime.now(UTC)
        if args.rules_command == "list":
            async with uow.connect() as conn:
                return await alarm_rules.list_rules(conn)
        if args.rules_command == "remove":
            await alarm_rules.delete_rule(uow, _actor(args), args.rule_id, now)
            return {"removed": args.rule_id}
        fields = alarm_rules.RuleFields(
            name=args.name,
            kind=args.kind,
            min_severity=args.min_severity,
            email=not args.no_email,
            sms=args.sms,
            role=args.role,
            recipients=args.recipient,
            action=args.action,
        )
        return await alarm_rules.create_rule(uow, _actor(args), fields, now, operators=OPERATORS)

    return await _with_database(settings, work)


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, Any]]] = {
    "subscribers": _subscribers,
    "meters": _meters,
    "tariffs": _tariffs,
    "alarm-rules": _alarm_rules,
}


def run(settings: Settings, args: argparse.Namespace) -> int:
    from billing.errors import BillingError
    from gateway.errors import GatewayError

    try:
        result: Any = asyncio.run(_COMMANDS[args.command](settings, args))
    except (BillingError, GatewayError) as exc:
        print(f"smsmeter {args.command}: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, list):
        for item in result:
            print(_json(item))
    else:
        print(_json(result))
    return 0
