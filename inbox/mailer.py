"""The email outbox's worker (SPEC §5): sends each queued notification email once,
retrying with backoff what may go through later; every process may run one, and
a restart resumes what is queued."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Awaitable, Callable

from models import NotificationEmail

from .notifications import NEW_MESSAGE_KINDS, compose, listen_for_emails, open_burst
from .queue import QueueWorker, Rejected, lease_due

log = logging.getLogger(__name__)


# Sends one email, or raises Retryable (unreachable server, timeouts, 4xx answers, a
# refused login) or Rejected (a 5xx answer about this email: sender, recipient, content).
Transport = Callable[[EmailMessage], Awaitable[None]]


class Mailer(QueueWorker):
    """Works the email outbox (inbox/queue.py): each email is handed to the SMTP server
    by one worker, and a sent email's row is deleted at once. Sending a new-message email
    opens a burst window of `collapse_seconds`: the user's later messages of that
    conversation wait for its end and go out as one follow-up (inbox/notifications.py)."""

    name = "email outbox"
    model = NotificationEmail
    max_backoff = 300.0

    def __init__(self, transport: Transport, *, from_address: str, conversation_url: Callable[[int], str],
                 timeout: float, collapse_seconds: float, backoff_seconds: float, retry_seconds: float,
                 poll_seconds: float = 1.0, batch: int = 20) -> None:
        super().__init__(timeout=timeout, backoff_seconds=backoff_seconds, retry_seconds=retry_seconds,
                         poll_seconds=poll_seconds, batch=batch)
        self.transport = transport
        self.from_address = from_address
        self.conversation_url = conversation_url
        self.collapse = timedelta(seconds=collapse_seconds)
        self._stop_listening: Callable[[], None] | None = None

    def _queued(self, due: datetime) -> None:
        wait = (due - datetime.now(timezone.utc)).total_seconds()
        if wait > 0:  # a burst's follow-up: due at the end of its window
            self.wake_in(wait + 0.01)
        else:
            self.wake()

    def start(self) -> None:
        self._stop_listening = listen_for_emails(self._queued)
        super().start()

    async def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        await super().stop()

    async def claim(self) -> list[int]:
        return await lease_due(NotificationEmail.filter(failed_at__isnull=True), self.lease, self.room())

    def message_of(self, row: NotificationEmail) -> EmailMessage:
        email = compose(row.kind, row.facts, self.conversation_url(row.conversation_id))
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = row.to_address  # ValueError when it holds CR or LF
        if len(message["To"].addresses) != 1:  # a comma would add recipients
            raise ValueError("the address is not one address")
        message["Subject"] = email.subject
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        # The same id on every attempt, so a receiving server may drop a retried duplicate.
        domain = self.from_address.rpartition("@")[2].strip("> ") or "inbox.invalid"
        message["Message-ID"] = f"<notification-{row.id}-{int(row.created_at.timestamp())}@{domain}>"
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message

    async def perform(self, row: NotificationEmail) -> None:
        if row.kind in NEW_MESSAGE_KINDS:
            # From now on (before the email leaves: a message may come meanwhile), later
            # messages of the conversation collapse into one follow-up email.
            await open_burst(row.user_id, row.conversation_id, datetime.now(timezone.utc) + self.collapse)
        try:
            message = self.message_of(row)
        except (ValueError, TypeError) as error:
            # An address no email can carry (users' addresses are checked when set, but an
            # older row may hold one): no later attempt would do better.
            raise Rejected(f"the email cannot be composed: {error}") from error
        await self.call(self.transport(message))

    async def succeed(self, row: NotificationEmail, result: None) -> None:
        await NotificationEmail.filter(id=row.id).delete()

    async def give_up(self, row: NotificationEmail, reason: str) -> None:
        """Kept, for an operator to see, and never claimed again."""
        await NotificationEmail.filter(id=row.id).update(failed_at=datetime.now(timezone.utc), leased_until=None,
                                                         last_error=reason[:2000])
        log.warning("email outbox: email %s to %r failed for good: %s", row.id, row.to_address, reason)

