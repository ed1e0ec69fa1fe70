"""Stripe's API through the stripe library's async client (aiohttp underneath): Checkout Sessions for
top-ups, and the lists reconciliation needs (PaymentIntents, balance transactions).

Every call has a timeout and wraps the library's errors in `ProviderUnavailable`. The base address is
configurable so the tests point the client at an emulator. Create it inside a running event loop and
`await close()` it when done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from payments.errors import ProviderUnavailable

log = logging.getLogger("smsmeter.payments")


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str
    payment_intent_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    """A succeeded PaymentIntent as the provider reports it."""

    payment_intent_id: str
    amount_minor: int
    currency: str
    created: datetime
    status: str
    charge_id: str | None
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class BalanceTransaction:
    id: str
    source: str | None  # the charge (ch_) or refund (re_) it comes from
    type: str
    amount_minor: int
    fee_minor: int
    net_minor: int
    currency: str
    created: datetime


class StripeApi:
    def __init__(self, api_key: str, *, api_base: str | None = None, timeout_s: float = 20.0, retries: int = 2) -> None:
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        addresses: dict[str, str] = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses=addresses,  # type: ignore[arg-type]
            max_network_retries=retries,
        )
        self._timeout_s = timeout_s * (retries + 1) + 1
        self._created_filter = True

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # stripe's client is untyped here

    async def _call(self, operation: str, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await coro
        except stripe.StripeError as exc:
            raise ProviderUnavailable(operation, f"{type(exc).__name__}: {exc.user_message or exc}") from exc
        except TimeoutError:
            raise ProviderUnavailable(operation, f"no answer in {self._timeout_s:.0f} s") from None

    async def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> CheckoutSession:
        session = await self._call(
            "create Checkout Session",
            self._client.v1.checkout.sessions.create_async(
                dict(params),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        session = session.to_dict()
        intent = session.get("payment_intent")
        return CheckoutSession(
            id=session["id"], url=session["url"], payment_intent_id=intent if isinstance(intent, str) else None
        )

    async def _list_all(
        self, operation: str, service: Any, params: dict[str, Any], start: datetime, end: datetime
    ) -> list[Any]:
        """Every object created in [start, end). Uses the `created` filter; an API without it (the emulator)
        is listed whole and filtered here."""
        if self._created_filter:
            filtered = {**params, "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}}
            try:
                return await self._pages(operation, service, filtered)
            except ProviderUnavailable as exc:
                if not isinstance(exc.__cause__, stripe.InvalidRequestError) or "created" not in str(exc):
                    raise
                log.warning("%s: the API refuses the created filter; listing everything", operation)
                self._created_filter = False
        everything = await self._pages(operation, service, params)
        lo, hi = int(start.timestamp()), int(end.timestamp())
        return [obj for obj in everything if lo <= int(obj["created"]) < hi]

    async def _pages(self, operation: str, service: Any, params: dict[str, Any]) -> list[Any]:
        items: list[Any] = []
        page = await self._call(operation, service.list_async({**params, "limit": 100}))
        while True:
            items.extend(obj.to_dict() for obj in page.data)
            if not page.has_more or not page.data:
                return items
            page = await self._call(
                operation, service.list_async({**params, "limit": 100, "starting_after": page.data[-1]["id"]})
            )

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        found = await self._list_all("list PaymentIntents", self._client.v1.payment_intents, {}, start, end)
        result = []
        for pi in found:
            charge = pi.get("latest_charge")
            if charge is not None and not isinstance(charge, str):
                charge = charge["id"]
            received = pi.get("amount_received")
            result.append(
                ProviderPayment(
                    payment_intent_id=pi["id"],
                    amount_minor=int(received) if isinstance(received, int) and received > 0 else int(pi["amount"]),
                    currency=str(pi["currency"]).upper(),
                    created=datetime.fromtimestamp(int(pi["created"]), UTC),
                    status=str(pi["status"]),
                    charge_id=charge,
                    metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
                )
            )
        return result

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]:
        found = await self._list_all("list balance transactions", self._client.v1.balance_transactions, {}, start, end)
        return [
            BalanceTransaction(
                id=bt["id"],
                source=bt["source"] if isinstance(bt.get("source"), str) else None,
                type=str(bt["type"]),
                amount_minor=int(bt["amount"]),
                fee_minor=int(bt.get("fee") or 0),
                net_minor=int(bt.get("net", int(bt["amount"]) - int(bt.get("fee") or 0))),
                currency=str(bt["currency"]).upper(),
                created=datetime.fromtimestamp(int(bt["created"]), UTC),
            )
            for bt in found
        ]
