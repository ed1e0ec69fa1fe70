"""One or more sample messages of every type, shared by the protocol tests and the golden vectors."""

from __future__ import annotations

from meter_protocol import (
    Ack,
    AckResult,
    BalanceReport,
    ClearTamper,
    Configure,
    EventKind,
    EventReport,
    KeyChange,
    LoadProfile,
    Message,
    PeriodicReport,
    Ping,
    Readings,
    ReadItems,
    ReadRequest,
    ReasonCode,
    RelayOff,
    RelayOn,
    RelayReason,
    SetPowerLimit,
    SetTariff,
    TariffKind,
    TariffStep,
    TimeSync,
    TopUp,
    meter_code_with_check_digit,
    wrap_key,
)

METER_CODE = meter_code_with_check_digit("4100000000000012345")
OTHER_METER_CODE = meter_code_with_check_digit("4100000000000054321")
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NEW_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
OTHER_KEY = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

SAMPLES: dict[str, Message] = {
    "top_up": TopUp(transfer_id=1001, amount_minor=50_000),
    "set_tariff_flat": SetTariff(
        version=3,
        effective_at=0,
        kind=TariffKind.FLAT,
        standing_charge_minor_per_day=25,
        steps=(TariffStep(0, 14_500),),
    ),
    "set_tariff_block": SetTariff(
        version=4,
        effective_at=T0,
        kind=TariffKind.BLOCK,
        standing_charge_minor_per_day=0,
        steps=(TariffStep(0, 9_000), TariffStep(100_000, 14_000), TariffStep(300_000, 21_000)),
    ),
    "set_tariff_time_of_use": SetTariff(
        version=5,
        effective_at=T0 + 86_400,
        kind=TariffKind.TIME_OF_USE,
        standing_charge_minor_per_day=30,
        steps=tuple(TariffStep(minute, 8_000 + 250 * (minute // 30)) for minute in range(0, 1440, 30)),
    ),
    "relay_off": RelayOff(RelayReason.ARREARS),
    "relay_on": RelayOn(RelayReason.OPERATOR),
    "set_power_limit": SetPowerLimit(limit_w=5_500),
    "time_sync": TimeSync(utc_at=T0 + 3_600),
    "read_request": ReadRequest(ReadItems.REGISTERS | ReadItems.BALANCE | ReadItems.LOAD_PROFILE, T0),
    "key_change": KeyChange(new_key_id=2, wrapped_key=wrap_key(KEY, NEW_KEY)),
    "configure": Configure(
        low_credit_minor=2_000,
        emergency_credit_minor=1_000,
        friendly_start_min=18 * 60,
        friendly_end_min=8 * 60,
        friendly_days=0b110_0000,
        utc_offset_min=180,
        report_interval_s=86_400,
    ),
    "clear_tamper": ClearTamper(),
    "ping": Ping(),
    "ack": Ack(acked_counter=7, acked_type=0x01, result=AckResult.OK, credit_minor=61_250),
    "ack_rejected": Ack(
        acked_counter=8,
        acked_type=0x02,
        result=AckResult.REJECTED,
        reason=ReasonCode.TARIFF_OUTDATED,
        credit_minor=-400,
    ),
    "readings": Readings(taken_at=T0 + 60, import_wh=12_345_678, export_wh=0, power_w=1_830, voltage_dv=2_312),
    "balance_report": BalanceReport(
        taken_at=T0 + 120,
        credit_minor=48_731,
        relay_closed=True,
        emergency_active=False,
        tariff_version=3,
        last_transfer_id=1001,
    ),
    "event_report": EventReport(occurred_at=T0 + 180, event=EventKind.COVER_OPEN, value=0),
    "periodic_report": PeriodicReport(
        taken_at=T0 + 86_400,
        import_wh=12_360_001,
        power_w=420,
        credit_minor=-150,
        relay_closed=True,
        emergency_active=True,
        tamper_latched=False,
        tariff_version=3,
    ),
    "load_profile": LoadProfile(start_at=T0, interval_s=3_600, energies_wh=(310, 280, 265, 900, 1_450, 1_210)),
}
