"""The web shell's errors. One root, `WebError`; each subclass knows its HTTP status and carries its
reason as attributes. The error middleware (web/problems.py) turns them into problem+json or a page."""

from __future__ import annotations


class WebError(Exception):
    """Root of every error the web shell raises."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail


class NotAuthenticated(WebError):
    status = 401
    title = "Sign-in required"


class Forbidden(WebError):
    status = 403
    title = "Forbidden"

    def __init__(self, action: str, role: str) -> None:
        super().__init__(f"the role {role!r} may not {action}")
        self.action = action
        self.role = role


class CsrfRejected(WebError):
    status = 403
    title = "Form expired or forged"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(WebError):
    status = 404
    title = "Not found"

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"no {what} {key}")
        self.what = what
        self.key = key


class InvalidInput(WebError):
    """A request field is missing or malformed."""

    status = 422
    title = "Invalid input"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnsupportedMediaType(WebError):
    status = 415
    title = "Unsupported media type"

    def __init__(self, content_type: str) -> None:
        super().__init__(f"cannot read {content_type or 'a body without a content type'}")
        self.content_type = content_type


class TooManyAttempts(WebError):
    """Login throttling (per address) or an account locked after failures in a row."""

    status = 429
    title = "Too many attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ServiceUnavailable(WebError):
    status = 503
    title = "Service unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RadiusError(WebError):
    """The RADIUS server did not answer, or answered something we cannot use."""

    status = 503
    title = "Authentication server unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
