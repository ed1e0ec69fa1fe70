"""The ports billing needs from the rest of smsmeter, as small Protocols.

`SecretBox` keeps a secret at rest (a webhook's signing secret) wrapped under the master key; the composition
root hands in its `gateway.keys.KeyRing`.

`OperatorBook` is how billing learns who works the head end (the operators and their roles are the web shell's
tables): an alarm rule names a role that must exist, and notifies the operators of that role. The composition
root and the web shell hand in `web.queries.operators.OPERATORS`; tests the same, or a small fake. Both calls
run on the caller's connection, inside its transaction.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from billing.rules.alarms import Contact


class OperatorBook(Protocol):
    async def has_role(self, conn: AsyncConnection, role: str) -> bool:
        """Whether a role of that name exists."""
        ...

    async def contacts(self, conn: AsyncConnection) -> list[Contact]:
        """The active operators, each with their role and how to reach them, in a stable order."""
        ...


class SecretBox(Protocol):
    def seal(self, secret: bytes) -> bytes:
        """The secret wrapped for storage."""
        ...

    def unseal(self, sealed: bytes) -> bytes:
        """A stored secret unwrapped; raises store's KeyUnwrapError when it is not under this master key."""
        ...
