"""Who works the head end, as billing asks it (`billing.ports.OperatorBook`): the roles there are and the active
operators' contacts, read from the web shell's tables."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.alarms import Contact
from store.schema.auth import operators, roles


class OperatorDirectory:
    """`billing.ports.OperatorBook` over the operators and roles tables."""

    async def has_role(self, conn: AsyncConnection, role: str) -> bool:
        return await conn.scalar(select(roles.c.name).where(roles.c.name == role)) is not None

    async def contacts(self, conn: AsyncConnection) -> list[Contact]:
        o = operators.c
        rows = await conn.execute(select(o.username, o.role, o.email, o.phone).where(o.active == 1).order_by(o.id))
        return [Contact(r.username, r.role, r.email, r.phone) for r in rows]


OPERATORS = OperatorDirectory()
