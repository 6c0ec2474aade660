"""Publishing events after commit through the process's hub."""
from __future__ import annotations

import logging

from inbox.events import _Event, company_topic

log = logging.getLogger(__name__)

_hub = None


def use_hub(hub) -> None:
    global _hub
    _hub = hub


def current_hub():
    return _hub


async def publish(events: list[_Event]) -> None:
    """Never raises: the rows are committed, and subscribers that may have missed an
    event are ended by the hub so that they resume with `after`."""
    if _hub is None:
        return
    # One message per topic for the whole action, its events in their order: an inbound
    # message makes a dozen (messageAdded, conversationChanged, a notification per member).
    topics: dict[str, list[dict]] = {}
    for event in events:
        topics.setdefault(company_topic(event.company_id), []).append(event.to_payload())
    for topic, payloads in topics.items():
        await _hub.publish(topic, payloads[0] if len(payloads) == 1 else payloads)
