"""Input limits of SPEC §8, checked before anything changes or any SQL runs, and the
lengths at which lists without pages are cut (the query cost counts them so)."""
from __future__ import annotations

from server import metrics

from .errors import BadInput

MAX_BODY = 4096
MAX_NAME = 255
MAX_SEARCH = 200
MAX_EXTERNAL_ID = 255
MAX_FAILURE_REASON = 2000
# IDs in one list argument (shareChannel's users, markNotificationsRead's notifications).
MAX_IDS = 1000

# Lists without pages return at most this many items (docs/decisions.md says which).
MAX_USERS = 1000
MAX_CHANNELS = 50
MAX_MEMBERS = 100
MAX_LINKS = 10
MAX_EVENTS = 100
MAX_NOTES = 100


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


def search(value: str | None) -> str | None:
    """A search term, trimmed (None when empty); BAD_USER_INPUT over MAX_SEARCH characters."""
    if value is not None and len(value) > MAX_SEARCH:
        raise BadInput(f"search is longer than {MAX_SEARCH} characters")
    return (value or "").strip() or None


def ids(values: list) -> list:
    if len(values) > MAX_IDS:
        raise BadInput(f"at most {MAX_IDS} ids at once")
    return values
