"""Outbound event webhooks, the pure part: the event's JSON body, its signature header and the retry schedule.

The signature (`Smsmeter-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`) is HMAC-SHA256, keyed with the subscription's
secret, over `"<t>.<body>"` — the timestamp, a full stop and the raw body bytes, as Stripe signs its webhooks —
so a receiver checks both that the body is ours and that it is fresh (compare `t` with its clock). The event
id is in the body and in `Smsmeter-Event-Id`: deliveries are at least once, the receiver deduplicates by it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

SIGNATURE_HEADER = "Smsmeter-Signature"
EVENT_ID_HEADER = "Smsmeter-Event-Id"
EVENT_KIND_HEADER = "Smsmeter-Event-Kind"
KINDS = ("reading", "alarm", "command", "payment")


def new_secret() -> str:
    """A fresh signing secret (shown to the person who adds the subscription)."""
    return "whsec_" + secrets.token_urlsafe(24)


def body(event_id: str, kind: str, occurred_at: datetime, data: Mapping[str, Any]) -> bytes:
    """The POST body: `{"id", "kind", "occurred_at" (ISO 8601 UTC), "data"}`, compact UTF-8 JSON."""
    document = {"id": event_id, "kind": kind, "occurred_at": occurred_at.isoformat(), "data": dict(data)}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def signature(secrets: str | Sequence[str], timestamp: int, payload: bytes) -> str:
    """The `Smsmeter-Signature` header value for `payload` sent at `timestamp` (Unix seconds): one `v1=` per
    secret, the current one first (while a rotated-out secret still signs, a receiver holding either one finds
    its match among them, as with Stripe's rolled secrets)."""
    signed = f"{timestamp}.".encode() + payload
    keys = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    macs = ",".join(f"v1={hmac.new(k.encode(), signed, hashlib.sha256).hexdigest()}" for k in keys)
    return f"t={timestamp},{macs}"


def parse_kinds(kinds: str | list[str]) -> list[str]:
    """The kinds of a subscription, in their canonical order; raises ValueError for an unknown one or none."""
    wanted = {k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if k.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise ValueError(f"unknown event kind {', '.join(unknown)}: one of {', '.join(KINDS)}")
    if not wanted:
        raise ValueError(f"name at least one event kind: {', '.join(KINDS)}")
    return [k for k in KINDS if k in wanted]


def next_attempt(attempts: int, now: datetime, *, base_s: float, max_s: float) -> datetime:
    """When to try again after `attempts` failed attempts: base_s, doubling, at most max_s."""
    return now + timedelta(seconds=min(max_s, base_s * 2 ** max(0, attempts - 1)))
