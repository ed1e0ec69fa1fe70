"""The console's reports (read-only): revenue, payments, arrears, losses, communication. Each returns a
`Report` — columns, rows and the series a chart draws — over a period ending now."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.losses import daily_losses
from store.schema.commands import commands, wrong_sms
from store.schema.ledger import accounts, arrears, ledger_entries, topups, transformer_balances
from store.schema.payments import payments
from store.schema.registry import subscribers, transformers
from web.i18n import N_

REPORTS = {
    "revenue": N_("Revenue"),
    "payments": N_("Payments"),
    "arrears": N_("Arrears"),
    "losses": N_("Losses"),
    "communication": N_("Communication"),
}


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str  # marked with N_, translated where shown
    kind: str = "text"  # text | money | number | percent | time


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    since: datetime
    until: datetime
    columns: list[Column]
    rows: list[dict[str, Any]]
    chart: list[dict[str, Any]] = field(default_factory=list)  # [{"label", "value"}]
    chart_kind: str = "money"  # money (minor units) | number | percent
    # lines over time, in the chart's kind: [{"name", "points": [{"label", "value"}]}]
    series: list[dict[str, Any]] = field(default_factory=list)


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def period_text(since: datetime, until: datetime) -> str:
    """The days a report covers, as its file and its e-mail name them: first – last (the end is exclusive)."""
    return f"{_day(since)} – {_day(until - timedelta(days=1))} (UTC)"


def _days(since: datetime, until: datetime) -> list[str]:
    out, day = [], since
    while day < until:
        out.append(_day(day))
        day += timedelta(days=1)
    return out


async def revenue(conn: AsyncConnection, since: datetime, until: datetime) -> Report:
    """Money taken per day (top-ups, net of reversals), split into what went to meters and what repaid debt."""
    rows = await conn.execute(
        select(
            topups.c.created_at,
            topups.c.amount_minor,
            topups.c.recovered_minor,
            topups.c.reversed_minor,
            topups.c.provider,
        ).where(topups.c.created_at >= since, topups.c.created_at < until)
    )
    per_day: dict[str, dict[str, int]] = defaultdict(
        lambda: {"amount_minor": 0, "recovered_minor": 0, "reversed_minor": 0, "count": 0}
    )
    for created_at, amount, recovered, reversed_, _provider in rows:
        day = per_day[_day(created_at)]
        day["amount_minor"] += int(amount)
        day["recovered_minor"] += int(recovered)
        day["reversed_minor"] += int(reversed_)
        day["count"] += 1
    table: list[dict[str, Any]] = []
    for name in _days(since, until):
        v = per_day.get(name, {"amount_minor": 0, "recovered_minor": 0, "reversed_minor": 0, "count": 0})
        table.append({"day": name, **v, "net_minor": v["amount_minor"] - v["reversed_minor"]})
    return Report(
        "revenue",
        since,
        until,
        [
            Column("day", N_("Day")),
            Column("count", N_("Top-ups"), "number"),
            Column("amount_minor", N_("Taken"), "money"),
            Column("recovered_minor", N_("Debt repaid"), "money"),
            Column("reversed_minor", N_("Reversed"), "money"),
            Column("net_minor", N_("Net"), "money"),
        ],
        table,
        [{"label": r["day"][5:], "value": r["net_minor"]} for r in table],
    )


async def payments_report(conn: AsyncConnection, since: datetime, until: datetime) -> Report:
    """Payments per provider and status in the period."""
    rows = await conn.execute(
        select(
            payments.c.provider,
            payments.c.status,
            func.count().label("count"),
            func.coalesce(func.sum(payments.c.amount_minor), 0).label("amount_minor"),
        )
        .where(payments.c.created_at >= since, payments.c.created_at < until)
        .group_by(payments.c.provider, payments.c.status)
        .order_by(payments.c.provider, payments.c.status)
    )
    table: list[dict[str, Any]] = [
        {
            "provider": r.provider,
            "status": r.status,
            "count": int(r._mapping["count"]),
            "amount_minor": int(r.amount_minor),
        }
        for r in rows
    ]
    chart: dict[str, int] = defaultdict(int)
    for r in table:
        if r["status"] == "paid":
            chart[r["provider"]] += r["amount_minor"]
    return Report(
        "payments",
        since,
        until,
        [
            Column("provider", N_("Provider")),
            Column("status", N_("Status")),
            Column("count", N_("Payments"), "number"),
            Column("amount_minor", N_("Amount"), "money"),
        ],
        table,
        [{"label": k, "value": v} for k, v in sorted(chart.items())],
    )


async def arrears_report(conn: AsyncConnection, since: datetime, until: datetime) -> Report:
    """Accounts in arrears now: the debt, since when, the stage reached."""
    debt = (
        select(ledger_entries.c.account_id, func.sum(ledger_entries.c.amount_minor).label("debt_minor"))
        .where(ledger_entries.c.book == "debt")
        .group_by(ledger_entries.c.account_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            subscribers.c.id,
            subscribers.c.code,
            subscribers.c.name,
            arrears.c.stage,
            arrears.c.overdue_since,
            arrears.c.disconnected_at,
            arrears.c.deferred,
            func.coalesce(debt.c.debt_minor, 0).label("debt_minor"),
        )
        .select_from(arrears)
        .join(accounts, accounts.c.id == arrears.c.account_id)
        .join(subscribers, subscribers.c.id == accounts.c.subscriber_id)
        .outerjoin(debt, debt.c.account_id == arrears.c.account_id)
        .where(arrears.c.overdue_since.is_not(None))
        .order_by(arrears.c.overdue_since)
    )
    table = []
    stages: dict[str, int] = defaultdict(int)
    for r in rows:
        owed = abs(int(r.debt_minor))
        table.append(
            {
                "subscriber_id": r.id,
                "code": r.code,
                "name": r.name,
                "stage": r.stage,
                "overdue_since": r.overdue_since,
                "debt_minor": owed,
                "disconnected_at": r.disconnected_at,
                "deferred": r.deferred or "",
            }
        )
        stages[r.stage] += owed
    return Report(
        "arrears",
        since,
        until,
        [
            Column("code", N_("Code")),
            Column("name", N_("Name")),
            Column("stage", N_("Stage")),
            Column("overdue_since", N_("Overdue since"), "time"),
            Column("debt_minor", N_("Debt"), "money"),
            Column("disconnected_at", N_("Disconnected"), "time"),
            Column("deferred", N_("Waiting for")),
        ],
        table,
        [{"label": k, "value": v} for k, v in sorted(stages.items())],
    )


async def losses(conn: AsyncConnection, since: datetime, until: datetime) -> Report:
    """Transformer balances in the period: energy supplied against energy billed, and the loss."""
    rows = await conn.execute(
        select(
            transformers.c.code,
            transformers.c.name,
            transformer_balances.c.period_start,
            transformer_balances.c.period_end,
            transformer_balances.c.supplied_wh,
            transformer_balances.c.billed_wh,
            transformer_balances.c.loss_bp,
            transformer_balances.c.alarm,
        )
        .join(transformers, transformers.c.id == transformer_balances.c.transformer_id)
        .where(transformer_balances.c.period_start >= since, transformer_balances.c.period_start < until)
        .order_by(transformers.c.code, transformer_balances.c.period_start)
    )
    table = [
        {
            "code": r.code,
            "name": r.name,
            "period_start": r.period_start,
            "period_end": r.period_end,
            "supplied_kwh": round(int(r.supplied_wh) / 1000, 1),
            "billed_kwh": round(int(r.billed_wh) / 1000, 1),
            "loss_percent": int(r.loss_bp) / 100,
            "alarm": bool(r.alarm),
        }
        for r in rows
    ]
    latest: dict[str, float] = {}
    for r in table:
        latest[r["code"]] = r["loss_percent"]
    per_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for day in await daily_losses(conn, since.date(), (until - timedelta(days=1)).date()):
        per_day[day.code].append({"label": day.day.isoformat(), "value": day.loss.loss_bp / 100})
    return Report(
        "losses",
        since,
        until,
        [
            Column("code", N_("Transformer")),
            Column("name", N_("Name")),
            Column("period_start", N_("From"), "time"),
            Column("period_end", N_("To"), "time"),
            Column("supplied_kwh", N_("Supplied, kWh"), "number"),
            Column("billed_kwh", N_("Billed, kWh"), "number"),
            Column("loss_percent", N_("Loss, per cent"), "number"),
        ],
        table,
        [{"label": k, "value": v} for k, v in sorted(latest.items())],
        "percent",
        [{"name": code, "points": points} for code, points in per_day.items()],
    )


_FINAL_FAILURES = ("rejected_smsc", "undeliverable", "expired", "rejected_meter", "timed_out", "failed", "cancelled")


async def communication(conn: AsyncConnection, since: datetime, until: datetime) -> Report:
    """Commands per day: sent, processed by the meter (1:1), failed, still on the way; wrong SMS."""
    day_rows = await conn.execute(
        select(commands.c.created_at, commands.c.state).where(
            commands.c.created_at >= since, commands.c.created_at < until
        )
    )
    per_day: dict[str, dict[str, int]] = defaultdict(
        lambda: {"sent": 0, "processed": 0, "failed": 0, "pending": 0, "wrong_sms": 0}
    )
    for created_at, state in day_rows:
        day = per_day[_day(created_at)]
        day["sent"] += 1
        if state == "1:1":
            day["processed"] += 1
        elif state in _FINAL_FAILURES:
            day["failed"] += 1
        else:
            day["pending"] += 1
    for (received_at,) in await conn.execute(
        select(wrong_sms.c.received_at).where(wrong_sms.c.received_at >= since, wrong_sms.c.received_at < until)
    ):
        per_day[_day(received_at)]["wrong_sms"] += 1
    table: list[dict[str, Any]] = [
        {"day": d, **per_day.get(d, {"sent": 0, "processed": 0, "failed": 0, "pending": 0, "wrong_sms": 0})}
        for d in _days(since, until)
    ]
    return Report(
        "communication",
        since,
        until,
        [
            Column("day", N_("Day")),
            Column("sent", N_("Commands"), "number"),
            Column("processed", N_("Processed (1:1)"), "number"),
            Column("failed", N_("Failed"), "number"),
            Column("pending", N_("On the way"), "number"),
            Column("wrong_sms", N_("Wrong SMS"), "number"),
        ],
        table,
        [{"label": r["day"][5:], "value": r["sent"]} for r in table],
        "number",
    )


BUILDERS = {
    "revenue": revenue,
    "payments": payments_report,
    "arrears": arrears_report,
    "losses": losses,
    "communication": communication,
}
