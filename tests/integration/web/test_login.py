"""Operator sign-in: local passwords (argon2), sessions with safe cookies, CSRF, lockout, throttling, audit."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from store.schema.auth import audit_log, operators, web_sessions
from store.uow import UnitOfWork
from tests.integration.web.helpers import PASSWORD, FixedClock, Seeded, form_token, login


async def test_operator_signs_in_and_out(client: TestClient, seeded: Seeded, uow: UnitOfWork) -> None:
    response = await client.get("/console/subscribers", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=/console/subscribers")

    token = await form_token(client, "/login")
    response = await client.post(
        "/login",
        data={"username": "operator", "password": PASSWORD, "csrf_token": token, "next": "/console/subscribers?q=Ana"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/console/subscribers?q=Ana"
    cookie = response.headers["Set-Cookie"]
    assert "smsmeter_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in the test; https gets Secure and the __Host- prefix

    page = await client.get("/console/subscribers?q=Ana")
    html = await page.text()
    assert page.status == 200
    assert "Ana Popescu" in html
    assert "Ivan Petrov" not in html
    csrf = await form_token(client, "/console/subscribers")
    response = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/console/subscribers", allow_redirects=False)).status == 303
    async with uow.connect() as conn:
        assert (await conn.execute(select(web_sessions))).all() == []
        actions = [r.action for r in await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]
    assert actions == ["login", "logout"]


async def test_wrong_password_is_refused_with_one_answer(client: TestClient, seeded: Seeded) -> None:
    for username in ("operator", "nobody"):
        token = await form_token(client, "/login")
        response = await client.post("/login", data={"username": username, "password": "wrong", "csrf_token": token})
        assert response.status == 401
        assert "Wrong user name or password." in await response.text()


async def test_login_without_or_with_a_forged_csrf_token_is_refused(client: TestClient, seeded: Seeded) -> None:
    response = await client.post("/login", data={"username": "operator", "password": PASSWORD})
    assert response.status == 403
    await form_token(client, "/login")  # the browser has its cookie; a forged page posts another token
    response = await client.post("/login", data={"username": "operator", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status == 403
    assert "CSRF token does not match" in await response.text()


async def test_signed_in_forms_need_the_session_token(client: TestClient, seeded: Seeded) -> None:
    await login(client, "operator")
    response = await client.post("/logout", data={}, allow_redirects=False)
    assert response.status == 403
    response = await client.post("/logout", data={"csrf_token": "x" * 64}, allow_redirects=False)
    assert response.status == 403
    assert (await client.get("/console/subscribers")).status == 200  # still signed in


async def test_failures_in_a_row_lock_the_account(
    client: TestClient, seeded: Seeded, uow: UnitOfWork, clock: FixedClock
) -> None:
    for _ in range(5):
        token = await form_token(client, "/login")
        response = await client.post("/login", data={"username": "viewer", "password": "nope", "csrf_token": token})
        assert response.status == 401
    token = await form_token(client, "/login")
    response = await client.post("/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": token})
    assert response.status == 429  # the right password does not open a locked account
    assert int(response.headers["Retry-After"]) > 0
    assert "locked" in await response.text()
    clock.advance(minutes=16)
    token = await form_token(client, "/login")
    response = await client.post(
        "/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 303
    async with uow.connect() as conn:
        row = (await conn.execute(select(operators).where(operators.c.username == "viewer"))).mappings().one()
        actions = [r.action for r in await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]
    assert (row["failed_logins"], row["locked_until"]) == (0, None)
    assert actions.count("login.failed") == 5
    assert "login.lockout" in actions
    assert actions[-1] == "login"


async def test_sessions_end_when_idle(client: TestClient, seeded: Seeded, clock: FixedClock) -> None:
    await login(client, "viewer")
    clock.advance(minutes=29)
    assert (await client.get("/console/subscribers", allow_redirects=False)).status == 200
    clock.advance(minutes=29)  # slid: still within 30 minutes of the last request
    assert (await client.get("/console/subscribers", allow_redirects=False)).status == 200
    clock.advance(minutes=31)
    assert (await client.get("/console/subscribers", allow_redirects=False)).status == 303


async def test_next_is_never_an_open_redirect(client: TestClient, seeded: Seeded) -> None:
    token = await form_token(client, "/login")
    response = await client.post(
        "/login",
        data={"username": "operator", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/console"


async def test_the_language_comes_from_the_browser_then_the_switcher_then_the_profile(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    page = await client.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    html = await page.text()
    assert '<html lang="ru">' in html
    assert "Вход оператора" in html
    csrf = await form_token(client, "/login")
    response = await client.post(
        "/language", data={"language": "ro", "next": "/login", "csrf_token": csrf}, allow_redirects=False
    )
    assert response.status == 303
    html = await (await client.get("/login", headers={"Accept-Language": "ru"})).text()
    assert "Autentificare operator" in html  # the switcher's choice beats the browser's
    client.session.cookie_jar.clear()
    csrf = await login(client, "operator")
    await client.post("/language", data={"language": "ru", "next": "/console", "csrf_token": csrf})
    async with uow.connect() as conn:
        language = await conn.scalar(select(operators.c.language).where(operators.c.username == "operator"))
    assert language == "ru"  # kept in the operator's profile
    client.session.cookie_jar.clear()
    await login(client, "operator")
    html = await (await client.get("/console/subscribers", headers={"Accept-Language": "en"})).text()
    assert "Абоненты" in html
    problem = await client.get("/api/v1/subscribers/999999")
    assert (await problem.json())["status"] == 404
