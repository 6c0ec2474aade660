"""Opaque global IDs ("Type:pk", URL-safe base64) and cursors."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from inbox.errors import BadInput, NotFound
from inbox.sections import ConversationKey

NODE_TYPES = {"User", "Channel", "Contact", "Conversation", "Message", "ConversationEvent",
              "Person", "Lead", "Deal", "Note", "ConversationLink", "Notification"}


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


# Every table's key is a 32-bit integer (PostgreSQL's `integer`), and the database
# refuses a larger number as a parameter (it was an INTERNAL error). Such a number names
# no row: an ID with one reads as a missing row (key 0: keys count from 1), as any
# well-formed ID of a missing row does, and a cursor with one stands past every key.
MAX_KEY = 2**31 - 1
NO_ROW = 0


def _number(text: str) -> int:
    """The number in a decoded ID or cursor (ASCII digits, at most 18); ValueError otherwise."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError
    return int(text)


def global_id(type_name: str, pk: int) -> str:
    return _encode(f"{type_name}:{pk}")


def parse_global_id(value: str) -> tuple[str, int]:
    """(type, pk) of a well-formed ID; BAD_USER_INPUT otherwise."""
    try:
        type_name, _, pk = _decode(value).partition(":")
        if type_name not in NODE_TYPES:
            raise ValueError
        number = _number(pk)
        return type_name, number if number <= MAX_KEY else NO_ROW
    except (ValueError, binascii.Error, UnicodeError):
        raise BadInput(f"malformed ID: {value!r}"[:120]) from None


def pk_of(value: str, type_name: str) -> int:
    """The pk behind an ID that must name a `type_name`; another type reads as NOT_FOUND."""
    kind, pk = parse_global_id(value)
    if kind != type_name:
        raise NotFound(f"{type_name.lower()} not found")
    return pk


def conversation_url(public_url: str, conversation_pk: int) -> str:
    """Where a person opens a conversation in the inbox."""
    return f"{public_url}/inbox/conversations/{global_id('Conversation', conversation_pk)}"


def message_cursor(message_id: int) -> str:
    return _encode(f"m:{message_id}")


def _parse_pk_cursor(value: str | None, expected_tag: str) -> int | None:
    """The pk of a cursor "tag:pk"; BAD_USER_INPUT when it is not one."""
    if value is None:
        return None
    try:
        tag, _, pk = _decode(value).partition(":")
        if tag != expected_tag:
            raise ValueError
        return min(_number(pk), MAX_KEY)
    except (ValueError, binascii.Error, UnicodeError):
        raise BadInput("malformed cursor") from None


def parse_message_cursor(value: str | None) -> int | None:
    return _parse_pk_cursor(value, "m")


def update_cursor(position: int) -> str:
    return _encode(f"u:{position}")


def parse_update_cursor(value: str | None) -> int | None:
    """A Message.updateCursor; a message cursor works too (a message is at its id until
    it changes: both are positions of one sequence)."""
    try:
        return _parse_pk_cursor(value, "u")
    except BadInput:
        return _parse_pk_cursor(value, "m")


def event_cursor(event_id: int) -> str:
    return _encode(f"e:{event_id}")


def parse_event_cursor(value: str | None) -> int | None:
    return _parse_pk_cursor(value, "e")


def conversation_cursor(activity_at: datetime, pk: int) -> str:
    return _encode(f"c:{activity_at.isoformat()}|{pk}")


def parse_conversation_cursor(value: str | None) -> ConversationKey | None:
    if value is None:
        return None
    try:
        tag, _, rest = _decode(value).partition(":")
        moment, _, pk = rest.rpartition("|")
        if tag != "c":
            raise ValueError
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError
        return ConversationKey(when, min(_number(pk), MAX_KEY))
    except (ValueError, binascii.Error, UnicodeError):
        raise BadInput("malformed cursor") from None


def person_cursor(person_id: int) -> str:
    return _encode(f"p:{person_id}")


def parse_person_cursor(value: str | None) -> int | None:
    return _parse_pk_cursor(value, "p")


def notification_cursor(notification_id: int) -> str:
    return _encode(f"n:{notification_id}")


def parse_notification_cursor(value: str | None) -> int | None:
    return _parse_pk_cursor(value, "n")
