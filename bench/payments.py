"""Payments: webhooks per second accepted and applied, and the latency from a webhook received to its
credit SMS submitted (the submit_sm_resp of the credit command), p50/p99, at a steady 200 webhooks/s —
Stripe's `checkout.session.completed` and, with --provider, a provider's signed `payment.succeeded`
(`POST /webhooks/payments/{provider}`, a payment made at the provider's side) in the same run.

Everything real but the network: the aiohttp service on a loopback port, signed `checkout.session.completed`
events (one new top-up each) verified with the stripe library, billing's top-up (ledger, debt recovery,
the sealed credit command) in the webhook's transaction, and the gateway's dispatcher submitting to the
simulated SMSC, woken when a credit commits. The database is a fresh SQLite file (the default) or a
throwaway PostgreSQL database (--postgres).

    python -m bench.payments [--postgres [--split] | --both] [--provider] [--rounds N] [--rate 200]
                             [--seconds 10] [--burst 1000] [--concurrency 16] [--statements]
                             [--json FILE [--label NAME]]
    python -m bench.payments --summary FILE...

--rounds N runs every combination (Stripe / provider, SQLite / PostgreSQL) N times, interleaved (round 1 of
each, then round 2 of each ...), each on a fresh database, and prints each run and then the median and
range of every figure. --json appends one line per run to FILE (with --label, e.g. a commit); --summary
prints the medians and ranges of such files grouped by label, database and kind, so that two versions run
alternately in one sitting compare side by side.

With --split (PostgreSQL only) the service runs as two processes, as `smsmeter serve --role web` and
`--role gateway` would: the webhooks in this one, the dispatcher and the simulated SMSC in another, woken
across processes by the NOTIFY of the transaction that enqueues the credit command. CPU and statements are
then the sum of both processes'.

The webhooks are signed and posted by a process of their own (as the provider's would come from
elsewhere). Per credit it also prints the SQL statements the service process sent (webhooks, billing, the
dispatcher's claims and records, the bench's own polling) and its CPU time (which includes the simulated
SMSC and meters) — figures that compare versions where wall-clock time on a shared machine does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from billing import places

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from sqlalchemy import event, func, select

from billing import meter_registry, registry
from config.settings import load_settings
from gateway.keys import KeyRing
from meter_protocol import meter_code_with_check_digit
from payments.provider_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_provider_webhook
from payments.service import WebhookSecrets, WebhookService
from smsmeter.app import settle_heap
from smsmeter.payments_wiring import top_up_policy
from smsmeter.wiring import GatewayRuntime, running_gateway
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
PROVIDER = "kiosk"
PROVIDER_SECRET = "bench-kiosk-secret-0123456789abcdef"


async def _healthy() -> HealthReport:
    return HealthReport("bench", ComponentHealth("ok"), ComponentHealth("ok"))


async def _seed(uow: UnitOfWork, count: int) -> list[tuple[int, int, str, str]]:
    """(subscriber id, meter id, subscriber code, meter code) of `count` subscribers with a keyed meter."""
    now = datetime.now(UTC)
    out = []
    async with uow.begin() as conn:
        await places.add_region(conn, ACTOR, "64", "Nord", now)
        await places.add_settlement(conn, ACTOR, "64", "01", "Balti", now)
        await places.add_street(conn, ACTOR, "64", "01", "001", "Independentei", now)
        for i in range(count):
            sub = await registry.create_subscriber(
                conn, ACTOR, f"6401001{i + 1:04d}0001", {"name": f"Bench {i}"}, currency="USD", now=now
            )
            meter = await meter_registry.install_meter(
                conn,
                ACTOR,
                sub.id,
                meter_registry.NewMeter(code=meter_code_with_check_digit(f"88000{i + 1:014d}"), msisdn=f"37369{i:06d}"),
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


def _provider_payments(people: list[tuple[int, int, str, str]], n: int, tag: str) -> list[bytes]:
    """`n` bodies of a provider's `payment.succeeded`, each a new payment made at the provider's side for one of
    `people` (the payment row is registered by the webhook itself)."""
    created = int(time.time())
    bodies = []
    for i in range(n):
        _sid, _mid, code, meter = people[i % len(people)]
        payment = {"id": f"tx_bench_{tag}_{i}", "amount_minor": 1000, "currency": "USD", "account": code}
        payment["meter"] = meter
        body = {"id": f"evt_{tag}_{i}", "type": "payment.succeeded", "created": created, "payment": payment}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def _key(raw: bytes, provider: bool) -> str:
    """What names the payment of a webhook body: the provider's transaction id, or our top-up reference."""
    body = json.loads(raw)
    return str(body["payment"]["id"] if provider else body["data"]["object"]["client_reference_id"])


async def _post(http: aiohttp.ClientSession, url: str, raw: bytes, provider: bool) -> tuple[int, str]:
    now = int(time.time())
    if provider:
        headers = {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign_provider_webhook(PROVIDER_SECRET, now, raw)}
    else:
        headers = {"Stripe-Signature": se.signed(raw, now)[1]}
    async with http.post(url, data=raw, headers=headers) as resp:
        body = await resp.json()
        return resp.status, str(body.get("status"))


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _submitted_at(uow: UnitOfWork, refs: list[str], provider: bool, timeout_s: float) -> dict[str, datetime]:
    """Wait until every payment's credit command has been submitted; its first part's submit time."""
    key = payments.c.provider_ref if provider else payments.c.reference
    deadline = time.monotonic() + timeout_s
    found: dict[str, datetime] = {}
    while time.monotonic() < deadline:
        async with uow.connect() as conn:
            rows = await conn.execute(
                select(key, func.min(command_parts.c.submitted_at))
                .join(command_parts, command_parts.c.command_id == payments.c.credit_command_id)
                .where(key.in_(refs), command_parts.c.submitted_at.is_not(None))
                .group_by(key)
            )
            found = {r[0]: r[1] for r in rows}
        if len(found) == len(refs):
            break
        await asyncio.sleep(0.2)
    return found


def _offer(
    url: str, burst: list[bytes], steady: list[bytes], rate: int, concurrency: int, provider: bool, pipe: Connection
) -> None:
    """The webhook sender, in a process of its own: the burst, then the steady rate; reports over `pipe`."""
    asyncio.run(_send_webhooks(url, burst, steady, rate, concurrency, provider, pipe))


async def _send_webhooks(
    url: str, burst: list[bytes], steady: list[bytes], rate: int, concurrency: int, provider: bool, pipe: Connection
) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        queue = list(burst)
        statuses: list[str] = []

        async def worker() -> None:
            while queue:
                statuses.append((await _post(http, url, queue.pop(), provider))[1])

        pipe.send(("burst",))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        pipe.send(("burst done", statuses, time.perf_counter() - t0))
        await asyncio.sleep(1.0)
        sent_at: dict[str, float] = {}
        http_ms: list[float] = []
        answers: list[str] = []

        async def one(raw: bytes, when: float) -> None:
            await asyncio.sleep(max(0.0, when - time.perf_counter()))
            ref = _key(raw, provider)
            sent_at[ref] = time.time()
            start = time.perf_counter()
            answers.append((await _post(http, url, raw, provider))[1])
            http_ms.append((time.perf_counter() - start) * 1000)

        pipe.send(("steady",))
        t0 = time.perf_counter() + 0.1
        tasks = [asyncio.create_task(one(raw, t0 + i / rate)) for i, raw in enumerate(steady)]
        await asyncio.gather(*tasks)
        pipe.send(("steady done", sent_at, http_ms, answers, time.perf_counter() - t0))


def _settings(url: str) -> Any:
    return load_settings(None, {"SMSMETER_DATABASE_URL": url, "SMSMETER_SIMULATOR_RECEIPT_DELAY_S": "0.05"})


async def _ignore(_event: object) -> None:
    return None


def _gateway_process(url: str, pipe: Connection) -> None:
    """The gateway role in a process of its own (--split): answers each request on `pipe` with its statement
    count and CPU seconds so far, until asked to stop."""
    asyncio.run(_run_gateway(url, pipe))


async def _run_gateway(url: str, pipe: Connection) -> None:
    logging.basicConfig(level=logging.WARNING)
    engine = create_engine(url, pool_size=8)
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    async with running_gateway(_settings(url), engine, KeyRing(MASTER_KEY), _ignore):
        settle_heap()
        pipe.send((statements[0], time.process_time()))
        while await asyncio.to_thread(pipe.recv) != "stop":
            pipe.send((statements[0], time.process_time()))
    await engine.dispose()


async def run(args: argparse.Namespace, url: str, kind: str) -> dict[str, Any]:
    """One run of `kind` ("stripe" or "provider") on the database at `url`; prints and returns its figures."""
    provider = kind == "provider"
    load_before = os.getloadavg()  # the machine may be shared: wall-clock figures depend on it
    settings = _settings(url)
    engine = create_engine(url, pool_size=args.concurrency + 4)
    await migrate.upgrade(engine)
    uow = UnitOfWork(engine)
    keys = KeyRing(MASTER_KEY)
    people = await _seed(uow, SUBSCRIBERS)
    if provider:
        burst = _provider_payments(people, args.burst, "b")
        steady = _provider_payments(people, args.rate * args.seconds, "s")
    else:
        burst = await _pending(uow, people, args.burst, "b")
        steady = await _pending(uow, people, args.rate * args.seconds, "s")

    tracing = False
    statements = [0]  # every statement this process sends: webhooks, billing, dispatcher, the bench's own polls
    kinds: Counter[str] = Counter()  # with --statements: the steady phase's statements by their first words

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements[0] += 1
        if tracing:
            kinds[" ".join(sql.split()[:6])[:90]] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)

    spawn = multiprocessing.get_context("spawn")
    gateway_pipe: Connection | None = None
    gateway_process = None
    if args.split:  # the gateway role in another process, started once the fleet is in the database
        gateway_pipe, theirs_gw = spawn.Pipe()
        gateway_process = spawn.Process(target=_gateway_process, args=(url, theirs_gw), daemon=True)
        gateway_process.start()
        await asyncio.to_thread(gateway_pipe.recv)  # bound and listening

    async def other_process() -> tuple[int, float]:
        """The gateway process's statements and CPU seconds so far (none when it runs in this one)."""
        if gateway_pipe is None:
            return 0, 0.0
        gateway_pipe.send("count")
        answer: tuple[int, float] = await asyncio.to_thread(gateway_pipe.recv)
        return answer

    gateway_part: AbstractAsyncContextManager[GatewayRuntime | None] = (
        nullcontext(None) if args.split else running_gateway(settings, engine, keys, _ignore)
    )
    async with gateway_part as gateway:
        service = WebhookService(
            uow,
            BillingApplier(keys, top_up_policy(settings)),
            WebhookSecrets(stripe_secret=se.WEBHOOK_SECRET, provider_secrets={PROVIDER: PROVIDER_SECRET}),
            on_credit=(lambda _id: gateway.dispatcher.wake()) if gateway is not None else None,
        )
        app = create_app(health_check=_healthy, payment_services=PaymentServices(webhooks=service))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        settle_heap()  # as `smsmeter serve` does before serving
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        path = f"/webhooks/payments/{PROVIDER}" if provider else "/webhooks/stripe"
        url_hook = f"http://127.0.0.1:{port}{path}"
        # The webhooks come from a process of their own, as they would from the provider: the service's
        # event loop and CPU figures are the service's alone.
        ours, theirs = spawn.Pipe()
        sender = spawn.Process(
            target=_offer, args=(url_hook, burst, steady, args.rate, args.concurrency, provider, theirs), daemon=True
        )
        sender.start()

        async def heard(expected: str) -> tuple[Any, ...]:
            message: tuple[Any, ...] = await asyncio.to_thread(ours.recv)
            if message[0] != expected:
                raise RuntimeError(f"the webhook sender said {message!r}, not {expected}")
            return message

        try:
            # 1. as fast as they come: webhooks accepted and applied per second
            await heard("burst")
            cpu0, stmts0 = time.process_time(), statements[0]
            other0 = await other_process()
            _, statuses, burst_s = await heard("burst done")
            other1 = await other_process()
            applied = statuses.count("applied")
            burst_cpu_ms = (time.process_time() - cpu0 + other1[1] - other0[1]) * 1000 / max(1, applied)
            burst_stmts = (statements[0] - stmts0 + other1[0] - other0[0]) / max(1, applied)
            # 2. a steady rate: latency from received to the credit SMS submitted
            await heard("steady")
            tracing = args.statements
            cpu0, stmts0 = time.process_time(), statements[0]
            other0 = await other_process()
            _, sent_epoch, http_ms, answers, steady_s = await heard("steady done")
            tracing = False
            sent_at = {ref: datetime.fromtimestamp(at, UTC) for ref, at in sent_epoch.items()}
            submitted = await _submitted_at(uow, list(sent_at), provider, timeout_s=60)
            other1 = await other_process()
            steady_web_cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, len(steady))
            steady_cpu_ms = steady_web_cpu_ms + (other1[1] - other0[1]) * 1000 / max(1, len(steady))
            steady_stmts = (statements[0] - stmts0 + other1[0] - other0[0]) / max(1, len(steady))
            sender.join(timeout=10)
        finally:
            if sender.is_alive():
                sender.kill()
            await runner.cleanup()
            if gateway_pipe is not None and gateway_process is not None:
                gateway_pipe.send("stop")
                gateway_process.join(timeout=20)
                if gateway_process.is_alive():
                    gateway_process.kill()
    await engine.dispose()
    latencies = [(submitted[r] - sent_at[r]) / timedelta(milliseconds=1) for r in submitted]
    load_after = os.getloadavg()
    print(
        f"payments bench, {'provider webhooks' if provider else 'Stripe events'}, on {engine.dialect.name}"
        f"{', web and gateway in two processes' if args.split else ''} ({SUBSCRIBERS} subscribers, simulated SMSC); "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    print(
        f"  burst: {len(burst)} webhooks, concurrency {args.concurrency}: {len(burst) / burst_s:.0f} webhooks/s "
        f"accepted, {applied / burst_s:.0f}/s applied ({applied} credits)"
    )
    print(f"    per credit: {burst_stmts:.1f} SQL statements, {burst_cpu_ms:.2f} ms CPU")
    print(
        f"  steady: {len(steady)} webhooks at {args.rate}/s (achieved {len(steady) / steady_s:.0f}/s), "
        f"{answers.count('applied')} applied"
    )
    print(
        f"    per credit: {steady_stmts:.1f} SQL statements, {steady_cpu_ms:.2f} ms CPU"
        + (f" ({steady_web_cpu_ms:.2f} ms of it the web process's)" if args.split else "")
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
    if kinds:
        print("  steady phase, this process's statements per credit, by their first words:")
        for sql, n in kinds.most_common():
            print(f"    {n / max(1, len(steady)):6.2f}  {sql}")
    return {
        "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": engine.dialect.name,
        "kind": kind,
        "cpus": os.cpu_count(),
        "load_before": round(load_before[0], 2),
        "load_after": round(load_after[0], 2),
        "burst_accepted_per_s": len(burst) / burst_s,
        "burst_applied_per_s": applied / burst_s,
        "burst_statements": burst_stmts,
        "burst_cpu_ms": burst_cpu_ms,
        "steady_applied": answers.count("applied"),
        "steady_statements": steady_stmts,
        "steady_cpu_ms": steady_cpu_ms,
        "http_p50_ms": _pct(http_ms, 50),
        "http_p99_ms": _pct(http_ms, 99),
        "sms_p50_ms": _pct(latencies, 50) if latencies else None,
        "sms_p99_ms": _pct(latencies, 99) if latencies else None,
        "submitted": len(latencies),
        "offered": len(steady),
    }


# (figure, how it is printed) in the summary
FIGURES = (
    ("burst_applied_per_s", "burst applied /s"),
    ("burst_statements", "burst statements per credit"),
    ("burst_cpu_ms", "burst CPU ms per credit"),
    ("steady_statements", "steady statements per credit"),
    ("steady_cpu_ms", "steady CPU ms per credit"),
    ("http_p50_ms", "HTTP answer p50 ms"),
    ("http_p99_ms", "HTTP answer p99 ms"),
    ("sms_p50_ms", "received -> SMS submitted p50 ms"),
    ("sms_p99_ms", "received -> SMS submitted p99 ms"),
    ("load_before", "load average before"),
)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def summary(runs: list[dict[str, Any]]) -> str:
    """The median [min-max] of every figure, a column per (label, database, kind), in the order first run."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r.get("label") or "", r["database"], r["kind"]), []).append(r)
    heads = [" ".join(p for p in key if p) + f" (n={len(rs)})" for key, rs in groups.items()]
    lines = ["| figure, median [range] | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    for name, what in FIGURES:
        cells = [_spread([float(r[name]) for r in rs if r.get(name) is not None]) for rs in groups.values()]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    submitted = [f"{sum(r['submitted'] for r in rs)}/{sum(r['offered'] for r in rs)}" for rs in groups.values()]
    lines.append("| steady credits submitted | " + " | ".join(submitted) + " |")
    return "\n".join(lines)


def _one_run(args: argparse.Namespace, database: str, kind: str) -> dict[str, Any]:
    if database == "postgresql":
        admin = databases.postgres_admin_url()
        url = databases.create_postgres_database(admin)
        try:
            return asyncio.run(run(args, url, kind))
        finally:
            databases.drop_postgres_database(admin, url)
    with tempfile.TemporaryDirectory() as folder:
        return asyncio.run(run(args, databases.sqlite_url(Path(folder)), kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database (127.0.0.1:5432)")
    parser.add_argument("--both", action="store_true", help="SQLite and PostgreSQL, interleaved")
    parser.add_argument("--split", action="store_true", help="web and gateway in two processes (with --postgres)")
    parser.add_argument("--provider", action="store_true", help="provider webhooks too, beside Stripe events")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every combination, interleaved")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--statements", action="store_true", help="list the steady phase's statements by kind")
    parser.add_argument("--json", type=Path, help="append each run's figures to this file, a JSON line each")
    parser.add_argument("--label", default="", help="names the version measured in --json and the summary")
    parser.add_argument("--summary", type=Path, nargs="+", help="print the summary of --json files and stop")
    args = parser.parse_args()
    if args.summary:
        runs = [json.loads(line) for f in args.summary for line in f.read_text().splitlines() if line.strip()]
        print(summary(runs))
        return
    if args.split and not args.postgres:
        parser.error("--split needs --postgres (the processes are woken by PostgreSQL's NOTIFY)")
    logging.basicConfig(level=logging.WARNING)
    dbs = ["sqlite", "postgresql"] if args.both else ["postgresql"] if args.postgres else ["sqlite"]
    kinds = ["stripe", "provider"] if args.provider else ["stripe"]
    runs = []
    for round_no in range(1, args.rounds + 1):
        for database in dbs:
            for kind in kinds:
                if args.rounds > 1:
                    print(f"round {round_no}/{args.rounds}", flush=True)
                figures = _one_run(args, database, kind)
                runs.append(figures)
                if args.json is not None:
                    with args.json.open("a") as out:
                        out.write(json.dumps(figures) + "\n")
                sys.stdout.flush()
    if len(runs) > 1:
        print(f"\n{args.rounds} round(s), interleaved; target on PostgreSQL: >= 200/s applied, p99 < 50 ms")
        print(summary(runs))


if __name__ == "__main__":
    main()
