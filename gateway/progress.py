"""How far commands have come, as other parts ask it without reading the gateway's tables: one command's state
and the states it entered (the live state of an online top-up), and the states of many (reconciliation's check
that paid credit reached the meter). Read on the caller's connection, in its transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from store.bulk import select_among
from store.schema.commands import command_history, commands

_STATES = (commands.c.id, commands.c.state)


class CommandProgress:
    """payments' `CommandBook` port."""

    async def progress(
        self, conn: AsyncConnection, command_id: int
    ) -> tuple[str | None, Sequence[tuple[str, datetime]]]:
        state = await conn.scalar(select(commands.c.state).where(commands.c.id == command_id))
        history = await conn.execute(
            select(command_history.c.to_state, command_history.c.at)
            .where(command_history.c.command_id == command_id)
            .order_by(command_history.c.id)
        )
        return state, [(h.to_state, h.at) for h in history]

    async def states(self, conn: AsyncConnection, command_ids: Collection[int]) -> dict[int, str]:
        return {r.id: r.state for r in await select_among(conn, _STATES, commands.c.id, command_ids)}
