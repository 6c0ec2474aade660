"""The browser side, served by the server itself (no CDN, no Node.js): the reference web
inbox at `/`, GraphiQL at `/graphql` for a browser, and their files under `/web/`
(server/web/, vendored libraries in server/web/vendor/)."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

FILES = Path(__file__).parent / "web"


@cache
def graphiql_html() -> str:
    return (FILES / "graphiql.html").read_text()


async def inbox_page(request: Request) -> FileResponse:
    return FileResponse(FILES / "index.html")


routes = [
    Route("/", inbox_page),
    Mount("/web", StaticFiles(directory=FILES)),
]
