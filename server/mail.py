"""Notification emails over SMTP: the transport the email outbox's worker uses
(aiosmtplib), configured by INBOX_SMTP_URL, and starting that worker."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from inbox.mailer import Mailer
from inbox.queue import Rejected, Retryable
from inbox.notifications import queued_email_count
from schema.ids import conversation_url

from .config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    use_tls: bool
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://host[:port]` (STARTTLS when the server offers it; port 25 by default) or
    `smtps://host[:port]` (TLS from the start; port 465), with `user:password@` to log in."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"INBOX_SMTP_URL must be smtp://host:port or smtps://host:port, not {url!r}")
    use_tls = parts.scheme == "smtps"
    return SmtpServer(hostname=parts.hostname, port=parts.port or (465 if use_tls else 25), use_tls=use_tls,
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None)


# Answers about the email itself; others (a refused login, no STARTTLS...) are the
# server's or its configuration's, and may be fixed while the email waits.
_ABOUT_THE_EMAIL = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError)


class SmtpTransport:
    def __init__(self, server: SmtpServer, timeout: float) -> None:
        self.server = server
        self.timeout = timeout

    async def __call__(self, message: EmailMessage) -> None:
        server = self.server
        try:
            await aiosmtplib.send(message, hostname=server.hostname, port=server.port, use_tls=server.use_tls,
                                  username=server.username, password=server.password, timeout=self.timeout)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
            raise (Rejected if codes and all(500 <= code < 600 for code in codes) else Retryable)(reason) from error
        except _ABOUT_THE_EMAIL as error:
            raise (Rejected if 500 <= error.code < 600 else Retryable)(f"{error.code} {error.message}") from error
        except aiosmtplib.SMTPResponseException as error:
            raise Retryable(f"{error.code} {error.message}") from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise Retryable(f"{type(error).__name__}: {error}") from error


async def start_mailer(settings: Settings) -> Mailer | None:
    """The email outbox's worker, started; with no SMTP server configured, None, and the
    emails stay queued (said once, here)."""
    if not settings.smtp_url:
        log.warning("INBOX_SMTP_URL is not set: notification emails stay queued (%s now) until it is",
                    await queued_email_count())
        return None
    server = parse_smtp_url(settings.smtp_url)
    mailer = Mailer(SmtpTransport(server, settings.email_timeout), from_address=settings.email_from,
                    conversation_url=lambda pk: conversation_url(settings.public_url, pk),
                    timeout=settings.email_timeout, collapse_seconds=settings.email_collapse_seconds,
                    backoff_seconds=settings.email_backoff_seconds, retry_seconds=settings.email_retry_seconds)
    mailer.start()  # also resumes what an earlier run left queued
    return mailer
