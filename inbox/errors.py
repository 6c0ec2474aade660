"""Expected failures of domain actions, each with the contract's error code."""
from __future__ import annotations


class InboxError(Exception):
    """An expected failure shown to the client as is, with `extensions.code`."""

    code = "INTERNAL"

    def __init__(self, message: str, code: str | None = None, *, reason: str | None = None):
        super().__init__(message)
        if code:
            self.code = code
        self.extensions = {"code": self.code}
        if reason:  # what exactly went wrong, for clients that act on it (e.g. CURSOR_EXPIRED)
            self.extensions["reason"] = reason


class Unauthenticated(InboxError):
    code = "UNAUTHENTICATED"


class Forbidden(InboxError):
    code = "FORBIDDEN"


class NotFound(InboxError):
    code = "NOT_FOUND"


class BadInput(InboxError):
    code = "BAD_USER_INPUT"


class UserUnavailable(InboxError):
    code = "USER_UNAVAILABLE"


class Conflict(InboxError):
    code = "CONFLICT"


class RateLimited(InboxError):
    code = "RATE_LIMITED"
