"""Links from conversations to persons, leads and deals, and the notes the inbox
writes there (SPEC §4): a note at once on linking, then every later message into
the link's current note while its 24-hour note window lasts, else into a new one.

Every note write for a conversation happens while its transaction holds the
conversation's row (PostgreSQL: `FOR UPDATE`, or the update a new message makes;
SQLite runs one transaction at a time), so two messages arriving at once, or a
message and a link, never open two notes for one window nor lose a message."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import (Channel, Contact, Conversation, ConversationLink, EventKind, LinkTargetKind, Message,
                    MessageDirection, Note, User)

from . import attachments as attachment_rules
from . import crm, sql, validation
from .access import audience, visible_conversation
from .errors import Conflict, NotFound
from .events import record_event
from .transaction import action

NOTE_WINDOW = timedelta(hours=24)
MESSAGES_ON_LINK = 20
# A note a user edits may hold a whole window of messages, escaped: generous, and the
# HTTP body limit (1 MiB) bounds it anyway.
MAX_NOTE = 500_000


@dataclass(frozen=True)
class Existing:
    """A person, lead or deal that is already in the CRM."""

    kind: LinkTargetKind
    id: int


# `&` that does not start a character reference: escaped, so that escaping is idempotent.
_BARE_AMPERSAND = re.compile(r"&(?!(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)")


def html_safe(text: str) -> str:
    """Note content is HTML-safe plain text: no markup ever gets through (`<`, `>` and
    quotes become character references), so a client may render it as HTML or as
    text. Existing references are kept, so a note sent back as read is not
    escaped twice."""
    text = _BARE_AMPERSAND.sub("&amp;", text)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


@dataclass(frozen=True)
class Header:
    contact: str
    channel: str
    assignee: str | None
    url: str


def render(header: Header, entries: list[dict]) -> str:
    """The header (contact, assignment status, url), then the messages, oldest first."""
    lines = [f"Conversation with {header.contact} on {header.channel}",
             f"Assigned to {header.assignee}" if header.assignee else "Unassigned",
             header.url, ""]
    for entry in sorted(entries, key=lambda e: (datetime.fromisoformat(e["sentAt"]), e["messageId"])):
        when = datetime.fromisoformat(entry["sentAt"]).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"[{when}] {entry['sender']}: {entry['body']}")
    return html_safe("\n".join(lines))


async def _header(conversation_id: int, url: str) -> Header:
    """Read inside the writer's transaction, after the conversation's row is held, so the
    assignment status is the one that commits with the note."""
    conversation = await Conversation.get(id=conversation_id)
    contact = await Contact.get(id=conversation.contact_id)
    channel = await Channel.get(id=conversation.channel_id)
    assignee = await User.get_or_none(id=conversation.assignee_id) if conversation.assignee_id else None
    return Header(contact.name, channel.name, assignee.name if assignee else None, url)


async def _entries(messages: list[Message], contact_name: str) -> list[dict]:
    author_ids = {m.author_id for m in messages if m.author_id is not None}
    authors = {u.id: u.name for u in await User.filter(id__in=author_ids)} if author_ids else {}
    return [{
        "messageId": m.id,
        "sender": (authors.get(m.author_id, "Deleted user") if m.direction is MessageDirection.OUTBOUND
                   else contact_name),
        "sentAt": m.sent_at.astimezone(timezone.utc).isoformat(),
        "body": attachment_rules.with_links(m.body, m.attachments),
    } for m in messages]


async def _write_new_note(link: ConversationLink, header: Header, entries: list[dict],
                          window_start: datetime) -> Note:
    note = await Note.create(company_id=link.company_id, target_kind=link.target_kind, target_id=link.target_id,
                             conversation_id=link.conversation_id, content=render(header, entries),
                             entries=entries, window_start=window_start)
    link.current_note_id = note.id
    await link.save(update_fields=["current_note_id"])
    return note


async def link(viewer: User, conversation_id: int, target: Existing | crm.NewItem,
               conversation_url: str) -> ConversationLink:
    """Links a conversation to an existing item, or to a new one made from it, and writes
    the first note at once. `conversation_url`: where the conversation opens in the inbox."""
    await visible_conversation(viewer, conversation_id)
    if isinstance(target, Existing):
        await crm.company_item(viewer.company_id, target.kind, target.id)
    else:
        target = await crm.checked(viewer, target)
    async with action() as act:
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        if isinstance(target, Existing):
            kind, target_id = target.kind, target.id
        else:
            kind, target_id = crm.KIND_OF[type(target)], (await crm.add(viewer.company_id, target)).id
        if await ConversationLink.filter(conversation_id=conversation.id, target_kind=kind,
                                         target_id=target_id).exists():
            raise Conflict("the conversation is already linked to it")
        try:
            row = await ConversationLink.create(company_id=viewer.company_id, conversation_id=conversation.id,
                                                target_kind=kind, target_id=target_id,
                                                conversation_url=conversation_url)
        except IntegrityError as error:  # belt and braces: the row lock above serialises links
            raise Conflict("the conversation is already linked to it") from error
        header = await _header(conversation.id, conversation_url)
        latest = list(reversed(await Message.filter(conversation_id=conversation.id)
                               .order_by("-id").limit(MESSAGES_ON_LINK)))
        # The note written on linking opens its window at the link's time.
        await _write_new_note(row, header, await _entries(latest, header.contact), row.created_at)
        await record_event(act, conversation, EventKind.LINKED, actor=viewer,
                           audience=await audience(conversation.channel_id))
    return row


async def unlink(viewer: User, link_id: int) -> int:
    """Stops further notes; the notes written so far stay."""
    row = await ConversationLink.get_or_none(id=link_id, company_id=viewer.company_id)
    if row is None:
        raise NotFound("link not found")
    await visible_conversation(viewer, row.conversation_id)
    async with action() as act:
        conversation = await visible_conversation(viewer, row.conversation_id, for_update=True)
        if not await ConversationLink.filter(id=link_id).delete():
            raise NotFound("link not found")  # unlinked meanwhile
        await record_event(act, conversation, EventKind.UNLINKED, actor=viewer,
                           audience=await audience(conversation.channel_id))
    return link_id


async def linked(conversation_ids: list[int]) -> set[int]:
    """Which of the conversations are linked: only their messages go into notes. The
    caller's transaction holds the conversations' rows (a link made meanwhile waits)."""
    if not conversation_ids:
        return set()
    conversations, params = sql.in_list(conversation_ids)
    return {row["conversation_id"] for row in await sql.fetch(
        f"SELECT DISTINCT conversation_id FROM conversation_link WHERE conversation_id IN {conversations}", *params)}


async def on_message(conversation: Conversation, message: Message) -> None:
    """Writes a new message into each linked target's current note, or opens a new note
    (and window) past the window, or when a user edited or deleted the current one.
    The caller's transaction holds the conversation's row."""
    links = await ConversationLink.filter(conversation_id=conversation.id).order_by("id")
    if not links:
        return
    header = await _header(conversation.id, "")
    entry = (await _entries([message], header.contact))[0]
    for row in links:
        header = replace(header, url=row.conversation_url)
        note = None
        if row.current_note_id is not None:
            note = await Note.filter(id=row.current_note_id).select_for_update().first()
        # A sentAt is taken as the messaging app gives it, even in the future.
        if note is not None and note.edited_at is None and message.sent_at < note.window_start + NOTE_WINDOW:
            note.entries = [*note.entries, entry]
            note.content = render(header, note.entries)
            await note.save(update_fields=["entries", "content", "updated_at"])
        else:
            await _write_new_note(row, header, [entry], message.sent_at)


async def on_assignment(conversation: Conversation) -> None:
    """Keeps the assignment status line of the current notes true. The caller's
    transaction holds the conversation's row."""
    links = await ConversationLink.filter(conversation_id=conversation.id, current_note_id__isnull=False)
    header = await _header(conversation.id, "") if links else None
    for row in links:
        note = await Note.filter(id=row.current_note_id, edited_at__isnull=True).select_for_update().first()
        if note is not None:
            note.content = render(replace(header, url=row.conversation_url), note.entries)
            await note.save(update_fields=["content", "updated_at"])


async def _company_note(viewer: User, note_id: int) -> Note:
    note = await Note.filter(id=note_id, company_id=viewer.company_id).select_for_update().first()
    if note is None:
        raise NotFound("note not found")
    return note


async def update_note(viewer: User, note_id: int, content: str) -> Note:
    """A user's edit: the inbox never writes into this note again."""
    validation.text(content, "content", MAX_NOTE)
    async with in_transaction():
        note = await _company_note(viewer, note_id)
        note.content = html_safe(content)
        note.edited_at = datetime.now(timezone.utc)
        await note.save(update_fields=["content", "edited_at", "updated_at"])
    return note


async def delete_note(viewer: User, note_id: int) -> int:
    async with in_transaction():
        note = await _company_note(viewer, note_id)
        # The next message of a link that wrote here opens a new note.
        await ConversationLink.filter(current_note_id=note.id).update(current_note_id=None)
        await note.delete()
    return note_id
