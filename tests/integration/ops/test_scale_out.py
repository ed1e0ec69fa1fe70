"""Scale-out, the recipe of docs/operations.md §3.1: two gateway processes (each with its own SMPP bind), one web
and one scheduler process on one PostgreSQL. The work is shared, nothing is sent twice, stopping one gateway in
the middle of the run loses nothing, and only the scheduler runs the scheduled jobs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from store.engine import create_engine
from tests.peers.smsc import NodeSmsc
from tests.reliability import harness


async def _scrape(http: aiohttp.ClientSession, base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(base_url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_two_gateways_and_a_web_process_share_one_database(
    tmp_path: Path, postgres_url: str, smsc: NodeSmsc
) -> None:
    n_top_ups = 150
    engine = create_engine(postgres_url)
    try:
        customers = await harness.make_utility(engine, 40)
        fleet = harness.Fleet(customers)
        burst = harness.plan_burst(customers, n_top_ups, "scale")
        env = harness.service_env(postgres_url, smsc, {"SMSMETER_GATEWAY_ACK_TIMEOUT_S": "120"})
        gateway_a = harness.ServiceProcess(tmp_path, env, ("--role", "gateway"), "gateway-a")
        gateway_b = harness.ServiceProcess(tmp_path, env, ("--role", "gateway"), "gateway-b")
        web = harness.ServiceProcess(tmp_path, env, ("--role", "web"), "web")
        scheduler = harness.ServiceProcess(tmp_path, env, ("--role", "scheduler"), "scheduler")
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            with harness.service_processes(web, gateway_a, gateway_b, scheduler):
                async with harness.fleet_answering(smsc, fleet):
                    for process in (web, gateway_a, gateway_b, scheduler):
                        process.start()
                    await asyncio.gather(*(p.wait_ready() for p in (web, gateway_a, gateway_b, scheduler)))
                    assert len(await smsc.sessions()) == 2  # one bind per gateway; web and scheduler bind none
                    paying = asyncio.create_task(harness.apply_burst(engine, burst, concurrency=4))
                    await harness.wait_submitted(
                        smsc, len(customers) + n_top_ups // 3
                    )  # the time syncs, a third of the top-ups
                    sent_by_a = await _scrape(http, gateway_a.base_url)
                    assert gateway_a.stop() == 0  # SIGTERM mid-run: it finishes and records its sends, then exits
                    await paying
                    states = await harness.wait_all_final(engine, n_top_ups, timeout_s=120)
                    await asyncio.sleep(1.0)
                    sent_by_b = await _scrape(http, gateway_b.base_url)
                    fleet_view = await _scrape(http, web.base_url)
                    timers = await _scrape(http, scheduler.base_url)
            submits = await smsc.submits()
        accepted = ("smsmeter_sms_submits_total", (("outcome", "accepted"),))
        a, b = sent_by_a.get(accepted, 0), sent_by_b.get(accepted, 0)
        per_frame = Counter((s.destination, s.body) for s in submits)
        figures = harness.count(
            "scale-out (2 gateways + web, one stopped mid-run)",
            burst,
            fleet,
            len(submits),
            time.monotonic() - started,
            f"gateway A sent {a:.0f} before it was stopped, gateway B {b:.0f}",
        )
        assert a > 0  # the work was shared ...
        assert b > 0
        assert max(per_frame.values()) == 1  # ... and no frame went out twice
        # every command went out once: the top-ups, and the scheduler's own (its time sync of each meter)
        all_commands = await harness.command_states(engine)
        assert sum(all_commands.values()) > n_top_ups
        assert len(submits) == sum(all_commands.values()), all_commands
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
        assert (
            fleet_view[("smsmeter_commands", (("state", "1:1"),))] == all_commands["1:1"]
        )  # the web process sees the fleet
        assert fleet_view[("smsmeter_open_commands", ())] == 0

        def jobs_of(view: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
            return {dict(labels)["job"] for name, labels in view if name == "smsmeter_job_running"}

        assert {"monthly invoices", "arrears sweep", "stuck commands"} <= jobs_of(timers)  # the scheduler's timers
        # a gateway sends the queued notices and watches its SMSC (it holds the SMS channel), and runs no timer
        assert "notices" in jobs_of(sent_by_b)
        assert not {"monthly invoices", "arrears sweep", "stuck commands"} & jobs_of(sent_by_b)
        assert jobs_of(fleet_view) == set()  # the web process runs no job
    finally:
        await engine.dispose()
