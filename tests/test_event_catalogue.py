"""Domain actions publish only events of the one catalogue (issue 12): run against a
hub that captures what it is given, without a server in between, every payload
decodes to a catalogue event, survives the broadcast backend's JSON, and its type says
how it is delivered and resumed."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import fields

import pytest

import models
from inbox import conversations, messages, replay
from inbox.events import CATALOGUE, decode
from schema.ids import pk_of
from subscriptions import direct
from subscriptions.publish import current_hub, use_hub

from conftest import Company, unique


class CapturingHub:
    """Keeps what is published, per topic; never fails."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    async def publish(self, topic: str, payload: dict | list[dict]) -> bool:
        # A list is several events in one message (an action's, in order).
        for one in payload if isinstance(payload, list) else [payload]:
            self.published.append((topic, json.loads(json.dumps(one))))
        return True


@contextmanager
def capturing():
    previous, hub = current_hub(), CapturingHub()
    use_hub(hub)
    try:
        yield hub
    finally:
        use_hub(previous)


def test_every_event_type_says_how_it_is_delivered_and_resumed():
    for name, event_type in CATALOGUE.items():
        assert event_type.delivery in ("direct", "generator"), name
        assert event_type.stream in replay.SEQUENCES, name
    # the delivery engine takes exactly the types that say "direct"
    assert direct.DIRECT_TYPES == {name for name, t in CATALOGUE.items() if t.delivery == "direct"}


async def test_the_actions_of_a_conversation_publish_catalogue_events_only(company: Company):
    admin = await models.User.get(id=pk_of(company.ids["admin"], "User"))
    ann = await models.User.get(id=pk_of(company.ids["ann"], "User"))
    channel = await models.Channel.get(id=pk_of(company.channel_id, "Channel"))
    with capturing() as hub:
        # a contact writes, the admin assigns, ann reads and closes, the admin deletes
        [(message, _)] = [await messages.receive(channel, messages.Inbound(unique("ext"), unique("c"), "C", "hi"))]
        await conversations.assign(admin, message.conversation_id, ann.id)
        await conversations.mark_read(ann, message.conversation_id)
        await conversations.close(ann, message.conversation_id)
        await conversations.reopen(admin, message.conversation_id)
        await conversations.delete(admin, message.conversation_id)

    published = [payload for topic, payload in hub.published if topic.endswith(f".{channel.company_id}")]
    kinds = []
    for payload in published:
        event = decode(payload)
        assert event is not None and type(event) is CATALOGUE[payload["type"]], payload
        assert event.company_id == channel.company_id
        kinds.append(getattr(event, "kind", event.type))
    for expected in ("CREATED", "MESSAGE_ADDED", "ASSIGNED", "READ", "CLOSED", "REOPENED", "DELETED"):
        assert expected in kinds, (expected, kinds)
    assert "message_added" in kinds and "notification_received" in kinds


@pytest.mark.parametrize("event_type", sorted(CATALOGUE))
def test_a_payload_round_trips_through_the_catalogue(event_type):
    cls = CATALOGUE[event_type]
    names = [f.name for f in fields(cls)]  # its instance fields (type, delivery, stream are the class's)
    values = {name: 1 for name in names}
    values.update(audience=(1, 2), kind="ASSIGNED", occurred_at="2026-01-01T00:00:00+00:00")
    event = cls(**{name: values[name] for name in names})
    assert decode(json.loads(json.dumps(event.to_payload()))) == event
