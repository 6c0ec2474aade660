"""Tortoise models of the inbox: companies, users, channels, contacts,
conversations, messages, conversation events, per-user read state, the CRM
side: persons, leads, deals, conversation links and notes, and notifications.

Every row carries its company so that tenant filters are one column away.
Schema changes go through the migrations in models/migrations.
"""
from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from . import kinds

# One member per messaging app, each declared by its own module of channels/ (its KIND and
# KIND_ORDER: models/kinds.py): MESSENGER, WHATSAPP, CUSTOM, TELEGRAM, then any app added.
ChannelKind = Enum("ChannelKind", [(app.kind, app.kind) for app in kinds.declared()], type=str, module=__name__)


class ConversationStatus(str, Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class MessageDirection(str, Enum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class DeliveryStatus(str, Enum):
    RECEIVED = "RECEIVED"
    PENDING = "PENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"


class EventKind(str, Enum):
    CREATED = "CREATED"
    MESSAGE_ADDED = "MESSAGE_ADDED"
    ASSIGNED = "ASSIGNED"
    UNASSIGNED = "UNASSIGNED"
    CLOSED = "CLOSED"
    REOPENED = "REOPENED"
    DELETED = "DELETED"
    RESTORED = "RESTORED"
    LINKED = "LINKED"
    UNLINKED = "UNLINKED"
    READ = "READ"


class Company(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "company"


class User(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="users", on_delete=fields.CASCADE)
    name = fields.CharField(max_length=255)
    email = fields.CharField(max_length=320)
    is_admin = fields.BooleanField(default=False)
    available = fields.BooleanField(default=True)
    # sha256 of the API token: tokens are 256-bit random, so a fast hash is safe
    # and lets every request find its user by index.
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user"
        unique_together = (("company", "email"),)


class Channel(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="channels", on_delete=fields.CASCADE)
    # The description is not tortoise's list of the members: a new messaging app's kind
    # needs no migration (the column is varchar(16) with no constraint on the values).
    kind = fields.CharEnumField(ChannelKind, max_length=kinds.KIND_MAX_LENGTH,
                                description="The messaging app (ChannelKind): one per module of channels/")
    name = fields.CharField(max_length=255)
    installed_by = fields.ForeignKeyField("inbox.User", related_name="installed_channels",
                                          on_delete=fields.RESTRICT)
    # Provider settings (page id, secrets, callback url...). Secrets never leave the server.
    config = fields.JSONField(default=dict)
    # CUSTOM channels: sha256 of the partner's bearer token.
    token_hash = fields.CharField(max_length=64, unique=True, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    uninstalled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "channel"


class ChannelMember(Model):
    id = fields.IntField(primary_key=True)
    channel = fields.ForeignKeyField("inbox.Channel", related_name="memberships", on_delete=fields.CASCADE)
    user = fields.ForeignKeyField("inbox.User", related_name="memberships", on_delete=fields.CASCADE)

    class Meta:
        table = "channel_member"
        unique_together = (("channel", "user"),)


class Contact(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="contacts", on_delete=fields.CASCADE)
    channel = fields.ForeignKeyField("inbox.Channel", related_name="contacts", on_delete=fields.CASCADE)
    external_id = fields.CharField(max_length=255)
    name = fields.CharField(max_length=255)
    avatar_url = fields.CharField(max_length=2048, null=True)

    class Meta:
        table = "contact"
        unique_together = (("channel", "external_id"),)


class Conversation(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="conversations", on_delete=fields.CASCADE)
    channel = fields.ForeignKeyField("inbox.Channel", related_name="conversations", on_delete=fields.CASCADE)
    # One conversation per contact per channel: a contact belongs to one channel.
    contact = fields.OneToOneField("inbox.Contact", related_name="conversation", on_delete=fields.CASCADE)
    status = fields.CharEnumField(ConversationStatus, max_length=8, default=ConversationStatus.OPEN)
    assignee = fields.ForeignKeyField("inbox.User", related_name="assigned_conversations", null=True,
                                      on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Ordering key of the inbox sections: when the server took the latest message.
    activity_at = fields.DatetimeField()
    last_message_id = fields.IntField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    # The messaging app's time of the contact's latest message: where its reply window
    # (inbox/apps.py) starts.
    last_inbound_at = fields.DatetimeField(null=True)

    class Meta:
        table = "conversation"
        # Section pages walk these newest first. The second serves a section with an
        # assignee (or none) as a range: a user's few conversations among many; with the
        # channel in it, it also counts a section (totalCount) without reading the rows.
        indexes = (("company_id", "status", "activity_at"),
                   ("company_id", "status", "assignee_id", "deleted_at", "activity_at", "id", "channel_id"))


class Message(Model):
    # Ids are handed out in commit order per company (see inbox/messages.py), so
    # the id is the cursor of `messageAdded(after:)` and of Conversation.messages.
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="messages", on_delete=fields.CASCADE)
    channel = fields.ForeignKeyField("inbox.Channel", related_name="messages", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="messages",
                                          on_delete=fields.CASCADE)
    direction = fields.CharEnumField(MessageDirection, max_length=8)
    body = fields.TextField()
    sent_at = fields.DatetimeField()
    status = fields.CharEnumField(DeliveryStatus, max_length=10)
    author = fields.ForeignKeyField("inbox.User", related_name="messages", null=True, on_delete=fields.SET_NULL)
    # The messaging app's id of the message: the idempotency key of every inbound path.
    external_id = fields.CharField(max_length=255, null=True)
    client_message_id = fields.CharField(max_length=255, null=True)
    failure_reason = fields.TextField(null=True)
    # Files sent with the message: [{"kind", "url", "name", "mimeType"}, ...] (inbox/attachments.py).
    attachments = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # The position of its latest status change, from the same commit-ordered space as
    # message ids (inbox/replay.py); null until its first change: its id is its position.
    update_seq = fields.BigIntField(null=True)

    class Meta:
        table = "message"
        # A retried sendMessage with the same clientMessageId by the same user is one message.
        unique_together = (("channel", "external_id"), ("author", "client_message_id"))
        indexes = (("conversation_id", "id"), ("company_id", "update_seq"))


class MediaFile(Model):
    """A file the server keeps (inbox/media.py): an inbound attachment fetched from its
    messaging app, or a user's upload for a reply. Also the queue row of its fetch or of
    its erasure. Plain ids, no foreign keys: its bytes live outside the database, so
    its row goes only once they are erased (the company, the tenant, is a key as everywhere)."""

    # Random, not a sequence: a file's id in a URL says nothing of others.
    id = fields.CharField(primary_key=True, max_length=32)
    company = fields.ForeignKeyField("inbox.Company", related_name="media_files", on_delete=fields.CASCADE)
    channel_id = fields.IntField(null=True)
    conversation_id = fields.IntField(null=True, db_index=True)
    message_id = fields.IntField(null=True)
    uploaded_by_id = fields.IntField(null=True)
    kind = fields.CharField(max_length=8)
    name = fields.CharField(max_length=255, null=True)
    content_type = fields.CharField(max_length=255, null=True)
    size = fields.BigIntField(default=0)
    # PENDING, STORED, FAILED, TOO_LARGE, OVER_QUOTA, ERASING (inbox/media.py).
    status = fields.CharField(max_length=16)
    # Where the messaging app keeps it ({"url"} or {"fileId"}): never shown to a client.
    source = fields.JSONField(null=True)
    attempts = fields.IntField(default=0)
    first_attempt_at = fields.DatetimeField(null=True)
    next_attempt_at = fields.DatetimeField(null=True)
    leased_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "media_file"
        indexes = (("status", "next_attempt_at"), ("channel_id",))


class ConversationEvent(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="events", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="events",
                                          on_delete=fields.CASCADE)
    kind = fields.CharEnumField(EventKind, max_length=16)
    actor = fields.ForeignKeyField("inbox.User", related_name="acted_events", null=True, on_delete=fields.SET_NULL)
    assignee = fields.ForeignKeyField("inbox.User", related_name="assignment_events", null=True, on_delete=fields.SET_NULL)
    message_id = fields.IntField(null=True)
    occurred_at = fields.DatetimeField()

    class Meta:
        table = "conversation_event"
        # (company_id, id): what a resuming conversationChanged missed (inbox/replay.py).
        indexes = (("conversation_id", "id"), ("company_id", "id"))


class Delivery(Model):
    """The durable send queue: one row per outbound message until the messaging app
    has accepted or finally refused it. A worker leases a row before sending, so that
    every process may run a sender and each message is handed to the app once."""

    id = fields.IntField(primary_key=True)
    message = fields.OneToOneField("inbox.Message", related_name="delivery", on_delete=fields.CASCADE)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    # When the first attempt was made: retries stop after the retry window from it.
    first_attempt_at = fields.DatetimeField(null=True)
    leased_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    # Parts of the reply (text, each attachment) the messaging app has accepted: a retry
    # goes on from the next one, never sending a part twice.
    parts_sent = fields.IntField(default=0)
    # The app's id of the first part it accepted: the reply's id once every part is sent.
    external_id = fields.CharField(max_length=255, null=True)
    # A WhatsApp template to send instead of the body: {"contentSid", "variables"}.
    template = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "delivery"
        indexes = (("next_attempt_at",),)


class EarlyReceipt(Model):
    """A status report naming a provider message id that no reply carries yet: the app
    can report on a reply before its sender has recorded the id the app answered with.
    Applied, then deleted, when the sender records that id."""

    id = fields.IntField(primary_key=True)
    channel = fields.ForeignKeyField("inbox.Channel", related_name="early_receipts", on_delete=fields.CASCADE)
    external_id = fields.CharField(max_length=255)
    status = fields.CharEnumField(DeliveryStatus, max_length=10)
    failure_reason = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "early_receipt"
        unique_together = (("channel", "external_id", "status"),)


class ReadState(Model):
    """How far one user has read one conversation."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("inbox.User", related_name="read_states", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="read_states",
                                          on_delete=fields.CASCADE)
    last_read_message_id = fields.IntField(default=0)

    class Meta:
        table = "read_state"
        unique_together = (("user", "conversation"),)


class LinkTargetKind(str, Enum):
    PERSON = "PERSON"
    LEAD = "LEAD"
    DEAL = "DEAL"


class Person(Model):
    """A person of the CRM: what a conversation is most often linked to."""

    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="persons", on_delete=fields.CASCADE)
    name = fields.CharField(max_length=255)
    email = fields.CharField(max_length=320, null=True)
    phone = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "person"
        indexes = (("company_id", "id"),)


class Lead(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="leads", on_delete=fields.CASCADE)
    title = fields.CharField(max_length=255)
    person = fields.ForeignKeyField("inbox.Person", related_name="leads", null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "lead"


class Deal(Model):
    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="deals", on_delete=fields.CASCADE)
    title = fields.CharField(max_length=255)
    value = fields.FloatField(null=True)
    currency = fields.CharField(max_length=3, null=True)
    person = fields.ForeignKeyField("inbox.Person", related_name="deals", null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "deal"


class Note(Model):
    """A note on a person, lead or deal. The inbox writes one per link and 24-hour
    note window (a window holds at most the link's note_max_messages); it outlives the
    conversation (delete, uninstall) and the link."""

    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="notes", on_delete=fields.CASCADE)
    target_kind = fields.CharEnumField(LinkTargetKind, max_length=8)
    target_id = fields.IntField()
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="notes", null=True,
                                          on_delete=fields.SET_NULL)
    # What the note says before its lines: the header (contact, assignment status, url,
    # a blank line) of a note the inbox writes, or the whole text once a user edited it.
    content = fields.TextField()
    # The message lines the inbox wrote into it (NoteLine): a window opens a new note at
    # its link's note_max_messages.
    message_count = fields.IntField(default=0, db_default=0)
    # The note window: messages sent before window_start + 24 h go into this note.
    window_start = fields.DatetimeField(null=True)
    # Set by updateNote: a note a user edited is never written by the inbox again.
    edited_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "note"
        indexes = (("target_kind", "target_id", "id"),)


class NoteLine(Model):
    """One message the inbox wrote into a note, escaped, kept apart from the note so that
    writing a message costs its own line, not the note again. The note reads its content,
    then its lines oldest first by the message's sentAt."""

    id = fields.IntField(primary_key=True)
    note = fields.ForeignKeyField("inbox.Note", related_name="lines", on_delete=fields.CASCADE)
    message_id = fields.IntField()  # no foreign key: notes outlive their conversation's messages
    sent_at = fields.DatetimeField()
    line = fields.TextField()

    class Meta:
        table = "note_line"
        indexes = (("note_id", "id"),)


class ConversationLink(Model):
    """A conversation linked to a person, lead or deal: its messages go into notes there."""

    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="conversation_links", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="links", on_delete=fields.CASCADE)
    target_kind = fields.CharEnumField(LinkTargetKind, max_length=8)
    target_id = fields.IntField()
    # The conversation's url in the inbox, for the notes' header (the domain knows no public URL).
    conversation_url = fields.CharField(max_length=2048)
    # INBOX_NOTE_MAX_MESSAGES when it was linked: a note window holds at most this many messages.
    note_max_messages = fields.IntField(default=200, db_default=200)
    # The note the next message goes into while its window lasts; null once deleted.
    current_note = fields.ForeignKeyField("inbox.Note", related_name="writing_links", null=True,
                                          on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_link"
        unique_together = (("conversation", "target_kind", "target_id"),)


class NotificationKind(str, Enum):
    NEW_MESSAGE_ASSIGNED_TO_ME = "NEW_MESSAGE_ASSIGNED_TO_ME"
    NEW_MESSAGE_ASSIGNED_TO_OTHERS = "NEW_MESSAGE_ASSIGNED_TO_OTHERS"
    NEW_MESSAGE_UNASSIGNED = "NEW_MESSAGE_UNASSIGNED"
    CONVERSATION_ASSIGNED_TO_ME = "CONVERSATION_ASSIGNED_TO_ME"


class NotificationPreference(Model):
    """The desktop and email toggles of one user for one kind (no row: the defaults of SPEC 5)."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("inbox.User", related_name="notification_preferences", on_delete=fields.CASCADE)
    kind = fields.CharEnumField(NotificationKind, max_length=32)
    desktop = fields.BooleanField()
    email = fields.BooleanField()

    class Meta:
        table = "notification_preference"
        unique_together = (("user", "kind"),)


class Notification(Model):
    """A desktop notification of one user: stored only while its desktop toggle is on."""

    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="notifications", on_delete=fields.CASCADE)
    user = fields.ForeignKeyField("inbox.User", related_name="notifications", on_delete=fields.CASCADE)
    kind = fields.CharEnumField(NotificationKind, max_length=32)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="notifications",
                                          on_delete=fields.CASCADE)
    message = fields.ForeignKeyField("inbox.Message", related_name="notifications", null=True,
                                     on_delete=fields.SET_NULL)
    actor = fields.ForeignKeyField("inbox.User", related_name="caused_notifications", null=True,
                                   on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notification"
        indexes = (("user_id", "id"),)


class NotificationEmail(Model):
    """The email outbox: one row per email still to send, written in the transaction of
    the message or assignment that caused it. A worker leases a row before sending it,
    so that every process may run one and each email goes out once."""

    id = fields.IntField(primary_key=True)
    company = fields.ForeignKeyField("inbox.Company", related_name="notification_emails", on_delete=fields.CASCADE)
    user = fields.ForeignKeyField("inbox.User", related_name="notification_emails", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="notification_emails",
                                          on_delete=fields.CASCADE)
    # The latest kind, when new-message emails of a burst collapse into this one.
    kind = fields.CharEnumField(NotificationKind, max_length=32)
    to_address = fields.CharField(max_length=320)
    # What the email says, taken when it happened: contact, channel, actor, quoted messages.
    facts = fields.JSONField(default=dict)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    first_attempt_at = fields.DatetimeField(null=True)
    leased_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    # Set when the SMTP server refused it for good or retries ran out; never claimed again.
    failed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "notification_email"
        indexes = (("next_attempt_at",), ("user_id", "conversation_id"))


class EmailBurst(Model):
    """Until when a user's new-message emails about a conversation collapse: the first
    goes out at once and opens the window; what arrives in it waits for one follow-up."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("inbox.User", related_name="email_bursts", on_delete=fields.CASCADE)
    conversation = fields.ForeignKeyField("inbox.Conversation", related_name="email_bursts",
                                          on_delete=fields.CASCADE)
    until = fields.DatetimeField()

    class Meta:
        table = "email_burst"
        unique_together = (("user", "conversation"),)


__all__ = [
    "ChannelKind", "ConversationStatus", "MessageDirection", "DeliveryStatus", "EventKind",
    "Company", "User", "Channel", "ChannelMember", "Contact", "Conversation", "Message",
    "ConversationEvent", "Delivery", "ReadState",
    "LinkTargetKind", "Person", "Lead", "Deal", "Note", "NoteLine", "ConversationLink",
    "NotificationKind", "NotificationPreference", "Notification", "NotificationEmail", "EmailBurst",
]
