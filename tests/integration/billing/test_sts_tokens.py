"""STS tokens as the other path of one transfer (docs/sts.md): a stuck credit becomes a token the reference
STS meter accepts, its SMS is cancelled or its late acknowledgement recorded without a second credit; the
key change pair and the 2014 base date; vending keys wrapped under the master key (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from billing import ledger, sts, topup
from billing.errors import Conflict, InvalidField
from billing.rules.money import Money
from billing.sts_vending import SoftwareTokenGenerator, add_vending_key, find_sts_meter
from billing.values import PaymentConfirmed
from gateway.events import CommandSettled
from gateway.keys import KeyRing
from gateway.outbox import get_command
from meter_protocol import sts as codec
from store.schema import commands as C  # noqa: N812
from store.schema.sts import sts_vending_keys
from store.uow import UnitOfWork
from tests.integration.billing.conftest import MASTER_KEY, NOW, OPERATOR, new_subscriber

pytestmark = pytest.mark.usefixtures("streets")
KEYS = KeyRing(MASTER_KEY)
GENERATOR = SoftwareTokenGenerator(MASTER_KEY)
VENDING_KEYS = {1: bytes.fromhex("abababababababab"), 2: bytes.fromhex("0123456789abcdef")}
SGC = "123456"


def paid(ref: str, amount: int) -> PaymentConfirmed:
    return PaymentConfirmed("stripe", ref, amount, "USD", NOW, subscriber_code="640100100010001", event_id=f"e_{ref}")


async def _keypad_meter(uow: UnitOfWork, base_date_year: int | None = None) -> int:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    async with uow.begin() as conn:
        for revision, key in VENDING_KEYS.items():
            await add_vending_key(conn, OPERATOR, MASTER_KEY, SGC, revision, key, NOW)
    await sts.register_keypad(uow, OPERATOR, meter.id, NOW, supply_group_code=SGC, base_date_year=base_date_year)
    return meter.id


async def _reference_meter(uow: UnitOfWork, meter_id: int) -> codec.StsMeterState:
    async with uow.connect() as conn:
        found = await find_sts_meter(conn, meter_id)
        assert found is not None
        key = await GENERATOR.decoder_key(conn, found)
    return codec.StsMeterState(decoder_key=key, base_date=found.base_date)


async def _wallet(uow: UnitOfWork, account_id: int) -> Money:
    async with uow.connect() as conn:
        return (await ledger.balances(conn, account_id)).wallet


async def test_a_credit_still_in_the_outbox_becomes_a_token_and_its_sms_is_cancelled(uow: UnitOfWork) -> None:
    meter_id = await _keypad_meter(uow)
    credit = await topup.apply_payment(uow, paid("pi_1", 1250), NOW, keys=KEYS)
    assert credit.command_id is not None
    issued = await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW, generator=GENERATOR)
    assert (issued.cancelled_command_id, issued.amount, issued.remainder) == (
        credit.command_id,
        Money(1250, "USD"),
        Money(0, "USD"),
    )
    async with uow.connect() as conn:
        assert (await get_command(conn, credit.command_id)).state == "cancelled"
        row = await topup.get_top_up(conn, credit.topup_id)
    assert (row.state, row.delivered_by, row.sts_token) == ("delivered", "token", issued.token)
    meter, shown = codec.enter_token(await _reference_meter(uow, meter_id), issued.token)
    assert shown.outcome is codec.Outcome.ACCEPTED
    assert meter.credit(codec.CreditKind.ELECTRICITY_CURRENCY) == 1250
    again = await sts.issue_credit_token(
        uow, OPERATOR, credit.topup_id, NOW + timedelta(minutes=5), generator=GENERATOR
    )
    assert again.duplicate
    assert again.token == issued.token
    assert codec.enter_token(meter, again.token)[1].outcome is codec.Outcome.USED
    with pytest.raises(Exception, match="only a failed credit"):
        await topup.reissue_top_up(uow, OPERATOR, credit.topup_id, NOW, keys=KEYS)


async def test_an_sms_on_its_way_waits_until_stuck_and_its_late_ack_is_recorded_without_a_second_credit(
    uow: UnitOfWork,
) -> None:
    meter_id = await _keypad_meter(uow)
    credit = await topup.apply_payment(uow, paid("pi_2", 900), NOW, keys=KEYS)
    assert credit.command_id is not None
    async with uow.begin() as conn:  # the dispatcher handed it to the SMSC
        await conn.execute(update(C.commands).where(C.commands.c.id == credit.command_id).values(state="0:1"))
    with pytest.raises(Conflict, match="still on its way"):
        await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW + timedelta(minutes=10), generator=GENERATOR)
    later = NOW + timedelta(hours=2)
    issued = await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, later, generator=GENERATOR)
    assert issued.cancelled_command_id is None
    wallet = await _wallet(uow, credit.account_id)
    event = CommandSettled(credit.command_id, meter_id, "top_up", "1:1", at=later)
    await topup.on_command_settled(uow, event, later + timedelta(minutes=1))
    await topup.on_command_settled(uow, event, later + timedelta(minutes=2))
    async with uow.connect() as conn:
        row = await topup.get_top_up(conn, credit.topup_id)
        alarms = (await conn.execute(select(C.alarms))).all()
    assert (row.state, row.delivered_by) == ("delivered", "token")
    assert [a.kind for a in alarms] == ["double_delivery"]
    assert await _wallet(uow, credit.account_id) == wallet


async def test_a_credit_acknowledged_first_is_delivered_by_sms_and_gets_no_token(uow: UnitOfWork) -> None:
    meter_id = await _keypad_meter(uow)
    credit = await topup.apply_payment(uow, paid("pi_3", 500), NOW, keys=KEYS)
    assert credit.command_id is not None
    await topup.on_command_settled(uow, CommandSettled(credit.command_id, meter_id, "top_up", "1:1", at=NOW), NOW)
    async with uow.connect() as conn:
        assert (await topup.get_top_up(conn, credit.topup_id)).delivered_by == "sms"
    with pytest.raises(Conflict):
        await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW, generator=GENERATOR)


async def test_what_a_token_cannot_carry_goes_back_to_the_wallet(uow: UnitOfWork) -> None:
    meter_id = await _keypad_meter(uow)
    credit = await topup.apply_payment(uow, paid("pi_4", 20000), NOW, keys=KEYS)
    await topup.on_command_settled(uow, CommandSettled(credit.command_id or 0, meter_id, "top_up", "timed_out"), NOW)
    issued = await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW, generator=GENERATOR)
    assert (issued.amount, issued.remainder) == (Money(19994, "USD"), Money(6, "USD"))
    assert await _wallet(uow, credit.account_id) == Money(6, "USD")
    meter, _ = codec.enter_token(await _reference_meter(uow, meter_id), issued.token)
    assert meter.credit(codec.CreditKind.ELECTRICITY_CURRENCY) == 19994


async def test_a_meter_without_a_keypad_gets_no_token(uow: UnitOfWork) -> None:
    await new_subscriber(uow)
    credit = await topup.apply_payment(uow, paid("pi_5", 500), NOW, keys=KEYS)
    with pytest.raises(Conflict, match="no STS keypad"):
        await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW, generator=GENERATOR)


async def test_the_rollover_key_change_pair_and_tokens_from_the_2014_base_date(uow: UnitOfWork) -> None:
    meter_id = await _keypad_meter(uow, base_date_year=1993)
    meter = await _reference_meter(uow, meter_id)
    stuck = await topup.apply_payment(uow, paid("pi_7", 300), NOW, keys=KEYS)
    with pytest.raises(Conflict, match="key change pair first"):
        await sts.issue_credit_token(uow, OPERATOR, stuck.topup_id, NOW, generator=GENERATOR)
    first, second = await sts.issue_key_change(uow, OPERATOR, meter_id, NOW, generator=GENERATOR)
    assert await sts.issue_key_change(uow, OPERATOR, meter_id, NOW, generator=GENERATOR) == (first, second)
    meter, _ = codec.enter_token(meter, first)
    meter, shown = codec.enter_token(meter, second)
    assert shown.outcome is codec.Outcome.KEY_CHANGED
    assert (meter.key_revision, meter.base_date) == (2, codec.BASE_DATE_2014)
    accepted = await sts.confirm_key_change(uow, OPERATOR, meter_id, NOW)
    assert (accepted.key_revision, accepted.base_date_year, accepted.key_change_state) == (2, 2014, "accepted")
    with pytest.raises(Conflict):
        await sts.confirm_key_change(uow, OPERATOR, meter_id, NOW)
    credit = await topup.apply_payment(uow, paid("pi_6", 700), NOW, keys=KEYS)
    issued = await sts.issue_credit_token(uow, OPERATOR, credit.topup_id, NOW, generator=GENERATOR)
    meter, shown = codec.enter_token(meter, issued.token)
    assert shown.outcome is codec.Outcome.ACCEPTED
    assert shown.token is not None
    assert shown.token.tid == codec.token_identifier(NOW, codec.BASE_DATE_2014)


async def test_vending_keys_are_stored_wrapped_and_refused_under_another_master_key(uow: UnitOfWork) -> None:
    meter_id = await _keypad_meter(uow)
    async with uow.connect() as conn:
        stored = (await conn.execute(select(sts_vending_keys.c.wrapped_key))).scalars().all()
        found = await find_sts_meter(conn, meter_id)
        assert found is not None
        with pytest.raises(Conflict):
            await SoftwareTokenGenerator(bytes(16)).decoder_key(conn, found)
    assert all(VENDING_KEYS[1] not in bytes(w) and VENDING_KEYS[2] not in bytes(w) for w in stored)
    async with uow.begin() as conn:
        with pytest.raises(Conflict):
            await add_vending_key(conn, OPERATOR, MASTER_KEY, SGC, 1, VENDING_KEYS[1], NOW)
        with pytest.raises(InvalidField):
            await add_vending_key(conn, OPERATOR, MASTER_KEY, SGC, 3, bytes(5), NOW)


async def test_an_sts6_meter_on_a_dkga04_vending_key_gets_misty1_tokens_and_its_four_token_rollover(
    uow: UnitOfWork,
) -> None:
    _, meter = await new_subscriber(uow)
    assert meter is not None
    vudk = bytes.fromhex("abababababababab949494949494949401234567")  # 160 bits
    async with uow.begin() as conn:
        await add_vending_key(conn, OPERATOR, MASTER_KEY, "123457", 1, vudk, NOW)
        await add_vending_key(conn, OPERATOR, MASTER_KEY, "123457", 2, vudk[::-1], NOW)
        algorithms = (await conn.execute(select(sts_vending_keys.c.algorithm))).scalars().all()
        with pytest.raises(InvalidField):
            await add_vending_key(conn, OPERATOR, MASTER_KEY, "123457", 3, bytes(12), NOW)
    assert sorted(algorithms) == ["dkga04", "dkga04"]
    await sts.register_keypad(
        uow, OPERATOR, meter.id, NOW, supply_group_code="123457", drn="00000000000", base_date_year=1993
    )
    async with uow.connect() as conn:
        found = await find_sts_meter(conn, meter.id)
        assert found is not None
        key = await GENERATOR.decoder_key(conn, found)
        issued_at = datetime(2004, 3, 1, 13, 0, tzinfo=UTC)
        token = await GENERATOR.credit_token(conn, found, codec.CreditKind.ELECTRICITY, 1, issued_at, 5)
    assert len(key) == 16
    assert token == "59386323472137426967"
    meter_state, shown = codec.enter_token(codec.StsMeterState(decoder_key=key, supply_group_code=123457), token)
    assert (shown.outcome, meter_state.credit()) == (codec.Outcome.ACCEPTED, 1)
    # the 2024 rollover on an STS6 meter: four tokens to KRN 2, the new key diversified with the 2014 base date
    tokens = await sts.issue_key_change(uow, OPERATOR, meter.id, NOW, generator=GENERATOR)
    assert len(tokens) == 4
    assert await sts.issue_key_change(uow, OPERATOR, meter.id, NOW, generator=GENERATOR) == tokens  # the same again
    for n, digits in enumerate(tokens, start=1):
        meter_state, shown = codec.enter_token(meter_state, digits)
        assert shown.outcome is (codec.Outcome.KEY_CHANGED if n == 4 else codec.Outcome.KEY_SECTION_HELD)
    assert (meter_state.key_revision, meter_state.base_date, meter_state.supply_group_code) == (
        2,
        codec.BASE_DATE_2014,
        123457,
    )
    confirmed = await sts.confirm_key_change(uow, OPERATOR, meter.id, NOW)
    assert (confirmed.key_revision, confirmed.base_date_year) == (2, 2014)
    async with uow.connect() as conn:
        assert await GENERATOR.decoder_key(conn, confirmed) == meter_state.decoder_key
        later = datetime(2025, 1, 10, tzinfo=UTC)
        after = await GENERATOR.credit_token(conn, confirmed, codec.CreditKind.ELECTRICITY, 2, later, 7)
    meter_state, shown = codec.enter_token(meter_state, after)
    assert (shown.outcome, meter_state.credit()) == (codec.Outcome.ACCEPTED, 3)
