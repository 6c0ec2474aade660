"""How uvicorn serves the app: one set of options for `inbox serve` (one process or
`--workers N`), `inbox demo` and the tests, so that every bound set here applies everywhere."""
from __future__ import annotations

from typing import Any

from .config import Settings

# A request that never ends (a hung client, a stuck query) must not keep a stopping
# server alive: websockets reconnect and resume.
GRACEFUL_SHUTDOWN_SECONDS = 10
# Request line and headers, for uvicorn's h11 parser (httptools has its own limits).
MAX_HEADER_BYTES = 64 * 1024


def _http_protocol(settings: Settings) -> Any:
    """httptools with one write per response and a deadline for each request's head
    (borrowed/uvicorn_http.py), else uvicorn's choice (h11: no head deadline)."""
    try:
        from borrowed.uvicorn_http import BoundedHttpToolsProtocol
    except ImportError:  # no httptools: h11
        return "auto"
    return BoundedHttpToolsProtocol.bounded(settings.header_timeout_seconds)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` or `uvicorn.Config`, host and port aside."""
    return dict(
        log_level=settings.log_level.lower(),
        # A line per request costs about a tenth of a small query's CPU: asked for, not by default.
        access_log=settings.access_log,
        http=_http_protocol(settings),
        # The websockets library's sans-I/O protocol: direct delivery writes to its
        # transport (subscriptions/direct.py), and a client message over `ws_max_size`
        # closes the socket with 1009 before its payload is read (issue 11).
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_message_bytes,
        # Off unless asked for: a client that offers permessage-deflate (every browser)
        # would make the server compress each of its frames (zlib state per socket, CPU
        # per frame, and no direct write of pre-built frames: subscriptions/direct.py).
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
