"""The raw-websocket baseline: the least a Python server on the same stack (starlette
on uvicorn, same settings as `inbox serve`) can do for the same clients. The
benchmark reports the inbox's figures as ratios to this server's, measured in the
same run on the same machine.

- websocket /graphql (graphql-transport-ws-ish): `connection_init` -> `connection_ack`;
  `subscribe` registers the socket; `complete` unregisters it; `ping` -> `pong`.
- POST /publish {"seq": int, "body": str}: builds ONE `next` frame shaped like the
  inbox's `messageAdded { id body cursor }` and sends those same bytes to every
  subscribed socket, then answers 200.
- POST /graphql: a pre-serialised `{ me { id } }` answer by bare ASGI (the HTTP baseline);
  POST /starlette/graphql: the same through a starlette route (what starlette itself costs).
- GET /healthz: 200.

    .venv/bin/python bench/baseline.py --port 8100
"""
from __future__ import annotations

import argparse
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# Every benchmark client subscribes with operation id "1", so one frame fits all.
OPERATION_ID = "1"
ME = json.dumps({"data": {"me": {"id": "VXNlcjox"}}}).encode()

subscribers: set[WebSocket] = set()


async def graphql_ws(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="graphql-transport-ws")
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            kind = message.get("type")
            if kind == "connection_init":
                await websocket.send_text('{"type":"connection_ack"}')
            elif kind == "subscribe":
                subscribers.add(websocket)
            elif kind == "complete":
                subscribers.discard(websocket)
            elif kind == "ping":
                await websocket.send_text('{"type":"pong"}')
    except WebSocketDisconnect:
        pass
    finally:
        subscribers.discard(websocket)


async def publish(request: Request) -> Response:
    event = await request.json()
    seq = event["seq"]
    frame = json.dumps({"id": OPERATION_ID, "type": "next", "payload": {"data": {"messageAdded": {
        "id": f"TWVzc2FnZTo{seq}", "body": event["body"], "cursor": str(seq)}}}})
    for websocket in list(subscribers):
        try:
            await websocket.send_text(frame)
        except Exception:  # a closing socket: the benchmark counts what clients got
            subscribers.discard(websocket)
    return Response(b'{"ok":true}', media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def graphql_http(request: Request) -> Response:
    await request.body()
    return Response(ME, media_type="application/json")


routes = Starlette(routes=[
    Route("/starlette/graphql", graphql_http, methods=["POST"]),
    WebSocketRoute("/graphql", graphql_ws),
    Route("/publish", publish, methods=["POST"]),
    Route("/healthz", healthz),
])


async def app(scope, receive, send) -> None:
    """POST /graphql is answered by bare ASGI, the least any Python framework on uvicorn
    can do per request (the HTTP baseline); everything else goes through starlette."""
    if scope["type"] == "http" and scope["path"] == "/graphql" and scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ME)).encode())]})
        await send({"type": "http.response.body", "body": ME})
        return
    await routes(scope, receive, send)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    # As `inbox serve` runs uvicorn (server/cli.py), ping interval included.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_ping_interval=20, ws_ping_timeout=20)


if __name__ == "__main__":
    main()
