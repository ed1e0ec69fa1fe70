"""`smsmeter conformance`: the checklist of docs/protocol.md §14 run on a meter under test over the
configured transport (the simulated network, or the SMPP account of the settings), pass or fail per line
(docs/operations.md §7c)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import Settings
from config.settings import TransportKind

EXIT_FAILED = 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "conformance",
        help="run the conformance checklist (docs/protocol.md §14) on a meter under test over the configured transport",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--meter", metavar="CODE", help="a meter in stock (from its key file): its SIM number, key and counters"
    )
    which.add_argument("--code", metavar="CODE", help="a meter not in the registry: its 20-digit code")
    p.add_argument("--msisdn", help="with --code: the meter's SIM number")
    p.add_argument("--key-file", metavar="FILE", help="with --code: a file holding the meter's key in hexadecimal")
    p.add_argument("--key-id", type=int, default=0, help="with --code: the key id the meter holds (default 0)")
    p.add_argument("--counter", type=int, default=1, help="with --code: the first counter to send (default 1)")
    p.add_argument("--app-port", type=int, help="with --code: the meter's application port, when it wants one")
    p.add_argument(
        "--xml",
        choices=["yes", "no"],
        help="whether the meter takes the XML profile (default: yes for an xml-profile meter, else no)",
    )
    p.add_argument("--reply-timeout-s", type=float, default=60.0, help="the longest a reply may take (default 60)")
    p.add_argument("--settle-s", type=float, default=3.0, help="after the replies, wait for one too many (default 3)")
    p.add_argument(
        "--silence-s", type=float, default=30.0, help="a frame the meter must drop: wait this long (default 30)"
    )
    p.add_argument("--json", metavar="FILE", help="write the run (every frame sent and received) to this file")
    p.add_argument("--verbose", action="store_true", help="print every exchange, not only the failing ones")
    p.add_argument("--operator", default="conformance", help="the name the audit log records")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from billing.errors import BillingError

    try:
        return asyncio.run(_run(settings, args))
    except BillingError as exc:
        print(f"smsmeter conformance: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, ValueError) as exc:
        print(f"smsmeter conformance: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def _meter(settings: Settings, args: argparse.Namespace) -> tuple[Any, Any]:
    """(the meter under test as billing.conformance.SampleMeter, the engine when it is registered)."""
    from billing.conformance import SampleMeter, sample_meter
    from meter_protocol.meter_code import validate_meter_code
    from smsmeter.masterkey import load_master_key
    from store import migrate
    from store.engine import create_engine
    from store.uow import UnitOfWork

    if args.meter:
        engine = create_engine(settings.database.url)
        try:
            await migrate.upgrade(engine)
            return await sample_meter(UnitOfWork(engine), args.meter, load_master_key(settings)), engine
        except BaseException:
            await engine.dispose()
            raise
    if not args.msisdn or not args.key_file:
        raise ValueError("--code needs --msisdn and --key-file")
    key = bytes.fromhex((await asyncio.to_thread(Path(args.key_file).read_text)).strip())
    if len(key) != 16:
        raise ValueError("a meter key is 16 bytes: 32 hexadecimal digits")
    code = validate_meter_code(args.code)
    profile = "xml" if args.xml == "yes" else "binary"
    sample = SampleMeter(0, code, args.msisdn, profile, args.app_port, args.key_id, key, args.counter, 0, 0)
    return sample, None


def _print_line(run: Any, xml: bool, verbose: bool) -> None:
    vector = f"tests/vectors/conformance_{'xml' if xml else 'binary'}.json#{run.line.id}"
    mark = "pass" if run.passed else "FAIL"
    print(f"{run.line.id} {mark}  {run.line.title} ({run.line.section})  vector: {vector}", flush=True)
    for ex in run.exchanges:
        if ex.problems or verbose:
            print(f"    {'ok ' if not ex.problems else 'bad'} {ex.exchange.note}")
            print(f"        sent    {ex.exchange.frame.hex()}")
            for reply in ex.replies:
                print(f"        replied {reply.hex()}")
            for problem in ex.problems:
                print(f"        ✗ {problem}")


def _as_json(sample: Any, runs: list[Any], xml: bool) -> dict[str, Any]:
    return {
        "meter_code": sample.code,
        "msisdn": sample.msisdn,
        "takes_xml": xml,
        "passed": all(r.passed for r in runs),
        "lines": [
            {
                "id": r.line.id,
                "title": r.line.title,
                "passed": r.passed,
                "exchanges": [
                    {
                        "note": x.exchange.note,
                        "send": x.exchange.frame.hex(),
                        "replies": [f.hex() for f in x.replies],
                        "problems": list(x.problems),
                    }
                    for x in r.exchanges
                ],
            }
            for r in runs
        ],
    }


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from billing.conformance import ConformanceOutcome, record_conformance
    from gateway.conformance import LinkTimes, MeterLink, run_checklist
    from gateway.fleet import Fleet
    from meter_protocol.conformance import Bench
    from meter_protocol.replay import ReplayWindow
    from smsmeter.masterkey import load_master_key
    from smsmeter.wiring import build_transport
    from store.audit import Actor
    from store.uow import UnitOfWork

    sample, engine = await _meter(settings, args)
    try:
        xml = args.xml == "yes" if args.xml else sample.profile == "xml"
        times = LinkTimes(args.reply_timeout_s, args.settle_s, args.silence_s)
        link = MeterLink(sample.msisdn, times, app_port=sample.app_port)
        fleet = None
        if settings.transport is TransportKind.SIMULATOR:  # the simulated network: a reference meter answers
            fleet = Fleet()
            fleet.add(sample.msisdn, sample.code, sample.key, key_id=sample.key_id)
            fleet.replace(sample.msisdn, replace(fleet.meter(sample.msisdn), accepts_xml=xml))
        transport = build_transport(settings, link.on_receipt, link.on_inbound, fleet)
        bench = Bench(
            sample.code,
            sample.key_id,
            sample.key,
            secrets.token_bytes(16),
            xml=xml,
            next_counter=sample.next_counter,
            uplink=ReplayWindow(sample.in_highest, sample.in_bitmap),
        )
        print(
            f"conformance of meter {sample.code} at {sample.msisdn} over {settings.transport.value}"
            f" ({'takes' if xml else 'without'} XML)",
            flush=True,
        )
        async with transport:
            wait_bound = getattr(transport, "wait_bound", None)
            if wait_bound is not None:
                await wait_bound(times.submit_timeout_s)
            runs = await run_checklist(transport, link, bench, on_line=lambda r: _print_line(r, xml, args.verbose))
        failed = [r.line.id for r in runs if not r.passed]
        print(
            f"{len(runs) - len(failed)} of {len(runs)} lines passed"
            + (f"; failed: {' '.join(failed)}" if failed else "")
        )
        if args.json:
            await asyncio.to_thread(
                Path(args.json).write_text, json.dumps(_as_json(sample, runs, xml), indent=1) + "\n"
            )
        if engine is not None:
            outcome = ConformanceOutcome(
                not failed,
                tuple(failed),
                bench.key_id,
                dict(bench.keys),
                bench.next_counter,
                bench.uplink.highest,
                bench.uplink.bitmap,
            )
            await record_conformance(
                UnitOfWork(engine),
                Actor("operator", args.operator),
                sample,
                outcome,
                master_key=load_master_key(settings),
                now=datetime.now(UTC),
            )
            if not failed:
                print(f"the meter now holds key id {bench.key_id}; the registry has it")
            else:
                print(f"the registry keeps key id {sample.key_id}; the keys the run gave the meter are kept as failed")
        return EXIT_FAILED if failed else 0
    finally:
        if engine is not None:
            await engine.dispose()
