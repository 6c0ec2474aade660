"""Replies (SPEC §2): `sendMessage` stores a PENDING message and queues it; the
sender hands it to the messaging app, retrying what may succeed later, and every
status change moves forward only and is published on `messageUpdated`."""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import (Channel, Contact, Conversation, Delivery, DeliveryStatus, EarlyReceipt, EventKind,
                    Message, MessageDirection, User)

from . import apps, media, notes, sql, validation
from . import attachments as attachment_rules
from .access import audience, visible_conversation
from .errors import BadInput
from .events import MessageAdded, MessageUpdated, record_event
from .queue import GONE, AttemptFailed, QueueWorker, Rejected, due_rows, lease
from .replay import mark_changed
from .transaction import action

log = logging.getLogger(__name__)

# Statuses move forward only: a late DELIVERED never follows READ.
# How long a status report naming an id no reply carries yet is kept for its reply.
EARLY_RECEIPTS_KEPT = timedelta(days=1)
RANK = {DeliveryStatus.PENDING: 0, DeliveryStatus.SENT: 1, DeliveryStatus.DELIVERED: 2, DeliveryStatus.READ: 3}



async def send_message(viewer: User, conversation_id: int, body: str | None, client_message_id: str | None,
                       on_queued: Callable[[], None] | None = None, *,
                       attachments: list[attachment_rules.Given] | None = None,
                       template: apps.Template | None = None, api: Any = None) -> Message:
    """A body, attachments or both; or, on an app that takes them, a template alone (its
    text, read from the app through `api`, is the stored body). Free text is refused
    while the conversation's reply window is CLOSED; a template is not."""
    files = attachment_rules.checked(attachments)
    has_text = bool(body and body.strip())
    if template is not None:
        if has_text or files:
            raise BadInput("a template is sent alone: no body or attachments with it")
        template = _checked_template(template)
    body = validation.body(body) if has_text else ""
    client_message_id = validation.text(client_message_id, "clientMessageId", required=False)
    conversation = await visible_conversation(viewer, conversation_id)
    if template is None and not has_text and not files:
        raise BadInput("body is required (or attachments, or on WhatsApp a template)")
    await media.attach_uploads(viewer, conversation.id, files)
    if client_message_id:
        earlier = await Message.get_or_none(author_id=viewer.id, client_message_id=client_message_id)
        if earlier is not None:
            return earlier
    channel = await Channel.get(id=conversation.channel_id)
    app = apps.of(channel.kind)
    app.can_reply(channel)
    if template is not None:
        if not app.takes_templates:
            raise BadInput(f"templates are for WhatsApp conversations, not {channel.kind.value}")
        body = (await app.template_text(api, channel, template))[:validation.MAX_BODY]
    else:
        apps.require_open(apps.window_of(channel, conversation.last_inbound_at))
    members = await audience(channel.id)
    try:
        async with action(channel.company_id) as act:
            conversation = await visible_conversation(viewer, conversation_id, for_update=True)
            now = datetime.now(timezone.utc)
            message = await Message.create(
                company_id=channel.company_id, channel_id=channel.id, conversation_id=conversation.id,
                direction=MessageDirection.OUTBOUND, body=body, sent_at=now, status=DeliveryStatus.PENDING,
                author_id=viewer.id, client_message_id=client_message_id, attachments=files or None)
            await Delivery.create(message_id=message.id, next_attempt_at=now, template={
                "contentSid": template.content_sid, "variables": list(template.variables)} if template else None)
            conversation.last_message_id = message.id
            conversation.activity_at = now
            await conversation.save(update_fields=["last_message_id", "activity_at"])
            await notes.on_messages([message])
            act.emit(MessageAdded(company_id=channel.company_id, channel_id=channel.id,
                                  conversation_id=conversation.id, audience=members, message_id=message.id))
            await record_event(act, conversation, EventKind.MESSAGE_ADDED, actor=viewer, audience=members,
                               message_id=message.id)
    except IntegrityError:
        # The same clientMessageId sent twice at once: the first one stands.
        earlier = await Message.get_or_none(author_id=viewer.id, client_message_id=client_message_id)
        if earlier is None:
            raise
        return earlier
    if on_queued is not None:
        on_queued()
    return message


# Twilio's Content SIDs are HX and 32 hex digits; checked here only as far as the Content
# API's path needs (Twilio says whether the template exists).
CONTENT_SID = re.compile(r"^HX[0-9A-Za-z]{1,64}$")
MAX_TEMPLATE_VARIABLES = 100


def _checked_template(template: apps.Template) -> apps.Template:
    sid = (template.content_sid or "").strip()
    if not CONTENT_SID.match(sid):
        raise BadInput("template.contentSid must be a Content SID (HX and 32 hexadecimal digits)")
    if len(template.variables) > MAX_TEMPLATE_VARIABLES:
        raise BadInput(f"a template takes at most {MAX_TEMPLATE_VARIABLES} variables")
    for value in template.variables:
        if len(value) > validation.MAX_BODY:
            raise BadInput(f"a template variable is longer than {validation.MAX_BODY} characters")
    return apps.Template(sid, tuple(template.variables))


def _moves_forward(current: DeliveryStatus, new: DeliveryStatus) -> bool:
    if current is DeliveryStatus.FAILED or current is DeliveryStatus.RECEIVED:
        return False
    if new is DeliveryStatus.FAILED:
        return current in (DeliveryStatus.PENDING, DeliveryStatus.SENT)
    return new in RANK and RANK[new] > RANK[current]


async def update_status(message_id: int, status: DeliveryStatus, *, failure_reason: str | None = None,
                        external_id: str | None = None) -> Message | None:
    """Moves an outbound message's status forward (never back) and publishes the change.
    Returns the message when it changed."""
    found = await Message.get_or_none(id=message_id).values("company_id")
    if found is None:
        return None
    async with action(found["company_id"]) as act:
        message = await Message.filter(id=message_id).select_for_update().first()
        if message is None or message.direction is not MessageDirection.OUTBOUND:
            return None
        if not _moves_forward(message.status, status):
            return None
        message.status = status
        fields = ["status"]
        if status is DeliveryStatus.FAILED:
            message.failure_reason = (failure_reason or "refused by the messaging app")[:validation.MAX_FAILURE_REASON]
            fields.append("failure_reason")
        if external_id and not message.external_id:
            # An id the app already gave another message of the channel cannot be kept
            # (unique per channel); failing here would leave the reply to be sent again.
            if await Message.filter(channel_id=message.channel_id, external_id=stored_id(external_id)).exists():
                log.warning("message %s: external id %r is taken on its channel; not kept", message.id, external_id)
            else:
                message.external_id = stored_id(external_id)
                fields.append("external_id")
        await message.save(update_fields=fields)
        message.update_seq = (await mark_changed([message.id]))[message.id]
        act.emit(MessageUpdated(company_id=message.company_id, channel_id=message.channel_id,
                                conversation_id=message.conversation_id, audience=await audience(message.channel_id),
                                message_id=message.id, position=message.update_seq))
    if "external_id" in fields:
        await _apply_early_receipts(message)
    return message


async def update_status_by_external_id(channel: Channel, external_id: str, status: DeliveryStatus,
                                       failure_reason: str | None = None, *,
                                       keep_if_early: bool = False) -> Message | None:
    """For status reports that name the messaging app's id. None when no such message.
    `keep_if_early`: the report may come before the sender has recorded that id (the app
    answered the send, the report overtook the answer); it is kept and applied then."""
    if len(external_id) > validation.MAX_EXTERNAL_ID:
        raise BadInput(f"externalMessageId is longer than {validation.MAX_EXTERNAL_ID} characters")
    # The reason is shown as it came, cut rather than refused: the status still applies.
    failure_reason = failure_reason[:validation.MAX_FAILURE_REASON] if failure_reason else failure_reason
    message = await _by_external_id(channel.id, external_id)
    if message is None:
        if not keep_if_early:
            return None
        await _keep_early_receipt(channel.id, external_id, status, failure_reason)
        # The sender may have recorded the id meanwhile, after looking for early reports.
        message = await _by_external_id(channel.id, external_id)
        if message is None:
            return None
        await _apply_early_receipts(message)
        return message
    return await update_status(message.id, status, failure_reason=failure_reason) or message


def stored_id(external_id: str) -> str:
    """A messaging app's id as stored (the column holds 255 characters): looked up the
    same way, a longer id finds what it was stored as instead of failing in the ORM."""
    return external_id[:255]


async def _by_external_id(channel_id: int, external_id: str) -> Message | None:
    return await Message.get_or_none(channel_id=channel_id, external_id=stored_id(external_id),
                                     direction=MessageDirection.OUTBOUND)


async def _keep_early_receipt(channel_id: int, external_id: str, status: DeliveryStatus,
                              failure_reason: str | None) -> None:
    # Reports of ids no reply of ours ever gets (another system's sends on the same
    # sender) are not kept for ever.
    await EarlyReceipt.filter(created_at__lt=datetime.now(timezone.utc) - EARLY_RECEIPTS_KEPT).delete()
    try:
        await EarlyReceipt.create(channel_id=channel_id, external_id=stored_id(external_id), status=status,
                                  failure_reason=failure_reason)
    except IntegrityError:
        pass  # the same report again


async def _apply_early_receipts(message: Message) -> None:
    """Applies, in order, the reports that came before the message's id was recorded."""
    early = await EarlyReceipt.filter(channel_id=message.channel_id, external_id=message.external_id)
    if not early:
        return
    await EarlyReceipt.filter(id__in=[receipt.id for receipt in early]).delete()
    for receipt in sorted(early, key=lambda receipt: RANK.get(receipt.status, len(RANK))):
        await update_status(message.id, receipt.status, failure_reason=receipt.failure_reason)


@dataclass
class Outgoing:
    """What a messaging app needs to deliver one reply."""

    message: Message
    channel: Channel
    contact: Contact
    # The reply window as the sender found it (HUMAN_AGENT: Messenger tags the reply).
    window: apps.Window | None = None
    template: apps.Template | None = None
    # Progress of a reply sent as several calls (channels/outbound.py's send_parts).
    delivery_id: int | None = None
    parts_sent: int = 0
    first_external_id: str | None = None

    async def part_sent(self, count: int, external_id: str | None, *, more: bool) -> None:
        """The app accepted parts up to `count`; kept when `more` are to come, so that a
        retry goes on from the next one."""
        self.parts_sent = count
        if self.first_external_id is None and external_id:
            self.first_external_id = external_id[:255]
        if more and self.delivery_id is not None:
            await Delivery.filter(id=self.delivery_id).update(parts_sent=count, external_id=self.first_external_id)


Deliver = Callable[[Outgoing], Awaitable[str | None]]

CLOSED_BEFORE_SENT = ("the reply window closed before the reply could be sent: the messaging app takes no "
                      "free-text reply this long after the contact's latest message")

# The reason of a send that got no answer, whatever the network said (refused, reset,
# unresolvable, timed out): a partner's callbackUrl must not learn what lies behind it.
# The details are logged.
NO_ANSWER = "network error: no answer from the messaging app"


class Sender(QueueWorker):
    """Works the send queue (inbox/queue.py): every process may run one, and no message
    is handed to its messaging app by two of them. At most `per_channel` replies of one
    channel are in flight at once, across processes (counted from the leases), so a
    messaging app that does not answer holds that many of its own replies and delays
    nobody else's."""

    name = "send queue"
    model = Delivery

    def __init__(self, deliver: Deliver, *, timeout: float, retry_seconds: float, backoff_seconds: float,
                 per_channel: int, poll_seconds: float = 1.0, batch: int = 20, max_in_flight: int = 256) -> None:
        super().__init__(timeout=timeout, backoff_seconds=backoff_seconds, retry_seconds=retry_seconds,
                         poll_seconds=poll_seconds, batch=batch, max_in_flight=max_in_flight)
        self.deliver = deliver
        self.per_channel = per_channel

    async def claim(self) -> list[int]:
        now = datetime.now(timezone.utc)
        async with in_transaction() as connection:
            await lock_send_queue()
            in_flight = Counter(await Delivery.filter(leased_until__gte=now).using_db(connection)
                                .values_list("message__channel_id", flat=True))
            full = [channel_id for channel_id, count in in_flight.items() if count >= self.per_channel]
            rows = Delivery.exclude(message__channel_id__in=full) if full else Delivery.all()
            due = await due_rows(rows, connection, now, self.room())
            channel_of = dict(await Message.filter(id__in=[row.message_id for row in due]).using_db(connection)
                              .values_list("id", "channel_id"))
            ids = []
            for row in due:
                channel_id = channel_of.get(row.message_id)
                if in_flight[channel_id] < self.per_channel:
                    in_flight[channel_id] += 1
                    ids.append(row.id)
            await lease(Delivery, ids, connection, now + self.lease)
        # Rows of a channel at its bound wait for one of its replies to finish.
        self.held_back = self.held_back or bool(full) or len(ids) < len(due)
        return ids

    async def perform(self, delivery: Delivery):
        message = await Message.get_or_none(id=delivery.message_id)
        if message is None or message.status is not DeliveryStatus.PENDING:
            await Delivery.filter(id=delivery.id).delete()
            return GONE
        channel = await Channel.get(id=message.channel_id)
        conversation = await Conversation.get(id=message.conversation_id)
        contact = await Contact.get(id=conversation.contact_id)
        out = Outgoing(message, channel, contact, delivery_id=delivery.id, parts_sent=delivery.parts_sent,
                       first_external_id=delivery.external_id,
                       template=apps.Template(delivery.template["contentSid"],
                                              tuple(delivery.template.get("variables") or ()))
                       if delivery.template else None)
        # The window again, at send time: a reply queued while it was open may find it closed.
        out.window = apps.window_of(channel, conversation.last_inbound_at)
        if out.template is None and out.window is not None and out.window.state is apps.WindowState.CLOSED:
            raise Rejected(CLOSED_BEFORE_SENT)
        return await self.call(self.deliver(out))

    def reason_of(self, error: Exception) -> str:
        return error.reason if isinstance(error, AttemptFailed) else NO_ANSWER

    async def succeed(self, delivery: Delivery, external_id: str | None) -> None:
        await self._finish(delivery, DeliveryStatus.SENT, external_id=external_id)

    async def give_up(self, delivery: Delivery, reason: str) -> None:
        await self._finish(delivery, DeliveryStatus.FAILED, failure_reason=reason)

    async def _finish(self, delivery: Delivery, status: DeliveryStatus, **details) -> None:
        await update_status(delivery.message_id, status, **details)
        await Delivery.filter(id=delivery.id).delete()


async def lock_send_queue() -> None:
    """On PostgreSQL, claims of the send queue take turns (a transaction-scoped lock), so
    that two processes never both take a channel's last free place."""
    if sql.is_postgres():
        await sql.fetch("SELECT pg_advisory_xact_lock(?, ?)", 7_200, 0)


async def update_statuses_up_to(channel: Channel, contact_external_id: str, status: DeliveryStatus,
                                until: datetime, external_ids: list[str] = ()) -> int:
    """Receipts that name a watermark (Messenger's `delivery` and `read`): every reply
    to that contact sent at or before `until`, plus the ones named by id, moves forward
    to `status`. PENDING replies are left to the sender: the contact cannot have seen
    them, and a reply that left the queue would never be sent. Returns how many moved."""
    conversation = await Conversation.get_or_none(channel_id=channel.id,
                                                  contact__external_id=contact_external_id)
    if conversation is None:
        return 0
    replies = Message.filter(conversation_id=conversation.id, direction=MessageDirection.OUTBOUND)
    behind = [s for s in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED) if RANK[s] < RANK[status]]
    ids = set(await replies.filter(sent_at__lte=until, status__in=behind).values_list("id", flat=True))
    if external_ids:
        ids |= set(await replies.filter(external_id__in=list(external_ids), status__in=behind)
                   .values_list("id", flat=True))
    moved = 0
    for message_id in sorted(ids):
        moved += await update_status(message_id, status) is not None
    # Named replies whose id the sender has not recorded yet (the receipt overtook the
    # Send API's answer): kept until it does.
    known = set(await Message.filter(channel_id=channel.id, external_id__in=list(external_ids))
                .values_list("external_id", flat=True)) if external_ids else set()
    for external_id in sorted(set(external_ids) - known):
        moved += await update_status_by_external_id(channel, external_id, status, keep_if_early=True) is not None
    return moved
