"""The reference STS meter's keypad (IEC 62055-41 token acceptance): a pure state machine.

`StsMeterState` is a value; `enter_token` returns the new state and what the meter shows. It is what
the tests (and meter makers) check a vended token against:

- a token that does not decode with the meter's current decoder key (a typo, another meter's token,
  a token made with an old key) is refused and changes nothing;
- the TID memory holds the most recent `memory_size` TIDs: a TID already in it is refused as used, and
  once the memory is full a TID older than all of them is refused as old;
- a TID whose upper 8 bits exceed the key expiry number is refused as expired;
- a key change is two tokens (subclass 3 then 4) under the current key, or four (subclasses 3, 4, 8, 9,
  in that order, which also set the supply group code) when the current key is a 128-bit MISTY1 key; a
  section out of order drops the sections held; with the rollover bit set the meter moves on to the next
  base date and starts an empty TID memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from meter_protocol.sts.errors import StsError, TokenRejected
from meter_protocol.sts.tokens import (
    BASE_DATE_1993,
    BASE_DATE_2014,
    CreditKind,
    DecodedToken,
    KeyChangeSection,
    ManagementKind,
    combine_key_change,
    decode_amount,
    decode_token,
    read_key_change,
)

_NEXT_BASE_DATE = {BASE_DATE_1993: BASE_DATE_2014}
_KEY_SECTIONS = frozenset(
    {
        ManagementKind.SET_FIRST_SECTION_DECODER_KEY,
        ManagementKind.SET_SECOND_SECTION_DECODER_KEY,
        ManagementKind.SET_THIRD_SECTION_DECODER_KEY,
        ManagementKind.SET_FOURTH_SECTION_DECODER_KEY,
    }
)
_ALL_REGISTERS = 0xFFFF


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    KEY_SECTION_HELD = "key_section_held"
    KEY_CHANGED = "key_changed"
    REJECTED = "rejected"
    USED = "used"
    OLD = "old"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class StsMeterState:
    decoder_key: bytes
    key_revision: int = 1
    key_type: int = 2
    tariff_index: int = 1
    key_expiry: int = 255
    base_date: datetime = BASE_DATE_1993
    credit_units: tuple[int, ...] = (0,) * 8
    tids: tuple[int, ...] = ()
    maximum_power_w: int | None = None
    tampered: bool = False
    supply_group_code: int = 0
    pending_sections: tuple[KeyChangeSection, ...] = ()
    memory_size: int = 50

    def credit(self, kind: CreditKind = CreditKind.ELECTRICITY) -> int:
        return self.credit_units[kind]


@dataclass(frozen=True, slots=True)
class Entered:
    outcome: Outcome
    token: DecodedToken | None = None
    units: int = 0


def enter_token(state: StsMeterState, digits: str) -> tuple[StsMeterState, Entered]:
    """Type 20 digits at the keypad."""
    try:
        token = decode_token(digits, state.decoder_key)
    except TokenRejected:
        return state, Entered(Outcome.REJECTED)
    if token.token_class == 2 and token.subclass in _KEY_SECTIONS:
        return _key_change(state, token)
    if token.tid in state.tids:
        return state, Entered(Outcome.USED, token)
    if len(state.tids) >= state.memory_size and token.tid < state.tids[0]:
        return state, Entered(Outcome.OLD, token)
    if token.tid >> 16 > state.key_expiry:
        return state, Entered(Outcome.EXPIRED, token)
    applied, units = _apply(state, token)
    if applied is None:
        return state, Entered(Outcome.REJECTED, token)
    tids = tuple(sorted((*state.tids, token.tid)))[-state.memory_size :]
    return replace(applied, tids=tids), Entered(Outcome.ACCEPTED, token, units)


def _apply(state: StsMeterState, token: DecodedToken) -> tuple[StsMeterState | None, int]:
    if token.token_class == 0 and token.subclass < len(state.credit_units):
        units = decode_amount(token.field)
        credit = list(state.credit_units)
        credit[token.subclass] += units
        return replace(state, credit_units=tuple(credit)), units
    if token.token_class != 2:
        return None, 0
    if token.subclass == ManagementKind.SET_MAXIMUM_POWER:
        return replace(state, maximum_power_w=decode_amount(token.field)), 0
    if token.subclass == ManagementKind.CLEAR_CREDIT:
        if token.field == _ALL_REGISTERS:
            return replace(state, credit_units=(0,) * len(state.credit_units)), 0
        credit = list(state.credit_units)
        if token.field < len(credit):
            credit[token.field] = 0
        return replace(state, credit_units=tuple(credit)), 0
    if token.subclass == ManagementKind.CLEAR_TAMPER:
        return replace(state, tampered=False), 0
    return None, 0


def _key_change(state: StsMeterState, token: DecodedToken) -> tuple[StsMeterState, Entered]:
    section = read_key_change(token)
    if section.section == 1:
        return replace(state, pending_sections=(section,)), Entered(Outcome.KEY_SECTION_HELD, token)
    held = (*state.pending_sections, section)
    if not state.pending_sections or section.section != len(held):
        return replace(state, pending_sections=()), Entered(Outcome.REJECTED, token)
    if len(held) < (4 if len(state.decoder_key) == 16 else 2):
        return replace(state, pending_sections=held), Entered(Outcome.KEY_SECTION_HELD, token)
    try:
        change = combine_key_change(*held)
    except StsError:
        return replace(state, pending_sections=()), Entered(Outcome.REJECTED, token)
    changed = replace(
        state,
        decoder_key=change.new_key,
        key_revision=change.key_revision,
        key_type=change.key_type,
        tariff_index=change.tariff_index,
        key_expiry=change.key_expiry,
        supply_group_code=change.supply_group_code if len(held) == 4 else state.supply_group_code,
        pending_sections=(),
    )
    if change.rollover:
        changed = replace(changed, tids=(), base_date=_NEXT_BASE_DATE.get(state.base_date, state.base_date))
    return changed, Entered(Outcome.KEY_CHANGED, token)
