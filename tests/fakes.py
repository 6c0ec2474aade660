"""Local stand-ins for Meta's Graph API, Twilio's REST and Content APIs, Telegram's
Bot API and a partner's callback endpoint, on 127.0.0.1, speaking their real formats. They record every request and
can be scripted, per recipient, to fail (500, 429, 400...) or hang.

Scripts are keyed by what a test owns (a PSID, a phone number, a callback path), so
tests sharing the one fake server never see each other's failures. Any other messaging
app's tests serve its API's fake here too (`serve_app`), without editing this file."""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HANG = "hang"
# An answer 200 whose body never ends (until the client goes away).
ENDLESS = "endless"


@dataclass
class Held:
    """A scripted answer given only once `release` is set (the app is slow to answer)."""
    release: asyncio.Event
    status: int
    payload: dict


@dataclass
class Recorded:
    kind: str  # "messenger_send" | "messenger_profile" | "twilio_send" | "partner"
    key: str
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    def form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def form_lists(self) -> dict:
        """Every value of each name (Twilio's MediaUrl repeats)."""
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class FakeProviders:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    scripts: dict[str, list] = field(default_factory=dict)
    profiles: dict[str, dict] = field(default_factory=dict)
    # Twilio Content API templates by Content SID: the resource as the API returns it.
    contents: dict[str, dict] = field(default_factory=dict)
    # Files the apps serve, by path under this server: (bytes, content type, basic auth
    # wanted or None). Removing one is a URL that stopped working (Meta's CDN).
    files: dict[str, tuple[bytes, str, tuple[str, str] | None]] = field(default_factory=dict)
    # File requests being answered now (any path), and the most at once.
    files_in_flight: int = 0
    most_files_in_flight: int = 0
    # Requests being answered now, and the most at once, per key.
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    # Any other messaging app's API, by its setting's field (e.g. "echo_api_base"): conftest
    # points each URL setting of the apps at app_base(field), where the app's own tests
    # serve its fake (serve_app).
    apps: dict[str, Callable[[Request], Awaitable[Response]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _arrived: asyncio.Event | None = None

    # Base URLs to configure the server with.
    @property
    def messenger_base(self) -> str:
        return f"{self.url}/graph/v19.0"

    @property
    def twilio_base(self) -> str:
        return f"{self.url}/twilio"

    @property
    def twilio_content_base(self) -> str:
        return f"{self.url}/twilio-content"

    @property
    def telegram_base(self) -> str:
        return f"{self.url}/telegram"

    def app_base(self, setting: str) -> str:
        return f"{self.url}/apps/{setting}"

    def serve_app(self, setting: str, handler: Callable[[Request], Awaitable[Response]]) -> None:
        """Answers the calls to the API an app's setting points at with `handler`; they are
        recorded as kind `setting`, key their path under the base (scripts come first)."""
        self.apps[setting] = handler

    async def app_api(self, request: Request) -> Response:
        setting = request.path_params["setting"]
        scripted = await self._record(request, setting, request.path_params["rest"])
        if scripted is not None:
            return scripted
        if setting not in self.apps:
            return JSONResponse({"error": f"no fake serves {setting}"}, status_code=404)
        return await self.apps[setting](request)

    def serve_file(self, path: str, body: bytes, content_type: str, auth: tuple[str, str] | None = None) -> str:
        """Serves `body` at `path` (under this server) until removed; returns its URL."""
        self.files[path] = (body, content_type, auth)
        return f"{self.url}{path}"

    async def file(self, request: Request) -> Response:
        path = request.url.path
        self.files_in_flight += 1
        self.most_files_in_flight = max(self.most_files_in_flight, self.files_in_flight)
        try:
            scripted = await self._record(request, "file", path)
        finally:
            self.files_in_flight -= 1
        if scripted is not None:
            return scripted
        if path not in self.files:
            return Response("gone", status_code=404)
        body, content_type, auth = self.files[path]
        if auth is not None:
            expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        return Response(body, media_type=content_type)

    def callback_url(self, name: str) -> str:
        return f"{self.url}/partner/{name}"

    def script(self, key: str, *responses) -> None:
        """The next answers for `key`: (status, json body) or (status, json body, headers)
        tuples, Held ones, HANG or ENDLESS; then the default."""
        self.scripts.setdefault(key, []).extend(responses)

    def seen(self, kind: str, key: str) -> list[Recorded]:
        return [r for r in self.requests if r.kind == kind and r.key == key]

    async def wait_for(self, kind: str, key: str, count: int = 1, timeout: float = 10.0) -> list[Recorded]:
        """Waits until `count` requests of that kind and key arrived; returns them."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen(kind, key)) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{kind}/{key}: {len(self.seen(kind, key))} of {count} requests arrived")
            self._arrived = self._arrived or asyncio.Event()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            self._arrived.clear()
        return self.seen(kind, key)

    async def _record(self, request: Request, kind: str, key: str) -> Response | None:
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.most_in_flight[key] = max(self.most_in_flight.get(key, 0), self.in_flight[key])
        try:
            return await self._answer(request, kind, key)
        finally:
            self.in_flight[key] -= 1

    async def _answer(self, request: Request, kind: str, key: str) -> Response | None:
        body = await request.body()
        self.requests.append(Recorded(kind, key, request.method, request.url.path, dict(request.query_params),
                                      {k.lower(): v for k, v in request.headers.items()}, body))
        if self._arrived is not None:
            self._arrived.set()
        queue = self.scripts.get(key)
        if queue:
            answer = queue.pop(0)
            if answer == HANG:
                # Hangs until the client gives up (a sleep would hold the fake server's shutdown).
                while not await request.is_disconnected():
                    await asyncio.sleep(0.05)
                return Response(status_code=499)
            if answer == ENDLESS:
                async def chunks():
                    yield b'{"externalMessageId": "never-read", "padding": "'
                    while True:
                        yield b"x" * 16384
                        await asyncio.sleep(0)
                return StreamingResponse(chunks(), media_type="application/json")
            if isinstance(answer, Held):
                await answer.release.wait()
                answer = (answer.status, answer.payload)
            status, payload, *headers = answer
            return JSONResponse(payload, status_code=status, headers=headers[0] if headers else None)
        return None

    # Meta Graph API
    async def messenger_send(self, request: Request) -> Response:
        payload = json.loads(await request.body() or b"{}")
        psid = str(payload.get("recipient", {}).get("id"))
        scripted = await self._record(request, "messenger_send", psid)
        if scripted is not None:
            return scripted
        return JSONResponse({"recipient_id": psid, "message_id": f"m_fake{next(self._ids)}"})

    async def messenger_profile(self, request: Request) -> Response:
        psid = request.path_params["psid"]
        scripted = await self._record(request, "messenger_profile", psid)
        if scripted is not None:
            return scripted
        profile = self.profiles.get(psid)
        if profile is None:
            return JSONResponse({"error": {"message": "Unsupported get request.", "type": "GraphMethodException",
                                           "code": 100}}, status_code=400)
        return JSONResponse({"id": psid, **profile})

    # Twilio REST API
    async def twilio_send(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        to = form.get("To", "").removeprefix("whatsapp:")
        scripted = await self._record(request, "twilio_send", to)
        if scripted is not None:
            return scripted
        sid = f"SM{next(self._ids):032x}"
        return JSONResponse({"sid": sid, "status": "queued", "to": form.get("To"), "from": form.get("From"),
                             "body": form.get("Body"), "account_sid": request.path_params["account"]},
                            status_code=201)

    # Twilio Content API: GET /v1/Content/{sid}
    async def twilio_content(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        scripted = await self._record(request, "twilio_content", sid)
        if scripted is not None:
            return scripted
        content = self.contents.get(sid)
        if content is None:
            return JSONResponse({"code": 20404, "message": f"The requested resource /v1/Content/{sid} was not found",
                                 "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404},
                                status_code=404)
        return JSONResponse({"sid": sid, "account_sid": "AC", "friendly_name": "template", "language": "en",
                             "url": f"https://content.twilio.com/v1/Content/{sid}", **content})

    # Telegram Bot API: /bot<token>/<method>, JSON parameters, {"ok": ..., "result": ...}.
    # Keyed by the chat for sends, by the token for the webhook's methods.
    async def telegram(self, request: Request) -> Response:
        token, method = request.path_params["token"], request.path_params["method"]
        payload = json.loads(await request.body() or b"{}")
        chat = payload.get("chat_id")
        scripted = await self._record(request, f"telegram_{method}", str(chat) if chat is not None else token)
        if scripted is not None:
            return scripted
        if method in ("setWebhook", "deleteWebhook"):
            described = "Webhook was set" if method == "setWebhook" else "Webhook was deleted"
            return JSONResponse({"ok": True, "result": True, "description": described})
        if method == "getFile":
            file_id = payload.get("file_id")
            return JSONResponse({"ok": True, "result": {"file_id": file_id, "file_unique_id": f"u{file_id}",
                                                        "file_size": 1024, "file_path": f"files/{file_id}"}})
        if method in ("sendMessage", "sendPhoto", "sendDocument"):
            sent = {"message_id": next(self._ids), "date": 1_700_000_000,
                    "chat": {"id": chat, "type": "private"}, "from": {"id": 1, "is_bot": True, "first_name": "Bot"}}
            if method == "sendMessage":
                sent["text"] = payload.get("text")
            elif method == "sendPhoto":
                sent["photo"] = [{"file_id": "AgAC", "file_unique_id": "AQAD", "width": 90, "height": 90}]
            else:
                sent["document"] = {"file_id": "BQAC", "file_unique_id": "AgAD"}
            return JSONResponse({"ok": True, "result": sent})
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)

    # A partner's callback endpoint
    async def partner(self, request: Request) -> Response:
        scripted = await self._record(request, "partner", request.path_params["name"])
        if scripted is not None:
            return scripted
        return JSONResponse({"externalMessageId": f"partner-{next(self._ids)}"})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/graph/v19.0/me/messages", self.messenger_send, methods=["POST"]),
            Route("/graph/v19.0/{psid}", self.messenger_profile, methods=["GET"]),
            Route("/twilio/2010-04-01/Accounts/{account}/Messages.json", self.twilio_send, methods=["POST"]),
            Route("/partner/{name}", self.partner, methods=["POST"]),
            Route("/twilio-content/v1/Content/{sid}", self.twilio_content, methods=["GET"]),
            Route("/telegram/bot{token}/{method}", self.telegram, methods=["POST"]),
            # Files: Telegram's /file/bot<token>/<file_path>, Twilio's media, a CDN.
            Route("/telegram/file/{rest:path}", self.file, methods=["GET"]),
            Route("/twilio/2010-04-01/Accounts/{account}/Messages/{sid}/Media/{media}", self.file, methods=["GET"]),
            Route("/cdn/{rest:path}", self.file, methods=["GET"]),
            Route("/apps/{setting}/{rest:path}", self.app_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])


async def start_fakes() -> tuple[FakeProviders, uvicorn.Server, asyncio.Task]:
    fakes = FakeProviders()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fakes.app(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    fakes.url = f"http://127.0.0.1:{port}"
    return fakes, server, task
