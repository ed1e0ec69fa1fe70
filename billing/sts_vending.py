"""The STS token generator port and its software implementation (docs/sts.md).

A deployment that keeps its vending keys in a security module implements `TokenGenerator` over the
module's commands (the module derives the decoder key and encrypts the token; no key leaves it). The
software implementation keeps the vending keys in `sts_vending_keys`, wrapped under the master key (AES key
wrap with padding), and unwraps one only to derive a decoder key in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.errors import Conflict, InvalidField, NotFound
from meter_protocol import sts
from store import audit
from store.audit import Actor
from store.crypto import unwrap_padded_from_storage, wrap_padded_for_storage
from store.errors import KeyUnwrapError
from store.schema.sts import sts_meters, sts_vending_keys

BASE_DATES = {1993: sts.BASE_DATE_1993, 2014: sts.BASE_DATE_2014}
DKGA02, DKGA04 = "dkga02", "dkga04"


@dataclass(frozen=True, slots=True)
class StsMeter:
    """A meter's keypad parameters (`sts_meters`)."""

    meter_id: int
    iin: str
    drn: str
    supply_group_code: str
    tariff_index: int
    key_revision: int
    key_type: int
    key_expiry: int
    base_date_year: int
    key_change_state: str = "none"
    key_change_revision: int | None = None
    key_change_tokens: str | None = None

    @property
    def base_date(self) -> datetime:
        return BASE_DATES[self.base_date_year]

    def parameters(self, key_revision: int | None = None) -> sts.DecoderKeyParameters:
        return sts.DecoderKeyParameters(
            iin=self.iin,
            drn=self.drn,
            key_type=self.key_type,
            supply_group_code=self.supply_group_code,
            tariff_index=f"{self.tariff_index:02d}",
            key_revision=self.key_revision if key_revision is None else key_revision,
        )


def sts_meter_of(row: Any) -> StsMeter:
    return StsMeter(
        meter_id=row.meter_id,
        iin=row.iin,
        drn=row.drn,
        supply_group_code=row.supply_group_code,
        tariff_index=row.tariff_index,
        key_revision=row.key_revision,
        key_type=row.key_type,
        key_expiry=row.key_expiry,
        base_date_year=row.base_date_year,
        key_change_state=row.key_change_state,
        key_change_revision=row.key_change_revision,
        key_change_tokens=row.key_change_tokens,
    )


async def find_sts_meter(conn: AsyncConnection, meter_id: int) -> StsMeter | None:
    row = (await conn.execute(select(sts_meters).where(sts_meters.c.meter_id == meter_id))).first()
    return None if row is None else sts_meter_of(row)


class TokenGenerator(Protocol):
    """Makes tokens for a meter; where the vending keys live is the implementation's business."""

    async def credit_token(
        self, conn: AsyncConnection, meter: StsMeter, kind: sts.CreditKind, units: int, issued_at: datetime, random: int
    ) -> str:
        """A class 0 token carrying exactly `units` (see `sts.largest_amount_at_most`). Raises StsError."""
        ...

    async def key_change_tokens(
        self, conn: AsyncConnection, meter: StsMeter, new_revision: int, *, rollover: bool
    ) -> tuple[str, ...]:
        """The key change tokens to the decoder key of `new_revision`, under the meter's current key, in the
        order they are entered: a pair for an 8-byte key, four for a 16-byte (MISTY1) one."""
        ...

    async def decoder_key(self, conn: AsyncConnection, meter: StsMeter, key_revision: int | None = None) -> bytes:
        """The meter's decoder key (a security module refuses this; the tests' reference meter needs it)."""
        ...


class SoftwareTokenGenerator:
    """Vending keys from `sts_vending_keys`, unwrapped under the master key, used in memory only."""

    def __init__(self, master_key: bytes) -> None:
        self._master_key = master_key

    async def _vending_key(self, conn: AsyncConnection, supply_group_code: str, key_revision: int) -> tuple[str, bytes]:
        k = sts_vending_keys.c
        row = (
            await conn.execute(
                select(k.algorithm, k.wrapped_key).where(
                    k.supply_group_code == supply_group_code, k.key_revision == key_revision
                )
            )
        ).first()
        if row is None:
            raise NotFound("vending key", f"{supply_group_code}/{key_revision}")
        try:
            return row.algorithm, unwrap_padded_from_storage(self._master_key, bytes(row.wrapped_key))
        except KeyUnwrapError:
            raise Conflict("vending key", "it does not unwrap under this master key") from None

    async def decoder_key(self, conn: AsyncConnection, meter: StsMeter, key_revision: int | None = None) -> bytes:
        """DKGA02 (8 bytes, EA07) or DKGA04 (16 bytes, EA11/MISTY1, diversified with the base date too), as the
        vending key of the revision was stored."""
        revision = meter.key_revision if key_revision is None else key_revision
        algorithm, vending_key = await self._vending_key(conn, meter.supply_group_code, revision)
        if algorithm == DKGA04:
            return sts.decoder_key_dkga04(vending_key, meter.parameters(revision), base_date=meter.base_date)
        return sts.decoder_key_dkga02(vending_key, meter.parameters(revision))

    async def credit_token(
        self, conn: AsyncConnection, meter: StsMeter, kind: sts.CreditKind, units: int, issued_at: datetime, random: int
    ) -> str:
        tid = sts.token_identifier(issued_at, meter.base_date)
        return sts.encode_credit_token(kind, units, tid, random, await self.decoder_key(conn, meter))

    async def key_change_tokens(
        self, conn: AsyncConnection, meter: StsMeter, new_revision: int, *, rollover: bool
    ) -> tuple[str, ...]:
        current = await self.decoder_key(conn, meter)
        # after a rollover the meter works from the 2014 base date, which DKGA04 diversifies the new key with
        target = replace(meter, base_date_year=2014) if rollover else meter
        new = await self.decoder_key(conn, target, new_revision)
        change = sts.KeyChange(
            new_key=new,
            key_revision=new_revision,
            key_type=meter.key_type,
            tariff_index=meter.tariff_index,
            key_expiry=meter.key_expiry,
            rollover=rollover,
            supply_group_code=int(meter.supply_group_code),
        )
        if len(current) != len(new):
            raise Conflict("key change", "the new vending key is of another algorithm than the meter's")
        if len(current) == 16:
            return sts.encode_key_change_set(current, change)
        return sts.encode_key_change_tokens(current, change)


async def add_vending_key(
    conn: AsyncConnection,
    actor: Actor,
    master_key: bytes,
    supply_group_code: str,
    key_revision: int,
    vending_key: bytes,
    now: datetime,
) -> int:
    """Store a vending key for a supply group and revision, wrapped: 8 bytes is a DKGA02 key (EA07 meters),
    20 to 64 bytes a DKGA04 key (160 bits or more; STS6 meters, EA11/MISTY1). Audited with its algorithm; the
    key itself never reaches the audit row. Raises InvalidField, Conflict (that revision exists)."""
    if not (len(supply_group_code) == 6 and supply_group_code.isdigit()):
        raise InvalidField("supply_group_code", "six digits")
    if not 1 <= key_revision <= 9:
        raise InvalidField("key_revision", "1 to 9")
    if len(vending_key) == 8:
        algorithm = DKGA02
    elif 20 <= len(vending_key) <= 64:
        algorithm = DKGA04
    else:
        raise InvalidField("vending_key", "8 bytes (DKGA02) or 20 to 64 bytes (DKGA04)")
    k = sts_vending_keys.c
    exists = await conn.scalar(
        select(k.id).where(k.supply_group_code == supply_group_code, k.key_revision == key_revision)
    )
    if exists is not None:
        raise Conflict("vending key", f"supply group {supply_group_code} already has revision {key_revision}")
    key_id = await conn.scalar(
        insert(sts_vending_keys)
        .values(
            supply_group_code=supply_group_code,
            key_revision=key_revision,
            algorithm=algorithm,
            wrapped_key=wrap_padded_for_storage(master_key, vending_key),
            created_at=now,
        )
        .returning(k.id)
    )
    await audit.record(
        conn,
        actor,
        "sts.vending_key_add",
        now,
        target=f"supply_group:{supply_group_code}",
        after={"key_revision": key_revision, "algorithm": algorithm},
    )
    assert key_id is not None
    return int(key_id)
