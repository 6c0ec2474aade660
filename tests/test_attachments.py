"""Attachments (issue 14), in and out on every messaging app: Messenger's attachments,
Twilio's media, a partner's; replies with files by URL (Messenger: one Send API call per
file after the text; Twilio: one message with MediaUrl; a partner: `attachments` in the
callback's JSON), each part sent once even when a later one is retried; the bounds on
what a user gives; notes show the files as links. Telegram's are in test_telegram.py."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from conftest import message_reaches, unique
from test_messenger import install_page, now_ms
from test_notes import link, notes_of
from test_reply_windows import last_wrote, whatsapp_conversation
from test_sending import install_partner
from test_twilio import e164, install_sender

MESSAGES = """
query($id: ID!) { conversation(id: $id) { messages(first: 100) { edges { node { id body direction
  attachments { kind url name mimeType } } } } } }"""
SEND = """
mutation($c: ID!, $b: String, $a: [AttachmentInput!], $k: String) {
  sendMessage(conversationId: $c, body: $b, attachments: $a, clientMessageId: $k) {
    id status body attachments { kind url name mimeType } } }"""
RECEIVE = """
mutation($input: ReceiveMessageInput!) {
  receiveChannelMessage(input: $input) { id body attachments { kind url name } conversation { id } } }"""
PHOTO = {"kind": "IMAGE", "url": "https://cdn.example/photo.jpg"}
MANUAL = {"kind": "FILE", "url": "https://cdn.example/manual.pdf", "name": "manual.pdf"}


async def messages(company, conversation_id: str) -> list[dict]:
    data = await company.admin.data(MESSAGES, {"id": conversation_id})
    return [edge["node"] for edge in data["conversation"]["messages"]["edges"]]


# --- inbound ------------------------------------------------------------------------------------

async def test_messenger_attachments_come_in_as_attachments_with_their_urls(company, http, server):
    page = await install_page(company, http, server)
    psid = unique("psid")
    files = [{"type": kind, "payload": {"url": f"https://scontent.xx.fbcdn.net/{kind}?oh=1"}}
             for kind in ("image", "video", "audio", "file")]
    files.append({"type": "location", "payload": {"coordinates": {"lat": 52.5, "long": 13.4}}})
    await page.deliver({"sender": {"id": psid}, "recipient": {"id": page.page_id}, "timestamp": now_ms(),
                        "message": {"mid": unique("m_"), "text": "see these", "attachments": files}})
    [conversation] = await page.conversations()
    [message] = await messages(company, conversation["id"])
    assert message["body"] == "see these\n[location] 52.5,13.4"
    assert [(a["kind"], a["url"]) for a in message["attachments"]] == [
        ("IMAGE", "https://scontent.xx.fbcdn.net/image?oh=1"), ("VIDEO", "https://scontent.xx.fbcdn.net/video?oh=1"),
        ("AUDIO", "https://scontent.xx.fbcdn.net/audio?oh=1"), ("FILE", "https://scontent.xx.fbcdn.net/file?oh=1")]


async def test_twilio_media_come_in_as_attachments_with_their_types(company, http, server):
    sender = await install_sender(company, http, server)
    base = f"https://api.twilio.com/2010-04-01/Accounts/{sender.account_sid}/Messages/MM1/Media"
    await sender.deliver(sender.inbound(e164(), "two files", NumMedia="2", MediaContentType0="image/jpeg",
                                        MediaUrl0=f"{base}/ME1", MediaContentType1="application/pdf",
                                        MediaUrl1=f"{base}/ME2"))
    [message] = await sender.messages()
    [conversation] = await sender.conversations()
    [stored] = await messages(company, conversation["id"])
    assert message["body"] == "two files"
    assert stored["attachments"] == [
        {"kind": "IMAGE", "url": f"{base}/ME1", "name": None, "mimeType": "image/jpeg"},
        {"kind": "FILE", "url": f"{base}/ME2", "name": None, "mimeType": "application/pdf"}]


async def test_a_partner_may_push_a_message_that_is_only_files(company):
    received = (await company.partner.data(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": unique("c"), "name": "Bo"}, "body": "",
        "attachments": [PHOTO, MANUAL]}}))["receiveChannelMessage"]
    assert received["body"] == ""
    assert received["attachments"] == [{"kind": "IMAGE", "url": PHOTO["url"], "name": None},
                                       {"kind": "FILE", "url": MANUAL["url"], "name": "manual.pdf"}]


@pytest.mark.parametrize("body, files", [
    ("", None),
    ("", []),
    ("hi", [{"kind": "IMAGE", "url": "javascript:alert(1)"}]),
    ("hi", [{"kind": "IMAGE", "url": "ftp://files.example/a.jpg"}]),
    ("hi", [PHOTO] * 11),
    ("hi", [{"kind": "FILE", "url": "https://x.example/" + "a" * 2100}]),
])
async def test_a_partners_message_without_content_or_with_bad_files_is_bad_input(company, body, files):
    contact = unique("c")
    code = await company.partner.error_code(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": contact, "name": "Bo"}, "body": body,
        "attachments": files}})
    assert code == "BAD_USER_INPUT"


# --- outbound -----------------------------------------------------------------------------------

async def messenger_conversation(company, http, server) -> tuple[str, str]:
    page = await install_page(company, http, server)
    psid = unique("psid")
    await page.deliver({"sender": {"id": psid}, "recipient": {"id": page.page_id}, "timestamp": now_ms(),
                        "message": {"mid": unique("m_"), "text": "hi"}})
    return (await page.conversations())[0]["id"], psid


async def test_messenger_sends_the_text_then_one_call_per_file(company, http, server, fakes):
    conversation_id, psid = await messenger_conversation(company, http, server)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Here you go", "a": [PHOTO, MANUAL]}))[
        "sendMessage"]
    assert reply["attachments"] == [{**PHOTO, "name": None, "mimeType": None}, {**MANUAL, "mimeType": None}]
    await message_reaches(company.admin, reply["id"], "SENT")
    sent = [call.json()["message"] for call in fakes.seen("messenger_send", psid)]
    assert sent == [{"text": "Here you go"},
                    {"attachment": {"type": "image", "payload": {"url": PHOTO["url"], "is_reusable": False}}},
                    {"attachment": {"type": "file", "payload": {"url": MANUAL["url"], "is_reusable": False}}}]


async def test_a_reply_of_files_only_has_an_empty_body_and_sends_no_text(company, http, server, fakes):
    conversation_id, psid = await messenger_conversation(company, http, server)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "a": [PHOTO]}))["sendMessage"]
    assert reply["body"] == ""
    await message_reaches(company.admin, reply["id"], "SENT")
    assert [call.json()["message"] for call in fakes.seen("messenger_send", psid)] == [
        {"attachment": {"type": "image", "payload": {"url": PHOTO["url"], "is_reusable": False}}}]


async def test_a_part_that_is_retried_never_sends_the_earlier_parts_again(company, http, server, fakes):
    conversation_id, psid = await messenger_conversation(company, http, server)
    # the text goes through, the photo's first try fails with 500, its retry goes through
    fakes.script(psid, (200, {"recipient_id": psid, "message_id": "m_text"}),
                 (500, {"error": {"message": "An unknown error occurred", "code": 1}}),
                 (200, {"recipient_id": psid, "message_id": "m_photo"}))
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Photo:", "a": [PHOTO]}))["sendMessage"]
    await message_reaches(company.admin, reply["id"], "SENT")
    sent = [call.json()["message"] for call in fakes.seen("messenger_send", psid)]
    assert sent.count({"text": "Photo:"}) == 1
    assert len(sent) == 3


async def test_a_refused_file_fails_the_reply_with_the_apps_reason(company, http, server, fakes):
    conversation_id, psid = await messenger_conversation(company, http, server)
    fakes.script(psid, (200, {"recipient_id": psid, "message_id": unique("m_")}),
                 (400, {"error": {"message": "(#100) Failed to fetch the file from the url", "code": 100}}))
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Photo:", "a": [PHOTO, MANUAL]}))[
        "sendMessage"]
    failed = await message_reaches(company.admin, reply["id"], "FAILED")
    assert "Failed to fetch the file" in failed["failureReason"]
    assert len(fakes.seen("messenger_send", psid)) == 2  # the manual never went after the refused photo


async def test_twilio_sends_one_message_with_every_media_url(company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    reply = (await company.admin.data(SEND, {"c": conversation_id, "b": "Both", "a": [PHOTO, MANUAL]}))[
        "sendMessage"]
    await message_reaches(company.admin, reply["id"], "SENT")
    [call] = fakes.seen("twilio_send", number)
    form = call.form_lists()
    assert form["Body"] == ["Both"]
    assert form["MediaUrl"] == [PHOTO["url"], MANUAL["url"]]


async def test_a_partners_callback_carries_the_attachments(company, fakes):
    partner = await install_partner(company, fakes)
    reply = (await company.admin.data(SEND, {"c": partner.conversation_id, "b": "See", "a": [MANUAL]}))[
        "sendMessage"]
    await message_reaches(company.admin, reply["id"], "SENT")
    [call] = fakes.seen("partner", partner.name)
    assert call.json()["attachments"] == [{"kind": "FILE", "url": MANUAL["url"], "name": "manual.pdf"}]
    assert call.json()["body"] == "See"


async def test_the_same_client_message_id_sends_the_files_once(company, http, server, fakes):
    conversation_id, psid = await messenger_conversation(company, http, server)
    key = unique("k")
    first = (await company.admin.data(SEND, {"c": conversation_id, "a": [PHOTO], "k": key}))["sendMessage"]
    again = (await company.admin.data(SEND, {"c": conversation_id, "a": [PHOTO], "k": key}))["sendMessage"]
    assert again["id"] == first["id"]
    await message_reaches(company.admin, first["id"], "SENT")
    assert len(fakes.seen("messenger_send", psid)) == 1


@pytest.mark.parametrize("variables", [
    {},
    {"b": "   "},
    {"a": []},
    {"b": "x", "a": [{"kind": "IMAGE", "url": "data:image/png;base64,AAAA"}]},
    {"b": "x", "a": [{"kind": "IMAGE", "url": "https://cdn.example/a.jpg", "name": "n" * 300}]},
    {"b": "x", "a": [PHOTO] * 11},
])
async def test_a_reply_without_content_or_with_bad_files_is_bad_input_and_sends_nothing(
        company, http, server, fakes, variables):
    conversation_id, psid = await messenger_conversation(company, http, server)
    assert await company.admin.error_code(SEND, {"c": conversation_id, **variables}) == "BAD_USER_INPUT"
    assert len(await messages(company, conversation_id)) == 1
    assert fakes.seen("messenger_send", psid) == []


async def test_files_too_are_refused_while_the_window_is_closed(company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    await last_wrote(conversation_id, timedelta(days=1))
    body = await company.admin.execute(SEND, {"c": conversation_id, "a": [PHOTO]})
    assert body["errors"][0]["extensions"]["reason"] == "REPLY_WINDOW_CLOSED"
    assert fakes.seen("twilio_send", number) == []


# --- notes --------------------------------------------------------------------------------------

async def test_notes_show_attachments_as_links(company):
    received = (await company.partner.data(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": unique("c"), "name": "Bo"}, "body": "my invoice",
        "attachments": [MANUAL]}}))["receiveChannelMessage"]
    made = await link(company.admin, received["conversation"]["id"], {"newPerson": {"name": unique("Person")}})
    [note] = await notes_of(company.admin, made["target"]["id"])
    assert "my invoice" in note["content"]
    # The server's stable URL of its copy (issue 16): the app's URL may expire.
    assert re.search(r"\[file\] manual\.pdf: http://inbox\.test/media/[0-9a-f]{32}$", note["content"], re.M)


async def test_emails_show_attachments_as_links(company, mailbox):
    from test_notifications import address_of, only

    await only(company.ann, "NEW_MESSAGE_UNASSIGNED", email=True)
    await company.partner.data(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": unique("c"), "name": "Bo"}, "body": "the plan",
        "attachments": [MANUAL, {"kind": "IMAGE", "url": 'https://cdn.example/a.jpg?x="<b>'}]}})
    [email] = await mailbox.wait_for(await address_of(company.ann))
    # The server's stable URLs of its copies (issue 16): the app's URLs may expire.
    assert re.search(r"^> \[file\] manual\.pdf: http://inbox\.test/media/[0-9a-f]{32}$", email.text, re.M)
    assert re.search(r'<a href="http://inbox\.test/media/[0-9a-f]{32}">manual\.pdf</a>', email.html)
    assert re.search(r'<a href="http://inbox\.test/media/[0-9a-f]{32}">\[image\]</a>', email.html)
    assert "cdn.example" not in email.text + email.html
