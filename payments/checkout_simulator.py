"""A payment simulator that stands where Stripe Checkout stands, for the embedded default (the simulated SMS
network and no Stripe key): the same `CheckoutGateway` port as `payments.stripe_api.StripeApi`, so the
portal's "Top up online" runs exactly as in production up to the provider's page.

- `create_checkout_session` keeps the session in memory (the same idempotency key gives the same session, as
  Stripe does) and answers a `url` on this service's own checkout page (`PAGE_PATH/<session id>`, served by
  web/checkout_simulator.py): a card form that pays, declines or cancels.
- Paying completes the session and POSTs a `checkout.session.completed` event to the service's
  `/webhooks/stripe`, signed as Stripe signs it (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of "{t}.{body}"
  under the endpoint's `whsec_` secret, by `stripe.WebhookSignature.generate_signature_header`). The service
  verifies it with its Stripe webhook verifier configured with the same secret, so the payment takes the
  production path: the event row, the payment row, the ledger and the credit command in the outbox.
- A declined card (Stripe's test card 4000 0000 0000 0002, or the page's Decline button) posts
  `payment_intent.payment_failed` with Stripe's "Your card was declined." and the top-up is marked failed;
  cancelling sends nothing (as Stripe: the session stays open until it expires). Both return to the
  session's cancel page with what happened.
- It lists what was paid as Stripe's API lists it (`list_payment_intents`, `list_balance_transactions` with a
  fee of SIM_FEE_BP plus SIM_FEE_FIXED_MINOR), so the reconciliation runs against it; the page's "lose the
  webhook" box pays without posting the event, as a webhook that never arrives, for the reconciliation to find.
- A delivery the service does not take (no answer, or 5xx, e.g. 503 "not known yet") is retried in the
  background a few times, as Stripe retries; every delivery is kept in `deliveries`.

Sessions live in this process only (a restart forgets them; the pending top-up stays pending).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import stripe

from payments.stripe_api import BalanceTransaction, CheckoutSession, ProviderPayment

log = logging.getLogger("smsmeter.payments")

PAGE_PATH = "/checkout/simulator"
API_VERSION = "2024-06-20"
DECLINED_CARDS = {
    "4000000000000002": ("card_declined", "generic_decline", "Your card was declined."),
    "4000000000009995": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
}
PAYING_CARD = "4242424242424242"
MAX_SESSIONS = 10_000  # the oldest are forgotten beyond this
RETRY_DELAYS_S = (1.0, 5.0, 30.0)
SIM_FEE_BP, SIM_FEE_FIXED_MINOR = 290, 30  # the simulated provider's fee: 2.9 % + 30 minor units, as Stripe's card fee


class SessionState(enum.Enum):
    OPEN = "open"
    COMPLETE = "complete"  # paid
    DECLINED = "declined"  # the card was declined; the top-up is failed
    CANCELLED = "cancelled"  # the payer went back without paying


class CheckoutOutcome(enum.Enum):
    PAID = "paid"
    DECLINED = "declined"
    CANCELLED = "cancelled"


@dataclass
class SimulatedSession:
    id: str
    reference: str
    amount_minor: int
    currency: str  # lower case, as Stripe writes it
    description: str
    metadata: dict[str, str]
    intent_metadata: dict[str, str]
    success_url: str
    cancel_url: str
    created: int
    state: SessionState = SessionState.OPEN
    payment_intent_id: str | None = None
    decline_message: str | None = None
    paid_at: int | None = None  # Unix time of the payment

    def as_stripe_object(self) -> dict[str, Any]:
        """The session as Stripe's API writes it (the fields smsmeter and most integrations read)."""
        paid = self.state is SessionState.COMPLETE
        return {
            "id": self.id,
            "object": "checkout.session",
            "mode": "payment",
            "livemode": False,
            "created": self.created,
            "amount_subtotal": self.amount_minor,
            "amount_total": self.amount_minor,
            "currency": self.currency,
            "client_reference_id": self.reference,
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent_id,
            "payment_status": "paid" if paid else "unpaid",
            "status": "complete" if paid else "open",
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    event_type: str
    status: int | None  # what the service answered; None: no answer
    attempt: int


@dataclass(frozen=True, slots=True)
class PageOutcome:
    outcome: CheckoutOutcome
    redirect_to: str  # a path on this service (the session's success or cancel page)


def _path_of(url: str) -> str:
    """The path and query of one of our own return URLs: the checkout page is served by the service that made
    them, so the browser goes back to where it is, whatever host name or port the URL was built with."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _with_query(path: str, name: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{name}={value}"


def _card_digits(card_number: str) -> str:
    return "".join(ch for ch in card_number if ch.isdigit())


def card_problem(card_number: str) -> str | None:
    """Why the page would not take this card number (Stripe's page says so before anything is charged)."""
    return None if _luhn_ok(_card_digits(card_number)) else "Your card number is incorrect."


def _luhn_ok(digits: str) -> bool:
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class CheckoutSimulator:
    """`payments.checkout.CheckoutGateway` answered locally, plus what the simulator's card page calls.

    `webhook_secret` is the `whsec_` secret the service's Stripe webhook verifier is configured with. Use it as
    an async context manager (it owns an HTTP client and the retry tasks). `book`: a file where the payments it
    took are kept, as a provider keeps them, so that reconciling a window after a restart finds them."""

    def __init__(
        self,
        webhook_secret: str,
        *,
        page_path: str = PAGE_PATH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_s: float = 15.0,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        book: Path | None = None,
    ) -> None:
        self._secret = webhook_secret
        self._book_path = book
        self._book = ProviderBook(_read_book(book) if book is not None else [])
        self._page_path = page_path.rstrip("/")
        self._clock = clock
        self._timeout_s = timeout_s
        self._retry_delays_s = retry_delays_s
        self._sessions: OrderedDict[str, SimulatedSession] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.deliveries: list[Delivery] = []

    async def __aenter__(self) -> CheckoutSimulator:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def webhook_secret(self) -> str:
        return self._secret

    # -- the CheckoutGateway port -------------------------------------------------------------------------

    async def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> CheckoutSession:
        known = self._by_key.get(idempotency_key)
        session = self._sessions.get(known) if known else None
        if session is None:
            session = self._new_session(params)
            self._sessions[session.id] = session
            self._by_key[idempotency_key] = session.id
            while len(self._sessions) > MAX_SESSIONS:
                forgotten, _ = self._sessions.popitem(last=False)
                self._by_key = {k: v for k, v in self._by_key.items() if v != forgotten}
        return CheckoutSession(id=session.id, url=f"{self._page_path}/{session.id}", payment_intent_id=None)

    def _new_session(self, params: Mapping[str, Any]) -> SimulatedSession:
        (item,) = params["line_items"]
        price = item["price_data"]
        return SimulatedSession(
            id="cs_sim_" + secrets.token_hex(16),
            reference=str(params.get("client_reference_id") or ""),
            amount_minor=int(price["unit_amount"]) * int(item.get("quantity", 1)),
            currency=str(price["currency"]).lower(),
            description=str(price.get("product_data", {}).get("name", "")),
            metadata={str(k): str(v) for k, v in dict(params.get("metadata") or {}).items()},
            intent_metadata={
                str(k): str(v) for k, v in dict((params.get("payment_intent_data") or {}).get("metadata") or {}).items()
            },
            success_url=str(params["success_url"]),
            cancel_url=str(params["cancel_url"]),
            created=int(self._clock().timestamp()),
        )

    # -- the card page ------------------------------------------------------------------------------------

    def session(self, session_id: str) -> SimulatedSession | None:
        return self._sessions.get(session_id)

    async def pay(
        self, session_id: str, card_number: str, webhook_url: str, *, lose_webhook: bool = False
    ) -> PageOutcome | None:
        """The payer pressed Pay with `card_number`. None: no such session. A session paid already answers its
        success page again (a double submit pays once). `lose_webhook`: paid, and its event never posted."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        digits = _card_digits(card_number)
        if card_problem(digits) is not None:
            raise ValueError("check the card number with card_problem() first")
        declined = DECLINED_CARDS.get(digits)
        async with self._lock:  # one outcome per session, whatever the browser submits twice
            if session.state is SessionState.COMPLETE:
                return PageOutcome(CheckoutOutcome.PAID, _path_of(session.success_url))
            if session.state is not SessionState.OPEN:
                return self._closed(session)
            session.payment_intent_id = session.payment_intent_id or "pi_sim_" + secrets.token_hex(12)
            if declined is not None:
                session.state, session.decline_message = SessionState.DECLINED, declined[2]
                event = self.event("payment_intent.payment_failed", self.failed_intent(session, *declined))
            else:
                session.state, session.paid_at = SessionState.COMPLETE, int(self._clock().timestamp())
                event = self.event("checkout.session.completed", session.as_stripe_object())
                self._keep(_provider_payment(session))
        if declined is not None or not lose_webhook:
            await self.deliver(event, webhook_url)
        else:
            log.info("payment simulator: %s paid; its webhook is lost, as asked", session.payment_intent_id)
        if declined is not None:
            return PageOutcome(CheckoutOutcome.DECLINED, _with_query(_path_of(session.cancel_url), "declined", "1"))
        return PageOutcome(CheckoutOutcome.PAID, _path_of(session.success_url))

    async def decline(self, session_id: str, webhook_url: str) -> PageOutcome | None:
        """The page's Decline button: pay with Stripe's generic declined test card."""
        return await self.pay(session_id, "4000000000000002", webhook_url)

    def cancel(self, session_id: str) -> PageOutcome | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.state is SessionState.OPEN:
            session.state = SessionState.CANCELLED
        if session.state is SessionState.COMPLETE:
            return PageOutcome(CheckoutOutcome.PAID, _path_of(session.success_url))
        return self._closed(session)

    def _closed(self, session: SimulatedSession) -> PageOutcome:
        if session.state is SessionState.DECLINED:
            return PageOutcome(CheckoutOutcome.DECLINED, _with_query(_path_of(session.cancel_url), "declined", "1"))
        return PageOutcome(CheckoutOutcome.CANCELLED, _path_of(session.cancel_url))

    def failed_intent(self, session: SimulatedSession, code: str, decline_code: str, message: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": "card_error", "code": code, "message": message}
        if decline_code:
            error["decline_code"] = decline_code
        return {
            "id": session.payment_intent_id,
            "object": "payment_intent",
            "amount": session.amount_minor,
            "currency": session.currency,
            "livemode": False,
            "metadata": dict(session.intent_metadata),
            "status": "requires_payment_method",
            "last_payment_error": error,
        }

    # -- the provider's listing (payments.reconcile.PaymentLister) ---------------------------------------

    def _keep(self, payment: ProviderPayment) -> None:
        self._book.payments.append(payment)
        if self._book_path is not None:
            add_to_book(self._book_path, [payment])

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        return await self._book.list_payment_intents(start, end)

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]:
        return await self._book.list_balance_transactions(start, end)

    # -- webhooks, signed as Stripe signs them ------------------------------------------------------------

    def event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """An event as Stripe sends it (not signed yet: `signed` signs it at delivery)."""
        return {
            "id": "evt_sim_" + secrets.token_hex(12),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self._clock().timestamp()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": kind,
            "data": {"object": obj},
        }

    def signed(self, event: Mapping[str, Any]) -> tuple[bytes, str]:
        """The raw body and its `Stripe-Signature` header, signed now."""
        body = json.dumps(event, separators=(",", ":"))
        header: str = stripe.WebhookSignature.generate_signature_header(
            body, self._secret, int(self._clock().timestamp())
        )
        return body.encode(), header

    async def deliver(self, event: Mapping[str, Any], webhook_url: str) -> Delivery:
        """POST one event to `webhook_url`; a failed delivery is retried later in the background."""
        delivery = await self._post(event, webhook_url, attempt=1)
        if not _taken(delivery.status) and self._retry_delays_s:
            task = asyncio.create_task(self._retry(event, webhook_url), name=f"checkout-simulator-{event['id']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return delivery

    async def _retry(self, event: Mapping[str, Any], webhook_url: str) -> None:
        for attempt, delay_s in enumerate(self._retry_delays_s, 2):
            await asyncio.sleep(delay_s)
            if _taken((await self._post(event, webhook_url, attempt=attempt)).status):
                return
        log.warning("payment simulator: event %s not taken by %s; given up", event["id"], webhook_url)

    async def _post(self, event: Mapping[str, Any], webhook_url: str, *, attempt: int) -> Delivery:
        if self._http is None:
            raise RuntimeError("the payment simulator is not started (use it as an async context manager)")
        body, header = self.signed(event)  # each attempt signed anew, as Stripe does
        status: int | None = None
        try:
            async with self._http.post(
                webhook_url, data=body, headers={"Content-Type": "application/json", "Stripe-Signature": header}
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("payment simulator: event %s to %s: %s", event["id"], webhook_url, exc)
        delivery = Delivery(str(event["id"]), str(event["type"]), status, attempt)
        self.deliveries.append(delivery)
        log.info("payment simulator: %s %s → %s (attempt %d)", delivery.event_type, delivery.event_id, status, attempt)
        return delivery


def _charge_of(session: SimulatedSession) -> str:
    return "ch_" + str(session.payment_intent_id)[3:]


def _provider_payment(session: SimulatedSession) -> ProviderPayment:
    return ProviderPayment(
        payment_intent_id=str(session.payment_intent_id),
        amount_minor=session.amount_minor,
        currency=session.currency.upper(),
        created=datetime.fromtimestamp(session.paid_at or session.created, UTC),
        status="succeeded",
        charge_id=_charge_of(session),
        metadata=dict(session.intent_metadata),
    )


def _balance_transaction(payment: ProviderPayment) -> BalanceTransaction:
    """The simulator's fee on a payment: SIM_FEE_BP basis points plus SIM_FEE_FIXED_MINOR, in minor units."""
    fee = payment.amount_minor * SIM_FEE_BP // 10_000 + SIM_FEE_FIXED_MINOR
    return BalanceTransaction(
        id="txn_" + payment.payment_intent_id[3:],
        source=payment.charge_id or "",
        type="charge",
        amount_minor=payment.amount_minor,
        fee_minor=fee,
        net_minor=payment.amount_minor - fee,
        currency=payment.currency,
        created=payment.created,
    )


@dataclass
class ProviderBook:
    """The payments the simulated provider took, listed as payments.reconcile.PaymentLister lists them."""

    payments: list[ProviderPayment] = field(default_factory=list)

    async def list_payment_intents(self, start: datetime, end: datetime) -> list[ProviderPayment]:
        return [p for p in self.payments if start <= p.created < end]

    async def list_balance_transactions(self, start: datetime, end: datetime) -> list[BalanceTransaction]:
        return [_balance_transaction(p) for p in await self.list_payment_intents(start, end)]


def add_to_book(path: Path, payments: Sequence[ProviderPayment]) -> None:
    """Append payments to the simulator's book (one JSON object a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for p in payments:
            line = {
                "payment_intent_id": p.payment_intent_id,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
                "created": p.created.isoformat(),
                "charge_id": p.charge_id,
                "metadata": dict(p.metadata),
            }
            out.write(json.dumps(line, sort_keys=True) + "\n")


def _read_book(path: Path) -> list[ProviderPayment]:
    """The payments in the simulator's book; a line that does not read is logged and skipped."""
    if not path.exists():
        return []
    book = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            d = json.loads(line)
            book.append(
                ProviderPayment(
                    str(d["payment_intent_id"]),
                    int(d["amount_minor"]),
                    str(d["currency"]),
                    datetime.fromisoformat(d["created"]),
                    "succeeded",
                    d.get("charge_id"),
                    {str(k): str(v) for k, v in d.get("metadata", {}).items()},
                )
            )
        except (ValueError, KeyError, TypeError) as e:
            log.warning("payment simulator book %s line %d skipped: %s", path, n, e)
    return book


def _taken(status: int | None) -> bool:
    """Retried: no answer or a 5xx (503: a payment not known yet). A 4xx is the service refusing the request
    for good (Stripe would retry it too, to no avail; the service logs why)."""
    return status is not None and status < 500


def new_webhook_secret() -> str:
    """A per-process endpoint secret in Stripe's form."""
    return "whsec_" + secrets.token_urlsafe(32)


__all__ = [
    "PAGE_PATH",
    "PAYING_CARD",
    "CheckoutOutcome",
    "CheckoutSimulator",
    "Delivery",
    "PageOutcome",
    "SessionState",
    "SimulatedSession",
    "card_problem",
    "new_webhook_secret",
]
