"""Files kept by the server (issue 16): every inbound attachment is fetched in the
background and stored (a folder, or S3 with INBOX_TEST_MEDIA_S3=1); Attachment.url is then
the server's own signed URL, and no provider credential ever shows. GET /media/{id} to
those who may see the conversation only (404 for anyone else), ranges, safe headers;
uploads for replies; deletes erase the files; the size bound and the quota."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import (MEDIA_MAX_BYTES, TEST_MEDIA_S3, company_pk, eventually, s3_settings, start_moto,
                      unique)
from fakes import Held
from test_messenger import install_page, now_ms
from test_notes import link, notes_of
from test_notifications import ASSIGN, SHARE, address_of
from test_sending import install_partner
from test_telegram import install_bot, update
from test_twilio import e164, install_sender

PUBLIC = "http://inbox.test"
ATTACHMENTS = "attachments { kind url name mimeType storage stored }"
MESSAGES = f"""
query($id: ID!) {{ conversation(id: $id) {{ messages(first: 50) {{ edges {{ node {{ id body {ATTACHMENTS} }} }} }} }} }}"""
RECEIVE = f"""
mutation($input: ReceiveMessageInput!) {{
  receiveChannelMessage(input: $input) {{ id {ATTACHMENTS} conversation {{ id }} }} }}"""
SEND = f"""
mutation($c: ID!, $b: String, $a: [AttachmentInput!]) {{
  sendMessage(conversationId: $c, body: $b, attachments: $a) {{ id status {ATTACHMENTS} }} }}"""
DELETE = "mutation($c: ID!) { deleteConversation(conversationId: $c) }"
UNINSTALL = "mutation($c: ID!) { uninstallChannel(channelId: $c) }"
# A tiny PNG: what a phone's photo is, as far as types go.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def local(url: str, server) -> str:
    """The server's public URL (INBOX_PUBLIC_URL) as this test reaches it."""
    assert url.startswith(f"{PUBLIC}/media/"), url
    return server.url + url[len(PUBLIC):]


def cdn_file(fakes, body: bytes, content_type: str, suffix: str = ".png") -> tuple[str, str]:
    path = f"/cdn/{unique('f')}{suffix}"
    return path, fakes.serve_file(path, body, content_type)


async def conversation_messages(client, conversation_id: str) -> list[dict]:
    data = await client.data(MESSAGES, {"id": conversation_id})
    return [edge["node"] for edge in data["conversation"]["messages"]["edges"]]


async def settled(client, conversation_id: str, count: int = 1) -> list[dict]:
    """The conversation's attachments once none is PENDING any more."""
    async def probe():
        return [a for m in await conversation_messages(client, conversation_id) for a in m["attachments"]]

    return await eventually(probe, lambda found: len(found) >= count and all(
        a["storage"] != "PENDING" for a in found))


async def partner_sends(company, url: str, kind: str = "IMAGE", name: str | None = None) -> str:
    """A partner's message with one attachment; its conversation's id."""
    data = await company.partner.data(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": unique("c"), "name": "Carla"}, "body": "look",
        "attachments": [{"kind": kind, "url": url, **({"name": name} if name else {})}]}})
    return data["receiveChannelMessage"]["conversation"]["id"]


def media_id(url: str) -> str:
    return url.split("/media/")[1].split("?")[0]


async def in_store(server, media_id_: str) -> bool:
    """Whether the store still holds the file's bytes (any key ending with its id)."""
    if server.settings.media_s3_url:
        import boto3

        client = boto3.client("s3", endpoint_url=server.settings.media_s3_endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        bucket = server.settings.media_s3_url[5:].split("/")[0]
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return any(key.endswith(f"/{media_id_}") for key in keys)
    return any(path.name == media_id_ for path in Path(server.settings.media_dir).rglob(media_id_))


# --- inbound: every app's files are kept --------------------------------------------------------

async def test_a_messenger_image_stays_in_the_inbox_after_the_cdn_url_stops_working(company, http, server, fakes):
    page = await install_page(company, http, server)
    path, url = cdn_file(fakes, PNG, "image/png")
    await page.deliver({"sender": {"id": unique("psid")}, "recipient": {"id": page.page_id}, "timestamp": now_ms(),
                        "message": {"mid": unique("m_"), "attachments": [{"type": "image", "payload": {"url": url}}]}})
    [conversation] = await page.conversations()
    [attachment] = await settled(company.admin, conversation["id"])
    assert attachment["storage"] == "STORED" and attachment["stored"] is True
    assert attachment["mimeType"] == "image/png"
    del fakes.files[path]  # Meta's URL expired

    answer = await http.get(local(attachment["url"], server))  # as an <img src>: no header
    assert answer.status_code == 200
    assert answer.content == PNG
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"].startswith("inline; filename=")


async def test_twilio_media_are_fetched_with_the_account_s_basic_auth_which_never_shows(company, http, server, fakes):
    sender = await install_sender(company, http, server)
    path = f"/twilio/2010-04-01/Accounts/{sender.account_sid}/Messages/MM{secrets.token_hex(8)}/Media/ME1"
    url = fakes.serve_file(path, b"%PDF-1.4 invoice", "application/pdf", auth=(sender.account_sid, sender.auth_token))
    await sender.deliver(sender.inbound(e164(), "the invoice", NumMedia="1", MediaContentType0="application/pdf",
                                        MediaUrl0=url))
    conversation = (await company.admin.data(
        "query($c: ID) { inbox(section: UNASSIGNED, channelId: $c, first: 5) { edges { node { id } } } }",
        {"c": sender.channel_id}))["inbox"]["edges"][0]["node"]["id"]
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "STORED"
    answer = await http.get(local(attachment["url"], server))
    assert answer.content == b"%PDF-1.4 invoice"
    assert answer.headers["content-type"] == "application/pdf"
    fetched = fakes.seen("file", path)[-1]
    assert fetched.headers["authorization"].startswith("Basic ")
    shown = json.dumps(await conversation_messages(company.admin, conversation))
    assert sender.auth_token not in shown


async def test_telegram_files_come_through_get_file_and_the_bot_token_shows_nowhere(company, http, server, fakes,
                                                                                    mailbox):
    bot = await install_bot(company, http, server, fakes)
    file_id = f"AgAC{secrets.token_hex(6)}"
    fakes.serve_file(f"/telegram/file/bot{bot.token}/files/{file_id}", PNG, "image/png")
    photo = [{"file_id": file_id, "file_unique_id": "u", "width": 90, "height": 90}]
    await bot.deliver(update(4242424242, None, photo=photo, caption="my receipt"))
    [conversation] = await bot.conversations()
    [attachment] = await settled(company.admin, conversation["id"])
    assert attachment["storage"] == "STORED"
    assert (await http.get(local(attachment["url"], server))).content == PNG
    assert fakes.seen("telegram_getFile", bot.token)

    # then: not in any GraphQL answer, note or email
    assert bot.token not in json.dumps(await conversation_messages(company.admin, conversation["id"]))
    await company.admin.data(SHARE, {"c": bot.channel_id, "u": [company.ids["ann"]]})
    made = await link(company.ann, conversation["id"], {"newPerson": {"name": unique("Person")}})
    notes = await notes_of(company.ann, made["target"]["id"])
    assert notes and f"{PUBLIC}/media/{media_id(attachment['url'])}" in notes[0]["content"]
    assert bot.token not in json.dumps(notes)
    await company.admin.data(ASSIGN, {"c": conversation["id"], "u": company.ids["ann"]})
    [email] = await mailbox.wait_for(await address_of(company.ann))
    assert bot.token not in email.text and bot.token not in email.html


async def test_a_partner_s_attachment_is_kept(company, http, server, fakes):
    _, url = cdn_file(fakes, b"hello file", "text/plain", ".txt")
    conversation = await partner_sends(company, url, "FILE", "notes.txt")
    [attachment] = await settled(company.admin, conversation)
    assert attachment["stored"] and attachment["name"] == "notes.txt"
    answer = await http.get(local(attachment["url"], server))
    assert answer.content == b"hello file"
    assert answer.headers["content-disposition"] == "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"


async def test_a_fetch_refused_for_a_while_is_retried_until_it_is_kept(company, http, server, fakes):
    path, url = cdn_file(fakes, PNG, "image/png")
    fakes.script(path, (503, {"error": "busy"}), (503, {"error": "busy"}))
    conversation = await partner_sends(company, url)
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "STORED"
    assert len(fakes.seen("file", path)) == 3


async def test_a_file_that_cannot_be_fetched_says_so_and_the_message_stays(company, fakes):
    path, url = cdn_file(fakes, PNG, "image/png")
    del fakes.files[path]
    conversation = await partner_sends(company, url)
    [message] = await conversation_messages(company.admin, conversation)
    assert message["body"] == "look"
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "FAILED" and attachment["stored"] is False
    assert attachment["url"] == url  # a CDN's URL holds no credential: shown as it is


async def test_a_file_whose_type_is_not_its_kind_is_not_kept(company, fakes):
    _, url = cdn_file(fakes, b"<html><script>alert(1)</script></html>", "text/html", ".png")
    conversation = await partner_sends(company, url, "IMAGE")
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "FAILED"


async def test_a_file_over_the_size_bound_is_not_kept(company, http, server, fakes):
    _, url = cdn_file(fakes, b"x" * (MEDIA_MAX_BYTES + 1), "application/zip", ".zip")
    conversation = await partner_sends(company, url, "FILE")
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "TOO_LARGE" and not attachment["stored"]


async def test_at_most_four_files_of_one_channel_are_fetched_at_once(company, fakes):
    paths = [cdn_file(fakes, b"z", "application/octet-stream", ".bin")[0] for _ in range(6)]
    releases = [asyncio.Event() for _ in paths]
    for path, release in zip(paths, releases):
        fakes.script(path, Held(release, 200, {"ok": True}))
    fakes.most_files_in_flight = 0
    data = await company.partner.data(RECEIVE, {"input": {
        "externalMessageId": unique("m"), "sender": {"externalId": unique("c"), "name": "Carla"}, "body": "six",
        "attachments": [{"kind": "FILE", "url": f"{fakes.url}{path}"} for path in paths]}})
    conversation = data["receiveChannelMessage"]["conversation"]["id"]

    async def arrived():
        return [path for path in paths if fakes.seen("file", path)]

    first = await eventually(arrived, lambda found: len(found) == 4)
    assert fakes.files_in_flight == 4
    for path, release in zip(paths, releases):  # one by one: each freed slot lets one more in
        if path in first:
            release.set()
            break
    await eventually(arrived, lambda found: len(found) == 5)
    for release in releases:
        release.set()
    found = await settled(company.admin, conversation, 6)
    assert [a["storage"] for a in found] == ["STORED"] * 6
    assert fakes.most_files_in_flight == 4


# --- serving ------------------------------------------------------------------------------------

async def stored_file(company, fakes, body: bytes = PNG, content_type: str = "image/png", kind: str = "IMAGE",
                      suffix: str = ".png") -> tuple[str, dict]:
    _, url = cdn_file(fakes, body, content_type, suffix)
    conversation = await partner_sends(company, url, kind)
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "STORED"
    return conversation, attachment


async def test_another_company_s_user_and_a_user_without_the_channel_get_404_as_for_a_missing_file(
        company, other_company, http, server, fakes):
    _, attachment = await stored_file(company, fakes)
    plain = local(attachment["url"], server).split("?")[0]
    missing = await http.get(f"{server.url}/media/{secrets.token_hex(16)}",
                             headers={"Authorization": f"Bearer {company.admin.token}"})
    assert missing.status_code == 404
    for client in (other_company.admin, company.bob):  # bob is not a member of the CUSTOM channel
        answer = await http.get(plain, headers={"Authorization": f"Bearer {client.token}"})
        assert (answer.status_code, answer.content) == (404, missing.content)
    # no token, a forged signature, another user's signature used by bob: 404
    assert (await http.get(plain)).status_code == 404
    forged = local(attachment["url"], server)[:-4] + "0000"
    assert (await http.get(forged)).status_code == 404
    # with the bearer token of someone who may see it: 200
    assert (await http.get(plain, headers={"Authorization": f"Bearer {company.ann.token}"})).status_code == 200


async def first_conversation(company) -> str:
    data = await company.admin.data(
        "query($c: ID) { inbox(section: UNASSIGNED, channelId: $c, first: 1) { edges { node { id } } } }",
        {"c": company.channel_id})
    return data["inbox"]["edges"][0]["node"]["id"]


async def test_a_signed_url_stops_opening_once_its_user_loses_the_channel(company, http, server, fakes):
    conversation, _ = await stored_file(company, fakes)
    [message] = await conversation_messages(company.ann, conversation)
    url = local(message["attachments"][0]["url"], server)
    assert (await http.get(url)).status_code == 200
    await company.admin.data("mutation($c: ID!, $u: [ID!]!) { unshareChannel(channelId: $c, userIds: $u) { id } }",
                             {"c": company.channel_id, "u": [company.ids["ann"]]})
    assert (await http.get(url)).status_code == 404


async def test_audio_and_video_answer_range_requests(company, http, server, fakes):
    body = bytes(range(256)) * 40
    _, attachment = await stored_file(company, fakes, body, "audio/ogg", "AUDIO", ".ogg")
    url = local(attachment["url"], server)
    answer = await http.get(url, headers={"Range": "bytes=100-199"})
    assert answer.status_code == 206
    assert answer.content == body[100:200]
    assert answer.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert answer.headers["accept-ranges"] == "bytes"
    tail = await http.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == body[-10:]
    assert (await http.get(url, headers={"Range": f"bytes={len(body)}-"})).status_code == 416


async def test_html_and_svg_are_never_served_inline(company, http, server, fakes):
    for body, content_type, suffix in ((b"<html><script>alert(1)</script></html>", "text/html", ".html"),
                                       (b"<svg onload='alert(1)'/>", "image/svg+xml", ".svg")):
        _, attachment = await stored_file(company, fakes, body, content_type, "FILE", suffix)
        answer = await http.get(local(attachment["url"], server))
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert answer.headers["x-content-type-options"] == "nosniff"


# --- deletes ------------------------------------------------------------------------------------

async def test_deleting_a_conversation_erases_its_files(company, http, server, fakes):
    conversation, attachment = await stored_file(company, fakes)
    url = local(attachment["url"], server)
    assert await in_store(server, media_id(url))
    await company.admin.data(DELETE, {"c": conversation})
    assert (await http.get(url)).status_code == 404

    async def still_there():
        return await in_store(server, media_id(url))

    await eventually(still_there, lambda found: not found)


async def test_uninstalling_a_channel_erases_its_files(company, http, server, fakes):
    _, attachment = await stored_file(company, fakes)
    url = local(attachment["url"], server)
    await company.admin.data(UNINSTALL, {"c": company.channel_id})
    assert (await http.get(url)).status_code == 404

    async def still_there():
        return await in_store(server, media_id(url))

    await eventually(still_there, lambda found: not found)


# --- uploads for replies ------------------------------------------------------------------------

async def upload(http, server, client, body: bytes, content_type: str, name: str) -> httpx.Response:
    return await http.post(f"{server.url}/media", params={"name": name}, content=body,
                           headers={"Authorization": f"Bearer {client.token}", "Content-Type": content_type})


async def test_an_upload_goes_out_in_a_reply_as_a_signed_url_the_app_can_fetch(company, other_company, http, server,
                                                                             fakes):
    partner = await install_partner(company, fakes)
    answer = await upload(http, server, company.ann, PNG, "image/png", "chart.png")
    assert answer.status_code == 201
    uploaded = answer.json()
    other = await upload(http, server, other_company.admin, PNG, "image/png", "x.png")
    # another company cannot send this company's upload
    theirs = await other_company.conversation_of(await other_company.inbound("hi"))
    code = await other_company.admin.error_code(SEND, {"c": theirs, "b": "hi",
                                                       "a": [{"kind": "IMAGE", "url": uploaded["url"]}]})
    assert code == "BAD_USER_INPUT"
    assert other.status_code == 201

    sent = (await company.ann.data(SEND, {"c": partner.conversation_id, "b": "see",
                                          "a": [{"kind": "IMAGE", "url": uploaded["url"]}]}))["sendMessage"]
    assert sent["attachments"][0]["stored"] and sent["attachments"][0]["name"] == "chart.png"
    [callback] = await fakes.wait_for("partner", partner.name)
    [given] = json.loads(callback.body)["attachments"]
    assert "signature=" in given["url"] and "expires=" in given["url"]
    fetched = await http.get(local(given["url"], server))  # the app, without any token
    assert fetched.status_code == 200 and fetched.content == PNG


async def test_an_upload_over_the_size_bound_is_413_and_keeps_nothing(company, http, server):
    answer = await upload(http, server, company.admin, b"x" * (MEDIA_MAX_BYTES + 1), "application/zip", "big.zip")
    assert answer.status_code == 413


async def test_an_upload_needs_a_user_token(company, http, server):
    answer = await http.post(f"{server.url}/media", content=PNG, headers={"Content-Type": "image/png"})
    assert answer.status_code == 401


# --- the quota ----------------------------------------------------------------------------------

async def test_a_company_over_its_quota_keeps_receiving_messages_but_not_their_files(company, fakes):
    body = b"y" * 900_000
    for _ in range(3):
        await stored_file(company, fakes, body, "application/zip", "FILE", ".zip")
    _, url = cdn_file(fakes, body, "application/zip", ".zip")
    conversation = await partner_sends(company, url, "FILE")
    [message] = await conversation_messages(company.admin, conversation)
    assert message["body"] == "look"
    [attachment] = await settled(company.admin, conversation)
    assert attachment["storage"] == "OVER_QUOTA" and not attachment["stored"]


async def test_metrics_show_each_company_s_stored_bytes(company, app_with, http, fakes):
    await stored_file(company, fakes, b"q" * 1234, "application/zip", "FILE", ".zip")
    await stored_file(company, fakes, b"q" * 766, "application/zip", "FILE", ".zip")
    running = await app_with(metrics_token="media-metrics")
    answer = await http.get(f"{running.url}/metrics", headers={"Authorization": "Bearer media-metrics"})
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(answer.text) for s in family.samples}
    assert samples[("inbox_media_stored_bytes", frozenset({("company", str(await company_pk(company)))}))] == 2000


# --- the S3 store over its protocol -------------------------------------------------------------

async def test_the_s3_store_keeps_reads_ranges_and_erases_files_over_the_s3_protocol(tmp_path):
    from server.media import S3Store

    settings = s3_settings(start_moto(), "inbox-test-store", "pre/fix")
    store = S3Store(settings["media_s3_url"], endpoint=settings["media_s3_endpoint"], region="us-east-1",
                    access_key_id="test", secret_access_key="test")
    source = tmp_path / "file"
    source.write_bytes(b"0123456789")
    await store.put("1/2/3/abc", source)
    assert not source.exists()
    assert b"".join([chunk async for chunk in store.read("1/2/3/abc", 0, 9)]) == b"0123456789"
    assert b"".join([chunk async for chunk in store.read("1/2/3/abc", 2, 4)]) == b"234"
    assert await store.exists("1/2/3/abc")
    listed = store.client.list_objects_v2(Bucket="inbox-test-store")["Contents"]
    assert [item["Key"] for item in listed] == ["pre/fix/1/2/3/abc"]
    await store.delete("1/2/3/abc")
    assert not await store.exists("1/2/3/abc")


def test_the_run_s_store_is_the_one_asked_for(server):
    assert bool(server.settings.media_s3_url) == TEST_MEDIA_S3
    if not TEST_MEDIA_S3:
        assert os.path.isabs(server.settings.media_dir)
