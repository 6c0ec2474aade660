"""SPEC §3, WhatsApp through Twilio: form-encoded webhooks signed with
X-Twilio-Signature over the public URL, inbound messages, replies through the
Messages API with basic auth, and status callbacks that never move a status back.

Signatures are computed here with Twilio's documented algorithm, independently of the
server's code (the `twilio` package is not a dependency)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from models import EarlyReceipt

from conftest import Company, message_reaches, message_state, unique
from fakes import Held

INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } webhookPath } }"""
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"
CONVERSATIONS = """
query($c: ID) {
  inbox(section: UNASSIGNED, channelId: $c, first: 50) {
    edges { node { id contact { name externalId }
      messages(first: 100) { edges { node { id body direction status senderName } } } } }
  }
}"""
SEND = """
mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id status } }"""
PUBLIC_URL = "http://inbox.test"  # the test server's INBOX_PUBLIC_URL
EMPTY_TWIML = "<Response></Response>"


def twilio_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """https://www.twilio.com/docs/usage/security#validating-requests: the full URL, then
    every POST parameter sorted by name, name and value with no delimiter; HMAC-SHA1
    keyed with the auth token; base64."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def e164() -> str:
    """A number of the test's own: the fake Twilio API is shared and scripted per number."""
    return f"+1555{uuid.uuid4().int % 10_000_000:07d}"


@dataclass
class Sender:
    """A WhatsApp channel as Twilio knows it: the account, its auth token, the number."""

    company: Company
    channel_id: str
    path: str
    server_url: str
    account_sid: str
    auth_token: str
    from_number: str
    http: object

    async def post(self, params: dict[str, str], *, signature: str | None = "valid", path: str | None = None,
                   signed_url: str | None = None):
        path = path or self.path
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                   "I-Twilio-Idempotency-Token": unique("idem")}
        if signature == "valid":
            signature = twilio_signature(signed_url or PUBLIC_URL + path, params, self.auth_token)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return await self.http.post(self.server_url + path, content=urlencode(params).encode(), headers=headers)

    async def deliver(self, params: dict[str, str], **kwargs):
        response = await self.post(params, **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        assert EMPTY_TWIML in response.text
        return response

    def inbound(self, number: str, body: str = "Hola", sid: str | None = None, profile_name: str | None = "Ana",
                **extra: str) -> dict[str, str]:
        """An inbound WhatsApp message as Twilio posts it."""
        params = {"SmsMessageSid": sid or "", "NumMedia": "0", "SmsSid": sid or "", "SmsStatus": "received",
                  "Body": body, "To": f"whatsapp:{self.from_number}", "NumSegments": "1",
                  "MessageSid": sid or "SM" + unique("x").replace("-", ""), "AccountSid": self.account_sid,
                  "From": f"whatsapp:{number}", "WaId": number.removeprefix("+"), "ApiVersion": "2010-04-01",
                  "MessageType": "text", **extra}
        params["SmsMessageSid"] = params["SmsSid"] = params["MessageSid"]
        if profile_name is not None:
            params["ProfileName"] = profile_name
        return params

    def status(self, sid: str, number: str, status: str, **extra: str) -> dict[str, str]:
        """A status callback of a reply, as Twilio posts it."""
        return {"ChannelToAddress": number, "ChannelPrefix": "whatsapp", "ApiVersion": "2010-04-01",
                "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, "To": f"whatsapp:{number}",
                "From": f"whatsapp:{self.from_number}", "MessageSid": sid, "AccountSid": self.account_sid,
                **extra}

    async def conversations(self) -> list[dict]:
        data = await self.company.admin.data(CONVERSATIONS, {"c": self.channel_id})
        return [edge["node"] for edge in data["inbox"]["edges"]]

    async def messages(self) -> list[dict]:
        return [edge["node"] for c in await self.conversations() for edge in c["messages"]["edges"]]


async def install_sender(company: Company, http, server) -> Sender:
    sender = Sender(company, "", "", server.url, "AC" + unique("a").replace("-", ""), unique("token"), e164(), http)
    data = await company.admin.data(INSTALL, {"i": {"kind": "WHATSAPP", "name": "Sales WhatsApp", "whatsapp": {
        "accountSid": sender.account_sid, "authToken": sender.auth_token, "fromNumber": sender.from_number}}})
    sender.channel_id = data["installChannel"]["channel"]["id"]
    sender.path = data["installChannel"]["webhookPath"]
    return sender


@pytest.fixture
async def whatsapp(company, http, server) -> Sender:
    return await install_sender(company, http, server)


async def sent_reply(whatsapp: Sender, fakes, number: str, body: str = "Claro que sí") -> tuple[dict, str]:
    """A reply to `number` that Twilio's API took; returns it and its MessageSid."""
    await whatsapp.deliver(whatsapp.inbound(number))
    [conversation] = [c for c in await whatsapp.conversations() if c["contact"]["externalId"] == number]
    sid = "SM" + unique("r").replace("-", "")
    fakes.script(number, (201, {"sid": sid, "status": "queued"}))
    reply = (await whatsapp.company.admin.data(SEND, {"c": conversation["id"], "b": body}))["sendMessage"]
    return await message_reaches(whatsapp.company.admin, reply["id"], "SENT"), sid


# --- the signature algorithm --------------------------------------------------------------------

def test_signature_helper_matches_twilios_documented_example():
    # The worked example of Twilio's security docs, so that the helper above is right.
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
              "From": "+14158675310", "To": "+18005551212"}
    assert twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", params, "12345") \
        == "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_server_signature_check_accepts_the_documented_example():
    from channels.twilio import signature_valid

    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"),
              ("From", "+14158675310"), ("To", "+18005551212")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature_valid(url, params, "GvWf1cFY/Q7PnoempGyD5oXAezc=", "12345")
    assert not signature_valid(url, params, "GvWf1cFY/Q7PnoempGyD5oXAezd=", "12345")
    assert not signature_valid(url, params[:-1], "GvWf1cFY/Q7PnoempGyD5oXAezc=", "12345")


# --- inbound messages ---------------------------------------------------------------------------

async def test_signed_inbound_message_is_stored_from_the_numbers_contact(whatsapp):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number, "¿Tienen envío a Lima?", profile_name="Ana Torres"))
    [conversation] = await whatsapp.conversations()
    assert conversation["contact"] == {"name": "Ana Torres", "externalId": number}
    [message] = [edge["node"] for edge in conversation["messages"]["edges"]]
    assert message["body"] == "¿Tienen envío a Lima?"
    assert message["direction"] == "INBOUND" and message["senderName"] == "Ana Torres"


async def test_contact_without_profile_name_is_called_by_its_number(whatsapp):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number, profile_name=None))
    [conversation] = await whatsapp.conversations()
    assert conversation["contact"]["name"] == number


async def test_media_without_text_has_an_empty_body(whatsapp):
    # Its file is Message.attachments (tests/test_attachments.py).
    url = f"https://api.twilio.com/2010-04-01/Accounts/{whatsapp.account_sid}/Messages/MM1/Media/ME1"
    await whatsapp.deliver(whatsapp.inbound(e164(), "", NumMedia="1", MediaContentType0="image/jpeg",
                                            MediaUrl0=url, MessageType="image"))
    assert [m["body"] for m in await whatsapp.messages()] == [""]


async def test_same_message_sid_delivered_five_times_is_stored_once(whatsapp):
    params = whatsapp.inbound(e164(), "una vez")
    await asyncio.gather(*(whatsapp.deliver(params) for _ in range(3)))
    await whatsapp.deliver(params)
    await whatsapp.deliver(params)
    assert [m["body"] for m in await whatsapp.messages()] == ["una vez"]


async def test_signature_over_a_query_string_is_checked_with_it(whatsapp):
    path = whatsapp.path + "?source=whatsapp"
    await whatsapp.deliver(whatsapp.inbound(e164(), "with a query"), path=path)
    assert [m["body"] for m in await whatsapp.messages()] == ["with a query"]


# --- signatures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("signature", [None, "", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "not base64 at all"])
async def test_webhook_without_a_valid_signature_is_403_and_stores_nothing(whatsapp, signature):
    response = await whatsapp.post(whatsapp.inbound(e164()), signature=signature)
    assert response.status_code == 403
    assert await whatsapp.conversations() == []


async def test_webhook_signed_with_another_auth_token_is_403(whatsapp):
    params = whatsapp.inbound(e164())
    forged = twilio_signature(PUBLIC_URL + whatsapp.path, params, "another-accounts-token")
    response = await whatsapp.post(params, signature=forged)
    assert response.status_code == 403
    assert await whatsapp.conversations() == []


async def test_signature_covers_every_parameter(whatsapp):
    params = whatsapp.inbound(e164(), "original")
    signature = twilio_signature(PUBLIC_URL + whatsapp.path, params, whatsapp.auth_token)
    response = await whatsapp.post({**params, "Body": "tampered"}, signature=signature)
    assert response.status_code == 403
    assert await whatsapp.conversations() == []


async def test_signature_is_over_the_public_url_not_the_servers_own_address(whatsapp):
    # Twilio signs the URL it called (INBOX_PUBLIC_URL), not the address the server listens on.
    response = await whatsapp.post(whatsapp.inbound(e164()), signed_url=whatsapp.server_url + whatsapp.path)
    assert response.status_code == 403
    assert await whatsapp.conversations() == []


# --- channels and malformed bodies --------------------------------------------------------------

async def test_webhook_for_an_unknown_channel_is_404(whatsapp):
    from schema.ids import global_id

    path = f"/webhooks/twilio/{global_id('Channel', 987654321)}"
    response = await whatsapp.post(whatsapp.inbound(e164()), path=path)
    assert response.status_code == 404


async def test_webhook_for_a_channel_of_another_kind_is_404(whatsapp, company):
    response = await whatsapp.post(whatsapp.inbound(e164()), path=f"/webhooks/twilio/{company.channel_id}")
    assert response.status_code == 404


async def test_webhook_for_an_uninstalled_channel_is_404(whatsapp):
    await whatsapp.company.admin.data(UNINSTALL, {"c": whatsapp.channel_id})
    response = await whatsapp.post(whatsapp.inbound(e164()))
    assert response.status_code == 404


@pytest.mark.parametrize("drop", [("MessageSid", "SmsSid", "SmsMessageSid"),
                                  ("Body", "NumMedia", "SmsStatus"),
                                  ("From",)])
async def test_malformed_webhook_is_400_and_stores_nothing(whatsapp, drop):
    params = {k: v for k, v in whatsapp.inbound(e164()).items() if k not in drop}
    response = await whatsapp.post(params)
    assert response.status_code == 400
    assert await whatsapp.conversations() == []


async def test_webhook_over_one_mib_is_413(whatsapp):
    response = await whatsapp.post(whatsapp.inbound(e164(), "x" * (1024 * 1024)))
    assert response.status_code == 413
    assert await whatsapp.conversations() == []


# --- replies and status callbacks ---------------------------------------------------------------

async def test_reply_goes_through_the_messages_api_with_basic_auth(whatsapp, fakes):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number))
    [conversation] = await whatsapp.conversations()
    reply = (await whatsapp.company.admin.data(SEND, {"c": conversation["id"], "b": "¡Sí, enviamos!"}))
    assert reply["sendMessage"]["status"] == "PENDING"
    [request] = await fakes.wait_for("twilio_send", number)
    assert request.method == "POST"
    assert request.path == f"/twilio/2010-04-01/Accounts/{whatsapp.account_sid}/Messages.json"
    credentials = base64.b64encode(f"{whatsapp.account_sid}:{whatsapp.auth_token}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    form = request.form()
    assert form["From"] == f"whatsapp:{whatsapp.from_number}"
    assert form["To"] == f"whatsapp:{number}"
    assert form["Body"] == "¡Sí, enviamos!"
    # status callbacks come back to this channel's webhook, at its public URL
    assert form["StatusCallback"] == PUBLIC_URL + whatsapp.path
    await message_reaches(whatsapp.company.admin, reply["sendMessage"]["id"], "SENT")


async def test_status_callbacks_move_the_reply_to_delivered_then_read(whatsapp, fakes):
    number = e164()
    reply, sid = await sent_reply(whatsapp, fakes, number)
    await whatsapp.deliver(whatsapp.status(sid, number, "delivered"))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "DELIVERED"
    await whatsapp.deliver(whatsapp.status(sid, number, "read"))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "READ"


async def test_out_of_order_callbacks_never_move_the_status_back(whatsapp, fakes):
    number = e164()
    reply, sid = await sent_reply(whatsapp, fakes, number)
    # Twilio's callbacks may arrive in any order: read first, then delivered, sent, queued
    for status in ("read", "delivered", "sent", "queued"):
        await whatsapp.deliver(whatsapp.status(sid, number, status))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "READ"


async def test_a_callback_that_overtakes_the_api_answer_is_applied_once_the_sid_is_recorded(whatsapp, fakes):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number))
    [conversation] = [c for c in await whatsapp.conversations() if c["contact"]["externalId"] == number]
    sid = "SM" + unique("e").replace("-", "")
    answer = asyncio.Event()
    fakes.script(number, Held(answer, 201, {"sid": sid, "status": "queued"}))
    reply = (await whatsapp.company.admin.data(SEND, {"c": conversation["id"], "b": "hola"}))["sendMessage"]
    await fakes.wait_for("twilio_send", number)

    # Twilio reports the delivery before its API's answer to the send reaches the sender
    await whatsapp.deliver(whatsapp.status(sid, number, "delivered"))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "PENDING"
    answer.set()

    assert (await message_reaches(whatsapp.company.admin, reply["id"], "DELIVERED"))["status"] == "DELIVERED"
    # Nothing of it is left behind, and later callbacks still move it on
    assert await EarlyReceipt.filter(external_id=sid).count() == 0
    await whatsapp.deliver(whatsapp.status(sid, number, "read"))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "READ"


async def test_a_callback_for_an_sid_no_reply_carries_is_kept_a_day_at_most(whatsapp):
    number = e164()
    stale = "SM" + unique("stale").replace("-", "")
    await whatsapp.deliver(whatsapp.status(stale, number, "delivered"))
    await EarlyReceipt.filter(external_id=stale).update(created_at=datetime.now(timezone.utc) - timedelta(days=2))

    await whatsapp.deliver(whatsapp.status("SM" + unique("other").replace("-", ""), number, "delivered"))

    assert await EarlyReceipt.filter(external_id=stale).count() == 0


async def test_queued_callback_changes_nothing(whatsapp, fakes):
    number = e164()
    reply, sid = await sent_reply(whatsapp, fakes, number)
    await whatsapp.deliver(whatsapp.status(sid, number, "queued"))
    assert (await message_state(whatsapp.company.admin, reply["id"]))["status"] == "SENT"


@pytest.mark.parametrize("status", ["failed", "undelivered"])
async def test_failed_or_undelivered_callback_fails_the_reply_with_twilios_error(whatsapp, fakes, status):
    number = e164()
    reply, sid = await sent_reply(whatsapp, fakes, number)
    await whatsapp.deliver(whatsapp.status(sid, number, status, ErrorCode="63016"))
    failed = await message_state(whatsapp.company.admin, reply["id"])
    assert failed["status"] == "FAILED"
    assert failed["failureReason"].startswith("Twilio error 63016: ")
    assert "outside the allowed window" in failed["failureReason"]


async def test_failure_reason_uses_twilios_error_message_when_given(whatsapp, fakes):
    number = e164()
    reply, sid = await sent_reply(whatsapp, fakes, number)
    await whatsapp.deliver(whatsapp.status(sid, number, "undelivered", ErrorCode="30008",
                                           ErrorMessage="Unknown error from the carrier"))
    failed = await message_state(whatsapp.company.admin, reply["id"])
    assert failed["failureReason"] == "Twilio error 30008: Unknown error from the carrier"


async def test_callback_for_an_unknown_message_sid_is_accepted_and_changes_nothing(whatsapp):
    await whatsapp.deliver(whatsapp.status("SM" + unique("nobody").replace("-", ""), e164(), "delivered"))
    assert await whatsapp.conversations() == []


async def test_messages_api_rejection_fails_the_reply_with_twilios_message(whatsapp, fakes):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number))
    [conversation] = await whatsapp.conversations()
    fakes.script(number, (400, {"code": 21211, "message": f"The 'To' number whatsapp:{number} is not a valid "
                                                          "phone number.", "status": 400}))
    reply = (await whatsapp.company.admin.data(SEND, {"c": conversation["id"], "b": "hello"}))["sendMessage"]
    failed = await message_reaches(whatsapp.company.admin, reply["id"], "FAILED")
    assert "is not a valid phone number" in failed["failureReason"]
    assert len(fakes.seen("twilio_send", number)) == 1


async def test_messages_api_server_error_is_retried_and_the_reply_sent_once(whatsapp, fakes):
    number = e164()
    await whatsapp.deliver(whatsapp.inbound(number))
    [conversation] = await whatsapp.conversations()
    fakes.script(number, (503, {"code": 20503, "message": "Service unavailable", "status": 503}))
    reply = (await whatsapp.company.admin.data(SEND, {"c": conversation["id"], "b": "again"}))["sendMessage"]
    await message_reaches(whatsapp.company.admin, reply["id"], "SENT")
    assert [r.form()["Body"] for r in fakes.seen("twilio_send", number)] == ["again", "again"]


async def test_a_message_with_a_nul_character_is_stored_without_it(whatsapp):
    # given a WhatsApp message whose text and profile name hold NUL (PostgreSQL's text
    # cannot store it: it was a 500, which Twilio retries)
    number = e164()
    # when Twilio posts it, then it is taken, and stored without the NUL
    await whatsapp.deliver(whatsapp.inbound(number, "Hola\x00", profile_name="A\x00na"))
    [conversation] = await whatsapp.conversations()
    assert conversation["contact"]["name"] == "Ana"
    assert [edge["node"]["body"] for edge in conversation["messages"]["edges"]] == ["Hola"]
