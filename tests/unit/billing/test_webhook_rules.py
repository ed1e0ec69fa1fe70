"""The pure part of event webhooks: the body is compact sorted JSON, the signature is HMAC-SHA256 over
"<t>.<body>" (a golden value computed here by hand), kinds are checked, retries back off by doubling up to a
ceiling."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from billing.rules.webhooks import body, new_secret, next_attempt, parse_kinds, signature

AT = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def test_the_body_is_the_event_as_compact_json() -> None:
    raw = body("payment:7", "payment", AT, {"amount_minor": 1000, "currency": "MDL"})
    assert raw == (
        b'{"data":{"amount_minor":1000,"currency":"MDL"},"id":"payment:7",'
        b'"kind":"payment","occurred_at":"2026-03-03T10:00:00+00:00"}'
    )
    assert json.loads(raw)["id"] == "payment:7"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    raw = b'{"id":"alarm:1"}'
    expected = hmac.new(b"whsec_test", b"1772532000." + raw, hashlib.sha256).hexdigest()
    assert signature("whsec_test", 1772532000, raw) == f"t=1772532000,v1={expected}"
    assert signature("whsec_test", 1772532000, raw + b" ") != signature("whsec_test", 1772532000, raw)
    assert signature("whsec_other", 1772532000, raw) != signature("whsec_test", 1772532000, raw)


def test_while_a_rotated_secret_still_signs_there_is_one_v1_per_secret_the_new_one_first() -> None:
    raw = b'{"id":"alarm:1"}'
    new, old = (hmac.new(k, b"1772532000." + raw, hashlib.sha256).hexdigest() for k in (b"whsec_new", b"whsec_old"))
    assert signature(["whsec_new", "whsec_old"], 1772532000, raw) == f"t=1772532000,v1={new},v1={old}"
    assert signature(["whsec_new"], 1772532000, raw) == signature("whsec_new", 1772532000, raw)


def test_secrets_are_fresh() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_")
    assert a != b
    assert len(a) >= 30


def test_kinds_are_checked_and_put_in_order() -> None:
    assert parse_kinds("payment, reading") == ["reading", "payment"]
    assert parse_kinds(["command", "alarm", "alarm"]) == ["alarm", "command"]
    with pytest.raises(ValueError, match="unknown event kind gossip"):
        parse_kinds(["gossip"])
    with pytest.raises(ValueError, match="at least one"):
        parse_kinds("")


def test_retries_double_up_to_the_ceiling() -> None:
    waits = [next_attempt(n, AT, base_s=30, max_s=300) - AT for n in range(1, 7)]
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 240, 300, 300)]
