"""Each part owns its tables: which package may write which table, checked against the source.

The source of every package is scanned for writes to a table of `store.schema` — `insert(t)`, `update(t)`,
`delete(t)` (SQLAlchemy's or a dialect's), `t.insert()` / `t.update()` / `t.delete()`, store's helpers
(`insert_ignoring_duplicates(t, …)`, `insert_rows(conn, t, …)`, `RowUpdate(t, …)` …) and SQL text that
inserts, updates or deletes — and the packages found writing each table must be those `WRITERS` names. A part
that needs another's table changed asks the owner through a function it exports (billing records a cash
payment with `payments.recorded.record_paid`, not with an insert of its own). A new table needs a line here.

Reads are checked too, for every part but the web shell (whose read models in web/queries join what a page
shows) and the composition root: a part names only the tables it may write, or those `READERS` names for it.
Payments reads none but its own: whom a payment is for it asks billing (`payments.ports.PayerBook`), how far a
credit command has come the gateway (`payments.ports.CommandBook`); billing reads payments' conflicts through
`payments.conflicts`.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Table

import store.schema

ROOT = Path(__file__).parents[2]
PACKAGES = ["meter_protocol", "billing", "payments", "gateway", "web", "config", "store", "telemetry", "smsmeter"]

# table → the packages that may write it. The first named is the owner; any other is a writer the owner has not
# yet taken back (each says why it writes there). smsmeter is the composition root: the demo's seed and the master
# key rotation.
WRITERS: dict[str, tuple[str, ...]] = {
    # payments: the payment rows, the events applied, conflicts, disputes, reconciliation
    "payments": ("payments",),
    "webhook_events": ("payments",),
    "payment_conflicts": ("payments",),
    "payment_disputes": ("payments",),
    "reconciliation_runs": ("payments",),
    "reconciliation_findings": ("payments",),
    # the gateway: the meters' frame counters, the outbox and what it learns from meters
    "meter_counters": ("gateway",),  # others move them on through gateway.counters (a conformance run)
    "commands": ("gateway", "smsmeter"),
    "command_parts": ("gateway",),
    "held_receipts": ("gateway",),
    "command_history": ("gateway",),
    "wrong_sms": ("gateway",),
    "inbound_texts": ("gateway",),  # billing marks one answered through gateway.inbound_texts.mark_handled
    "balance_reports": ("gateway", "smsmeter"),
    "readings": ("gateway", "billing", "smsmeter"),  # billing: readings entered by hand or imported
    "alarms": ("gateway", "billing", "smsmeter"),  # billing: losses, STS and top-up alarms
    "alarm_rules": ("billing",),
    "reading_plans": ("billing",),
    "reading_plan_runs": ("billing",),
    "sms_requests": ("billing",),
    "vouchers": ("billing",),
    "voucher_batches": ("billing",),
    # billing: the registry, tariffs, the ledger and everything billed
    "regions": ("billing",),
    "settlements": ("billing",),
    "streets": ("billing",),
    "subscribers": ("billing",),
    "subscriber_history": ("billing",),
    "transformers": ("billing", "smsmeter"),
    "meters": ("billing",),
    "meter_keys": ("billing", "smsmeter"),
    "meter_history": ("billing",),
    "holidays": ("billing",),
    "tariffs": ("billing",),
    "tariff_versions": ("billing",),
    "accounts": ("billing",),
    "ledger_entries": ("billing",),
    "topups": ("billing",),
    "arrears": ("billing", "smsmeter"),
    "bulk_jobs": ("billing",),
    "number_sequences": ("billing",),
    "invoices": ("billing",),
    "transformer_balances": ("billing",),
    "notices": ("billing",),
    "consumption_daily": ("billing",),
    "job_watermarks": ("billing",),
    "sts_meters": ("billing",),
    "sts_vending_keys": ("billing", "smsmeter"),
    # the web shell: who may log in
    "operators": ("web", "smsmeter"),
    "roles": ("web",),
    "api_keys": ("web",),
    "web_sessions": ("web",),
    "portal_logins": ("web",),
    "report_schedules": ("web",),  # reports by e-mail: the web shell owns the report queries they run
    # store: the audit trail every part writes through store.audit
    "audit_log": ("store",),
    # store: the event outbox every part writes through store.events (in the transaction of the change)
    "event_outbox": ("store", "billing"),  # billing: events fanned out to their deliveries
    # billing: who follows the head end by webhook, and the deliveries to them
    "event_subscriptions": ("billing", "smsmeter"),  # smsmeter: the master-key rotation re-wraps their secrets
    "event_deliveries": ("billing",),
    "event_attempts": ("billing",),
}

# table → the parts besides its writers that may read it (each says why). The web shell and the composition root
# read any table.
READERS: dict[str, tuple[str, ...]] = {
    "meters": ("gateway",),  # the meter's SIM number, code, profile and key id in force address and seal a frame
    "meter_keys": ("gateway",),  # the key in force seals a command and opens its reply
    "commands": ("billing",),  # the state of what billing asked the gateway to send (relay, key change, top-up)
    "command_history": ("billing",),  # the event feed turns the gateway's state changes into outbound events
}
READ_ANYTHING = {"web", "smsmeter"}

_FIRST_ARG = {"insert", "update", "delete", "insert_ignoring_duplicates", "RowUpdate", "Follower"}
_SECOND_ARG = {
    "insert_rows",
    "insert_returning",
    "insert_new",
    "add_in_id_order",
    "add_to_counters",
    "ignoring_duplicates",
}
_SQL_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_]+)\b")


def _schema() -> dict[str, dict[str, str]]:
    """store.schema module name → {variable name → table name}."""
    out = {}
    for info in pkgutil.iter_modules(store.schema.__path__):
        module = importlib.import_module(f"store.schema.{info.name}")
        out[info.name] = {name: t.name for name, t in vars(module).items() if isinstance(t, Table)}
    return out


SCHEMA = _schema()
TABLES = {name for tables in SCHEMA.values() for name in tables.values()}


def _written(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(table name, line) of every write to a `store.schema` table in a module."""
    names: dict[str, str] = {}  # local name → table
    modules: dict[str, str] = {}  # local name → store.schema module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("store.schema."):
            tables = SCHEMA.get(node.module.split(".")[2], {})
            names.update({a.asname or a.name: tables[a.name] for a in node.names if a.name in tables})
        elif isinstance(node, ast.ImportFrom) and node.module == "store.schema":
            modules.update({a.asname or a.name: a.name for a in node.names if a.name in SCHEMA})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("store.schema.") and a.asname:
                    modules[a.asname] = a.name.split(".")[2]

    def table(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in modules:
            return SCHEMA[modules[expr.value.id]].get(expr.attr)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _SQL_WRITE.finditer(node.value):
                if match.group(1) in TABLES:
                    yield match.group(1), node.lineno
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        found = None
        if name in _FIRST_ARG and node.args:
            found = table(node.args[0])
        elif name in _SECOND_ARG and len(node.args) > 1:
            found = table(node.args[1])
        if found is None and isinstance(func, ast.Attribute) and func.attr in {"insert", "update", "delete"}:
            found = table(func.value)
        if found is not None:
            yield found, node.lineno


def _named(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(table name, line) of every mention of a `store.schema` table in a module: a read, or a write."""
    names: dict[str, str] = {}
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("store.schema."):
            tables = SCHEMA.get(node.module.split(".")[2], {})
            names.update({a.asname or a.name: tables[a.name] for a in node.names if a.name in tables})
        elif isinstance(node, ast.ImportFrom) and node.module == "store.schema":
            modules.update({a.asname or a.name: a.name for a in node.names if a.name in SCHEMA})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("store.schema.") and a.asname:
                    modules[a.asname] = a.name.split(".")[2]
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load):
            yield names[node.id], node.lineno
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            found = SCHEMA[modules[node.value.id]].get(node.attr)
            if found is not None:
                yield found, node.lineno


def _sources(package: str) -> Iterator[Path]:
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" not in path.parts:  # a migration writes whatever its step needs
            yield path


def _readers() -> dict[tuple[str, str], list[str]]:
    """(table, part) → where the part names the table, for each part checked."""
    where: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        if package in READ_ANYTHING:
            continue
        for path in _sources(package):
            for name, line in _named(ast.parse(path.read_text(), str(path))):
                where.setdefault((name, package), []).append(f"{path.relative_to(ROOT)}:{line}")
    return where


def _writers() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    writers: dict[str, set[str]] = {}
    where: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in _sources(package):
            for name, line in _written(ast.parse(path.read_text(), str(path))):
                writers.setdefault(name, set()).add(package)
                where.setdefault((name, package), []).append(f"{path.relative_to(ROOT)}:{line}")
    return writers, where


def test_each_table_is_written_only_by_the_packages_named_for_it() -> None:
    writers, where = _writers()
    unexpected = {
        f"{package} writes {name}": where[(name, package)]
        for name, packages in writers.items()
        for package in sorted(packages - set(WRITERS.get(name, ())))
    }
    assert unexpected == {}
    # a writer other than the owner that writes no more is taken off
    no_longer = {name: others for name, (_, *others) in WRITERS.items() if set(others) - writers.get(name, set())}
    assert no_longer == {}, "named as writers but write no more: take them off WRITERS"


def test_each_part_reads_only_its_own_tables_and_those_named_for_it() -> None:
    where = _readers()
    unexpected = {
        f"{package} reads {name}": lines
        for (name, package), lines in sorted(where.items())
        if package not in WRITERS.get(name, ()) + READERS.get(name, ())
    }
    assert unexpected == {}
    no_longer = {
        name: package for name, packages in READERS.items() for package in packages if (name, package) not in where
    }
    assert no_longer == {}, "named as readers but read no more: take them off READERS"
    assert sorted(set(READERS) - TABLES) == []


def test_payments_reads_no_table_but_its_own() -> None:
    """Payments asks billing and the gateway through its ports; billing reads payments' rows through
    payments.conflicts."""
    where = _readers()
    payments_tables = set(SCHEMA["payments"].values())
    assert {name for name, package in where if package == "payments"} <= payments_tables
    assert {package for name, package in where if name in payments_tables} == {"payments"}
    assert all(set(READERS.get(name, ())) == set() for name in payments_tables)


def test_every_table_has_its_writers_named() -> None:
    assert sorted(TABLES - set(WRITERS)) == []
    assert sorted(set(WRITERS) - TABLES) == []


def test_payments_tables_are_written_by_payments_alone() -> None:
    """Billing credits a cash or bank payment and resolves conflicts through payments' functions."""
    _, where = _writers()
    payments_tables = set(SCHEMA["payments"].values())
    assert {WRITERS[name] for name in payments_tables} == {("payments",)}
    others = {k: v for k, v in where.items() if k[0] in payments_tables and k[1] != "payments"}
    assert others == {}


def test_the_scan_sees_each_kind_of_write() -> None:
    source = """
from sqlalchemy import insert, update, delete
from store.schema import ledger as L
from store.schema.payments import payments as pay, webhook_events
from store.bulk import RowUpdate, insert_rows
a = insert(pay)
b = update(L.accounts)
c = webhook_events.delete()
d = RowUpdate(L.topups, {}, lambda t, v: {})
e = insert_rows(conn, L.ledger_entries, rows)
f = "UPDATE invoices SET status = 'paid'"
g = select(L.arrears)
"""
    found = sorted(name for name, _ in _written(ast.parse(source)))
    assert found == ["accounts", "invoices", "ledger_entries", "payments", "topups", "webhook_events"]
    named = sorted({name for name, _ in _named(ast.parse(source))})
    assert named == ["accounts", "arrears", "ledger_entries", "payments", "topups", "webhook_events"]
