"""Telegram bots (issue 14): installing registers the webhook with a random secret,
updates come in checked by that secret and once per update_id, the contact is the chat,
replies go out through sendMessage / sendPhoto / sendDocument, uninstalling deletes
the webhook. Against tests/fakes.py's Bot API, which speaks its formats."""
from __future__ import annotations

import json
import random
import re
import time
import uuid
from dataclasses import dataclass

import pytest

from conftest import Company, message_reaches, unique

INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id kind } webhookPath channelToken } }"""
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"
CHANNELS = "{ channels { id name } }"
CONVERSATIONS = """
query($c: ID) {
  inbox(section: UNASSIGNED, channelId: $c, first: 20) {
    edges { node { id replyWindow { state closesAt } contact { name externalId }
      messages(first: 20) { edges { node { id body direction status sentAt
        attachments { kind url name mimeType } } } } } }
  }
}"""
SEND = """
mutation($c: ID!, $b: String, $a: [AttachmentInput!]) {
  sendMessage(conversationId: $c, body: $b, attachments: $a) { id status body attachments { kind url } } }"""


def bot_token() -> str:
    return f"{random.randint(10**8, 10**10)}:AAH{uuid.uuid4().hex}"


@dataclass
class Bot:
    company: Company
    channel_id: str
    url: str
    token: str
    secret: str
    http: object

    async def post(self, update: dict | bytes, *, secret: str | None = "valid"):
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.secret if secret == "valid" else secret
        return await self.http.post(self.url, content=body, headers=headers)

    async def deliver(self, update: dict):
        response = await self.post(update)
        assert response.status_code == 200, response.text
        return response

    async def conversations(self) -> list[dict]:
        data = await self.company.admin.data(CONVERSATIONS, {"c": self.channel_id})
        return [edge["node"] for edge in data["inbox"]["edges"]]

    async def messages(self) -> list[dict]:
        return [edge["node"] for c in await self.conversations() for edge in c["messages"]["edges"]]


_updates = iter(range(random.randint(10**6, 10**8), 10**9))


def update(chat_id: int, text: str | None = "Hello bot", **message) -> dict:
    """A `message` update as Telegram posts it."""
    body = {"message_id": random.randint(1, 10**6), "date": int(time.time()),
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Ada", "last_name": "Lovelace"}, **message}
    if text is not None:
        body["text"] = text
    return {"update_id": next(_updates), "message": body}


def chat() -> int:
    return random.randint(10**8, 10**10)


async def install_bot(company: Company, http, server, fakes, token: str | None = None) -> Bot:
    token = token or bot_token()
    data = await company.admin.data(INSTALL, {"i": {"kind": "TELEGRAM", "name": "Support bot",
                                                    "telegram": {"botToken": token}}})
    [registered] = fakes.seen("telegram_setWebhook", token)
    payload = registered.json()
    return Bot(company, data["installChannel"]["channel"]["id"], server.url + data["installChannel"]["webhookPath"],
               token, payload["secret_token"], http)


@pytest.fixture
async def bot(company, http, server, fakes) -> Bot:
    return await install_bot(company, http, server, fakes)


# --- install and uninstall ----------------------------------------------------------------------

async def test_install_registers_the_webhook_with_a_random_secret(company, http, server, fakes):
    token = bot_token()
    data = await company.admin.data(INSTALL, {"i": {"kind": "TELEGRAM", "name": "Bot",
                                                    "telegram": {"botToken": token}}})
    payload = data["installChannel"]
    assert payload["channel"]["kind"] == "TELEGRAM"
    assert payload["webhookPath"] == f"/webhooks/telegram/{payload['channel']['id']}"
    assert payload["channelToken"] is None
    [call] = fakes.seen("telegram_setWebhook", token)
    assert call.path == f"/telegram/bot{token}/setWebhook"
    sent = call.json()
    assert sent["url"] == f"http://inbox.test{payload['webhookPath']}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", sent["secret_token"])
    assert sent["allowed_updates"] == ["message"]
    # another install of the same kind gets another secret
    other = await install_bot(company, http, server, fakes)
    assert other.secret != sent["secret_token"]


async def test_a_token_telegram_refuses_installs_nothing(company, fakes):
    token = bot_token()
    fakes.script(token, (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
    body = await company.admin.execute(INSTALL, {"i": {"kind": "TELEGRAM", "name": "Refused",
                                                       "telegram": {"botToken": token}}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Unauthorized" in body["errors"][0]["message"]
    assert token not in body["errors"][0]["message"]
    names = [c["name"] for c in (await company.admin.data(CHANNELS))["channels"]]
    assert "Refused" not in names
    assert len(fakes.seen("telegram_setWebhook", token)) == 1


@pytest.mark.parametrize("token", ["", "123:AAH with spaces", "123:AAH/../../other", "123:AAH?x=1", "1:" + "x" * 300])
async def test_a_malformed_bot_token_is_bad_input_and_calls_nothing(company, fakes, token):
    code = await company.admin.error_code(INSTALL, {"i": {"kind": "TELEGRAM", "name": "Bot",
                                                          "telegram": {"botToken": token}}})
    assert code == "BAD_USER_INPUT"
    assert fakes.seen("telegram_setWebhook", token) == []


async def test_telegram_settings_on_another_kind_are_bad_input(company):
    code = await company.admin.error_code(INSTALL, {"i": {"kind": "CUSTOM", "name": "x",
                                                          "telegram": {"botToken": bot_token()}}})
    assert code == "BAD_USER_INPUT"


async def test_uninstall_deletes_the_webhook_and_the_endpoint_is_gone(bot, fakes):
    await bot.company.admin.data(UNINSTALL, {"c": bot.channel_id})
    [call] = await fakes.wait_for("telegram_deleteWebhook", bot.token)
    assert call.path == f"/telegram/bot{bot.token}/deleteWebhook"
    response = await bot.post(update(chat()))
    assert response.status_code == 404


# --- updates ------------------------------------------------------------------------------------

async def test_a_text_message_opens_a_conversation_with_the_chat(bot):
    chat_id = chat()
    sent = update(chat_id, "Where is my order?")
    await bot.deliver(sent)
    [conversation] = await bot.conversations()
    assert conversation["contact"] == {"name": "Ada Lovelace", "externalId": str(chat_id)}
    [message] = await bot.messages()
    assert message["body"] == "Where is my order?"
    assert message["direction"] == "INBOUND"
    assert message["attachments"] == []
    assert message["sentAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(sent["message"]["date"])))
    assert conversation["replyWindow"] is None


@pytest.mark.parametrize("secret", ["wrong-secret", None, ""])
async def test_a_wrong_or_missing_secret_token_is_403_and_stores_nothing(bot, secret):
    response = await bot.post(update(chat()), secret=secret)
    assert response.status_code == 403
    assert await bot.messages() == []


async def test_the_same_update_delivered_twice_is_one_message(bot):
    sent = update(chat())
    await bot.deliver(sent)
    await bot.deliver(sent)
    assert len(await bot.messages()) == 1


async def test_two_updates_of_one_chat_are_one_conversation(bot):
    chat_id = chat()
    await bot.deliver(update(chat_id, "one"))
    await bot.deliver(update(chat_id, "two"))
    [conversation] = await bot.conversations()
    assert [e["node"]["body"] for e in conversation["messages"]["edges"]] == ["one", "two"]


async def test_photo_document_voice_and_video_are_attachments_without_the_bot_token(bot):
    photo = [{"file_id": "AgACsmall", "file_unique_id": "s", "width": 90, "height": 90},
             {"file_id": "AgAClarge", "file_unique_id": "l", "width": 1280, "height": 1280}]
    await bot.deliver(update(chat(), None, photo=photo, caption="my receipt"))
    await bot.deliver(update(chat(), None, document={"file_id": "BQACdoc", "file_unique_id": "d",
                                                     "file_name": "invoice.pdf", "mime_type": "application/pdf"}))
    await bot.deliver(update(chat(), None, voice={"file_id": "AwACvoice", "file_unique_id": "v", "duration": 3,
                                                  "mime_type": "audio/ogg"}))
    await bot.deliver(update(chat(), None, video={"file_id": "BAACvideo", "file_unique_id": "w", "duration": 9,
                                                  "width": 1, "height": 1, "mime_type": "video/mp4"}))
    messages = await bot.messages()
    by_kind = {m["attachments"][0]["kind"]: m for m in messages}
    assert set(by_kind) == {"IMAGE", "FILE", "AUDIO", "VIDEO"}
    assert by_kind["IMAGE"]["body"] == "my receipt"
    assert by_kind["IMAGE"]["attachments"] == [{"kind": "IMAGE", "url": "telegram-file:AgAClarge", "name": None,
                                               "mimeType": None}]
    assert by_kind["FILE"]["attachments"][0] == {"kind": "FILE", "url": "telegram-file:BQACdoc",
                                                 "name": "invoice.pdf", "mimeType": "application/pdf"}
    assert by_kind["FILE"]["body"] == ""
    assert by_kind["AUDIO"]["attachments"][0]["mimeType"] == "audio/ogg"
    assert bot.token not in json.dumps(messages)


async def test_updates_other_than_new_messages_are_taken_and_ignored(bot):
    edited = update(chat())
    edited["edited_message"] = edited.pop("message")
    await bot.deliver(edited)
    await bot.deliver(update(chat(), None, sticker={"file_id": "CAAC", "file_unique_id": "x"}))
    assert await bot.messages() == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"message": {}}', b'{"update_id": "1"}',
                                  b'{"update_id": 1, "message": {"chat": {"id": "x"}, "date": 1, "text": "hi"}}',
                                  b'{"update_id": 1, "message": {"chat": {"id": 1}, "date": 1, "text": 5}}',
                                  b'{"update_id": 1, "message": {"chat": {"id": 1}, "date": 1, "photo": []}}'])
async def test_a_malformed_update_is_400_and_stores_nothing(bot, body):
    response = await bot.post(body)
    assert response.status_code == 400
    assert await bot.messages() == []


async def test_an_unknown_channel_is_404(server, http):
    from schema.ids import global_id

    response = await http.post(f"{server.url}/webhooks/telegram/{global_id('Channel', 987654321)}",
                               content=json.dumps(update(chat())).encode(),
                               headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    assert response.status_code == 404


# --- replies ------------------------------------------------------------------------------------

async def conversation_of(bot: Bot, chat_id: int) -> str:
    await bot.deliver(update(chat_id))
    return next(c["id"] for c in await bot.conversations() if c["contact"]["externalId"] == str(chat_id))


async def test_a_reply_goes_out_through_send_message(bot, fakes):
    chat_id = chat()
    conversation_id = await conversation_of(bot, chat_id)
    reply = (await bot.company.admin.data(SEND, {"c": conversation_id, "b": "Tomorrow."}))["sendMessage"]
    await message_reaches(bot.company.admin, reply["id"], "SENT")
    [call] = fakes.seen("telegram_sendMessage", str(chat_id))
    assert call.path == f"/telegram/bot{bot.token}/sendMessage"
    assert call.json() == {"chat_id": chat_id, "text": "Tomorrow."}


async def test_a_reply_with_files_sends_the_text_then_photos_and_documents(bot, fakes):
    chat_id = chat()
    conversation_id = await conversation_of(bot, chat_id)
    files = [{"kind": "IMAGE", "url": "https://files.example/a.jpg"},
             {"kind": "FILE", "url": "https://files.example/b.pdf", "name": "b.pdf"}]
    reply = (await bot.company.admin.data(SEND, {"c": conversation_id, "b": "Here:", "a": files}))["sendMessage"]
    await message_reaches(bot.company.admin, reply["id"], "SENT")
    assert [r.path.rsplit("/", 1)[1] for r in fakes.requests
            if r.kind.startswith("telegram_send") and r.key == str(chat_id)] == [
        "sendMessage", "sendPhoto", "sendDocument"]
    assert fakes.seen("telegram_sendPhoto", str(chat_id))[0].json() == {
        "chat_id": chat_id, "photo": "https://files.example/a.jpg"}
    assert fakes.seen("telegram_sendDocument", str(chat_id))[0].json() == {
        "chat_id": chat_id, "document": "https://files.example/b.pdf"}


async def test_a_reply_the_bot_api_refuses_fails_with_its_description(bot, fakes):
    chat_id = chat()
    conversation_id = await conversation_of(bot, chat_id)
    fakes.script(str(chat_id), (403, {"ok": False, "error_code": 403,
                                      "description": "Forbidden: bot was blocked by the user"}))
    reply = (await bot.company.admin.data(SEND, {"c": conversation_id, "b": "Hello?"}))["sendMessage"]
    failed = await message_reaches(bot.company.admin, reply["id"], "FAILED")
    assert "bot was blocked by the user" in failed["failureReason"]
    assert bot.token not in failed["failureReason"]


async def test_a_chat_without_a_name_is_called_by_its_username_or_title(bot):
    named = update(chat())
    del named["message"]["chat"]["first_name"], named["message"]["chat"]["last_name"]
    named["message"]["chat"]["username"] = "ada_l"
    untold = update(chat())
    untold["message"]["chat"] = {"id": untold["message"]["chat"]["id"], "type": "private"}
    await bot.deliver(named)
    await bot.deliver(untold)
    names = sorted(c["contact"]["name"] for c in await bot.conversations())
    assert names == ["Telegram user", "ada_l"]
