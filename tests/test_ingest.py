"""Inbound messages that arrive together are stored together (inbox/group_commit.py):
each keeps its own outcome, order and idempotency, a batch costs a fixed number of
SQL statements whatever its size, and a channel uninstalled meanwhile stores nothing."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from conftest import RECEIVE, Company, unique
from test_messenger import install_page, text_message, webhook

CONVERSATION = """
query($c: ID!) { conversation(id: $c) {
  lastMessage { id body }
  messages(first: 100) { edges { node { id body } } }
  events { kind message { id } } } }"""


async def _channel(company: Company):
    import models
    from schema.ids import pk_of

    return await models.Channel.get(id=pk_of(company.channel_id, "Channel"))


def _inbound(contact: str, body: str, external_id: str | None = None):
    from inbox import messages

    return messages.Inbound(external_message_id=external_id or unique("m"), sender_external_id=contact,
                            sender_name=f"Contact {contact}", body=body)


async def _statements(count_queries, company: Company, messages_count: int) -> int:
    from inbox import messages

    channel = await _channel(company)
    # New and known contacts alike: every message after the first two comes from one of them.
    contacts = [unique("contact"), unique("contact")]
    await messages.receive_all([(channel, _inbound(contacts[0], "known"))])
    count_queries.count = 0
    await messages.receive_all([(channel, _inbound(contacts[i % 2] if i > 1 else unique("new"), f"m{i}"))
                                for i in range(messages_count)])
    return count_queries.count


async def test_a_batch_runs_a_fixed_number_of_statements_whatever_its_size(company, count_queries):
    # given messages that arrive together, five then twenty-five of them (the fewest of
    # three tries: background work of the server, such as the send queue's poll, logs
    # its statements to the same counter)
    few = min([await _statements(count_queries, company, 5) for _ in range(3)])
    many = min([await _statements(count_queries, company, 25) for _ in range(3)])
    # then both batches ran as many statements: none per message
    assert few == many, (few, many)
    assert many <= 12, many


async def test_a_message_delivered_twice_in_one_batch_is_stored_once(company):
    from inbox import messages

    channel = await _channel(company)
    contact, external_id = unique("contact"), unique("m")
    # when one batch carries the same message twice, around another one
    first, other, again = await messages.receive_all([
        (channel, _inbound(contact, "once", external_id)), (channel, _inbound(contact, "other")),
        (channel, _inbound(contact, "once", external_id))])
    # then the first delivery stored it, the second got the same message
    assert (first.created, other.created, again.created) == (True, True, False)
    assert again.message.id == first.message.id
    data = await company.admin.data(CONVERSATION, {"c": _global("Conversation", first.message.conversation_id)})
    assert [e["node"]["body"] for e in data["conversation"]["messages"]["edges"]] == ["once", "other"]


def _global(type_name: str, pk: int) -> str:
    from schema.ids import global_id

    return global_id(type_name, pk)


async def test_concurrent_partner_messages_each_get_their_own_message_in_order(company):
    # given twenty messages from three contacts pushed at the same moment
    contacts = [unique("contact") for _ in range(3)]
    sent = await asyncio.gather(*(company.inbound(f"message {i}", contact=contacts[i % 3]) for i in range(20)))
    # then each got its own message, in its contact's conversation
    assert len({message["id"] for message in sent}) == 20
    by_conversation: dict[str, list[dict]] = {}
    for message in sent:
        by_conversation.setdefault(message["conversation"]["id"], []).append(message)
    assert len(by_conversation) == 3
    for conversation_id, pushed in by_conversation.items():
        data = (await company.admin.data(CONVERSATION, {"c": conversation_id}))["conversation"]
        stored = [edge["node"] for edge in data["messages"]["edges"]]
        # every message once, ids (cursors) in order, the latest one the conversation's last message
        assert sorted(m["id"] for m in stored) == sorted(m["id"] for m in pushed)
        assert data["lastMessage"]["id"] == stored[-1]["id"]
        kinds = [event["kind"] for event in data["events"]]
        assert kinds == ["CREATED"] + ["MESSAGE_ADDED"] * len(pushed), kinds


async def test_messages_of_one_webhook_are_stored_in_the_order_meta_sent_them(company, http, server):
    page = await install_page(company, http, server)
    psid = unique("psid")
    # when one webhook carries three messages of one contact
    await page.deliver(*(text_message(psid, page.page_id, f"part {i}") for i in range(3)))
    # then they are stored in that order
    assert [m["body"] for m in await page.messages()] == ["part 0", "part 1", "part 2"]


async def test_webhook_for_a_channel_uninstalled_by_another_process_is_404_and_stores_nothing(
        company, http, server):
    import models
    from schema.ids import pk_of

    page = await install_page(company, http, server)
    await page.deliver(text_message(unique("psid"), page.page_id, "before"))  # this process knows the channel
    # given another process uninstalls the channel (this one is not told)
    await models.Channel.filter(id=pk_of(page.channel_id, "Channel")).update(
        uninstalled_at=datetime.now(timezone.utc))
    # when Meta posts a message for it
    response = await page.post(webhook(page.page_id, text_message(unique("psid"), page.page_id, "after")))
    # then it is refused and not stored
    assert response.status_code == 404
    assert await models.Message.filter(channel_id=pk_of(page.channel_id, "Channel"), body="after").count() == 0


async def test_the_same_partner_message_pushed_concurrently_is_one_message(company):
    external_id = unique("m")
    variables = {"input": {"externalMessageId": external_id, "sender": {"externalId": "c1", "name": "C"},
                           "body": "only once"}}
    # when a partner pushes one message five times at once
    answers = await asyncio.gather(*(company.partner.data(RECEIVE, variables) for _ in range(5)))
    # then every answer is the same message
    assert len({answer["receiveChannelMessage"]["id"] for answer in answers}) == 1


def _on_sqlite() -> bool:
    from inbox import sql

    return not sql.is_postgres()


async def test_a_batch_is_one_hand_off_to_sqlites_thread(company, monkeypatch):
    import asyncio

    import aiosqlite

    from inbox import messages

    if not _on_sqlite():
        return  # PostgreSQL: asyncpg's own protocol, no thread
    channel = await _channel(company)
    contact = unique("contact")
    await messages.receive_all([(channel, _inbound(contact, "first"))])
    hand_offs = []
    real = aiosqlite.Connection._execute

    def counted(self, fn, *args, **kwargs):
        # The batch's own: a background worker of the app may hand a statement off meanwhile.
        if asyncio.current_task().get_name() == "group-commit":
            hand_offs.append(fn)
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    # when a batch of ten messages arrives into an existing conversation
    received = await messages.receive_all([(channel, _inbound(contact, f"m{i}")) for i in range(10)])
    monkeypatch.undo()
    # then the whole transaction (BEGIN, every statement of the batch, COMMIT) was one
    # hand-off to SQLite's thread, not one per statement
    assert all(one.created for one in received)
    assert len(hand_offs) == 1, hand_offs


async def test_a_batch_that_waits_for_something_else_is_stored_once_the_usual_way(company, monkeypatch):
    import asyncio

    from inbox import messages, notes

    channel = await _channel(company)
    contact = unique("contact")
    real = notes.on_messages

    async def waits(found):
        await asyncio.sleep(0)  # not a statement: no longer in one hand-off
        return await real(found)

    monkeypatch.setattr(notes, "on_messages", waits)
    # when a batch's work waits for something besides its statements
    first, second = await messages.receive_all([(channel, _inbound(contact, "one")),
                                                (channel, _inbound(contact, "two"))])
    # then it is stored once, the usual way: each message and event once
    data = await company.admin.data(CONVERSATION, {"c": _global("Conversation", first.message.conversation_id)})
    assert [e["node"]["body"] for e in data["conversation"]["messages"]["edges"]] == ["one", "two"]
    assert [e["kind"] for e in data["conversation"]["events"]] == ["CREATED", "MESSAGE_ADDED", "MESSAGE_ADDED"]
    assert data["conversation"]["lastMessage"]["id"] == _global("Message", second.message.id)


async def _poison(on: bool) -> None:
    """A trigger that fails the insert of any message whose body is 'poison', as a
    concurrent duplicate from another process would (an integrity error)."""
    from inbox import sql

    if sql.is_postgres():
        if on:
            await sql.execute("CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN"
                              " IF NEW.body = 'poison' THEN RAISE unique_violation USING MESSAGE = 'poison'; END IF;"
                              " RETURN NEW; END $$ LANGUAGE plpgsql")
            await sql.execute("CREATE TRIGGER poison BEFORE INSERT ON message FOR EACH ROW EXECUTE FUNCTION poison()")
        else:
            await sql.execute("DROP TRIGGER poison ON message")
    elif on:
        await sql.execute("CREATE TRIGGER poison BEFORE INSERT ON message WHEN NEW.body = 'poison'"
                          " BEGIN SELECT RAISE(ABORT, 'poison'); END")
    else:
        await sql.execute("DROP TRIGGER poison")


async def test_a_batch_whose_one_message_fails_stores_the_others(company):
    import asyncio

    from tortoise.exceptions import IntegrityError

    from inbox import messages

    channel = await _channel(company)
    contact = unique("contact")
    await messages.receive(channel, _inbound(contact, "before"))
    await _poison(True)
    try:
        # when three messages arrive together and one of them cannot be stored
        outcomes = await asyncio.gather(*(messages.receive(channel, _inbound(contact, body))
                                          for body in ("a", "poison", "b")), return_exceptions=True)
    finally:
        await _poison(False)
    # then that one fails alone, and the others are stored, each once
    assert isinstance(outcomes[1], IntegrityError), outcomes
    assert [created for _, created in (outcomes[0], outcomes[2])] == [True, True]
    data = await company.admin.data(CONVERSATION, {"c": _global("Conversation", outcomes[0][0].conversation_id)})
    assert [e["node"]["body"] for e in data["conversation"]["messages"]["edges"]] == ["before", "a", "b"]
    assert [e["kind"] for e in data["conversation"]["events"]] == ["CREATED"] + ["MESSAGE_ADDED"] * 3


async def test_a_partner_message_into_a_known_conversation_is_a_fixed_number_of_statements(company, count_queries):
    from test_cost import fewest_statements

    contact = unique("contact")
    first = await company.inbound("first", contact=contact)

    async def one_more():
        count_queries.statements.clear()
        answer = await company.inbound("again", contact=contact)
        # the answer's conversation is the one the message went into, as it left it
        assert answer["conversation"] == {"id": first["conversation"]["id"], "status": "OPEN"}
        assert answer["senderName"] == f"Contact {contact}"

    # then a message into an existing conversation, with its answer (its conversation and
    # sender included: not read again), is a fixed number of statements: the batch's
    # (members, stored ids, contact and conversation, insert, conversation update, links,
    # events, notification toggles, notifications; PostgreSQL: and the company's order lock)
    statements = await fewest_statements(count_queries, one_more)
    assert statements <= (9 if _on_sqlite() else 10), count_queries.statements
