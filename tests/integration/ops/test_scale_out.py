"""Scale-out: two gateway processes and one web process on one PostgreSQL. The work is shared, nothing is sent
twice, and stopping one gateway in the middle of the run loses nothing."""

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
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            with harness.service_processes(web, gateway_a, gateway_b):
                async with harness.fleet_answering(smsc, fleet):
                    for process in (web, gateway_a, gateway_b):
                        process.start()
                    await asyncio.gather(web.wait_ready(), gateway_a.wait_ready(), gateway_b.wait_ready())
                    assert len(await smsc.sessions()) == 2  # one bind per gateway; the web process binds none
                    paying = asyncio.create_task(harness.apply_burst(engine, burst, concurrency=4))
                    await harness.wait_submitted(smsc, n_top_ups // 3)
                    sent_by_a = await _scrape(http, gateway_a.base_url)
                    assert gateway_a.stop() == 0  # SIGTERM mid-run: it finishes and records its sends, then exits
                    await paying
                    states = await harness.wait_all_final(engine, n_top_ups, timeout_s=120)
                    await asyncio.sleep(1.0)
                    sent_by_b = await _scrape(http, gateway_b.base_url)
                    fleet_view = await _scrape(http, web.base_url)
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
        assert len(submits) == n_top_ups
        assert figures.lost == 0
        assert figures.applied_twice == 0
        assert figures.applied == n_top_ups
        assert harness.final_states_are_processed(states), states
        assert fleet_view[("smsmeter_commands", (("state", "1:1"),))] == n_top_ups  # the web process sees the fleet
        assert fleet_view[("smsmeter_open_commands", ())] == 0
    finally:
        await engine.dispose()
