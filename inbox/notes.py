"""Links from conversations to persons, leads and deals, and the notes the inbox
writes there (SPEC §4): a note at once on linking, then every later message into
the link's current note while its 24-hour note window lasts and holds fewer than the
link's maximum of messages, else into a new one. A message is one NoteLine row: writing
it costs its own line, never the note's history again.

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
                    MessageDirection, Note, NoteLine, User)

from . import attachments as attachment_rules
from . import crm, sql, validation
from .access import audience, visible_conversation
from .errors import BadInput, Conflict, NotFound
from .validation import MAX_LINKS
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


def header_text(header: Header) -> str:
    """What a note the inbox writes says before its message lines: the contact, the
    assignment status and the url, then a blank line."""
    return html_safe("\n".join([f"Conversation with {header.contact} on {header.channel}",
                                f"Assigned to {header.assignee}" if header.assignee else "Unassigned",
                                header.url, ""]))


def message_line(sent_at: datetime, sender: str, body: str) -> str:
    when = sent_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return html_safe(f"[{when}] {sender}: {body}")


def note_text(content: str, lines: list[NoteLine]) -> str:
    """A note's public text: its content, then its message lines oldest first by sentAt
    (a late-arriving message in its place). Escaping a piece at a time is escaping the
    whole: no character reference spans a line break."""
    ordered = sorted(lines, key=lambda line: (line.sent_at, line.message_id))
    return "\n".join([content, *(line.line for line in ordered)])


async def lines_of(note_ids: list[int]) -> dict[int, list[NoteLine]]:
    """The message lines of these notes, by note, in one query."""
    found: dict[int, list[NoteLine]] = {note_id: [] for note_id in note_ids}
    for line in await NoteLine.filter(note_id__in=list(found)):
        found[line.note_id].append(line)
    return found


async def _header(conversation_id: int, url: str) -> Header:
    """Read inside the writer's transaction, after the conversation's row is held, so the
    assignment status is the one that commits with the note."""
    conversation = await Conversation.get(id=conversation_id)
    contact = await Contact.get(id=conversation.contact_id)
    channel = await Channel.get(id=conversation.channel_id)
    assignee = await User.get_or_none(id=conversation.assignee_id) if conversation.assignee_id else None
    return Header(contact.name, channel.name, assignee.name if assignee else None, url)


async def _senders(messages: list[Message]) -> dict[int, str]:
    """Each message's sender as a note names it: the contact for inbound messages (as
    renamed in this transaction), the author for replies. Two queries at most."""
    conversations, params = sql.in_list(sorted({m.conversation_id for m in messages}))
    contacts = {row["id"]: row["name"] for row in await sql.fetch(
        "SELECT conversation.id AS id, contact.name AS name FROM conversation"
        f" JOIN contact ON contact.id = conversation.contact_id WHERE conversation.id IN {conversations}", *params)}
    author_ids = {m.author_id for m in messages if m.author_id is not None}
    authors = {u.id: u.name for u in await User.filter(id__in=author_ids)} if author_ids else {}
    return {m.id: (authors.get(m.author_id, "Deleted user") if m.direction is MessageDirection.OUTBOUND
                   else contacts[m.conversation_id]) for m in messages}


async def _write_lines(lines: list[tuple[int, Message, str]]) -> None:
    """Writes (note id, message, sender) lines: one INSERT of each line alone, whatever
    the notes already hold."""
    if lines:
        await sql.insert("note_line", ("note_id", "message_id", "sent_at", "line"),
                         [(note_id, m.id, m.sent_at,
                           message_line(m.sent_at, sender, attachment_rules.with_links(m.body, m.attachments)))
                          for note_id, m, sender in lines])


async def _open_note(link: ConversationLink, header: Header, messages: list[Message], senders: dict[int, str],
                     window_start: datetime) -> Note:
    note = await Note.create(company_id=link.company_id, target_kind=link.target_kind, target_id=link.target_id,
                             conversation_id=link.conversation_id, content=header_text(header),
                             message_count=len(messages), window_start=window_start)
    await _write_lines([(note.id, m, senders[m.id]) for m in messages])
    link.current_note_id = note.id
    await link.save(update_fields=["current_note_id"])
    return note


async def link(viewer: User, conversation_id: int, target: Existing | crm.NewItem,
               conversation_url: str, note_max_messages: int = 200) -> ConversationLink:
    """Links a conversation to an existing item, or to a new one made from it, and writes
    the first note at once. `conversation_url`: where the conversation opens in the inbox;
    `note_max_messages`: how many messages one note window holds before a new note opens."""
    await visible_conversation(viewer, conversation_id)
    if isinstance(target, Existing):
        await crm.company_item(viewer.company_id, target.kind, target.id)
    else:
        target = await crm.checked(viewer, target)
    async with action(viewer.company_id) as act:
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        if isinstance(target, Existing):
            kind, target_id = target.kind, target.id
        else:
            kind, target_id = crm.KIND_OF[type(target)], (await crm.add(viewer.company_id, target)).id
        if await ConversationLink.filter(conversation_id=conversation.id, target_kind=kind,
                                         target_id=target_id).exists():
            raise Conflict("the conversation is already linked to it")
        if await ConversationLink.filter(conversation_id=conversation.id).count() >= MAX_LINKS:
            raise BadInput(f"a conversation links to at most {MAX_LINKS} items")
        try:
            row = await ConversationLink.create(company_id=viewer.company_id, conversation_id=conversation.id,
                                                target_kind=kind, target_id=target_id,
                                                conversation_url=conversation_url,
                                                note_max_messages=note_max_messages)
        except IntegrityError as error:  # belt and braces: the row lock above serialises links
            raise Conflict("the conversation is already linked to it") from error
        header = await _header(conversation.id, conversation_url)
        latest = list(reversed(await Message.filter(conversation_id=conversation.id)
                               .order_by("-id").limit(MESSAGES_ON_LINK)))
        # The note written on linking opens its window at the link's time.
        await _open_note(row, header, latest, await _senders(latest) if latest else {}, row.created_at)
        await record_event(act, conversation, EventKind.LINKED, actor=viewer,
                           audience=await audience(conversation.channel_id))
    return row


async def unlink(viewer: User, link_id: int) -> int:
    """Stops further notes; the notes written so far stay."""
    row = await ConversationLink.get_or_none(id=link_id, company_id=viewer.company_id)
    if row is None:
        raise NotFound("link not found")
    await _link_conversation(viewer, row)
    async with action(viewer.company_id) as act:
        conversation = await _link_conversation(viewer, row, for_update=True)
        if not await ConversationLink.filter(id=link_id).delete():
            raise NotFound("link not found")  # unlinked meanwhile
        await record_event(act, conversation, EventKind.UNLINKED, actor=viewer,
                           audience=await audience(conversation.channel_id))
    return link_id


async def _link_conversation(viewer: User, link: ConversationLink, *, for_update: bool = False) -> Conversation:
    """The link's conversation. A link of a conversation the viewer cannot see reads as a
    missing link, not a missing conversation: that would tell that the link exists."""
    try:
        return await visible_conversation(viewer, link.conversation_id, for_update=for_update)
    except NotFound:
        raise NotFound("link not found") from None


def _takes(note: Note | None, link: ConversationLink, message: Message) -> bool:
    """Whether the message goes into this current note: the inbox's own (never edited),
    inside its note window, and not full. A sentAt is taken as the messaging app gives
    it, even in the future."""
    return (note is not None and note.edited_at is None and message.sent_at < note.window_start + NOTE_WINDOW
            and note.message_count < link.note_max_messages)


async def on_messages(messages: list[Message]) -> None:
    """Writes new messages into each linked target's current note, a line each, or opens
    a new note (and window) past the window, once the window holds the link's maximum,
    or when a user edited or deleted the current one. A fixed number of statements
    whatever the number of messages, besides a note opened. The caller's transaction
    holds the conversations' rows."""
    if not messages:
        return
    links: dict[int, list[ConversationLink]] = {}
    # Raw SQL: on the inbound path, most conversations have no link, and building the ORM
    # query cost more than running it.
    conversations, params = sql.in_list(sorted({m.conversation_id for m in messages}))
    for found in await sql.fetch(f"SELECT {sql.columns(ConversationLink, 'l')} FROM conversation_link l"
                                 f" WHERE l.conversation_id IN {conversations} ORDER BY l.id", *params):
        row = sql.build(ConversationLink, found, "l")
        links.setdefault(row.conversation_id, []).append(row)
    messages = sorted((m for m in messages if m.conversation_id in links), key=lambda m: m.id)
    if not messages:
        return
    current = {note.id: note for note in await Note.filter(
        id__in=[row.current_note_id for rows in links.values() for row in rows if row.current_note_id is not None]
    ).select_for_update()}
    senders = await _senders(messages)
    headers: dict[int, Header] = {}
    lines: list[tuple[int, Message, str]] = []
    added: dict[int, int] = {}
    for message in messages:
        for row in links[message.conversation_id]:
            note = current.get(row.current_note_id)
            if _takes(note, row, message):
                lines.append((note.id, message, senders[message.id]))
                note.message_count += 1
                added[note.id] = added.get(note.id, 0) + 1
            else:
                if message.conversation_id not in headers:
                    headers[message.conversation_id] = await _header(message.conversation_id, "")
                header = replace(headers[message.conversation_id], url=row.conversation_url)
                note = await _open_note(row, header, [message], senders, message.sent_at)
                current[note.id] = note
    await _write_lines(lines)
    if added:
        notes, params = sql.in_list(sorted(added))
        counts = " ".join("WHEN ? THEN CAST(? AS INTEGER)" for _ in added)
        await sql.execute(f"UPDATE note SET updated_at = ?, message_count = message_count + CASE id {counts} END"
                          f" WHERE id IN {notes}", datetime.now(timezone.utc),
                          *[value for pair in sorted(added.items()) for value in pair], *params)


async def on_assignment(conversation: Conversation) -> None:
    """Keeps the assignment status line of the current notes true. The caller's
    transaction holds the conversation's row."""
    links = await ConversationLink.filter(conversation_id=conversation.id, current_note_id__isnull=False)
    header = await _header(conversation.id, "") if links else None
    for row in links:
        note = await Note.filter(id=row.current_note_id, edited_at__isnull=True).select_for_update().first()
        if note is not None:
            # The header alone: the message lines stay as they are.
            note.content = header_text(replace(header, url=row.conversation_url))
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
        # The user's text is the whole note now.
        await NoteLine.filter(note_id=note.id).delete()
    return note


async def delete_note(viewer: User, note_id: int) -> int:
    async with in_transaction():
        note = await _company_note(viewer, note_id)
        # The next message of a link that wrote here opens a new note.
        await ConversationLink.filter(current_note_id=note.id).update(current_note_id=None)
        await note.delete()
    return note_id
