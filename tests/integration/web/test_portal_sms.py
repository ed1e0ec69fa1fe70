"""The portal's sign-in code by SMS in the service as the composition root builds it (both databases):
the code leaves through the gateway's transport (the simulated SMS network) as a text SMS from the short
number to the subscriber's phone, and signing in with it opens the portal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.rules.notices import GSM7_BASIC
from config import load_settings
from gateway.errors import NotConnected
from smsmeter.app import GATEWAY, OtpBySms, build_app
from smsmeter.demo import load_demo
from tests.integration.web.helpers import form_token

ANA = ("640100100010001", "37360000001")  # the demo's Ana Popescu and her phone


async def test_the_sign_in_code_goes_out_by_sms_and_opens_the_portal(
    migrated_db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        {
            "SMSMETER_DATABASE_URL": migrated_db_url,
            "SMSMETER_DATA_DIR": str(tmp_path),
            "SMSMETER_WEB_SESSION_SECRET": "s" * 40,
            "SMSMETER_SHORT_NUMBER": "7444",
        },
    )
    await load_demo(settings)
    app = build_app(settings)
    client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()  # the cleanup context starts the database, the gateway and billing
    try:
        code, phone = ANA
        token = await form_token(client, "/portal/login")
        response = await client.post("/portal/login/code", data={"code": code, "csrf_token": token})
        assert response.status == 200
        assert "a sign-in code is on its way" in await response.text()

        simulated = app[GATEWAY].transport.inner.simulator  # type: ignore[attr-defined]
        [sms] = [s.sms for s in simulated.submitted if s.sms.destination == phone]
        assert (sms.data_coding, sms.has_udh) == (0x00, False)  # GSM-7 text, one part
        text = "".join(GSM7_BASIC[septet] for septet in sms.body)
        match = re.fullmatch(r"Your sign-in code: (\d{6})", text)
        assert match, text

        response = await client.post(
            "/portal/login/verify",
            data={"code": code, "otp": match.group(1), "csrf_token": token},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/portal"
        page = await (await client.get("/portal")).text()
        assert "Ana Popescu" in page
    finally:
        await client.close()


class _RefusingChannel:
    def __init__(self) -> None:
        self.tried: list[tuple[str, str]] = []

    async def send_text(self, msisdn: str, text: str) -> None:
        self.tried.append((msisdn, text))
        raise NotConnected("reconnecting")


async def test_a_code_the_channel_refuses_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """The portal answers the same page whether the account exists or the SMS left; the log says why not."""
    channel = _RefusingChannel()
    await OtpBySms(channel)("37360000001", "Your sign-in code: 123456")
    assert channel.tried == [("37360000001", "Your sign-in code: 123456")]
    assert "sign-in code to 37360000001 not sent" in caplog.text
