"""Notifications (SPEC §5): who is told about each inbound message and assignment,
each user's desktop and email toggles, the desktop notifications with their read
state, and the email outbox rows, written in the transaction of their cause."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import (Channel, Contact, Conversation, EmailBurst, Message, MessageDirection, Notification,
                    NotificationEmail,
                    NotificationKind, NotificationPreference, User)

from . import attachments as attachment_rules
from . import sql, validation
from .errors import NotFound
from .events import NotificationReceived
from .sections import page_size
from .transaction import Action

Kind = NotificationKind


@dataclass(frozen=True)
class Toggles:
    desktop: bool
    email: bool


DEFAULTS: dict[Kind, Toggles] = {
    Kind.NEW_MESSAGE_ASSIGNED_TO_ME: Toggles(desktop=True, email=False),
    Kind.NEW_MESSAGE_ASSIGNED_TO_OTHERS: Toggles(desktop=False, email=False),
    Kind.NEW_MESSAGE_UNASSIGNED: Toggles(desktop=True, email=False),
    Kind.CONVERSATION_ASSIGNED_TO_ME: Toggles(desktop=True, email=True),
}
NEW_MESSAGE_KINDS = (Kind.NEW_MESSAGE_ASSIGNED_TO_ME, Kind.NEW_MESSAGE_ASSIGNED_TO_OTHERS,
                     Kind.NEW_MESSAGE_UNASSIGNED)
# An email quotes at most this many messages of a burst (the latest), and each up to this length.
MAX_QUOTED = 10
MAX_QUOTE = 2000


# -- settings ---------------------------------------------------------------------------


async def toggles_of(user_ids: list[int]) -> dict[int, dict[Kind, Toggles]]:
    """Each user's toggles: their own where they set them, the spec's defaults elsewhere."""
    found = {user_id: dict(DEFAULTS) for user_id in user_ids}
    if not found:
        return found
    users, params = sql.in_list(found)
    for row in await sql.fetch(
            f"SELECT user_id, kind, desktop, email FROM notification_preference WHERE user_id IN {users}", *params):
        found[row["user_id"]][Kind(row["kind"])] = Toggles(desktop=bool(row["desktop"]), email=bool(row["email"]))
    return found


async def settings_of(user: User) -> dict[Kind, Toggles]:
    return (await toggles_of([user.id]))[user.id]


async def update_settings(viewer: User, desktop: dict[Kind, bool | None],
                          email: dict[Kind, bool | None]) -> dict[Kind, Toggles]:
    """Changes the toggles given (a None or missing one stays as it is)."""
    async with in_transaction():
        current = await settings_of(viewer)
        for kind in Kind:
            wanted = Toggles(desktop=current[kind].desktop if desktop.get(kind) is None else desktop[kind],
                             email=current[kind].email if email.get(kind) is None else email[kind])
            if wanted != current[kind]:
                await _store(viewer.id, kind, wanted)
    return await settings_of(viewer)


async def _store(user_id: int, kind: Kind, toggles: Toggles) -> None:
    values = {"desktop": toggles.desktop, "email": toggles.email}
    if await NotificationPreference.filter(user_id=user_id, kind=kind).update(**values):
        return
    try:
        async with in_transaction():  # a savepoint: two first changes at once leave one row
            await NotificationPreference.create(user_id=user_id, kind=kind, **values)
    except IntegrityError:
        await NotificationPreference.filter(user_id=user_id, kind=kind).update(**values)


# -- who is notified --------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A new inbound message, with what deciding its notifications takes: its conversation's
    assignee (as the message's transaction leaves it) and its channel's members."""

    company_id: int
    channel_id: int
    conversation_id: int
    assignee_id: int | None
    members: tuple[int, ...]
    message: Message


async def on_inbound_messages(act: Action, arrivals: list[Arrival]) -> None:
    """New inbound messages: each one's assignee is told (NEW_MESSAGE_ASSIGNED_TO_ME, even an
    admin who is not a member), and the channel's other members are told it is assigned to
    someone else or unassigned; admins who are not members hear nothing of it. The
    caller's transaction holds the conversations' rows."""
    outsiders = {a.assignee_id for a in arrivals if a.assignee_id is not None and a.assignee_id not in a.members}
    admins = set(await User.filter(id__in=list(outsiders), is_admin=True).values_list("id", flat=True)
                 ) if outsiders else set()
    notices = []
    for arrival in arrivals:
        assignee_id = arrival.assignee_id
        others = Kind.NEW_MESSAGE_ASSIGNED_TO_OTHERS if assignee_id is not None else Kind.NEW_MESSAGE_UNASSIGNED
        recipients = {user_id: others for user_id in arrival.members if user_id != assignee_id}
        if assignee_id is not None and (assignee_id in arrival.members or assignee_id in admins):
            # Only while the assignee has access: someone unshared from the channel is not told.
            recipients[assignee_id] = Kind.NEW_MESSAGE_ASSIGNED_TO_ME
        notices.append(_Notice(arrival.company_id, arrival.channel_id, arrival.conversation_id, recipients,
                               arrival.message))
    await _notify(act, notices)


async def on_assignment(act: Action, conversation: Conversation, actor: User, assignee: User,
                        previous_assignee_id: int | None) -> None:
    """Someone else assigned the conversation to `assignee`: CONVERSATION_ASSIGNED_TO_ME.
    Assigning to oneself, or to the current assignee again, tells nobody."""
    if assignee.id == actor.id or assignee.id == previous_assignee_id:
        return
    latest = await Message.get_or_none(id=conversation.last_message_id) if conversation.last_message_id else None
    await _notify(act, [_Notice(conversation.company_id, conversation.channel_id, conversation.id,
                                {assignee.id: Kind.CONVERSATION_ASSIGNED_TO_ME}, latest, actor, conversation)])


@dataclass(frozen=True)
class _Notice:
    """What to tell whom about one conversation."""

    company_id: int
    channel_id: int
    conversation_id: int
    recipients: dict[int, Kind]
    message: Message | None
    actor: User | None = None
    conversation: Conversation | None = None  # when the caller holds it: emails need it


async def _notify(act: Action, notices: list[_Notice]) -> None:
    """The desktop notifications of every notice in one statement, then their emails."""
    notices = [notice for notice in notices if notice.recipients]
    if not notices:
        return
    toggles = await toggles_of(sorted({user_id for notice in notices for user_id in notice.recipients}))
    desktop = [(notice, user_id, kind) for notice in notices for user_id, kind in notice.recipients.items()
               if toggles[user_id][kind].desktop]
    now = datetime.now(timezone.utc)
    rows = await sql.insert(
        "notification", ("company_id", "user_id", "kind", "conversation_id", "message_id", "actor_id", "created_at"),
        [(notice.company_id, user_id, kind.value, notice.conversation_id,
          notice.message.id if notice.message else None, notice.actor.id if notice.actor else None, now)
         for notice, user_id, kind in desktop],
        returning="id, user_id, conversation_id, message_id")
    # One notification per user, conversation and message within one call.
    ids = {(row["user_id"], row["conversation_id"], row["message_id"]): row["id"] for row in rows}
    for notice, user_id, _ in desktop:
        notification_id = ids[(user_id, notice.conversation_id, notice.message.id if notice.message else None)]
        act.emit(NotificationReceived(company_id=notice.company_id, channel_id=notice.channel_id,
                                      conversation_id=notice.conversation_id, audience=(user_id,),
                                      notification_id=notification_id, user_id=user_id))
    for notice in notices:
        by_email = {user_id: kind for user_id, kind in notice.recipients.items() if toggles[user_id][kind].email}
        if by_email:
            conversation = notice.conversation or await Conversation.get(id=notice.conversation_id)
            await _queue_emails(act, conversation, by_email, notice.message, notice.actor)


# -- desktop notifications --------------------------------------------------------------


async def notifications_page(viewer: User, *, unread_only: bool, first: int | None,
                             after: int | None) -> tuple[list[Notification], bool]:
    """The viewer's own, newest first (keyset on the id: stable while new ones arrive)."""
    size = page_size(first)
    query = Notification.filter(user_id=viewer.id)
    if unread_only:
        query = query.filter(read_at__isnull=True)
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(size + 1)
    return rows[:size], len(rows) > size


async def own_notification(viewer: User, notification_id: int) -> Notification:
    row = await Notification.get_or_none(id=notification_id, user_id=viewer.id)
    if row is None:
        raise NotFound("notification not found")
    return row


async def mark_read(viewer: User, notification_ids: list[int] | None) -> int:
    """Marks the given notifications read, or all of the viewer's when None; returns how
    many changed. An id that is not one of the viewer's is NOT_FOUND and changes nothing."""
    if notification_ids is not None:
        validation.ids(notification_ids)
    now = datetime.now(timezone.utc)
    mine = Notification.filter(user_id=viewer.id, read_at__isnull=True)
    if notification_ids is None:
        return await mine.update(read_at=now)
    wanted = set(notification_ids)
    if not wanted:
        return 0
    async with in_transaction():
        if await Notification.filter(id__in=list(wanted), user_id=viewer.id).count() != len(wanted):
            raise NotFound("notification not found")
        return await mine.filter(id__in=list(wanted)).update(read_at=now)


# -- email ------------------------------------------------------------------------------

_email_listeners: list[Callable[[datetime], None]] = []


def listen_for_emails(callback: Callable[[datetime], None]) -> Callable[[], None]:
    """`callback(due)` runs in this process after each commit that queued an email due at
    `due` (now, or a burst's follow-up at the end of its window). Returns the function
    that stops it."""
    _email_listeners.append(callback)
    return lambda: _email_listeners.remove(callback)


def _file_links(files: list[dict]) -> str:
    """Attachments as links in an email's HTML (a reference that is no web address, as text)."""
    if not files:
        return ""
    items = []
    for file in files:
        label = html.escape(file.get("name") or f"[{file['kind'].lower()}]")
        url = attachment_rules.link_of(file)
        if url.startswith(("https://", "http://")):
            items.append(f'<li><a href="{html.escape(url, quote=True)}">{label}</a></li>')
        else:
            items.append(f"<li>{label}: {html.escape(url)}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _quote(message: Message, sender: str) -> dict:
    return {"sender": sender, "sentAt": message.sent_at.astimezone(timezone.utc).isoformat(),
            "body": message.body[:MAX_QUOTE],
            "attachments": [{"kind": a["kind"], "url": a["url"], "name": a.get("name"),
                             **({"mediaId": a["mediaId"]} if a.get("mediaId") else {})}
                            for a in message.attachments or []]}


async def _queue_emails(act: Action, conversation: Conversation, recipients: dict[int, Kind],
                        message: Message | None, actor: User | None) -> None:
    """An outbox row per recipient. A new-message email not yet picked up by a worker takes
    in the later messages of its conversation for the same user (the burst collapses
    into one email); the worker sends it once it is INBOX_EMAIL_COLLAPSE_SECONDS old."""
    contact = await Contact.get(id=conversation.contact_id)
    channel = await Channel.get(id=conversation.channel_id)
    names = {u.id: u for u in await User.filter(id__in=[*recipients, *filter(None, [conversation.assignee_id])])}
    quote = None
    if message is not None:
        sender = contact.name
        if message.direction is MessageDirection.OUTBOUND:
            author = await User.get_or_none(id=message.author_id) if message.author_id else None
            sender = author.name if author else "Deleted user"
        quote = _quote(message, sender)
    assignee = names.get(conversation.assignee_id)
    facts = {"contact": contact.name, "channel": channel.name, "assignee": assignee.name if assignee else None,
             "actor": actor.name if actor else None}
    pending, bursts = {}, {}
    collapsing = [user_id for user_id, kind in recipients.items() if kind in NEW_MESSAGE_KINDS]
    now = datetime.now(timezone.utc)
    if collapsing:
        rows = await (NotificationEmail.filter(user_id__in=collapsing, conversation_id=conversation.id,
                                               kind__in=list(NEW_MESSAGE_KINDS), attempts=0,
                                               leased_until__isnull=True, failed_at__isnull=True)
                      .select_for_update(skip_locked=True).order_by("id"))
        pending = {row.user_id: row for row in rows}
        bursts = {burst.user_id: burst for burst in await EmailBurst.filter(
            user_id__in=collapsing, conversation_id=conversation.id, until__gt=now)}
    due = []
    for user_id, kind in recipients.items():
        row = pending.get(user_id) if kind in NEW_MESSAGE_KINDS else None
        if row is not None:
            quoted = [*row.facts.get("messages", []), *([quote] if quote else [])]
            row.facts = {**facts, "messages": quoted[-MAX_QUOTED:],
                         "more": row.facts.get("more", 0) + max(0, len(quoted) - MAX_QUOTED)}
            row.kind = kind  # the email says what is true of the conversation now
            await row.save(update_fields=["facts", "kind"])
            continue
        # A new-message email goes out at once unless one went out within the burst
        # window (the mailer opens it as it sends one): then it waits for the window's
        # end, and what arrives meanwhile joins it (the pending row above).
        burst = bursts.get(user_id) if kind in NEW_MESSAGE_KINDS else None
        send_at = burst.until if burst is not None else now
        due.append(send_at)
        await NotificationEmail.create(company_id=conversation.company_id, user_id=user_id,
                                       conversation_id=conversation.id, kind=kind,
                                       to_address=names[user_id].email, next_attempt_at=send_at,
                                       facts={**facts, "messages": [quote] if quote else [], "more": 0})
    for send_at in sorted(set(due)):
        act.on_commit(lambda at=send_at: [listener(at) for listener in list(_email_listeners)])


async def open_burst(user_id: int, conversation_id: int, until: datetime) -> None:
    """A new-message email about the conversation went out: the user's next ones wait
    until `until` and go out together."""
    updated = await EmailBurst.filter(user_id=user_id, conversation_id=conversation_id).update(until=until)
    if not updated:
        try:
            await EmailBurst.create(user_id=user_id, conversation_id=conversation_id, until=until)
        except IntegrityError:  # another process's worker opened it at the same moment
            await EmailBurst.filter(user_id=user_id, conversation_id=conversation_id).update(until=until)


async def queued_email_count() -> int:
    return await NotificationEmail.filter(failed_at__isnull=True).count()


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def compose(kind: Kind, facts: dict, url: str) -> Email:
    """The email of an outbox row: what happened, the contact, the quoted messages, and the
    conversation's url; plain text and a simple HTML part with the same content."""
    contact, channel = facts.get("contact") or "A contact", facts.get("channel") or "a channel"
    quoted: list[dict] = facts.get("messages") or []
    count = len(quoted) + int(facts.get("more") or 0)
    messages = "a new message" if count <= 1 else f"{count} new messages"
    if kind is Kind.CONVERSATION_ASSIGNED_TO_ME:
        actor = facts.get("actor") or "Someone"
        subject = f"{actor} assigned you the conversation with {contact}"
        happened = f"{actor} assigned you the conversation with {contact} on {channel}."
        intro = "Latest message:"
    else:
        where = {Kind.NEW_MESSAGE_ASSIGNED_TO_ME: "a conversation assigned to you",
                 Kind.NEW_MESSAGE_ASSIGNED_TO_OTHERS: f"a conversation assigned to {facts.get('assignee') or 'another user'}",
                 Kind.NEW_MESSAGE_UNASSIGNED: "an unassigned conversation"}[kind]
        subject = f"{'New message' if count <= 1 else f'{count} new messages'} from {contact}"
        happened = f"{contact} sent {messages} in {where} on {channel}."
        intro = ""
    if facts.get("more"):
        intro = f"The latest {len(quoted)}:"

    def when(entry: dict) -> str:
        return datetime.fromisoformat(entry["sentAt"]).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    text = [happened, ""]
    parts = [f"<p>{html.escape(happened)}</p>"]
    if intro:
        text += [intro, ""]
        parts.append(f"<p>{html.escape(intro)}</p>")
    for entry in quoted:
        heading = f"{entry['sender']}, {when(entry)}:"
        files = entry.get("attachments") or []
        lines = entry["body"].splitlines() + attachment_rules.links(files)
        text += [heading, *(f"> {line}" for line in lines or [""]), ""]
        body = html.escape(entry["body"]).replace("\n", "<br>\n")
        parts.append(f"<p>{html.escape(heading)}</p>\n<blockquote>{body}{_file_links(files)}</blockquote>")
    text += [f"Open the conversation: {url}", ""]
    parts.append(f'<p><a href="{html.escape(url, quote=True)}">Open the conversation</a></p>')
    page = "<!DOCTYPE html>\n<html><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    return Email(subject=_one_line(subject)[:200], text="\n".join(text), html=page)
