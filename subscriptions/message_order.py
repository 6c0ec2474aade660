"""Live `messageAdded` in id order, whichever server process committed each message.

Every process publishes after its own commit, so the events of two processes may reach
a subscriber in another order than their ids: process A commits message 5, process B
commits 6 and publishes first. Yielding 6 and then 5 would give the client cursor 6
before 5, and a client that reconnects then with `after: 6` would never get 5. So an
event is a signal, not the item: message ids commit in id order within a company
(inbox/messages.py), hence when the event of message N arrives every message of the
company up to N is stored, and the subscription yields those in (last, N] that its
viewer may see, read from the database in id order; later events at or below its last
id are done already.

The reads are shared: per process and company, one window of the latest messages,
extended per new event, serves every local subscriber of the company. An event that
carries its message and says nothing of the company lies between `follows` and it (an
inbound message's, inbox/messages.py) extends a window that holds everything up to
`follows` without a query; any other extends it by one query."""
from __future__ import annotations

import asyncio
import bisect
import weakref

import models
from inbox import sections

from inbox.events import MessageAdded, message_of

# Messages a window keeps: a subscriber further behind than that reads its own.
WINDOW = 100
_OWN_READ_BATCH = 500

# A message as read, with the members of its channel at the time.
_Read = tuple[models.Message, tuple[int, ...]]


def _id(read: _Read) -> int:
    return read[0].id


class CompanyMessages:
    """The company's latest messages as this process read them: the window holds every
    message with an id in (floor, through] (of a conversation not deleted, on a channel
    still installed) with its channel's members at the time."""

    def __init__(self, company_id: int) -> None:
        self.company_id = company_id
        self._window: list[_Read] = []
        self._floor = 0
        self._through: int | None = None
        self._reading = asyncio.Lock()

    async def added(self, viewer: models.User, conversation_pk: int | None, after: int,
                    event: MessageAdded) -> list[models.Message]:
        """The messages with an id in (after, event's message] that the viewer may see
        (of one conversation, when given), in id order."""
        through = event.message_id
        if not self._covers(after, through):
            async with self._reading:
                # Another subscriber may have read it while this one waited.
                if not self._covers(after, through):
                    await self._read_through(after, through, event)
                    if self._covers(after, through):
                        found = self._visible(viewer, conversation_pk, after, through)
                        self._trim()
                        return found
        if self._covers(after, through):
            return self._visible(viewer, conversation_pk, after, through)
        # Further behind than the window (its channels or conversation were quiet while
        # the company was busy): a read of its own, of what it may see only.
        found = []
        while True:
            rows = await sections.replay_messages(viewer, after, conversation_pk, _OWN_READ_BATCH, through=through)
            found += rows
            if len(rows) < _OWN_READ_BATCH:
                return found
            after = rows[-1].id

    def _covers(self, after: int, through: int) -> bool:
        return self._through is not None and self._floor <= after and through <= self._through

    def _visible(self, viewer: models.User, conversation_pk: int | None, after: int,
                 through: int) -> list[models.Message]:
        start = bisect.bisect_right(self._window, after, key=_id)
        end = bisect.bisect_right(self._window, through, key=_id)
        return [row for row, audience in self._window[start:end]
                if conversation_pk in (None, row.conversation_id) and (viewer.is_admin or viewer.id in audience)]

    async def _read_through(self, after: int, through: int, event: MessageAdded) -> None:
        if self._through is None or after > self._through:
            # Nothing read yet, or nothing read is needed any more: start from here.
            carried = _carried(after, event)
            self._window = carried if carried is not None else await self._read(after, through, event)
            self._floor, self._through = after, through
        elif self._floor <= after:
            carried = _carried(self._through, event)
            self._window += carried if carried is not None else await self._read(self._through, through, event)
            self._through = through

    async def _read(self, after: int, through: int, event: MessageAdded) -> list[_Read]:
        rows = await models.Message.filter(company_id=self.company_id, id__gt=after, id__lte=through,
                                           conversation__deleted_at__isnull=True,
                                           channel__uninstalled_at__isnull=True).order_by("id")
        # The event names its channel's members; other channels (messages whose own
        # events are late or lost) are looked up.
        audiences: dict[int, list[int]] = {event.channel_id: list(event.audience)}
        others = {row.channel_id for row in rows} - audiences.keys()
        if others:
            audiences.update({channel_id: [] for channel_id in others})
            members = await models.ChannelMember.filter(channel_id__in=others).values_list("channel_id", "user_id")
            for channel_id, user_id in members:
                audiences[channel_id].append(user_id)
        frozen = {channel_id: tuple(users) for channel_id, users in audiences.items()}
        return [(row, frozen[row.channel_id]) for row in rows]

    def _trim(self) -> None:
        excess = len(self._window) - WINDOW
        if excess > 0:
            self._floor = self._window[excess - 1][0].id
            del self._window[:excess]


def _carried(after: int, event: MessageAdded) -> list[_Read] | None:
    """The company's messages in (after, event's message] without a read, when the event
    says that its own message is the only one: it carries the message, and its writer
    knew every message of the company up to `follows` (inbox/messages.py). Else None."""
    if event.message is None or event.follows is None or event.follows > after:
        return None
    return [(message_of(event.message), event.audience)]


_companies: weakref.WeakValueDictionary[int, CompanyMessages] = weakref.WeakValueDictionary()


def company_messages(company_id: int) -> CompanyMessages:
    """This process's window of the company, shared while any subscription holds it."""
    window = _companies.get(company_id)
    if window is None:
        window = _companies[company_id] = CompanyMessages(company_id)
    return window
