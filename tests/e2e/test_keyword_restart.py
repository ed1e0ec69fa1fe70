"""Keyword SMS survive a restart: `smsmeter serve --demo` is killed (SIGKILL, as a crash) with a keyword SMS
kept in `inbound_texts` but not yet answered; the next start answers it, once, from the short number."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.support.service import running_service

ANA_PHONE = "37360000001"  # the demo subscriber Ana Popescu's registered phone
SHORT = "7220"  # the default short number


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def test_a_kept_keyword_sms_is_answered_by_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "var" / "smsmeter.db"
    with running_service(tmp_path, {}, args=("--demo",)) as service:
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(timeout=20)
    with sqlite3.connect(db) as conn:  # what the gateway had kept when the process died
        conn.execute(
            "INSERT INTO inbound_texts (received_at, source, destination, body, data_coding, attempts)"
            " VALUES (?, ?, ?, ?, 0, 0)",
            (datetime.now(UTC).isoformat(), ANA_PHONE, SHORT, b"BAL"),
        )
    with running_service(tmp_path, {}, args=("--demo",)) as service:
        deadline = time.monotonic() + 30
        while not _rows(db, "SELECT id FROM inbound_texts WHERE handled_at IS NOT NULL"):
            assert time.monotonic() < deadline, service.log()
            time.sleep(0.3)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=20) == 0
    assert _rows(db, "SELECT msisdn, keyword, outcome FROM sms_requests") == [(ANA_PHONE, "bal", "answered")]
    assert _rows(db, "SELECT recipient, stage FROM notices WHERE stage = 'answer'") == [(ANA_PHONE, "answer")]
