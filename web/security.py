"""Tokens, cookies and CSRF: the small pieces of web security every page shares.

Session cookies are HttpOnly, SameSite (Lax by default) and Secure when the request came by https (or
always, by setting); over https the cookie takes the `__Host-` prefix, which pins it to this host and
path. A session's id in the database is the HMAC of the cookie's token, so a copy of the database holds
no usable session. Every unsafe request of a browser carries a CSRF token: the session's own token once
signed in, a double-submit cookie before (the login forms)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from config import WebSettings
from web.errors import CsrfRejected, TooManyAttempts
from web.keys import SESSION_KEY, WEB_SETTINGS

SESSION_COOKIE = "smsmeter_session"
SECURE_SESSION_COOKIE = "__Host-smsmeter_session"
PRE_CSRF_COOKIE = "smsmeter_csrf"
LANGUAGE_COOKIE = "smsmeter_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

_H = TypeVar("_H", bound=Callable[..., Any])


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def is_https(request: web.Request) -> bool:
    settings = request.app[WEB_SETTINGS]
    if settings.trust_forwarded:
        proto = request.headers.get("X-Forwarded-Proto", "")
        if proto:
            return proto.split(",")[0].strip().lower() == "https"
    return request.secure


def client_address(request: web.Request) -> str | None:
    if request.app[WEB_SETTINGS].trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.remote


def secure_cookies(request: web.Request) -> bool:
    mode = request.app[WEB_SETTINGS].cookie_secure
    return mode == "always" or (mode == "auto" and is_https(request))


def session_cookie_name(request: web.Request) -> str:
    return SECURE_SESSION_COOKIE if secure_cookies(request) else SESSION_COOKIE


def session_token_from(request: web.Request) -> str | None:
    return request.cookies.get(SECURE_SESSION_COOKIE) or request.cookies.get(SESSION_COOKIE)


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.app[WEB_SETTINGS]
    response.set_cookie(
        session_cookie_name(request),
        token,
        path="/",
        httponly=True,
        secure=secure_cookies(request),
        samesite=settings.cookie_samesite,
        max_age=settings.session_max_h * 3600,
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        if name in request.cookies:
            response.del_cookie(name, path="/", secure=name == SECURE_SESSION_COOKIE)


def pre_session_csrf(request: web.Request) -> str:
    """The double-submit token of a visitor not signed in: the cookie's value, or a new one (set it with
    `set_pre_session_csrf`)."""
    return request.cookies.get(PRE_CSRF_COOKIE) or new_token()


def set_pre_session_csrf(request: web.Request, response: web.StreamResponse, token: str) -> None:
    if request.cookies.get(PRE_CSRF_COOKIE) == token:
        return
    response.set_cookie(
        PRE_CSRF_COOKIE,
        token,
        path="/",
        httponly=True,
        secure=secure_cookies(request),
        samesite="Strict",
    )


def check_csrf(expected: str | None, presented: str | None) -> None:
    if not expected:
        raise CsrfRejected("no CSRF token was issued to this browser")
    if not presented:
        raise CsrfRejected("the form carries no CSRF token")
    if not same(expected, presented):
        raise CsrfRejected("the CSRF token does not match")


def csrf_exempt(handler: _H) -> _H:
    """For endpoints called by other machines with their own authentication (signed webhooks)."""
    handler.csrf_exempt = True  # type: ignore[attr-defined]
    return handler


def is_csrf_exempt(handler: object) -> bool:
    return bool(getattr(handler, "csrf_exempt", False))


def session_key(request: web.Request) -> bytes:
    return request.app[SESSION_KEY]


class AddressThrottle:
    """At most `limit` login attempts a minute per client address (all accounts together), in memory.

    The account lockout (in the database) stops guessing one account's password; this stops spraying
    many accounts from one address."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, address: str | None) -> None:
        """Count one attempt from `address`; raises TooManyAttempts when over the limit."""
        now = self._clock()
        key = address or "?"
        if len(self._seen) > 10_000:  # forget idle addresses so memory stays bounded
            self._seen = {a: q for a, q in self._seen.items() if q and now - q[-1] < self._window_s}
        attempts = self._seen.setdefault(key, deque())
        while attempts and now - attempts[0] >= self._window_s:
            attempts.popleft()
        if len(attempts) >= self._limit:
            raise TooManyAttempts(max(1, int(self._window_s - (now - attempts[0])) + 1))
        attempts.append(now)


THROTTLE = web.AppKey("login_throttle", AddressThrottle)


def make_throttle(settings: WebSettings) -> AddressThrottle:
    return AddressThrottle(settings.login_attempts_per_min)
