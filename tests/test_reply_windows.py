"""Reply windows (issue 14): Messenger OPEN for 24 hours after the contact's latest
message, then HUMAN_AGENT up to 7 days on channels installed with humanAgentTag (the
reply tagged), then CLOSED; WhatsApp OPEN for 24 hours, then CLOSED; CUSTOM and
TELEGRAM without one. Free text while CLOSED is FORBIDDEN (REPLY_WINDOW_CLOSED) and
neither stored nor sent; a reply queued while OPEN whose window closes before it is
sent ends FAILED."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import models
from inbox import apps
from schema.ids import pk_of

from conftest import Company, message_reaches, unique
from test_messenger import INSTALL, Page, install_page, now_ms, text_message
from test_sending import partner  # noqa: F401 -- a fixture
from test_twilio import e164, install_sender

WINDOW = """
query($id: ID!) { conversation(id: $id) { replyWindow { state closesAt }
  messages(first: 100) { edges { node { id } } } } }"""
SEND = """
mutation($c: ID!, $b: String) { sendMessage(conversationId: $c, body: $b) { id status } }"""
DAY_MS = 24 * 3600 * 1000
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


# --- the rule, at its edges ---------------------------------------------------------------------

@pytest.mark.parametrize("after, tagged, state, closes_after", [
    (timedelta(hours=23, minutes=59, seconds=59), False, "OPEN", timedelta(hours=24)),
    (timedelta(hours=24), False, "CLOSED", None),
    (timedelta(hours=23, minutes=59, seconds=59), True, "OPEN", timedelta(hours=24)),
    (timedelta(hours=24), True, "HUMAN_AGENT", timedelta(days=7)),
    (timedelta(days=6, hours=23, minutes=59, seconds=59), True, "HUMAN_AGENT", timedelta(days=7)),
    (timedelta(days=7), True, "CLOSED", None),
])
def test_messenger_window_at_its_edges(after, tagged, state, closes_after):
    channel = models.Channel(kind=models.ChannelKind.MESSENGER, config={"humanAgentTag": tagged})
    window = apps.window_of(channel, T0, T0 + after)
    assert window.state.value == state
    assert window.closes_at == (T0 + closes_after if closes_after else None)


@pytest.mark.parametrize("after, state", [(timedelta(hours=23, minutes=59, seconds=59), "OPEN"),
                                          (timedelta(hours=24), "CLOSED"), (timedelta(days=3), "CLOSED")])
def test_whatsapp_window_at_its_edges(after, state):
    channel = models.Channel(kind=models.ChannelKind.WHATSAPP, config={})
    assert apps.window_of(channel, T0, T0 + after).state.value == state


@pytest.mark.parametrize("kind", [models.ChannelKind.CUSTOM, models.ChannelKind.TELEGRAM])
def test_custom_and_telegram_have_no_window(kind):
    channel = models.Channel(kind=kind, config={})
    assert apps.window_of(channel, T0 - timedelta(days=30), T0) is None


def test_a_message_time_in_the_future_counts_as_now():
    channel = models.Channel(kind=models.ChannelKind.WHATSAPP, config={})
    window = apps.window_of(channel, T0 + timedelta(days=30), T0)
    assert window.state is apps.WindowState.OPEN
    assert window.closes_at == T0 + timedelta(hours=24)


# --- Messenger through the server ---------------------------------------------------------------

async def install_tagged_page(company: Company, http, server) -> Page:
    page = Page(company, "", "", unique("page"), unique("secret"), unique("verify"), unique("EAAtoken"), http)
    data = await company.admin.data(INSTALL, {"i": {"kind": "MESSENGER", "name": "Tagged page", "messenger": {
        "pageId": page.page_id, "appSecret": page.app_secret, "verifyToken": page.verify_token,
        "pageAccessToken": page.access_token, "humanAgentTag": True}}})
    page.channel_id = data["installChannel"]["channel"]["id"]
    page.url = server.url + data["installChannel"]["webhookPath"]
    return page


async def written_at(page: Page, psid: str, timestamp_ms: int) -> str:
    """The conversation of a contact whose latest message has that Messenger timestamp."""
    await page.deliver(text_message(psid, page.page_id, "Hello?", timestamp=timestamp_ms))
    return next(c["id"] for c in await page.conversations() if c["contact"]["externalId"] == psid)


async def window_of(company: Company, conversation_id: str) -> dict:
    return (await company.admin.data(WINDOW, {"id": conversation_id}))["conversation"]


def ms_iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


async def test_messenger_23_59_59_after_the_contact_is_open_and_replies_as_a_response(company, http, server, fakes):
    page = await install_page(company, http, server)
    psid = unique("psid")
    written = now_ms() - DAY_MS + 1000
    conversation_id = await written_at(page, psid, written)
    window = (await window_of(company, conversation_id))["replyWindow"]
    assert window["state"] == "OPEN"
    assert datetime.fromisoformat(window["closesAt"]) == ms_iso(written) + timedelta(hours=24)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Yes?"}))["sendMessage"]
    await message_reaches(company.admin, reply["id"], "SENT")
    [call] = fakes.seen("messenger_send", psid)
    assert call.json()["messaging_type"] == "RESPONSE"
    assert "tag" not in call.json()


async def test_messenger_24_hours_after_without_the_tag_is_closed_and_refuses_free_text(company, http, server,
                                                                                         fakes):
    page = await install_page(company, http, server)
    psid = unique("psid")
    conversation_id = await written_at(page, psid, now_ms() - DAY_MS)
    before = await window_of(company, conversation_id)
    assert before["replyWindow"] == {"state": "CLOSED", "closesAt": None}
    body = await company.admin.execute(SEND, {"c": conversation_id, "b": "Sorry for the wait"})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["extensions"]["reason"] == "REPLY_WINDOW_CLOSED"
    assert (await window_of(company, conversation_id))["messages"] == before["messages"]
    assert fakes.seen("messenger_send", psid) == []


async def test_messenger_24_hours_after_with_the_tag_is_human_agent_and_the_reply_is_tagged(company, http, server,
                                                                                             fakes):
    page = await install_tagged_page(company, http, server)
    psid = unique("psid")
    written = now_ms() - DAY_MS
    conversation_id = await written_at(page, psid, written)
    window = (await window_of(company, conversation_id))["replyWindow"]
    assert window["state"] == "HUMAN_AGENT"
    assert datetime.fromisoformat(window["closesAt"]) == ms_iso(written) + timedelta(days=7)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Back from the weekend"}))["sendMessage"]
    await message_reaches(company.admin, reply["id"], "SENT")
    [call] = fakes.seen("messenger_send", psid)
    assert call.json()["messaging_type"] == "MESSAGE_TAG"
    assert call.json()["tag"] == "HUMAN_AGENT"
    assert call.json()["message"] == {"text": "Back from the weekend"}


async def test_messenger_7_days_after_even_with_the_tag_is_closed(company, http, server, fakes):
    page = await install_tagged_page(company, http, server)
    psid = unique("psid")
    conversation_id = await written_at(page, psid, now_ms() - 7 * DAY_MS)
    assert (await window_of(company, conversation_id))["replyWindow"]["state"] == "CLOSED"
    assert await company.admin.error_code(SEND, {"c": conversation_id, "b": "Hello?"}) == "FORBIDDEN"
    assert fakes.seen("messenger_send", psid) == []


async def test_the_contacts_next_message_reopens_the_window(company, http, server):
    page = await install_page(company, http, server)
    psid = unique("psid")
    conversation_id = await written_at(page, psid, now_ms() - 3 * DAY_MS)
    assert (await window_of(company, conversation_id))["replyWindow"]["state"] == "CLOSED"
    await page.deliver(text_message(psid, page.page_id, "Anyone there?"))
    assert (await window_of(company, conversation_id))["replyWindow"]["state"] == "OPEN"


async def test_an_older_message_delivered_late_does_not_shorten_the_window(company, http, server):
    page = await install_page(company, http, server)
    psid = unique("psid")
    latest = now_ms() - 1000
    conversation_id = await written_at(page, psid, latest)
    await page.deliver(text_message(psid, page.page_id, "sent earlier", timestamp=latest - 2 * DAY_MS))
    window = (await window_of(company, conversation_id))["replyWindow"]
    assert datetime.fromisoformat(window["closesAt"]) == ms_iso(latest) + timedelta(hours=24)


# --- WhatsApp -----------------------------------------------------------------------------------

async def whatsapp_conversation(company: Company, http, server) -> tuple[str, str]:
    sender = await install_sender(company, http, server)
    number = e164()
    await sender.deliver(sender.inbound(number, "Hola"))
    conversation_id = next(c["id"] for c in await sender.conversations() if c["contact"]["externalId"] == number)
    return conversation_id, number


async def last_wrote(conversation_id: str, ago: timedelta) -> None:
    """Twilio's webhooks carry no time: the message counts from when it came. Moved back here."""
    await models.Conversation.filter(id=pk_of(conversation_id, "Conversation")).update(
        last_inbound_at=datetime.now(timezone.utc) - ago)


async def test_whatsapp_is_open_after_a_message_and_closed_24_hours_later(company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    assert (await window_of(company, conversation_id))["replyWindow"]["state"] == "OPEN"
    await last_wrote(conversation_id, timedelta(hours=24))
    assert (await window_of(company, conversation_id))["replyWindow"] == {"state": "CLOSED", "closesAt": None}
    body = await company.admin.execute(SEND, {"c": conversation_id, "b": "Hola?"})
    assert body["errors"][0]["extensions"] == {"code": "FORBIDDEN", "reason": "REPLY_WINDOW_CLOSED"}
    assert fakes.seen("twilio_send", number) == []


# --- checked again at send time -----------------------------------------------------------------

@pytest.fixture
def sender_paused(server):
    """The server's sender claims nothing until the test lets it."""
    sender = server.server.config.app.app.state.sender

    async def claim_nothing() -> list[int]:
        return []

    sender.claim = claim_nothing

    def resume() -> None:
        if "claim" in vars(sender):
            del sender.claim
        sender.wake()

    yield resume
    resume()


async def test_a_reply_queued_while_open_fails_when_the_window_closed_before_it_was_sent(
        company, http, server, fakes, sender_paused):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Right away"}))["sendMessage"]
    assert reply["status"] == "PENDING"
    await last_wrote(conversation_id, timedelta(hours=24, seconds=1))
    sender_paused()
    failed = await message_reaches(company.admin, reply["id"], "FAILED")
    assert "reply window closed" in failed["failureReason"]
    assert fakes.seen("twilio_send", number) == []


async def test_custom_conversations_have_no_window(company, partner):
    assert (await window_of(company, partner.conversation_id))["replyWindow"] is None
