"""Payments: Stripe webhooks per second accepted and applied, and the latency from a webhook received to
its credit SMS submitted (the submit_sm_resp of the credit command), p50/p99, at a steady 200 webhooks/s.

Everything real but the network: the aiohttp service on a loopback port, signed `checkout.session.completed`
events (one new top-up each) verified with the stripe library, billing's top-up (ledger, debt recovery,
the sealed credit command) in the webhook's transaction, and the gateway's dispatcher submitting to the
simulated SMSC, woken when a credit commits. The database is a fresh SQLite file (the default) or a
throwaway PostgreSQL database (--postgres).

    python -m bench.payments [--postgres] [--rate 200] [--seconds 10] [--burst 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from billing import registry
from config.settings import load_settings
from gateway.keys import KeyRing
from meter_protocol import meter_code_with_check_digit
from payments.service import WebhookSecrets, WebhookService
from smsmeter.payments_wiring import top_up_policy
from smsmeter.wiring import running_gateway
from store import migrate
from store.audit import Actor
from store.engine import create_engine
from store.schema.commands import command_parts
from store.schema.payments import payments
from store.uow import UnitOfWork
from tests.support import databases
from tests.support import stripe_events as se
from tests.support.net import free_port
from web.app import create_app
from web.health import ComponentHealth, HealthReport
from web.webhooks import BillingApplier, PaymentServices

MASTER_KEY = bytes(range(16))
ACTOR = Actor("system", "bench")
SUBSCRIBERS = 200


async def _healthy() -> HealthReport:
    return HealthReport("bench", ComponentHealth("ok"), ComponentHealth("ok"))


async def _seed(uow: UnitOfWork, count: int) -> list[tuple[int, int, str, str]]:
    """(subscriber id, meter id, subscriber code, meter code) of `count` subscribers with a keyed meter."""
    now = datetime.now(UTC)
    out = []
    async with uow.begin() as conn:
        await registry.add_region(conn, ACTOR, "64", "Nord", now)
        await registry.add_settlement(conn, ACTOR, "64", "01", "Balti", now)
        await registry.add_street(conn, ACTOR, "64", "01", "001", "Independentei", now)
        for i in range(count):
            sub = await registry.create_subscriber(
                conn, ACTOR, f"6401001{i + 1:04d}0001", {"name": f"Bench {i}"}, currency="USD", now=now
            )
            meter = await registry.install_meter(
                conn,
                ACTOR,
                sub.id,
                registry.NewMeter(code=meter_code_with_check_digit(f"88000{i + 1:014d}"), msisdn=f"37369{i:06d}"),
                master_key=MASTER_KEY,
                now=now,
            )
            out.append((sub.id, meter.id, sub.code, meter.code))
    return out


async def _pending(uow: UnitOfWork, people: list[tuple[int, int, str, str]], n: int, tag: str) -> list[bytes]:
    """`n` started top-ups and, for each, the body of the `checkout.session.completed` that pays it."""
    now = datetime.now(UTC)
    rows, bodies = [], []
    for i in range(n):
        sid, mid, _code, _meter = people[i % len(people)]
        ref, cs = f"tp_{tag}{i:028d}"[:35], f"cs_bench_{tag}_{i}"
        rows.append(
            {
                "provider": "stripe",
                "provider_ref": cs,
                "reference": ref,
                "checkout_session_id": cs,
                "subscriber_id": sid,
                "meter_id": mid,
                "amount_minor": 1000,
                "currency": "USD",
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            }
        )
        session = se.checkout_session(cs, ref, 1000, payment_intent=f"pi_bench_{tag}_{i}")
        bodies.append(se.event("checkout.session.completed", session, created=int(time.time())))
    async with uow.begin() as conn:
        await conn.execute(payments.insert(), rows)
    return [json.dumps(b, separators=(",", ":")).encode() for b in bodies]


async def _post(http: aiohttp.ClientSession, url: str, raw: bytes) -> tuple[int, str]:
    header = se.signed(raw, int(time.time()))[1]
    async with http.post(url, data=raw, headers={"Stripe-Signature": header}) as resp:
        body = await resp.json()
        return resp.status, str(body.get("status"))


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _submitted_at(uow: UnitOfWork, refs: list[str], timeout_s: float) -> dict[str, datetime]:
    """Wait until every top-up's credit command has been submitted; its first part's submit time."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, datetime] = {}
    while time.monotonic() < deadline:
        async with uow.connect() as conn:
            rows = await conn.execute(
                select(payments.c.reference, func.min(command_parts.c.submitted_at))
                .join(command_parts, command_parts.c.command_id == payments.c.credit_command_id)
                .where(payments.c.reference.in_(refs), command_parts.c.submitted_at.is_not(None))
                .group_by(payments.c.reference)
            )
            found = {r[0]: r[1] for r in rows}
        if len(found) == len(refs):
            break
        await asyncio.sleep(0.2)
    return found


async def run(args: argparse.Namespace, url: str) -> None:
    settings = load_settings(None, {"SMSMETER_DATABASE_URL": url, "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.05"})
    engine = create_engine(url, pool_size=args.concurrency + 4)
    await migrate.upgrade(engine)
    uow = UnitOfWork(engine)
    keys = KeyRing(MASTER_KEY)
    people = await _seed(uow, SUBSCRIBERS)
    burst = await _pending(uow, people, args.burst, "b")
    steady = await _pending(uow, people, args.rate * args.seconds, "s")

    async def on_event(_event: object) -> None:
        return None

    async with running_gateway(settings, engine, keys, on_event) as gateway:
        service = WebhookService(
            uow,
            BillingApplier(keys, top_up_policy(settings)),
            WebhookSecrets(stripe_secret=se.WEBHOOK_SECRET),
            on_credit=lambda _id: gateway.dispatcher.wake(),
        )
        app = create_app(health_check=_healthy, payment_services=PaymentServices(webhooks=service))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url_hook = f"http://127.0.0.1:{port}/webhooks/stripe"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
                # 1. as fast as they come: webhooks accepted and applied per second
                queue = list(burst)
                statuses: list[str] = []

                async def worker() -> None:
                    while queue:
                        statuses.append((await _post(http, url_hook, queue.pop()))[1])

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                burst_s = time.perf_counter() - t0
                applied = statuses.count("applied")
                # 2. a steady rate: latency from received to the credit SMS submitted
                await asyncio.sleep(1.0)
                sent_at: dict[str, datetime] = {}
                http_ms: list[float] = []
                answers: list[str] = []

                async def one(raw: bytes, when: float) -> None:
                    await asyncio.sleep(max(0.0, when - time.perf_counter()))
                    ref = json.loads(raw)["data"]["object"]["client_reference_id"]
                    sent_at[ref] = datetime.now(UTC)
                    start = time.perf_counter()
                    answers.append((await _post(http, url_hook, raw))[1])
                    http_ms.append((time.perf_counter() - start) * 1000)

                t0 = time.perf_counter() + 0.1
                tasks = [asyncio.create_task(one(raw, t0 + i / args.rate)) for i, raw in enumerate(steady)]
                await asyncio.gather(*tasks)
                steady_s = time.perf_counter() - t0
                submitted = await _submitted_at(uow, list(sent_at), timeout_s=60)
        finally:
            await runner.cleanup()
    await engine.dispose()
    latencies = [(submitted[r] - sent_at[r]) / timedelta(milliseconds=1) for r in submitted]
    print(f"payments bench on {engine.dialect.name} ({SUBSCRIBERS} subscribers, simulated SMSC)")
    print(
        f"  burst: {len(burst)} webhooks, concurrency {args.concurrency}: {len(burst) / burst_s:.0f} webhooks/s "
        f"accepted, {applied / burst_s:.0f}/s applied ({applied} credits)"
    )
    print(
        f"  steady: {len(steady)} webhooks at {args.rate}/s (achieved {len(steady) / steady_s:.0f}/s), "
        f"{answers.count('applied')} applied"
    )
    print(f"    HTTP answer            p50 {_pct(http_ms, 50):7.1f} ms   p99 {_pct(http_ms, 99):7.1f} ms")
    if latencies:
        print(
            f"    received -> SMS submitted p50 {_pct(latencies, 50):7.1f} ms   p99 {_pct(latencies, 99):7.1f} ms"
            f"   (mean {statistics.fmean(latencies):.1f} ms, {len(latencies)}/{len(steady)} submitted;"
            " target p99 < 50 ms)"
        )
    else:
        print("    no credit SMS was submitted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database (127.0.0.1:5432)")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.postgres:
        admin = databases.postgres_admin_url()
        url = databases.create_postgres_database(admin)
        try:
            asyncio.run(run(args, url))
        finally:
            databases.drop_postgres_database(admin, url)
    else:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(run(args, databases.sqlite_url(Path(folder))))


if __name__ == "__main__":
    main()
