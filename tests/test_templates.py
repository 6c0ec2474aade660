"""WhatsApp templates (issue 14): sendMessage(template:) on a WhatsApp conversation, in
any window state, hands Twilio's Messages API the ContentSid and ContentVariables; the
stored body is the template's text from the Content API with its variables filled in,
or "[template HX…]" when that fails; a template elsewhere is BAD_USER_INPUT."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

from conftest import message_reaches, unique
from test_messenger import install_page, text_message
from test_reply_windows import last_wrote, whatsapp_conversation

SEND = """
mutation($c: ID!, $b: String, $t: TemplateInput, $a: [AttachmentInput!]) {
  sendMessage(conversationId: $c, body: $b, template: $t, attachments: $a) { id status body } }"""
MESSAGES = "query($id: ID!) { conversation(id: $id) { messages(first: 100) { edges { node { id body } } } } }"


def content_sid() -> str:
    return "HX" + uuid.uuid4().hex


async def message_count(company, conversation_id: str) -> int:
    return len((await company.admin.data(MESSAGES, {"id": conversation_id}))["conversation"]["messages"]["edges"])


async def test_a_template_goes_out_with_content_sid_and_variables_even_when_the_window_is_closed(
        company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    await last_wrote(conversation_id, timedelta(days=2))
    sid = content_sid()
    fakes.contents[sid] = {"variables": {"1": "name", "2": "day"},
                           "types": {"twilio/text": {"body": "Hi {{1}}, your order ships on {{2}}."}}}
    reply = (await company.admin.data(SEND, {"c": conversation_id, "t": {
        "contentSid": sid, "variables": ["Ana", "Friday"]}}))["sendMessage"]
    assert reply["body"] == "Hi Ana, your order ships on Friday."
    await message_reaches(company.admin, reply["id"], "SENT")
    [call] = fakes.seen("twilio_send", number)
    form = call.form()
    assert form["ContentSid"] == sid
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "Friday"}
    assert "Body" not in form
    [content] = fakes.seen("twilio_content", sid)
    account = call.path.split("/")[4]
    assert content.headers["authorization"].startswith("Basic ")
    user = base64.b64decode(content.headers["authorization"][6:]).decode().split(":")[0]
    assert user == account


async def test_when_the_content_api_fails_the_body_names_the_template(company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    sid = content_sid()  # unknown to the fake Content API: 404
    reply = (await company.admin.data(SEND, {"c": conversation_id, "t": {"contentSid": sid}}))["sendMessage"]
    assert reply["body"] == f"[template {sid}]"
    await message_reaches(company.admin, reply["id"], "SENT")
    form = fakes.seen("twilio_send", number)[0].form()
    assert form["ContentSid"] == sid
    assert json.loads(form["ContentVariables"]) == {}


async def test_a_template_on_messenger_is_bad_input_and_nothing_is_stored(company, http, server, fakes):
    page = await install_page(company, http, server)
    psid = unique("psid")
    await page.deliver(text_message(psid, page.page_id))
    conversation_id = (await page.conversations())[0]["id"]
    body = await company.admin.execute(SEND, {"c": conversation_id, "t": {"contentSid": content_sid()}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await message_count(company, conversation_id) == 1
    assert fakes.seen("messenger_send", psid) == []


async def test_a_template_on_a_partner_channel_is_bad_input(company):
    inbound = await company.inbound("hi", contact=unique("c"))
    code = await company.admin.error_code(SEND, {"c": inbound["conversation"]["id"],
                                                 "t": {"contentSid": content_sid()}})
    assert code == "BAD_USER_INPUT"


async def test_a_template_with_a_body_or_a_malformed_sid_is_bad_input(company, http, server, fakes):
    conversation_id, number = await whatsapp_conversation(company, http, server)
    for variables in ({"b": "and text", "t": {"contentSid": content_sid()}},
                      {"t": {"contentSid": "HXnot-a-sid"}},
                      {"t": {"contentSid": content_sid(), "variables": ["x" * 5000]}},
                      {"t": {"contentSid": content_sid()}, "a": [{"kind": "IMAGE", "url": "https://x.test/a.jpg"}]}):
        assert await company.admin.error_code(SEND, {"c": conversation_id, **variables}) == "BAD_USER_INPUT"
    assert await message_count(company, conversation_id) == 1
    assert fakes.seen("twilio_send", number) == []
