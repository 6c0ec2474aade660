"""Live `messageAdded` streams, in id order, through a window of the company's latest
messages shared by a process's subscribers (subscriptions/message_order.py): taken from
an event that carries its message when nothing can be missing before it, else read from
the database. These tests pin what that may and may not hand a viewer;
tests/test_scale.py proves the order across processes."""
from __future__ import annotations

import inbox.transaction
from conftest import Client, subscriptions_live, unique
from subscriptions.message_order import WINDOW, CompanyMessages

MESSAGE_ADDED = """
subscription($c: ID) { messageAdded(conversationId: $c) { id body conversation { id } } }"""
INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }"""


async def test_messages_read_with_a_later_event_stay_within_the_viewers_channels(company, subscribers):
    # given: a second channel that ann is not a member of, and ann subscribed to everything
    data = await company.admin.data(INSTALL, {"i": {"kind": "CUSTOM", "name": "Not ann's"}})
    other_partner = Client(company.partner.base_url, data["installChannel"]["channelToken"], company.partner.http)
    ann = await subscribers(company.ann.token)
    await ann.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)

    # when: messages alternate between her channel and the other one
    first = await company.inbound("hers 1")
    await company.inbound("not hers 1", partner=other_partner)
    await company.inbound("not hers 2", partner=other_partner)
    second = await company.inbound("hers 2")

    # then: she gets hers only, though her second one's read spans the others
    assert [(await ann.next_data())["messageAdded"]["id"] for _ in range(2)] == [first["id"], second["id"]]
    assert await ann.nothing_within(0.2)


async def test_subscriber_further_behind_than_the_shared_window_gets_its_messages(company, subscribers):
    # given: ann following one conversation, and the admin following the whole company
    # (whose reads move the shared window on)
    contact = unique("followed")
    followed = await company.inbound("followed", contact=contact)
    ann = await subscribers(company.ann.token)
    await ann.subscribe(MESSAGE_ADDED, {"c": followed["conversation"]["id"]})
    admin = await subscribers(company.admin.token)
    await admin.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)

    # when: more messages than the window keeps arrive elsewhere, then one in her conversation
    for i in range(WINDOW + 5):
        await company.inbound(f"elsewhere {i}", contact="busy")
        await admin.next_data()
    latest = await company.inbound("followed again", contact=contact)

    # then: she gets exactly that one
    assert (await ann.next_data())["messageAdded"]["id"] == latest["id"]
    assert await ann.nothing_within(0.2)


def _counting_reads(monkeypatch) -> list:
    reads = []
    original = CompanyMessages._read

    async def counted(self, after, through, event):
        reads.append((after, through))
        return await original(self, after, through, event)

    monkeypatch.setattr(CompanyMessages, "_read", counted)
    return reads


async def test_inbound_messages_reach_subscribers_from_their_events_without_a_read(company, subscribers,
                                                                                     monkeypatch):
    # given: ann subscribed to everything, live
    ann = await subscribers(company.ann.token)
    await ann.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)
    reads = _counting_reads(monkeypatch)

    # when: two messages arrive one after the other
    first = await company.inbound("one")
    second = await company.inbound("two")

    # then: she gets both, whole, and the database was not read for them
    got = [(await ann.next_data())["messageAdded"] for _ in range(2)]
    assert got == [{"id": first["id"], "body": "one", "conversation": {"id": first["conversation"]["id"]}},
                   {"id": second["id"], "body": "two", "conversation": {"id": second["conversation"]["id"]}}]
    assert reads == []


async def test_a_message_whose_event_was_lost_arrives_with_the_next_one(company, subscribers, monkeypatch):
    # given: ann subscribed to everything, live, and the next message's events lost on the way
    ann = await subscribers(company.ann.token)
    await ann.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)
    publish = inbox.transaction.publish
    lost = []

    async def losing_once(events):
        if not lost:
            lost.append(events)
            return
        await publish(events)

    monkeypatch.setattr(inbox.transaction, "publish", losing_once)
    reads = _counting_reads(monkeypatch)

    # when: that message, then another whose event says a message of the company came before it
    unheard = await company.inbound("unheard")
    heard = await company.inbound("heard")

    # then: the later event is not taken alone: both are read, in order
    assert [(await ann.next_data())["messageAdded"]["id"] for _ in range(2)] == [unheard["id"], heard["id"]]
    assert len(reads) == 1
    assert await ann.nothing_within(0.2)
