"""Replies (SPEC §2 "Replies", §3 CUSTOM): `sendMessage`, the durable sender and its
retries, the signed partner callback, `updateChannelMessageStatus` and `messageUpdated`.

Every test installs its own CUSTOM channel whose callbackUrl points at the fake partner
endpoint (tests/fakes.py) under a name no other test uses, so scripted failures and
recorded requests are the test's own. The session server times sends out after 1 s and
retries them for 3 s (conftest.py)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

import models
from channels.outbound import Providers
from inbox import sending
from schema.ids import global_id, pk_of

from conftest import DEADLINE, Client, Company, free_port, subscriptions_live, unique
from fakes import HANG

SEND = """
mutation($c: ID!, $b: String!, $k: String) {
  sendMessage(conversationId: $c, body: $b, clientMessageId: $k) {
    id body direction status failureReason senderName author { id } conversation { id } }
}"""
REPORT = """
mutation($e: String!, $s: DeliveryStatus!, $r: String) {
  updateChannelMessageStatus(externalMessageId: $e, status: $s, failureReason: $r) { id status failureReason }
}"""
MESSAGE = """
query($id: ID!) { node(id: $id) { ... on Message { id status failureReason } } }"""
MESSAGES = """
query($c: ID!) {
  conversation(id: $c) {
    lastMessage { id }
    messages(first: 100) { edges { node {
      id body direction status senderName author { id } } } }
  }
}"""
MESSAGE_UPDATED = """
subscription($c: ID) { messageUpdated(conversationId: $c) { id status failureReason } }"""
MESSAGE_ADDED = """
subscription($c: ID) {
  messageAdded(conversationId: $c) { id body direction status senderName author { id } conversation { id } }
}"""
INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }"""
SHARE = "mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }"


# -- helpers ------------------------------------------------------------------------------


@dataclass
class Partner:
    """A CUSTOM channel with a callbackUrl, and one conversation on it."""

    name: str  # the fake partner endpoint's key
    channel_id: str
    token: str
    client: Client
    contact: str
    conversation_id: str


async def install_partner(company: Company, fakes, callback_url: str | None = None) -> Partner:
    name = unique("partner")
    data = await company.admin.data(INSTALL, {"i": {
        "kind": "CUSTOM", "name": "Partner with callback",
        "custom": {"callbackUrl": callback_url or fakes.callback_url(name)}}})
    channel_id = data["installChannel"]["channel"]["id"]
    token = data["installChannel"]["channelToken"]
    await company.admin.data(SHARE, {"c": channel_id, "u": [company.ids["ann"]]})
    client = Client(company.admin.base_url, token, company.admin.http)
    contact = unique("contact")
    inbound = await company.inbound("hello", contact=contact, partner=client)
    return Partner(name, channel_id, token, client, contact, inbound["conversation"]["id"])


@pytest.fixture
async def partner(company, fakes) -> Partner:
    return await install_partner(company, fakes)


async def send(client: Client, conversation_id: str, body: str = "Thanks, on it!",
               client_message_id: str | None = None) -> dict:
    data = await client.data(SEND, {"c": conversation_id, "b": body, "k": client_message_id})
    return data["sendMessage"]


async def message(client: Client, message_id: str) -> dict:
    return (await client.data(MESSAGE, {"id": message_id}))["node"]


async def settled(client: Client, message_id: str, status: str, deadline: float = DEADLINE) -> dict:
    """Waits, with a deadline, until the message has `status`; returns it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        found = await message(client, message_id)
        if found["status"] == status:
            return found
        if loop.time() > end:
            raise AssertionError(f"message {message_id} stayed {found['status']}, expected {status}")
        await asyncio.sleep(0.02)


async def report(partner: Partner, external_id: str, status: str, reason: str | None = None) -> dict:
    data = await partner.client.data(REPORT, {"e": external_id, "s": status, "r": reason})
    return data["updateChannelMessageStatus"]


async def conversation_messages(client: Client, conversation_id: str) -> dict:
    return (await client.data(MESSAGES, {"c": conversation_id}))["conversation"]


async def updates_until(sub, status: str) -> list[dict]:
    """messageUpdated payloads up to and including the first with `status`."""
    received = []
    while not received or received[-1]["status"] != status:
        received.append((await sub.next_data())["messageUpdated"])
    return received


def partner_bodies(fakes, partner: Partner) -> list[str]:
    return [request.json()["body"] for request in fakes.seen("partner", partner.name)]


# -- sendMessage --------------------------------------------------------------------------


async def test_send_message_returns_pending_without_waiting_for_the_messaging_app(company, partner, fakes):
    # given: the partner does not answer the first attempt
    fakes.script(partner.name, HANG)

    # when
    started = time.monotonic()
    sent = await send(company.ann, partner.conversation_id, "Right away")
    elapsed = time.monotonic() - started

    # then: stored as PENDING and answered before the attempt could even time out
    assert sent["status"] == "PENDING"
    assert sent["direction"] == "OUTBOUND"
    assert sent["failureReason"] is None
    assert elapsed < 1.0
    await fakes.wait_for("partner", partner.name, 1)
    assert (await message(company.ann, sent["id"]))["status"] == "PENDING"
    await settled(company.ann, sent["id"], "SENT")


async def test_reply_taken_by_the_partner_is_sent_with_its_external_id(company, partner, fakes):
    # given
    fakes.script(partner.name, (200, {"externalMessageId": "ext-taken-1"}))

    # when
    sent = await send(company.ann, partner.conversation_id)

    # then: SENT, and the partner's id names it in status reports
    assert (await settled(company.ann, sent["id"], "SENT"))["failureReason"] is None
    assert (await report(partner, "ext-taken-1", "DELIVERED"))["id"] == sent["id"]


async def test_callback_is_the_documented_json_signed_with_the_channel_token(company, partner, fakes):
    # when
    sent = await send(company.ann, partner.conversation_id, "Ünïcode & \"quotes\"\nsecond line")
    [request] = await fakes.wait_for("partner", partner.name, 1)

    # then: X-Inbox-Signature is sha256=<hex HMAC-SHA256 of the raw body with the channel token>
    expected = hmac.new(partner.token.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-inbox-signature"] == f"sha256={expected}"
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    payload = json.loads(request.body)
    assert set(payload) == {"messageId", "conversationId", "recipient", "body", "sentAt"}
    assert payload["messageId"] == sent["id"]
    assert payload["conversationId"] == partner.conversation_id
    assert payload["recipient"] == {"externalId": partner.contact}
    assert payload["body"] == "Ünïcode & \"quotes\"\nsecond line"
    sent_at = datetime.fromisoformat(payload["sentAt"].replace("Z", "+00:00"))
    assert sent_at.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - sent_at) < timedelta(minutes=1)


async def test_sent_reply_is_the_authors_outbound_message_in_the_conversation(company, partner, fakes):
    # when
    sent = await send(company.ann, partner.conversation_id, "Here is your quote")
    await settled(company.ann, sent["id"], "SENT")

    # then
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert conversation["lastMessage"] == {"id": sent["id"]}
    last = conversation["messages"]["edges"][-1]["node"]
    assert last == {"id": sent["id"], "body": "Here is your quote", "direction": "OUTBOUND", "status": "SENT",
                    "senderName": "Ann Agent", "author": {"id": company.ids["ann"]}}
    assert [edge["node"]["direction"] for edge in conversation["messages"]["edges"]] == ["INBOUND", "OUTBOUND"]


async def test_message_added_streams_the_outbound_message(company, partner, subscribers, fakes):
    # given
    sub = await subscribers(company.admin.token)
    await sub.subscribe(MESSAGE_ADDED, {"c": partner.conversation_id})
    await subscriptions_live(company, 1)

    # when
    sent = await send(company.ann, partner.conversation_id, "Streamed reply")

    # then
    added = (await sub.next_data())["messageAdded"]
    assert added == {"id": sent["id"], "body": "Streamed reply", "direction": "OUTBOUND",
                     "status": added["status"], "senderName": "Ann Agent", "author": {"id": company.ids["ann"]},
                     "conversation": {"id": partner.conversation_id}}
    assert added["status"] in ("PENDING", "SENT")  # the row is read when the event goes out


async def test_message_updated_streams_every_status_change(company, partner, subscribers, fakes):
    # given
    fakes.script(partner.name, (200, {"externalMessageId": "ext-stream"}))
    sub = await subscribers(company.ann.token)
    await sub.subscribe(MESSAGE_UPDATED, {"c": partner.conversation_id})
    await subscriptions_live(company, 1)

    # when / then: each change, in order
    sent = await send(company.ann, partner.conversation_id)
    assert await updates_until(sub, "SENT") == [{"id": sent["id"], "status": "SENT", "failureReason": None}]
    await report(partner, "ext-stream", "DELIVERED")
    assert await updates_until(sub, "DELIVERED") == [{"id": sent["id"], "status": "DELIVERED", "failureReason": None}]
    await report(partner, "ext-stream", "READ")
    assert await updates_until(sub, "READ") == [{"id": sent["id"], "status": "READ", "failureReason": None}]


async def test_channel_without_callback_url_cannot_reply(company):
    # given: the company's own CUSTOM channel has no callbackUrl
    inbound = await company.inbound("hello")
    conversation_id = inbound["conversation"]["id"]

    # when
    code = await company.ann.error_code(SEND, {"c": conversation_id, "b": "Can you hear me?"})

    # then: nothing stored
    assert code == "BAD_USER_INPUT"
    conversation = await conversation_messages(company.ann, conversation_id)
    assert [edge["node"]["id"] for edge in conversation["messages"]["edges"]] == [inbound["id"]]
    assert conversation["lastMessage"] == {"id": inbound["id"]}


@pytest.mark.parametrize("body", ["", "   \n", "x" * 4097], ids=["empty", "blank", "4097-chars"])
async def test_empty_or_oversized_reply_is_bad_input(company, partner, fakes, body):
    # when
    code = await company.ann.error_code(SEND, {"c": partner.conversation_id, "b": body})

    # then: nothing stored, nothing sent
    assert code == "BAD_USER_INPUT"
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert len(conversation["messages"]["edges"]) == 1
    assert fakes.seen("partner", partner.name) == []


async def test_reply_of_4096_characters_is_accepted(company, partner, fakes):
    sent = await send(company.ann, partner.conversation_id, "x" * 4096)
    [request] = await fakes.wait_for("partner", partner.name, 1)
    assert request.json()["body"] == "x" * 4096
    await settled(company.ann, sent["id"], "SENT")


async def test_user_without_access_to_the_channel_cannot_reply(company, partner, fakes):
    # when: bob is not a member of the channel
    code = await company.bob.error_code(SEND, {"c": partner.conversation_id, "b": "Sneaky"})

    # then
    assert code == "NOT_FOUND"
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert len(conversation["messages"]["edges"]) == 1
    assert fakes.seen("partner", partner.name) == []


async def test_user_of_another_company_cannot_reply(company, other_company, partner, fakes):
    code = await other_company.admin.error_code(SEND, {"c": partner.conversation_id, "b": "Hello?"})
    assert code == "NOT_FOUND"
    assert fakes.seen("partner", partner.name) == []


# -- clientMessageId ----------------------------------------------------------------------


async def test_retry_with_the_same_client_message_id_is_the_same_message_sent_once(company, partner, fakes):
    # given
    first = await send(company.ann, partner.conversation_id, "Once", client_message_id="cm-1")
    await settled(company.ann, first["id"], "SENT")

    # when: the client did not see the answer and retries
    again = await send(company.ann, partner.conversation_id, "Once", client_message_id="cm-1")

    # then
    assert again["id"] == first["id"]
    assert again["status"] == "SENT"
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert [edge["node"]["id"] for edge in conversation["messages"]["edges"]][1:] == [first["id"]]
    # a later reply goes out after it: the retry queued nothing
    later = await send(company.ann, partner.conversation_id, "Later")
    await settled(company.ann, later["id"], "SENT")
    assert partner_bodies(fakes, partner) == ["Once", "Later"]


async def test_racing_retries_with_the_same_client_message_id_make_one_message_sent_once(company, partner, fakes):
    # when: the same mutation arrives twice at once
    results = await asyncio.gather(*(send(company.ann, partner.conversation_id, "Racing", client_message_id="cm-race")
                                     for _ in range(2)))

    # then
    assert results[0]["id"] == results[1]["id"]
    await settled(company.ann, results[0]["id"], "SENT")
    later = await send(company.ann, partner.conversation_id, "Later")
    await settled(company.ann, later["id"], "SENT")
    assert partner_bodies(fakes, partner) == ["Racing", "Later"]
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert len(conversation["messages"]["edges"]) == 3


async def test_same_client_message_id_from_another_user_is_a_separate_message(company, partner, fakes):
    # when
    ann = await send(company.ann, partner.conversation_id, "From Ann", client_message_id="cm-shared")
    admin = await send(company.admin, partner.conversation_id, "From Ada", client_message_id="cm-shared")

    # then
    assert ann["id"] != admin["id"]
    assert (ann["author"], admin["author"]) == ({"id": company.ids["ann"]}, {"id": company.ids["admin"]})
    await settled(company.ann, ann["id"], "SENT")
    await settled(company.ann, admin["id"], "SENT")
    assert sorted(partner_bodies(fakes, partner)) == ["From Ada", "From Ann"]


# -- updateChannelMessageStatus -----------------------------------------------------------


async def test_status_report_for_an_unknown_external_id_is_not_found(partner):
    code = await partner.client.error_code(REPORT, {"e": "never-given", "s": "DELIVERED"})
    assert code == "NOT_FOUND"


async def test_status_report_of_another_channels_message_is_not_found(company, partner, fakes):
    # given: a message sent through `partner`, and a second partner channel
    fakes.script(partner.name, (200, {"externalMessageId": "ext-theirs"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")
    other = await install_partner(company, fakes)

    # when
    code = await other.client.error_code(REPORT, {"e": "ext-theirs", "s": "READ"})

    # then
    assert code == "NOT_FOUND"
    assert (await message(company.ann, sent["id"]))["status"] == "SENT"


async def test_status_report_with_a_user_token_is_unauthenticated(company, partner, fakes):
    fakes.script(partner.name, (200, {"externalMessageId": "ext-user-token"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")

    code = await company.admin.error_code(REPORT, {"e": "ext-user-token", "s": "READ"})

    assert code == "UNAUTHENTICATED"
    assert (await message(company.ann, sent["id"]))["status"] == "SENT"


@pytest.mark.parametrize("status", ["PENDING", "RECEIVED"])
async def test_partner_cannot_report_pending_or_received(company, partner, fakes, status):
    fakes.script(partner.name, (200, {"externalMessageId": "ext-bad-status"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")

    code = await partner.client.error_code(REPORT, {"e": "ext-bad-status", "s": status})

    assert code == "BAD_USER_INPUT"
    assert (await message(company.ann, sent["id"]))["status"] == "SENT"


async def test_late_delivered_report_does_not_move_read_back(company, partner, fakes):
    # given
    fakes.script(partner.name, (200, {"externalMessageId": "ext-order"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")
    assert (await report(partner, "ext-order", "READ"))["status"] == "READ"

    # when: DELIVERED arrives out of order
    late = await report(partner, "ext-order", "DELIVERED")

    # then
    assert late["status"] == "READ"
    assert (await message(company.ann, sent["id"]))["status"] == "READ"


async def test_failure_reported_after_read_is_ignored(company, partner, fakes):
    # given
    fakes.script(partner.name, (200, {"externalMessageId": "ext-read-fail"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")
    await report(partner, "ext-read-fail", "READ")

    # when
    late = await report(partner, "ext-read-fail", "FAILED", "carrier hiccup")

    # then
    assert late == {"id": sent["id"], "status": "READ", "failureReason": None}
    assert await message(company.ann, sent["id"]) == late


async def test_partner_reports_a_failure_with_its_reason(company, partner, subscribers, fakes):
    # given
    fakes.script(partner.name, (200, {"externalMessageId": "ext-fails-later"}))
    sent = await send(company.ann, partner.conversation_id)
    await settled(company.ann, sent["id"], "SENT")
    sub = await subscribers(company.ann.token)
    await sub.subscribe(MESSAGE_UPDATED, {"c": partner.conversation_id})
    await subscriptions_live(company, 1)

    # when
    reported = await report(partner, "ext-fails-later", "FAILED", "recipient blocked the app")

    # then
    failed = {"id": sent["id"], "status": "FAILED", "failureReason": "recipient blocked the app"}
    assert reported == failed
    assert (await sub.next_data())["messageUpdated"] == failed
    # and nothing moves it on afterwards
    assert (await report(partner, "ext-fails-later", "READ"))["status"] == "FAILED"


# -- the sender: retries, failures, exactly once ------------------------------------------


async def test_server_error_is_retried_and_the_message_delivered_once(company, partner, subscribers, fakes):
    # given
    fakes.script(partner.name, (500, {"error": "try later"}), (200, {"externalMessageId": "ext-recovered"}))
    sub = await subscribers(company.ann.token)
    await sub.subscribe(MESSAGE_UPDATED, {"c": partner.conversation_id})
    await subscriptions_live(company, 1)

    # when
    sent = await send(company.ann, partner.conversation_id, "Retry me")

    # then: PENDING meanwhile (no event until SENT), two requests, one success
    assert await updates_until(sub, "SENT") == [{"id": sent["id"], "status": "SENT", "failureReason": None}]
    assert partner_bodies(fakes, partner) == ["Retry me", "Retry me"]
    assert (await report(partner, "ext-recovered", "DELIVERED"))["id"] == sent["id"]
    assert await updates_until(sub, "DELIVERED") == [{"id": sent["id"], "status": "DELIVERED", "failureReason": None}]
    assert len(fakes.seen("partner", partner.name)) == 2


async def test_rate_limited_reply_is_retried(company, partner, fakes):
    # given
    fakes.script(partner.name, (429, {"error": "slow down"}), (200, {"externalMessageId": "ext-after-429"}))

    # when
    sent = await send(company.ann, partner.conversation_id)

    # then
    await settled(company.ann, sent["id"], "SENT")
    assert len(fakes.seen("partner", partner.name)) == 2
    assert (await report(partner, "ext-after-429", "READ"))["id"] == sent["id"]


async def test_client_error_fails_at_once_with_the_partners_reason(company, partner, subscribers, fakes):
    # given
    fakes.script(partner.name, (400, {"error": "recipient is not reachable on this app"}))
    sub = await subscribers(company.ann.token)
    await sub.subscribe(MESSAGE_UPDATED, {"c": partner.conversation_id})
    await subscriptions_live(company, 1)

    # when
    started = time.monotonic()
    sent = await send(company.ann, partner.conversation_id)

    # then: FAILED on the first answer, published, never retried
    [update] = await updates_until(sub, "FAILED")
    assert time.monotonic() - started < 2.5  # well inside the 3 s retry window
    assert update["id"] == sent["id"]
    assert "recipient is not reachable on this app" in update["failureReason"]
    assert await message(company.ann, sent["id"]) == update
    assert len(fakes.seen("partner", partner.name)) == 1
    assert not await models.Delivery.filter(message_id=pk_of(sent["id"], "Message")).exists()


async def test_timed_out_attempt_is_retried_and_the_next_one_succeeds(company, partner, fakes):
    # given: the first attempt hangs past the 1 s send timeout
    fakes.script(partner.name, HANG, (200, {"externalMessageId": "ext-after-hang"}))

    # when
    sent = await send(company.ann, partner.conversation_id, "Slow partner")

    # then: the hung request and one retry; SENT by the retry
    await settled(company.ann, sent["id"], "SENT")
    assert partner_bodies(fakes, partner) == ["Slow partner", "Slow partner"]
    assert (await report(partner, "ext-after-hang", "DELIVERED"))["id"] == sent["id"]
    # a later reply is the next request: nothing else was queued for the first one
    later = await send(company.ann, partner.conversation_id, "Later")
    await settled(company.ann, later["id"], "SENT")
    assert partner_bodies(fakes, partner) == ["Slow partner", "Slow partner", "Later"]


async def test_persistent_server_errors_fail_after_the_retry_window(company, partner, fakes):
    # given: the partner fails every attempt
    fakes.script(partner.name, *[(503, {"error": "down for maintenance"})] * 50)

    # when
    started = time.monotonic()
    sent = await send(company.ann, partner.conversation_id)

    # then: retried with backoff for the 3 s window, then FAILED saying why
    failed = await settled(company.ann, sent["id"], "FAILED")
    assert time.monotonic() - started >= 3.0
    attempts = len(fakes.seen("partner", partner.name))
    assert attempts >= 3
    assert f"{attempts} attempts" in failed["failureReason"]
    assert "down for maintenance" in failed["failureReason"]
    fakes.scripts.pop(partner.name, None)


async def test_unreachable_callback_is_retried_then_fails(company, fakes):
    # given: nothing listens on the callback's port
    partner = await install_partner(company, fakes, callback_url=f"http://127.0.0.1:{free_port()}/hook")

    # when
    started = time.monotonic()
    sent = await send(company.ann, partner.conversation_id)

    # then
    failed = await settled(company.ann, sent["id"], "FAILED")
    assert time.monotonic() - started >= 3.0
    assert "attempts" in failed["failureReason"]
    assert "network error" in failed["failureReason"]


@pytest.fixture
def server_sender_stopped(server):
    """The session server's own sender claims nothing during the test, as if its process
    had stopped: what happens to the queue is then up to the test's own senders."""
    sender = server.server.config.app.app.state.sender

    async def claim_nothing() -> list[int]:
        return []

    sender.claim = claim_nothing
    yield
    del sender.claim
    sender.wake()


@pytest.fixture
async def fresh_senders(server):
    """Two senders as two freshly started server processes would run them."""
    settings = server.settings
    providers = Providers(settings)
    yield [sending.Sender(providers.deliver, timeout=settings.send_timeout, retry_seconds=settings.send_retry_seconds,
                          backoff_seconds=settings.send_backoff_seconds,
                          per_channel=settings.send_concurrency_per_channel) for _ in range(2)]
    await providers.aclose()


async def queued_replies(company: Company, partner: Partner, bodies: list[str]) -> list[int]:
    """Replies stored PENDING and queued without waking any sender; their Delivery ids."""
    ann = await models.User.get(id=pk_of(company.ids["ann"], "User"))
    conversation_pk = pk_of(partner.conversation_id, "Conversation")
    messages = [await sending.send_message(ann, conversation_pk, body, None) for body in bodies]
    return [(await models.Delivery.get(message_id=row.id)).id for row in messages]


async def claim_when_due(sender: sending.Sender, delivery_id: int) -> list[int]:
    """Claims until the delivery is among the claimed ones (it is due after its backoff)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while delivery_id not in (claimed := await sender.claim()):
        for claimed_id in claimed:  # someone else's reply: hand it on rather than hold its lease
            await sender.attempt(claimed_id)
        if loop.time() > end:
            raise AssertionError(f"delivery {delivery_id} never came due")
        await asyncio.sleep(0.02)
    return claimed


async def test_fresh_sender_resumes_a_pending_reply_left_by_a_stopped_process(
        company, partner, server_sender_stopped, fresh_senders, fakes):
    # given: a reply whose sending process stopped after leasing it (the lease has run out)
    [delivery_id] = await queued_replies(company, partner, ["After restart"])
    message_pk = (await models.Delivery.get(id=delivery_id)).message_id
    await models.Delivery.filter(id=delivery_id).update(
        leased_until=datetime.now(timezone.utc) - timedelta(seconds=1))

    # when: a new process's sender works the queue
    sender = fresh_senders[0]
    claimed = await sender.claim()
    for claimed_id in claimed:
        await sender.attempt(claimed_id)

    # then: sent once, and off the queue
    assert delivery_id in claimed
    await settled(company.ann, global_id("Message", message_pk), "SENT")
    assert partner_bodies(fakes, partner) == ["After restart"]
    assert not await models.Delivery.filter(id=delivery_id).exists()


async def test_two_senders_racing_hand_each_reply_over_once(company, partner, server_sender_stopped,
                                                            fresh_senders, fakes, server):
    # given: PENDING replies in the queue, nobody woken: as many as the channel may have
    # in flight at once (INBOX_SEND_CONCURRENCY_PER_CHANNEL), so that both claims together can take all
    bodies = [f"Queued {n}" for n in range(server.settings.send_concurrency_per_channel)]
    delivery_ids = await queued_replies(company, partner, bodies)

    # when: two senders claim at the same instant, then attempt what each got
    claims = await asyncio.gather(*(sender.claim() for sender in fresh_senders))
    await asyncio.gather(*(sender.attempt(claimed_id)
                           for sender, claimed in zip(fresh_senders, claims) for claimed_id in claimed))

    # then: no reply was handed to both; each went out exactly once
    assert not set(claims[0]) & set(claims[1])
    assert set(delivery_ids) <= set(claims[0]) | set(claims[1])
    conversation = await conversation_messages(company.ann, partner.conversation_id)
    assert [edge["node"]["status"] for edge in conversation["messages"]["edges"][1:]] == ["SENT"] * len(bodies)
    assert sorted(partner_bodies(fakes, partner)) == bodies
    assert not await models.Delivery.filter(id__in=delivery_ids).exists()


async def test_reply_being_attempted_is_not_claimed_by_another_sender(company, partner, server_sender_stopped,
                                                                     fresh_senders, fakes):
    # given: one sender is in the middle of an attempt (the partner has not answered yet)
    fakes.script(partner.name, HANG)
    [delivery_id] = await queued_replies(company, partner, ["In flight"])
    first, second = fresh_senders
    assert delivery_id in await first.claim()
    attempt = asyncio.create_task(first.attempt(delivery_id))
    await fakes.wait_for("partner", partner.name, 1)

    # when: another process's sender works the queue meanwhile
    claimed = await second.claim()

    # then: it leaves that reply alone; once the attempt timed out, the retry is one more request
    assert delivery_id not in claimed
    for claimed_id in claimed:
        await second.attempt(claimed_id)
    await attempt
    retried = await claim_when_due(second, delivery_id)
    for claimed_id in retried:
        await second.attempt(claimed_id)
    assert partner_bodies(fakes, partner) == ["In flight", "In flight"]
    assert not await models.Delivery.filter(id=delivery_id).exists()


async def test_external_id_already_used_on_the_channel_still_sends_the_reply_once(company, partner, fakes):
    # given: the partner answers with an id it also gave an inbound message of the channel
    await company.inbound("earlier", contact=partner.contact, external_id="shared-id", partner=partner.client)
    fakes.script(partner.name, (200, {"externalMessageId": "shared-id"}))

    # when
    sent = await send(company.ann, partner.conversation_id, "Colliding id")

    # then: SENT, and never handed over again
    await settled(company.ann, sent["id"], "SENT")
    later = await send(company.ann, partner.conversation_id, "Later")
    await settled(company.ann, later["id"], "SENT")
    assert partner_bodies(fakes, partner) == ["Colliding id", "Later"]
    assert not await models.Delivery.filter(message_id=pk_of(sent["id"], "Message")).exists()


async def test_message_updated_reaches_only_users_with_access(company, partner, subscribers, fakes):
    # given: bob is not a member of the channel
    ann = await subscribers(company.ann.token)
    bob = await subscribers(company.bob.token)
    await ann.subscribe(MESSAGE_UPDATED)
    await bob.subscribe(MESSAGE_UPDATED)
    await subscriptions_live(company, 2)

    # when
    sent = await send(company.ann, partner.conversation_id)

    # then
    assert (await updates_until(ann, "SENT"))[-1]["id"] == sent["id"]
    assert await bob.nothing_within(0.3)
