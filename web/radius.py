"""Operator passwords checked by a RADIUS server (RFC 2865, PAP), with pyrad's asyncio client.

Requests carry a Message-Authenticator and replies must carry a valid one (the BlastRADIUS
countermeasure, CVE-2024-3596). The role comes from the reply's Class attribute (RFC 2865 §5.25) —
`role=operator`, `smsmeter-role=operator` or just `operator` — else the configured default role.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pyrad import packet
from pyrad.client_async import ClientAsync
from pyrad.dictionary import Dictionary

from config import RadiusSettings
from web.errors import RadiusError
from web.permissions import STAFF_ROLES

log = logging.getLogger("smsmeter.web.radius")
DICTIONARY = Path(__file__).with_name("radius.dictionary")


def role_from_class(values: list[bytes], default_role: str) -> str | None:
    for raw in values:
        text = raw.decode("utf-8", "replace").strip().lower()
        for prefix in ("smsmeter-role=", "role="):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        if text in STAFF_ROLES:
            return text
    return default_role or None


class RadiusPasswordChecker:
    """`await checker(username, password)` → the granted role, or None when RADIUS refuses.

    Raises RadiusError when the server does not answer in time. One UDP socket, opened on first use and
    closed by `close()` (the composition root's cleanup)."""

    def __init__(self, settings: RadiusSettings) -> None:
        if settings.secret is None:
            raise ValueError("RADIUS needs a shared secret")
        self._settings = settings
        self._client: ClientAsync | None = None
        self._lock = asyncio.Lock()
        self._dictionary = Dictionary(str(DICTIONARY))

    async def _open(self) -> ClientAsync:
        async with self._lock:
            if self._client is None:
                s = self._settings
                client = ClientAsync(
                    server=s.server,
                    auth_port=s.port,
                    secret=s.secret.reveal().encode() if s.secret else b"",
                    dict=self._dictionary,
                    retries=s.retries,
                    timeout=s.timeout_s,
                    logger_name="smsmeter.web.radius.client",
                    enforce_ma=True,
                )
                try:
                    await client.initialize_transports(enable_auth=True)
                except OSError as exc:
                    raise RadiusError(f"cannot open a socket to {s.server}:{s.port}: {exc}") from exc
                self._client = client
            return self._client

    async def __call__(self, username: str, password: str) -> str | None:
        client = await self._open()
        request = client.CreateAuthPacket(code=packet.AccessRequest, User_Name=username)
        request["User-Password"] = request.PwCrypt(password)
        request["NAS-Identifier"] = self._settings.nas_identifier
        request["Service-Type"] = "Login-User"
        budget_s = self._settings.timeout_s * (self._settings.retries + 1) + 1
        try:
            async with asyncio.timeout(budget_s):
                reply = await client.SendPacket(request)
        except TimeoutError as exc:
            log.warning("RADIUS %s:%s did not answer for %r", self._settings.server, self._settings.port, username)
            raise RadiusError("the RADIUS server did not answer") from exc
        except (OSError, ConnectionAbortedError) as exc:
            raise RadiusError(f"RADIUS request failed: {exc}") from exc
        if reply.code != packet.AccessAccept:
            log.info("RADIUS refused %r (code %s)", username, reply.code)
            return None
        classes = list(reply.get("Class", []))
        role = role_from_class(classes, self._settings.default_role)
        if role is None:
            log.warning("RADIUS accepted %r without a role and no default role is set: refused", username)
        return role

    async def close(self) -> None:
        if self._client is not None:
            await self._client.deinitialize_transports()
            self._client = None
