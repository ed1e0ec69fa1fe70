"""Alarms reach people: alarm rules queue e-mail and SMS notices to named recipients and to the operators of
a role, once per alarm; the automatic relay off on tamper runs only when the utility enables it and only in
friendly hours (it waits otherwise, and an acknowledgement first cancels it); rule changes are audited with
before and after; commands stuck in 0:0 and the SMS channel down raise one open alarm each (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

import meter_protocol as mp
from billing import alarm_rules, alarms
from billing.alarm_rules import RuleFields
from billing.errors import InvalidField, NotFound
from billing.notices import send_due_notices
from billing.rules.arrears import FriendlyCalendar
from gateway import watch
from gateway.keys import KeyRing
from gateway.outbox import CommandRequest, enqueue_command
from gateway.ports import TransportState
from store.schema.auth import audit_log, operators
from store.schema.commands import alarms as A  # noqa: N812
from store.schema.commands import commands
from store.schema.notices import notices
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber
from web.queries.operators import OPERATORS

KEYS = KeyRing(MASTER_KEY)
CALENDAR = FriendlyCalendar()  # night 18:00-08:00 UTC, weekends off; NOW is a Tuesday at 10:00
NIGHT = NOW.replace(hour=22)

pytestmark = pytest.mark.usefixtures("streets")


async def _operator(uow: UnitOfWork, username: str, role: str, email: str | None, phone: str | None) -> None:
    async with uow.begin() as conn:
        await conn.execute(
            insert(operators).values(
                username=username, display_name=username, role=role, email=email, phone=phone, created_at=NOW
            )
        )


async def _alarm(uow: UnitOfWork, meter_id: int | None, kind: str = "tamper", severity: str = "critical") -> int:
    async with uow.begin() as conn:
        return int(
            await conn.scalar(
                insert(A)
                .values(meter_id=meter_id, kind=kind, severity=severity, raised_at=NOW, detail=f"{kind} seen")
                .returning(A.c.id)
            )
        )


async def _notices(uow: UnitOfWork) -> list[tuple[str, str, int | None]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(notices.c.channel, notices.c.recipient, notices.c.alarm_id).order_by(notices.c.id)
        )
        return [tuple(r) for r in rows]


async def _alarm_row(uow: UnitOfWork, alarm_id: int) -> dict[str, object]:
    async with uow.connect() as conn:
        return dict((await conn.execute(select(A).where(A.c.id == alarm_id))).mappings().one())


async def _notify(uow: UnitOfWork, now=NOW, *, enabled: bool = True) -> alarm_rules.AlarmReport:  # type: ignore[no-untyped-def]
    return await alarm_rules.notify_alarms(
        uow, now, keys=KEYS, calendar=CALENDAR, actions_enabled=enabled, utility="Demo Utility", operators=OPERATORS
    )


async def _relay_offs(uow: UnitOfWork, meter_id: int) -> list[dict[str, object]]:
    async with uow.connect() as conn:
        rows = await conn.execute(
            select(commands).where(commands.c.meter_id == meter_id, commands.c.kind == "relay_off")
        )
        return [dict(r) for r in rows.mappings()]


async def test_a_rule_tells_its_recipients_and_its_role_once_per_alarm(uow: UnitOfWork) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    await _operator(uow, "duty", "operator", "duty@utility.example", "37369111111")
    await _operator(uow, "clerk", "cashier", "clerk@utility.example", "37369222222")
    await alarm_rules.create_rule(
        uow,
        OPERATOR,
        RuleFields(
            name="Tamper to the duty desk",
            kind="tamper",
            min_severity="warning",
            email=True,
            sms=True,
            role="operator",
            recipients=["security@utility.example"],
        ),
        NOW,
        operators=OPERATORS,
    )
    tamper = await _alarm(uow, meter.id)
    await _alarm(uow, meter.id, kind="cover_open")  # no rule names it
    await _alarm(uow, meter.id, kind="tamper", severity="info")  # below the rule's severity

    report = await _notify(uow)
    assert (report.alarms, report.notices) == (3, 3)
    assert sorted(await _notices(uow)) == [
        ("email", "duty@utility.example", tamper),
        ("email", "security@utility.example", tamper),
        ("sms", "37369111111", tamper),
    ]
    assert (await _alarm_row(uow, tamper))["notified_at"] == NOW
    assert (await _notify(uow)).notices == 0  # once per alarm
    assert len(await _notices(uow)) == 3

    class Outbox:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        async def send_text(self, msisdn: str, text: str) -> None:
            self.sent.append((msisdn, text))

        async def send_email(self, to: str, subject: str, body: str, attachments: object = ()) -> None:
            self.sent.append((to, subject))

    sms, email = Outbox(), Outbox()
    sent = await send_due_notices(uow, NOW, sms=sms, email=email)  # the notices job sends them like any other
    assert sent.sent == 3
    assert sms.sent[0][0] == "37369111111"
    assert "critical alarm tamper on meter" in sms.sent[0][1]
    assert {to for to, _ in email.sent} == {"duty@utility.example", "security@utility.example"}


async def test_relay_off_on_tamper_runs_only_when_enabled_and_in_friendly_hours(uow: UnitOfWork) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    await alarm_rules.create_rule(
        uow,
        OPERATOR,
        RuleFields(
            name="Disconnect on tamper",
            kind="tamper",
            min_severity="critical",
            recipients=["security@utility.example"],
            action="relay_off",
        ),
        NOW,
        operators=OPERATORS,
    )
    off = await _alarm(uow, meter.id)
    await _notify(uow, enabled=False)
    row = await _alarm_row(uow, off)
    assert row["action_state"] == "skipped"
    assert "not enabled" in str(row["action_detail"])
    assert await _relay_offs(uow, meter.id) == []

    at_night = await _alarm(uow, meter.id)
    report = await _notify(uow, NIGHT)
    assert report.pending == 1
    assert report.actions == 0
    assert (await _alarm_row(uow, at_night))["action_state"] == "pending"
    assert await _relay_offs(uow, meter.id) == []
    await _notify(uow, NIGHT + timedelta(hours=1))  # still night: still waiting
    assert await _relay_offs(uow, meter.id) == []

    morning = NIGHT + timedelta(hours=10, minutes=5)  # Wednesday 08:05
    report = await _notify(uow, morning)
    assert report.actions == 1
    row = await _alarm_row(uow, at_night)
    assert row["action_state"] == "sent"
    [command] = await _relay_offs(uow, meter.id)
    assert command["payload"]["reason"] in (mp.RelayReason.TAMPER.value, "tamper", "TAMPER")
    assert str(command["id"]) in str(row["action_detail"])
    async with uow.connect() as conn:
        [audited] = (await conn.execute(select(audit_log).where(audit_log.c.action == "alarm.action"))).mappings().all()
    assert audited["after"]["command_id"] == command["id"]
    assert audited["before"]["alarm_id"] == at_night
    await _notify(uow, morning + timedelta(minutes=1))
    assert len(await _relay_offs(uow, meter.id)) == 1  # sent once

    # acknowledged at night, before friendly hours: the waiting action is dropped
    acked = await _alarm(uow, meter.id)
    await _notify(uow, NIGHT + timedelta(days=1))
    await alarms.acknowledge_alarm(uow, OPERATOR, acked, NIGHT + timedelta(days=1, minutes=10))
    await _notify(uow, morning + timedelta(days=1))
    row = await _alarm_row(uow, acked)
    assert row["action_state"] == "skipped"
    assert "acknowledged" in str(row["action_detail"])
    assert len(await _relay_offs(uow, meter.id)) == 1


async def test_rule_changes_are_checked_and_audited_with_before_and_after(uow: UnitOfWork) -> None:
    fields = RuleFields(name="Any critical", kind="*", min_severity="critical", role="admin")
    rule = await alarm_rules.create_rule(uow, OPERATOR, fields, NOW, operators=OPERATORS)
    changed = await alarm_rules.update_rule(
        uow,
        OPERATOR,
        rule["id"],
        RuleFields(name="Any warning", kind="*", min_severity="warning", sms=True, email=False, role="admin"),
        NOW + timedelta(minutes=1),
        operators=OPERATORS,
    )
    assert changed["min_severity"] == "warning"
    assert changed["sms"]
    assert not changed["email"]
    await alarm_rules.delete_rule(uow, OPERATOR, rule["id"], NOW + timedelta(minutes=2))
    async with uow.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(audit_log).where(audit_log.c.action.like("alarm_rule.%")).order_by(audit_log.c.id)
                )
            )
            .mappings()
            .all()
        )
    assert [r["action"] for r in rows] == ["alarm_rule.create", "alarm_rule.update", "alarm_rule.delete"]
    assert rows[1]["before"]["min_severity"] == "critical"
    assert rows[1]["after"]["min_severity"] == "warning"
    assert rows[2]["before"]["name"] == "Any warning"
    assert rows[2]["after"] is None
    assert {r["target"] for r in rows} == {f"alarm_rule:{rule['id']}"}

    for bad in (
        RuleFields(name="", kind="tamper", min_severity="warning", role="admin"),
        RuleFields(name="x", kind="tamper", min_severity="loud", role="admin"),
        RuleFields(name="x", kind="tamper", min_severity="warning"),  # nobody to tell
        RuleFields(name="x", kind="tamper", min_severity="warning", recipients=["not an address"]),
        RuleFields(name="x", kind="tamper", min_severity="warning", role="nobody"),
        RuleFields(name="x", kind="tamper", min_severity="warning", role="admin", action="explode"),
        RuleFields(name="x", kind="tamper", min_severity="warning", role="admin", email=False, sms=False),
    ):
        with pytest.raises(InvalidField):
            await alarm_rules.create_rule(uow, OPERATOR, bad, NOW, operators=OPERATORS)
    with pytest.raises(NotFound):
        await alarm_rules.delete_rule(uow, OPERATOR, rule["id"], NOW)


async def test_stuck_commands_raise_one_open_alarm_until_acknowledged(uow: UnitOfWork) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    async with uow.begin() as conn:
        await enqueue_command(conn, KEYS, CommandRequest(meter.id, mp.Ping(), "operator:alice"), NOW)
    later = NOW + timedelta(minutes=10)
    assert await watch.check_stuck_commands(uow, later, older_than=timedelta(minutes=15)) is None
    later = NOW + timedelta(minutes=20)
    raised = await watch.check_stuck_commands(uow, later, older_than=timedelta(minutes=15))
    assert raised is not None
    assert raised.kind == "commands_stuck"
    assert raised.severity == "critical"
    assert "1 commands in 0:0 for more than 15 min" in (raised.detail or "")
    assert await watch.check_stuck_commands(uow, later + timedelta(minutes=1), older_than=timedelta(minutes=15)) is None
    async with uow.connect() as conn:
        [open_alarm] = (await conn.execute(select(A.c.id).where(A.c.kind == "commands_stuck"))).scalars().all()
    await alarms.acknowledge_alarm(uow, OPERATOR, open_alarm, later + timedelta(minutes=2))
    again = await watch.check_stuck_commands(uow, later + timedelta(minutes=3), older_than=timedelta(minutes=15))
    assert again is not None  # acknowledged: the condition still there raises a new alarm
    async with uow.begin() as conn:  # handed to the SMSC: nothing stuck any more
        await conn.execute(update(commands).values(state="0:1"))
        await conn.execute(update(A).values(acknowledged_at=later, open_key=None))
    assert await watch.check_stuck_commands(uow, later + timedelta(hours=1), older_than=timedelta(minutes=15)) is None


async def test_the_sms_channel_down_for_long_raises_one_alarm(uow: UnitOfWork) -> None:
    state = [TransportState.BOUND]
    bind = watch.BindWatch(uow, lambda: state[0], down_after=timedelta(minutes=2))
    assert await bind.check(NOW) is None
    state[0] = TransportState.RECONNECTING
    assert await bind.check(NOW + timedelta(seconds=10)) is None  # a short drop is no alarm
    raised = await bind.check(NOW + timedelta(minutes=3))
    assert raised is not None
    assert raised.kind == "smsc_down"
    assert "reconnecting" in (raised.detail or "")
    assert await bind.check(NOW + timedelta(minutes=4)) is None  # one open alarm
    state[0] = TransportState.BOUND
    assert await bind.check(NOW + timedelta(minutes=5)) is None
    async with uow.connect() as conn:
        rows = (await conn.execute(select(A.c.kind, A.c.meter_id).where(A.c.kind == "smsc_down"))).all()
    assert rows == [("smsc_down", None)]
    # a rule for it tells the people of the role
    await _operator(uow, "admin1", "admin", "ops@utility.example", None)
    await alarm_rules.create_rule(
        uow,
        OPERATOR,
        RuleFields(name="SMSC down", kind="smsc_down", min_severity="critical", role="admin"),
        NOW,
        operators=OPERATORS,
    )
    await _notify(uow)
    assert [(c, r) for c, r, _ in await _notices(uow)] == [("email", "ops@utility.example")]


async def test_an_alarm_the_gateway_reports_is_notified_at_once_by_the_service(uow: UnitOfWork) -> None:
    from config import load_settings
    from gateway.events import AlarmRaised
    from smsmeter.billing_setup import build_billing

    _, meter = await new_subscriber(uow)
    assert meter is not None
    billing = build_billing(load_settings(None, {"SMSMETER_BILLING_ALARM_ACTIONS": "true"}), uow, KEYS)
    assert billing.alarm_actions is True
    await alarm_rules.create_rule(
        uow,
        OPERATOR,
        RuleFields(name="All", kind="*", min_severity="info", recipients=["noc@utility.example"]),
        NOW,
        operators=OPERATORS,
    )
    alarm_id = await _alarm(uow, meter.id, kind="cover_open")
    await billing.on_gateway_event(AlarmRaised(meter.id, "cover_open", "critical", NOW, "cover open"))
    assert await _notices(uow) == [("email", "noc@utility.example", alarm_id)]
