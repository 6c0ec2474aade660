"""The tests of Echo (tests/fifth_app/channels/echo.py), the fifth messaging app, as its
author would write them: this file, with the session's server and fakes of
tests/conftest.py, and nothing else edited. Not collected by a plain `pytest` (the name):
tests/test_fifth_app.py runs it in a session of its own with tests/fifth_app on
PYTHONPATH, since ChannelKind is built once, when the models are imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse

from conftest import message_reaches

INSTALL = """
mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id kind } webhookPath } }"""
INBOX = """
query($c: ID) { inbox(section: UNASSIGNED, channelId: $c, first: 5) {
  edges { node { id replyWindow { state } contact { name externalId }
    messages(first: 5) { edges { node { body direction } } } } } } }"""
SEND = "mutation($c: ID!, $b: String) { sendMessage(conversationId: $c, body: $b) { id status } }"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_echo_is_a_kind_after_the_others():
    import models

    assert [kind.value for kind in models.ChannelKind] == ["MESSENGER", "WHATSAPP", "CUSTOM", "TELEGRAM", "ECHO"]
    assert models.ChannelKind.ECHO == "ECHO"


def test_echo_is_in_the_graphql_schema_and_its_install_input():
    from schema import schema

    sdl = schema.as_str()
    kinds = sdl.split("enum ChannelKind {")[1].split("}")[0].split()
    assert kinds == ["MESSENGER", "WHATSAPP", "CUSTOM", "TELEGRAM", "ECHO"]
    install = sdl.split("input InstallChannelInput {")[1].split("}")[0]
    assert "echo: EchoConfigInput" in install
    assert "input EchoConfigInput {" in sdl and "apiKey: String!" in sdl.split("input EchoConfigInput {")[1]


def test_echo_declares_its_own_setting():
    from server.config import SETTINGS, Settings

    assert ("INBOX_ECHO_API_BASE", "https://api.echo.example",
            "Echo API base (the tests' fifth messaging app)") in SETTINGS
    assert Settings.from_env().echo_api_base == "https://api.echo.example"
    done = subprocess.run([sys.executable, "-m", "server.cli", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "INBOX_ECHO_API_BASE": "http://echo.test/"})
    assert done.returncode == 0, done.stderr
    assert "INBOX_ECHO_API_BASE" in done.stdout


def test_echo_needs_no_migration():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_migrations import DETECT

    done = subprocess.run([sys.executable, "-c", DETECT], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", "adding ECHO made the models differ from the migrations"


async def test_an_echo_channel_installs_receives_and_replies(server, fakes, company, http):
    async def echo_api(request: Request):
        assert request.url.path.endswith("/send")
        return JSONResponse({"id": f"echo-{uuid.uuid4().hex[:8]}"})

    fakes.serve_app("echo_api_base", echo_api)
    key = uuid.uuid4().hex
    data = await company.admin.data(INSTALL, {"i": {"kind": "ECHO", "name": "Echo", "echo": {"apiKey": key}}})
    channel = data["installChannel"]["channel"]
    assert channel["kind"] == "ECHO"
    url = server.url + data["installChannel"]["webhookPath"]

    body = json.dumps({"id": "e1", "from": {"id": "u1", "name": "Ada"}, "text": "Hi Echo",
                       "time": int(time.time())}).encode()
    from channels.echo import signature  # the app's module, found on the extended channels path

    assert (await http.post(url, content=body, headers={"X-Echo-Signature": "sha256=00"})).status_code == 403
    assert (await http.post(url, content=b"{", headers={"X-Echo-Signature": signature(key, b"{")})).status_code == 400
    for _ in range(2):  # the same message twice: stored once
        response = await http.post(url, content=body, headers={"X-Echo-Signature": signature(key, body)})
        assert response.status_code == 200, response.text

    conversations = (await company.admin.data(INBOX, {"c": channel["id"]}))["inbox"]["edges"]
    assert len(conversations) == 1
    conversation = conversations[0]["node"]
    assert conversation["contact"] == {"name": "Ada", "externalId": "u1"}
    assert conversation["replyWindow"] is None  # Echo has no window policy
    assert [edge["node"]["body"] for edge in conversation["messages"]["edges"]] == ["Hi Echo"]

    sent = (await company.admin.data(SEND, {"c": conversation["id"], "b": "Hello Ada"}))["sendMessage"]
    await message_reaches(company.admin, sent["id"], "SENT")
    [call] = fakes.seen("echo_api_base", "send")
    assert call.json() == {"to": "u1", "text": "Hello Ada"}
    assert call.headers["authorization"] == f"Bearer {key}"
