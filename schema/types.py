"""The GraphQL object types of the contract, built from model rows; relations
resolve through the context's batching loaders (no N+1)."""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Awaitable, Callable, Optional

import strawberry
from strawberry.types import Info

import models
from inbox import accounts, apps, attachments, media, sections, validation
from inbox.events import ConversationChanged

from .cost import max_items
from .ids import conversation_cursor, conversation_url, event_cursor, global_id, message_cursor, update_cursor

ChannelKind = strawberry.enum(models.ChannelKind, name="ChannelKind")
ConversationStatus = strawberry.enum(models.ConversationStatus, name="ConversationStatus")
MessageDirection = strawberry.enum(models.MessageDirection, name="MessageDirection")
DeliveryStatus = strawberry.enum(models.DeliveryStatus, name="DeliveryStatus")
ConversationEventKind = strawberry.enum(models.EventKind, name="ConversationEventKind")
InboxSection = strawberry.enum(sections.Section, name="InboxSection",
                               description="The four lists of the inbox, as the viewer sees them.")
AttachmentKind = strawberry.enum(attachments.Kind, name="AttachmentKind",
                                 description="What a file attached to a message is.")
ReplyWindowState = strawberry.enum(
    apps.WindowState, name="ReplyWindowState",
    description="Whether the messaging app lets a user reply now (Meta's and WhatsApp's messaging-window "
                "policies). OPEN: any reply. HUMAN_AGENT: Messenger only, between 24 hours and 7 days after the "
                "contact's latest message, on channels installed with `humanAgentTag`: replies go out with Meta's "
                "HUMAN_AGENT tag. CLOSED: free text is refused; on WhatsApp an approved template may still be sent.")


AttachmentStorage = strawberry.enum(
    Enum("AttachmentStorage", {state: state for state in media.STATES}, type=str), name="AttachmentStorage",
    description="Whether the server keeps the file. STORED: `url` is the server's own. PENDING: being fetched "
                "from the messaging app. FAILED: it could not be fetched. TOO_LARGE: over INBOX_MEDIA_MAX_BYTES. "
                "OVER_QUOTA: the company's files are over INBOX_MEDIA_QUOTA_BYTES. NOT_KEPT: a URL a user gave "
                "with a reply, sent as it is.")


@strawberry.type(description="A file sent with a message.")
class Attachment:
    kind: AttachmentKind
    name: Optional[str] = strawberry.field(description="The file's name, where the messaging app gives one.")
    mime_type: Optional[str]
    storage: AttachmentStorage
    stored: bool = strawberry.field(description="The server keeps the file: `url` opens it from the server.")
    row: strawberry.Private[dict]

    @classmethod
    def of(cls, stored: dict) -> "Attachment":
        storage = media.storage_of(stored)
        return cls(kind=attachments.Kind(stored["kind"]), name=stored.get("name"), mime_type=stored.get("mimeType"),
                   storage=AttachmentStorage(storage), stored=storage == media.STORED, row=stored)

    @strawberry.field(description="Where the file opens. STORED: the server's `/media/{id}`, signed for the viewer "
                                  "for a while (INBOX_MEDIA_URL_SECONDS), so that a browser opens it as it is. "
                                  "Otherwise the messaging app's URL where it holds no credential; for Telegram "
                                  "files, `telegram-file:<file_id>` (Telegram's file URLs carry the bot's token).")
    def url(self, info: Info) -> str:
        if info.context.is_partner:
            return media.shown_url(self.row, media.APP)
        return media.shown_url(self.row, info.context.viewer_id)


@strawberry.type
class ReplyWindow:
    state: ReplyWindowState
    closes_at: Optional[datetime] = strawberry.field(description="When the current state ends (null for CLOSED).")


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: Optional[str] = None
    end_cursor: Optional[str] = None

    @classmethod
    def of(cls, edges: list, has_next: bool, has_previous: bool) -> "PageInfo":
        """The page info of a page of edges (each with a `cursor`)."""
        return cls(has_next_page=has_next, has_previous_page=has_previous,
                   start_cursor=edges[0].cursor if edges else None, end_cursor=edges[-1].cursor if edges else None)


@strawberry.type
class User(Node):
    name: str
    email: str
    is_admin: bool = strawberry.field(
        description="Has access to the account settings, and so to the messaging settings.")
    row_id: strawberry.Private[int]
    row_available: strawberry.Private[Optional[bool]]

    @strawberry.field(description="Whether new conversations may be assigned to this user.")
    def available(self) -> bool:
        # None for the signed-in user, whom authentication keeps per token without
        # availability (inbox/accounts.py): read now. Not async, so that a list of
        # users adds no coroutine per user (graphql-core awaits what it is given).
        if self.row_available is None:
            return accounts.availability(self.row_id)  # type: ignore[return-value]
        return self.row_available

    @classmethod
    def of(cls, row: models.User) -> "User":
        return cls(id=global_id("User", row.id), name=row.name, email=row.email, is_admin=row.is_admin,
                   row_id=row.id, row_available=row.available)


async def _user(info: Info, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    row = await info.context.loaders.user.load(user_id)
    return User.of(row) if row else None


@strawberry.type
class Channel(Node):
    kind: ChannelKind
    name: str
    created_at: datetime
    row: strawberry.Private[models.Channel]

    @classmethod
    def of(cls, row: models.Channel) -> "Channel":
        return cls(id=global_id("Channel", row.id), kind=row.kind, name=row.name, created_at=row.created_at,
                   row=row)

    @strawberry.field(description="The user who installed the messaging app; the only one who may delete "
                                  "its conversations.")
    async def installed_by(self, info: Info) -> User:
        return await _user(info, self.row.installed_by_id)

    @strawberry.field(description="Users with shared access to this channel's conversations "
                                  f"(the installer included), by name; at most {validation.MAX_MEMBERS}.",
                      metadata=max_items(validation.MAX_MEMBERS))
    async def members(self, info: Info) -> list[User]:
        return [User.of(row) for row in await info.context.loaders.members.load(self.row.id)]


async def _channel(info: Info, channel_id: int) -> Channel:
    return Channel.of(await info.context.loaders.channel.load(channel_id))


@strawberry.type(description="The customer or prospect on the messaging app's side.")
class Contact(Node):
    name: str
    external_id: str = strawberry.field(
        description="The messaging app's own id of the contact (a phone number, a page-scoped id...).")
    avatar_url: Optional[str]
    row: strawberry.Private[models.Contact]

    @classmethod
    def of(cls, row: models.Contact) -> "Contact":
        return cls(id=global_id("Contact", row.id), name=row.name, external_id=row.external_id,
                   avatar_url=row.avatar_url, row=row)

    @strawberry.field
    async def channel(self, info: Info) -> Channel:
        return await _channel(info, self.row.channel_id)


@strawberry.type
class Message(Node):
    direction: MessageDirection
    body: str = strawberry.field(description="The text; empty for a message that is only attachments.")
    sent_at: datetime
    status: DeliveryStatus
    row: strawberry.Private[models.Message]
    # The sender's name when the query that loaded the row read it too (an inbox page).
    sender: strawberry.Private[Optional[str]] = None
    # Its conversation when the caller holds it (an inbound message just stored).
    conversation_row: strawberry.Private[Optional[models.Conversation]] = None

    @classmethod
    def of(cls, row: models.Message, sender: str | None = None,
           conversation: models.Conversation | None = None) -> "Message":
        return cls(id=global_id("Message", row.id), direction=row.direction, body=row.body, sent_at=row.sent_at,
                   status=row.status, row=row, sender=sender, conversation_row=conversation)

    @strawberry.field
    async def conversation(self, info: Info) -> Annotated["Conversation", strawberry.lazy("schema.types")]:
        return Conversation.of(self.conversation_row
                               or await info.context.loaders.conversation.load(self.row.conversation_id))

    @strawberry.field(description="The contact's or the user's display name.")
    def sender_name(self, info: Info) -> str:
        # Known: answered at once. Else loaded (graphql-core awaits what a resolver returns).
        return self.sender if self.sender is not None else self._load_sender_name(info)

    async def _load_sender_name(self, info: Info) -> str:
        loaders = info.context.loaders
        if self.row.direction is models.MessageDirection.OUTBOUND:
            author = await loaders.user.load(self.row.author_id) if self.row.author_id else None
            return sections.sender_name(self.row, None, author.name if author else None)
        conversation = await loaders.conversation.load(self.row.conversation_id)
        contact = await loaders.contact.load(conversation.contact_id) if conversation else None
        return sections.sender_name(self.row, contact.name if contact else None, None)

    @strawberry.field(description="The user who sent an outbound message; null for inbound ones.")
    async def author(self, info: Info) -> Optional[User]:
        return await _user(info, self.row.author_id)

    @strawberry.field(description="Why the messaging app refused it, for FAILED outbound messages.")
    def failure_reason(self) -> Optional[str]:
        return self.row.failure_reason

    @strawberry.field(description="A cursor usable as `after` in `messageAdded` and `Conversation.messages`.")
    def cursor(self) -> str:
        return message_cursor(self.row.id)

    @strawberry.field(metadata=max_items(attachments.MAX_ATTACHMENTS))
    def attachments(self) -> list[Attachment]:
        return [Attachment.of(stored) for stored in (self.row.attachments or [])[:attachments.MAX_ATTACHMENTS]]

    @strawberry.field(description="The position of this message's latest change (its creation, then each status "
                                  "change): usable as `after` in `messageUpdated`.")
    def update_cursor(self) -> str:
        return update_cursor(self.row.update_seq or self.row.id)


@strawberry.type
class MessageEdge:
    cursor: str
    node: Message


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo


def message_connection(rows: list[models.Message], has_next: bool, has_previous: bool) -> MessageConnection:
    edges = [MessageEdge(cursor=message_cursor(row.id), node=Message.of(row)) for row in rows]
    return MessageConnection(edges=edges, page_info=PageInfo.of(edges, has_next, has_previous))


@strawberry.type
class ConversationEvent(Node):
    kind: ConversationEventKind
    conversation_id: strawberry.ID
    occurred_at: datetime
    conversation_pk: strawberry.Private[int]
    actor_id: strawberry.Private[Optional[int]]
    assignee_id: strawberry.Private[Optional[int]]
    message_id: strawberry.Private[Optional[int]]
    event_pk: strawberry.Private[int]

    @classmethod
    def of(cls, row: models.ConversationEvent) -> "ConversationEvent":
        return cls(id=global_id("ConversationEvent", row.id), event_pk=row.id, kind=row.kind,
                   conversation_id=global_id("Conversation", row.conversation_id), occurred_at=row.occurred_at,
                   conversation_pk=row.conversation_id, actor_id=row.actor_id, assignee_id=row.assignee_id,
                   message_id=row.message_id)

    @classmethod
    def of_broadcast(cls, event: ConversationChanged) -> "ConversationEvent":
        return cls(id=global_id("ConversationEvent", event.event_id), event_pk=event.event_id,
                   kind=models.EventKind(event.kind),
                   conversation_id=global_id("Conversation", event.conversation_id),
                   occurred_at=datetime.fromisoformat(event.occurred_at), conversation_pk=event.conversation_id,
                   actor_id=event.actor_id, assignee_id=event.assignee_id, message_id=event.message_id)

    @strawberry.field(description="Usable as `after` in `conversationChanged`.")
    def cursor(self) -> str:
        return event_cursor(self.event_pk)

    @strawberry.field(description="Null once the conversation is deleted.")
    async def conversation(self, info: Info) -> Optional[Annotated["Conversation", strawberry.lazy("schema.types")]]:
        row = await info.context.loaders.conversation.load(self.conversation_pk)
        if row is None or row.deleted_at is not None:
            return None
        return Conversation.of(row)

    @strawberry.field(description="Who did it; null when the system did (an automatic reopen, a new "
                                  "conversation).")
    async def actor(self, info: Info) -> Optional[User]:
        return await _user(info, self.actor_id)

    @strawberry.field(description="The new assignee, for ASSIGNED.")
    async def assignee(self, info: Info) -> Optional[User]:
        return await _user(info, self.assignee_id)

    @strawberry.field(description="The message, for MESSAGE_ADDED.")
    async def message(self, info: Info) -> Optional[Message]:
        if self.message_id is None:
            return None
        row = await info.context.loaders.message.load(self.message_id)
        return Message.of(row) if row else None


@strawberry.type
class Conversation(Node):
    status: ConversationStatus
    created_at: datetime
    row: strawberry.Private[models.Conversation]
    # On an inbox page: the contact, assignee, last message and unread count, read with
    # the row. Those fields then answer at once (no loader, nothing awaited: a page is
    # hundreds of fields); elsewhere they load through the batching loaders.
    entry: strawberry.Private[Optional[sections.InboxEntry]] = None

    @classmethod
    def of(cls, row: models.Conversation, entry: sections.InboxEntry | None = None) -> "Conversation":
        return cls(id=global_id("Conversation", row.id), status=row.status, created_at=row.created_at, row=row,
                   entry=entry)

    @strawberry.field
    async def channel(self, info: Info) -> Channel:
        return await _channel(info, self.row.channel_id)

    # The fields below return their value when the entry has it, else an awaitable that
    # loads it: graphql-core awaits whatever a resolver returns that is awaitable.
    @strawberry.field
    def contact(self, info: Info) -> Contact:
        if self.entry is not None:
            return Contact.of(self.entry.contact)
        return self._load_contact(info)

    async def _load_contact(self, info: Info) -> Contact:
        return Contact.of(await info.context.loaders.contact.load(self.row.contact_id))

    @strawberry.field(description="The section this conversation is in for the viewer.")
    def section(self, info: Info) -> InboxSection:
        return sections.section_of(self.row, info.context.viewer_id)

    @strawberry.field
    def assignee(self, info: Info) -> Optional[User]:
        if self.entry is not None:
            return User.of(self.entry.assignee) if self.entry.assignee else None
        return _user(info, self.row.assignee_id)

    @strawberry.field
    def last_message_at(self, info: Info) -> Optional[datetime]:
        if self.entry is not None:
            return self.entry.last_message.sent_at if self.entry.last_message else None
        return self._load_last_message_at(info)

    async def _load_last_message_at(self, info: Info) -> datetime | None:
        row = await self._load_last_message(info)
        return row.sent_at if row else None

    @strawberry.field
    def last_message(self, info: Info) -> Optional[Message]:
        if self.entry is not None:
            found = self.entry.last_message
            return Message.of(found, self.entry.last_sender_name) if found else None
        return self._load_last_message_type(info)

    async def _load_last_message_type(self, info: Info) -> Message | None:
        row = await self._load_last_message(info)
        return Message.of(row) if row else None

    async def _load_last_message(self, info: Info) -> models.Message | None:
        if self.row.last_message_id is None:
            return None
        return await info.context.loaders.message.load(self.row.last_message_id)

    @strawberry.field(description="Inbound messages the viewer has not read yet.")
    def unread_count(self, info: Info) -> int:
        if self.entry is not None:
            return self.entry.unread
        return info.context.loaders.unread.load(self.row.id)

    @strawberry.field(description="Where a person opens this conversation in the inbox.")
    def url(self, info: Info) -> str:
        return conversation_url(info.context.settings.public_url, self.row.id)

    @strawberry.field(description="Oldest first within a page; `last`/`before` page backwards from the newest.")
    async def messages(self, info: Info, first: Optional[int] = None, after: Optional[str] = None,
                       last: Optional[int] = None, before: Optional[str] = None) -> MessageConnection:
        from .ids import parse_message_cursor

        page = await info.context.loaders.messages.load(
            (self.row.id, first, parse_message_cursor(after), last, parse_message_cursor(before)))
        return message_connection(page.rows, page.has_next, page.has_previous)

    @strawberry.field(description=f"Oldest first; at most {validation.MAX_LINKS} (linking refuses more).",
                      metadata=max_items(validation.MAX_LINKS))
    async def links(self, info: Info) -> list[Annotated["ConversationLink", strawberry.lazy("schema.crm")]]:
        from .crm import ConversationLink

        return [ConversationLink.of(row) for row in await info.context.loaders.links.load(self.row.id)]

    @strawberry.field(description="Whether a reply may be sent now; null on channels without such a policy "
                                  "(CUSTOM, TELEGRAM).")
    async def reply_window(self, info: Info) -> Optional[ReplyWindow]:
        channel = await info.context.loaders.channel.load(self.row.channel_id)
        found = apps.window_of(channel, self.row.last_inbound_at)
        return ReplyWindow(state=found.state, closes_at=found.closes_at) if found else None

    @strawberry.field(description=f"What happened to the conversation: the latest {validation.MAX_EVENTS} "
                                  "events, oldest first.",
                      metadata=max_items(validation.MAX_EVENTS))
    async def events(self, info: Info) -> list[ConversationEvent]:
        return [ConversationEvent.of(row) for row in await info.context.loaders.events.load(self.row.id)]


@strawberry.type
class ConversationEdge:
    cursor: str
    node: Conversation


@strawberry.type
class ConversationConnection:
    edges: list[ConversationEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()


def conversation_connection(page: sections.Page, has_previous: bool) -> ConversationConnection:
    edges = [ConversationEdge(cursor=conversation_cursor(sections.ConversationKey.of(entry.conversation)),
                              node=Conversation.of(entry.conversation, entry))
             for entry in page.entries]
    return ConversationConnection(edges=edges, count=page.count,
                                  page_info=PageInfo.of(edges, page.has_next, has_previous))


@strawberry.type
class InboxCounts:
    unassigned: int
    assigned_to_me: int
    assigned_to_others: int
    closed: int
    unread: int = strawberry.field(
        description="Open conversations visible to the viewer that have unread inbound messages.")


@strawberry.type
class CreateUserPayload:
    user: User
    api_token: str = strawberry.field(description="Shown once; the server keeps only a hash of it.")


@strawberry.type
class InstallChannelPayload:
    channel: Channel
    webhook_path: Optional[str] = strawberry.field(
        description="Path, on this server, where the messaging app posts its webhooks (null for CUSTOM).")
    channel_token: Optional[str] = strawberry.field(
        description="For CUSTOM channels: the bearer token a partner integration uses with "
                    "receiveChannelMessage. Shown once.")
