"""Hypothesis strategies: any valid message of any type."""

from __future__ import annotations

from hypothesis import strategies as st

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
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
minute = st.integers(0, 1439)


@st.composite
def tariffs(draw: st.DrawFn) -> SetTariff:
    kind = draw(st.sampled_from(TariffKind))
    if kind is TariffKind.FLAT:
        starts = [0]
    else:
        limit = 1439 if kind is TariffKind.TIME_OF_USE else 0xFFFF_FFFF
        rest = draw(st.sets(st.integers(1, limit), max_size=20))
        starts = [0, *sorted(rest)]
    steps = tuple(TariffStep(s, draw(u32)) for s in starts)
    return SetTariff(draw(st.integers(1, 0xFFFF)), draw(u32), kind, draw(u32), steps)


read_items = st.integers(1, 7).map(ReadItems)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(TopUp, st.integers(1, 2**64 - 1), st.integers(1, 0xFFFF_FFFF)),
    tariffs(),
    st.builds(RelayOff, st.sampled_from(RelayReason)),
    st.builds(RelayOn, st.sampled_from(RelayReason)),
    st.builds(SetPowerLimit, u32),
    st.builds(TimeSync, u32),
    st.builds(ReadRequest, read_items, u32),
    st.builds(KeyChange, u8, st.binary(min_size=24, max_size=24)),
    st.builds(Configure, u32, u32, minute, minute, st.integers(0, 0x7F), st.integers(-720, 840), u32),
    st.just(ClearTamper()),
    st.just(Ping()),
    st.builds(Ack, st.integers(1, 0xFFFF_FFFF), u8, st.sampled_from(AckResult), st.sampled_from(ReasonCode), i64),
    st.builds(Readings, u32, u64, u64, u32, u16),
    st.builds(BalanceReport, u32, i64, st.booleans(), st.booleans(), u16, u64),
    st.builds(EventReport, u32, st.sampled_from(EventKind), i32),
    st.builds(PeriodicReport, u32, u64, u32, i64, st.booleans(), st.booleans(), st.booleans(), u16),
    st.builds(LoadProfile, u32, st.integers(1, 0xFFFF), st.lists(u32, max_size=96).map(tuple)),
)
