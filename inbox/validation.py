"""Input limits of SPEC §8, checked before anything changes."""
from __future__ import annotations

from server import metrics

from .errors import BadInput

MAX_BODY = 4096
MAX_NAME = 255


def text(value: str | None, what: str, limit: int = MAX_NAME, *, required: bool = True) -> str | None:
    """Returns the trimmed text, or raises BAD_USER_INPUT when empty or too long."""
    if value is None:
        if required:
            raise BadInput(f"{what} is required")
        return None
    trimmed = value.strip()
    if not trimmed:
        if required:
            raise BadInput(f"{what} must not be empty")
        return None
    if len(value) > limit:
        raise BadInput(f"{what} is longer than {limit} characters")
    return trimmed


def body(value: str) -> str:
    """A message body is kept as typed (newlines, indentation); only blank or oversized is refused."""
    text(value, "body", MAX_BODY)
    return value


def email(value: str) -> str:
    """One address, as an email header carries it: CR or LF would start another header
    (Bcc: ...) and a comma another recipient."""
    checked = text(value, "email", 320)
    if any(char in value for char in "\r\n,"):  # even at the ends, where trimming would hide them
        metrics.refused("email_address")
        raise BadInput("email must be one address, without CR, LF or commas")
    local, _, domain = checked.partition("@")
    if not local or "." not in domain or any(char.isspace() or not char.isprintable() for char in checked):
        raise BadInput("email is not a valid address")
    return checked.lower()
