"""SPEC §3, Messenger: Meta's verification handshake, signed webhooks (messages,
delivery and read receipts) posted as Meta posts them, the contact's profile fetched
in the background, and replies through the Send API with their delivery status.

Signatures are computed here, independently of the server's code."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from conftest import Company, eventually, message_reaches, message_state, subscriptions_live, unique
from fakes import Held

INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } webhookPath } }"""
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"
CONVERSATIONS = """
query($c: ID) {
  inbox(section: UNASSIGNED, channelId: $c, first: 50) {
    edges { node { id contact { name externalId avatarUrl }
      messages(first: 100) { edges { node { id body direction status sentAt senderName } } } } }
  }
}"""
SEND = """
mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id status sentAt } }"""
MESSAGE_UPDATED = "subscription { messageUpdated { id senderName status } }"


@dataclass
class Page:
    """A Messenger channel as Meta knows it: the page, its app secret and tokens."""

    company: Company
    channel_id: str
    url: str
    page_id: str
    app_secret: str
    verify_token: str
    access_token: str
    http: object

    async def post(self, payload: dict | bytes, *, signature: str | None = "valid", path: str | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "valid":
            signature = sign(body, self.app_secret)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await self.http.post(path or self.url, content=body, headers=headers)

    async def deliver(self, *messaging: dict, page_id: str | None = None):
        """Posts one signed webhook carrying these messaging events; it must be taken."""
        response = await self.post(webhook(page_id or self.page_id, *messaging))
        assert response.status_code == 200, response.text
        assert response.text == "EVENT_RECEIVED"
        return response

    async def conversations(self) -> list[dict]:
        data = await self.company.admin.data(CONVERSATIONS, {"c": self.channel_id})
        return [edge["node"] for edge in data["inbox"]["edges"]]

    async def messages(self) -> list[dict]:
        return [edge["node"] for conversation in await self.conversations()
                for edge in conversation["messages"]["edges"]]

    async def contact(self, psid: str) -> dict:
        return next(c["contact"] for c in await self.conversations() if c["contact"]["externalId"] == psid)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def webhook(page_id: str, *messaging: dict) -> dict:
    return {"object": "page", "entry": [{"id": page_id, "time": now_ms(), "messaging": list(messaging)}]}


def text_message(psid: str, page_id: str, text: str = "Hi there", mid: str | None = None,
                 timestamp: int | None = None) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": timestamp or now_ms(),
            "message": {"mid": mid or unique("m_"), "text": text}}


def receipt(kind: str, psid: str, page_id: str, watermark: int, mids: list[str] | None = None) -> dict:
    event = {"watermark": watermark, **({"mids": mids} if mids is not None else {})}
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": now_ms(), kind: event}


async def install_page(company: Company, http, server, app_secret: str | None = None) -> Page:
    page = Page(company, "", "", unique("page"), app_secret or unique("secret"), unique("verify"),
                unique("EAAtoken"), http)
    data = await company.admin.data(INSTALL, {"i": {"kind": "MESSENGER", "name": "Our page", "messenger": {
        "pageId": page.page_id, "appSecret": page.app_secret, "verifyToken": page.verify_token,
        "pageAccessToken": page.access_token}}})
    page.channel_id = data["installChannel"]["channel"]["id"]
    page.url = server.url + data["installChannel"]["webhookPath"]
    return page


@pytest.fixture
async def page(company, http, server) -> Page:
    return await install_page(company, http, server)


async def conversation_with(page: Page, psid: str) -> str:
    await page.deliver(text_message(psid, page.page_id))
    return next(c["id"] for c in await page.conversations() if c["contact"]["externalId"] == psid)


async def sent_reply(page: Page, fakes, conversation_id: str, psid: str, mid: str, body: str = "On it") -> dict:
    """A reply the Send API took under `mid`."""
    fakes.script(psid, (200, {"recipient_id": psid, "message_id": mid}))
    reply = (await page.company.admin.data(SEND, {"c": conversation_id, "b": body}))["sendMessage"]
    return await message_reaches(page.company.admin, reply["id"], "SENT")


def ms_covering(iso: str) -> int:
    """A watermark (ms) at or after that instant."""
    return math.ceil(datetime.fromisoformat(iso).timestamp() * 1000)


# --- verification handshake ---------------------------------------------------------------------

async def test_handshake_with_the_verify_token_echoes_the_challenge(page, http):
    response = await http.get(page.url, params={"hub.mode": "subscribe", "hub.verify_token": page.verify_token,
                                                "hub.challenge": "1158201444"})
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("mode, token", [("subscribe", "wrong"), ("subscribe", None), ("unsubscribe", "right")])
async def test_handshake_with_a_wrong_token_or_mode_is_403(page, http, mode, token):
    params = {"hub.mode": mode, "hub.challenge": "1158201444"}
    if token is not None:
        params["hub.verify_token"] = page.verify_token if token == "right" else "wrong"
    response = await http.get(page.url, params=params)
    assert response.status_code == 403
    assert "1158201444" not in response.text


async def test_handshake_of_an_unknown_channel_is_404(server, http):
    from schema.ids import global_id

    response = await http.get(f"{server.url}/webhooks/messenger/{global_id('Channel', 987654321)}",
                              params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"})
    assert response.status_code == 404


# --- signatures ---------------------------------------------------------------------------------

async def test_signed_message_is_stored_with_its_text_time_and_contact(page):
    # given a message Meta sent at a known time
    psid, sent = unique("psid"), now_ms() - 60_000
    # when Meta posts it, signed
    await page.deliver(text_message(psid, page.page_id, "Is the blue one in stock?", timestamp=sent))
    # then it is an inbound message of a new conversation with that contact
    [conversation] = await page.conversations()
    assert conversation["contact"]["externalId"] == psid
    [message] = [edge["node"] for edge in conversation["messages"]["edges"]]
    assert message["body"] == "Is the blue one in stock?"
    assert message["direction"] == "INBOUND" and message["status"] == "RECEIVED"
    assert datetime.fromisoformat(message["sentAt"]) == datetime.fromtimestamp(sent / 1000, timezone.utc)


@pytest.mark.parametrize("signature", [
    None,                                                      # unsigned
    "sha256=" + "0" * 64,                                      # forged
    "sha1=0123456789abcdef0123456789abcdef01234567",           # the legacy header's format
    "garbage",
])
async def test_webhook_without_a_valid_signature_is_403_and_stores_nothing(page, signature):
    response = await page.post(webhook(page.page_id, text_message(unique("psid"), page.page_id)),
                               signature=signature)
    assert response.status_code == 403
    assert await page.conversations() == []


async def test_webhook_signed_with_another_secret_is_403(page):
    body = json.dumps(webhook(page.page_id, text_message(unique("psid"), page.page_id))).encode()
    response = await page.post(body, signature=sign(body, "someone-elses-secret"))
    assert response.status_code == 403
    assert await page.conversations() == []


async def test_signature_covers_the_raw_body_byte_for_byte(page):
    # given a body signed, then re-serialised with other whitespace (same JSON)
    payload = webhook(page.page_id, text_message(unique("psid"), page.page_id))
    signed = json.dumps(payload).encode()
    sent = json.dumps(payload, indent=2).encode()
    # then the signature no longer matches
    response = await page.post(sent, signature=sign(signed, page.app_secret))
    assert response.status_code == 403
    assert await page.conversations() == []


# --- channels -----------------------------------------------------------------------------------

async def test_webhook_for_an_unknown_channel_is_404(page, server):
    from schema.ids import global_id

    response = await page.post(webhook(page.page_id, text_message(unique("psid"), page.page_id)),
                               path=f"{server.url}/webhooks/messenger/{global_id('Channel', 987654321)}")
    assert response.status_code == 404


async def test_webhook_with_a_malformed_channel_id_is_404(page, server):
    response = await page.post(webhook(page.page_id), path=f"{server.url}/webhooks/messenger/not-an-id")
    assert response.status_code == 404


async def test_webhook_for_a_channel_of_another_kind_is_404(page, company, server):
    response = await page.post(webhook(page.page_id), path=f"{server.url}/webhooks/messenger/{company.channel_id}")
    assert response.status_code == 404


async def test_webhook_for_an_uninstalled_channel_is_404(page):
    await page.company.admin.data(UNINSTALL, {"c": page.channel_id})
    response = await page.post(webhook(page.page_id, text_message(unique("psid"), page.page_id)))
    assert response.status_code == 404


async def test_events_of_another_page_of_the_same_app_go_to_that_pages_channel(company, http, server):
    # given two pages of one Meta app, both installed: Meta posts both to one URL
    first = await install_page(company, http, server)
    second = await install_page(company, http, server, app_secret=first.app_secret)
    psid = unique("psid")
    # when a message to the second page arrives at the first page's URL
    await first.deliver(text_message(psid, second.page_id, "For page two"), page_id=second.page_id)
    # then it is in the second page's inbox
    assert [m["body"] for m in await second.messages()] == ["For page two"]
    assert await first.conversations() == []


async def test_events_of_a_page_not_installed_are_dropped(page):
    await page.deliver(text_message(unique("psid"), "999"), page_id="a-page-we-do-not-have")
    assert await page.conversations() == []


# --- malformed bodies ---------------------------------------------------------------------------

MALFORMED = {
    "not json": b"{this is not json",
    "not an object": b"[1, 2]",
    "object is not page": {"object": "instagram", "entry": []},
    "entry is not a list": {"object": "page", "entry": {"id": "1"}},
    "messaging is not a list": {"object": "page", "entry": [{"id": "P", "messaging": {}}]},
    "no sender": {"object": "page", "entry": [{"id": "P", "messaging": [
        {"timestamp": 1, "message": {"mid": "m_1", "text": "hi"}}]}]},
    "mid is not a string": {"object": "page", "entry": [{"id": "P", "messaging": [
        {"sender": {"id": "1"}, "timestamp": 1, "message": {"mid": ["m_1"], "text": "hi"}}]}]},
    "text is not a string": {"object": "page", "entry": [{"id": "P", "messaging": [
        {"sender": {"id": "1"}, "timestamp": 1, "message": {"mid": "m_1", "text": {"t": 1}}}]}]},
    "timestamp is not a number": {"object": "page", "entry": [{"id": "P", "messaging": [
        {"sender": {"id": "1"}, "timestamp": "yesterday", "message": {"mid": "m_1", "text": "hi"}}]}]},
}


@pytest.mark.parametrize("name", MALFORMED)
async def test_malformed_webhook_is_400_and_stores_nothing(page, name):
    payload = MALFORMED[name]
    if isinstance(payload, dict):
        payload = json.loads(json.dumps(payload).replace('"P"', json.dumps(page.page_id)))
    response = await page.post(payload)
    assert response.status_code == 400
    assert await page.conversations() == []


async def test_webhook_with_one_malformed_event_stores_none_of_its_events(page):
    good = text_message(unique("psid"), page.page_id, "fine")
    bad = {"sender": {"id": unique("psid")}, "timestamp": now_ms(), "message": {"text": "no mid"}}
    response = await page.post(webhook(page.page_id, good, bad))
    assert response.status_code == 400
    assert await page.conversations() == []


async def test_webhook_over_one_mib_is_413(page):
    message = text_message(unique("psid"), page.page_id, "x" * (1024 * 1024))
    response = await page.post(webhook(page.page_id, message))
    assert response.status_code == 413
    assert await page.conversations() == []


# --- idempotency and kinds of messages ----------------------------------------------------------

async def test_same_message_delivered_five_times_is_stored_once(page):
    # given one message, which Meta retries
    event = text_message(unique("psid"), page.page_id, "only once")
    # when it arrives five times, partly at the same moment
    await asyncio.gather(*(page.deliver(event) for _ in range(3)))
    await page.deliver(event)
    await page.deliver(event)
    # then there is one message
    assert [m["body"] for m in await page.messages()] == ["only once"]


async def test_echo_of_our_own_reply_is_not_stored_as_inbound(page):
    psid = unique("psid")
    echo = {"sender": {"id": page.page_id}, "recipient": {"id": psid}, "timestamp": now_ms(),
            "message": {"mid": unique("m_"), "text": "sent from the page", "is_echo": True, "app_id": 1}}
    await page.deliver(echo, text_message(psid, page.page_id, "from the contact"))
    assert [m["body"] for m in await page.messages()] == ["from the contact"]


async def test_attachment_without_text_has_an_empty_body(page):
    # Its file is Message.attachments (tests/test_attachments.py).
    url = "https://scontent.xx.fbcdn.net/v/photo.jpg?oh=1"
    event = {"sender": {"id": unique("psid")}, "recipient": {"id": page.page_id}, "timestamp": now_ms(),
             "message": {"mid": unique("m_"), "attachments": [{"type": "image", "payload": {"url": url}}]}}
    await page.deliver(event)
    assert [m["body"] for m in await page.messages()] == [""]


async def test_events_the_inbox_has_no_use_for_are_accepted_and_ignored(page):
    psid = unique("psid")
    reaction = {"sender": {"id": psid}, "recipient": {"id": page.page_id}, "timestamp": now_ms(),
                "reaction": {"mid": "m_x", "action": "react", "emoji": "👍"}}
    await page.deliver(reaction)
    assert await page.conversations() == []


# --- contact profile ----------------------------------------------------------------------------

async def test_new_contact_is_renamed_from_its_profile(page, fakes):
    # given Meta knows the contact's name and picture
    psid = unique("psid")
    fakes.profiles[psid] = {"first_name": "Jane", "last_name": "Doe",
                            "profile_pic": "https://platform-lookaside.fbsbx.com/jane.jpg"}
    # when the contact's first message arrives
    await page.deliver(text_message(psid, page.page_id))
    # then the profile is fetched with the page's token and renames the contact
    [request] = await fakes.wait_for("messenger_profile", psid)
    assert request.path.endswith(f"/{psid}")
    assert request.query["fields"] == "first_name,last_name,profile_pic"
    assert request.query["access_token"] == page.access_token
    contact = await eventually(lambda: page.contact(psid), lambda c: c["name"] == "Jane Doe")
    assert contact["avatarUrl"] == "https://platform-lookaside.fbsbx.com/jane.jpg"
    [message] = await page.messages()
    assert message["senderName"] == "Jane Doe"


async def test_rename_from_the_profile_is_published_on_message_updated(page, fakes, subscribers):
    psid = unique("psid")
    fakes.profiles[psid] = {"first_name": "Ravi", "last_name": "Kumar"}
    subscriber = await subscribers(page.company.admin.token)
    await subscriber.subscribe(MESSAGE_UPDATED)
    await subscriptions_live(page.company)
    await page.deliver(text_message(psid, page.page_id))
    [message] = await page.messages()
    update = (await subscriber.next_data())["messageUpdated"]
    assert update == {"id": message["id"], "senderName": "Ravi Kumar", "status": "RECEIVED"}


async def test_profile_failure_keeps_messenger_user_and_the_message(page, fakes):
    # given the Graph API refuses the profile
    psid = unique("psid")
    fakes.script(psid, (500, {"error": {"message": "An unexpected error has occurred.", "code": 2}}))
    # when the contact writes
    await page.deliver(text_message(psid, page.page_id, "still here"))
    await fakes.wait_for("messenger_profile", psid)
    # then the message is stored from "Messenger user"
    [message] = await page.messages()
    assert message["body"] == "still here" and message["senderName"] == "Messenger user"
    assert (await page.contact(psid))["name"] == "Messenger user"


async def test_contact_whose_profile_failed_is_renamed_by_a_later_message(page, fakes):
    # given a contact whose profile could not be fetched for a moment
    psid = unique("psid")
    fakes.script(psid, (503, {"error": {"message": "Service temporarily unavailable", "code": 2}}))
    await page.deliver(text_message(psid, page.page_id, "first"))
    await fakes.wait_for("messenger_profile", psid)
    # when the profile is available by its next message
    fakes.profiles[psid] = {"first_name": "Lee", "last_name": ""}
    await page.deliver(text_message(psid, page.page_id, "second"))
    # then it is fetched again and renames the contact
    await fakes.wait_for("messenger_profile", psid, count=2)
    await eventually(lambda: page.contact(psid), lambda c: c["name"] == "Lee")


async def test_profile_the_graph_api_refuses_is_not_asked_for_again_at_each_message(page, fakes):
    # given a contact whose profile the Graph API refuses (no profile: a 400)
    psid = unique("psid")
    await page.deliver(text_message(psid, page.page_id, "one"))
    await fakes.wait_for("messenger_profile", psid)
    # when it writes again, and then another contact writes
    await page.deliver(text_message(psid, page.page_id, "two"))
    other = unique("psid")
    fakes.profiles[other] = {"first_name": "Sam", "last_name": "Lo"}
    await page.deliver(text_message(other, page.page_id, "hello"))
    await eventually(lambda: page.contact(other), lambda c: c["name"] == "Sam Lo")
    # then the refused profile was asked for once; the contact stays "Messenger user"
    assert len(fakes.seen("messenger_profile", psid)) == 1
    assert (await page.contact(psid))["name"] == "Messenger user"


async def test_known_contact_is_not_fetched_again(page, fakes):
    psid = unique("psid")
    fakes.profiles[psid] = {"first_name": "Mia", "last_name": "Wong"}
    await page.deliver(text_message(psid, page.page_id, "one"))
    await eventually(lambda: page.contact(psid), lambda c: c["name"] == "Mia Wong")
    await page.deliver(text_message(psid, page.page_id, "two"))
    assert len(await page.messages()) == 2
    assert len(fakes.seen("messenger_profile", psid)) == 1


# --- replies and their receipts -----------------------------------------------------------------

async def test_reply_goes_through_the_send_api_and_is_sent(page, fakes):
    psid = unique("psid")
    conversation_id = await conversation_with(page, psid)
    # when an agent replies
    reply = (await page.company.admin.data(SEND, {"c": conversation_id, "b": "Yes, in stock!"}))["sendMessage"]
    assert reply["status"] == "PENDING"
    # then the Send API gets the documented request with the page's token
    [request] = await fakes.wait_for("messenger_send", psid)
    assert request.method == "POST" and request.path == "/graph/v19.0/me/messages"
    assert request.query["access_token"] == page.access_token
    assert request.json() == {"recipient": {"id": psid}, "messaging_type": "RESPONSE",
                              "message": {"text": "Yes, in stock!"}}
    await message_reaches(page.company.admin, reply["id"], "SENT")


async def test_delivery_receipt_marks_the_named_and_earlier_replies_delivered(page, fakes):
    # given two replies the Send API took
    psid = unique("psid")
    conversation_id = await conversation_with(page, psid)
    first = await sent_reply(page, fakes, conversation_id, psid, unique("m_first"))
    second_mid = unique("m_second")
    second = await sent_reply(page, fakes, conversation_id, psid, second_mid)
    third = await sent_reply(page, fakes, conversation_id, psid, unique("m_third"))
    # when Meta reports delivery up to the first one's time, and names the second
    await page.deliver(receipt("delivery", psid, page.page_id, ms_covering(first["sentAt"]), [second_mid]))
    # then those two are DELIVERED, the third is still SENT
    assert (await message_state(page.company.admin, first["id"]))["status"] == "DELIVERED"
    assert (await message_state(page.company.admin, second["id"]))["status"] == "DELIVERED"
    assert (await message_state(page.company.admin, third["id"]))["status"] == "SENT"


async def test_read_receipt_marks_replies_up_to_the_watermark_read(page, fakes):
    psid = unique("psid")
    conversation_id = await conversation_with(page, psid)
    first = await sent_reply(page, fakes, conversation_id, psid, unique("m_"))
    later = await sent_reply(page, fakes, conversation_id, psid, unique("m_"))
    await page.deliver(receipt("read", psid, page.page_id, ms_covering(first["sentAt"])))
    assert (await message_state(page.company.admin, first["id"]))["status"] == "READ"
    assert (await message_state(page.company.admin, later["id"]))["status"] == "SENT"
    # and a late delivery receipt does not move it back
    await page.deliver(receipt("delivery", psid, page.page_id, now_ms(), []))
    assert (await message_state(page.company.admin, first["id"]))["status"] == "READ"
    assert (await message_state(page.company.admin, later["id"]))["status"] == "DELIVERED"


async def test_reply_is_sent_then_delivered_then_read(page, fakes, subscribers):
    psid, mid = unique("psid"), unique("m_")
    conversation_id = await conversation_with(page, psid)
    subscriber = await subscribers(page.company.admin.token)
    await subscriber.subscribe("subscription { messageUpdated { id status } }")
    await subscriptions_live(page.company)
    reply = await sent_reply(page, fakes, conversation_id, psid, mid)
    await page.deliver(receipt("delivery", psid, page.page_id, now_ms(), [mid]))
    await page.deliver(receipt("read", psid, page.page_id, now_ms()))
    statuses = [(await subscriber.next_data())["messageUpdated"] for _ in range(3)]
    assert statuses == [{"id": reply["id"], "status": s} for s in ("SENT", "DELIVERED", "READ")]


async def test_a_receipt_that_overtakes_the_send_api_answer_is_applied_once_the_mid_is_recorded(page, fakes):
    psid, mid = unique("psid"), unique("m_")
    conversation_id = await conversation_with(page, psid)
    answer = asyncio.Event()
    fakes.script(psid, Held(answer, 200, {"recipient_id": psid, "message_id": mid}))
    reply = (await page.company.admin.data(SEND, {"c": conversation_id, "b": "Coming"}))["sendMessage"]
    await fakes.wait_for("messenger_send", psid)

    # Meta reports the delivery before the Send API's answer reaches the sender
    await page.deliver(receipt("delivery", psid, page.page_id, now_ms(), [mid]))
    assert (await message_state(page.company.admin, reply["id"]))["status"] == "PENDING"
    answer.set()

    assert (await message_reaches(page.company.admin, reply["id"], "DELIVERED"))["status"] == "DELIVERED"


async def test_send_api_rejection_fails_the_reply_with_the_graph_error(page, fakes):
    psid = unique("psid")
    conversation_id = await conversation_with(page, psid)
    fakes.script(psid, (400, {"error": {"message": "(#551) This person isn't available right now.",
                                        "type": "OAuthException", "code": 551, "fbtrace_id": "A1"}}))
    reply = (await page.company.admin.data(SEND, {"c": conversation_id, "b": "Hello?"}))["sendMessage"]
    failed = await message_reaches(page.company.admin, reply["id"], "FAILED")
    assert "(#551) This person isn't available right now." in failed["failureReason"]
    assert len(fakes.seen("messenger_send", psid)) == 1


async def test_send_api_server_error_is_retried_and_the_reply_sent_once(page, fakes):
    psid = unique("psid")
    conversation_id = await conversation_with(page, psid)
    fakes.script(psid, (500, {"error": {"message": "An unexpected error has occurred.", "code": 2}}))
    reply = (await page.company.admin.data(SEND, {"c": conversation_id, "b": "Take two"}))["sendMessage"]
    await message_reaches(page.company.admin, reply["id"], "SENT")
    # two attempts, of which the second one went through; nothing more
    requests = fakes.seen("messenger_send", psid)
    assert len(requests) == 2
    assert all(r.json()["message"] == {"text": "Take two"} for r in requests)
    assert (await message_state(page.company.admin, reply["id"]))["failureReason"] is None


async def test_a_message_with_a_nul_character_is_stored_without_it(page):
    # given a contact's text holding NUL (PostgreSQL's text cannot store it: it was a 500,
    # which Meta retries until it gives the webhook up)
    psid = unique("psid")
    # when Meta posts it, then it is taken, and stored without the NUL
    await page.deliver(text_message(psid, page.page_id, "Hi\x00 there"))
    [message] = await page.messages()
    assert message["body"] == "Hi there"


async def test_a_nul_character_in_a_utf16_body_is_taken_out_too(page):
    # given a webhook in UTF-16 (JSON may be; its NUL is not written as an escape there)
    body = json.dumps(webhook(page.page_id, text_message(unique("psid"), page.page_id, "Hi\x00 there")),
                      ensure_ascii=False).encode("utf-16")
    # when Meta posts it, then it is taken, and stored without the NUL
    response = await page.post(body)
    assert response.status_code == 200, response.text
    [message] = await page.messages()
    assert message["body"] == "Hi there"
