"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in its own thread, keeping
every email it accepts; tests wait on its arrivals with a deadline. Recipients whose
address starts with `refused` are refused for good (550)."""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

DEADLINE = 10.0


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content().replace("\r\n", "\n")

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


class Mailbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"smtp://127.0.0.1:{port}"
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Condition()
        self._controller: Controller | None = None

    # -- aiosmtpd handler (runs on the server's thread) ---------------------------------

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("refused"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self._lock:
            self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._notify()))
        return "250 Message accepted for delivery"

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    # -- for tests -----------------------------------------------------------------------

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if address.lower() in (a.lower() for a in r.recipients)]

    async def wait_for(self, address: str, count: int = 1, timeout: float = DEADLINE) -> list[Received]:
        """The emails to `address`, once there are at least `count` of them."""
        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.to(address)) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{len(self.to(address))} emails to {address} after {timeout:g} s; "
                                 f"expected {count}") from None
        return self.to(address)
