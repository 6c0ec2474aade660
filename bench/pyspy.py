"""Profiling the server with py-spy (in the venv) and summarising where its CPU went.

`Recorder` samples a running process (blocking: exact stacks, the server paused for each sample)
into py-spy's raw collapsed-stack format; `summarise()` reads that file and
attributes every sample to the innermost frame that falls in a known category
(so the categories add up to 100 %), and lists the heaviest functions by self and
inclusive time.

    .venv/bin/python bench/pyspy.py FILE.txt     # summarise a raw profile
"""
from __future__ import annotations

import collections
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

PYSPY = shutil.which("py-spy") or str(pathlib.Path(sys.executable).parent / "py-spy")

# (category, substrings of "function (path:line)"); the innermost matching frame wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("SQL driver (sqlite3/aiosqlite/asyncpg)", ("aiosqlite/", "asyncpg/", "/sqlite3/")),
    ("ORM (tortoise, pypika)", ("tortoise/", "pypika")),
    ("JSON encode/decode", ("/json/",)),
    ("GraphQL parse + validate", ("graphql/language/", "graphql/validation/", "graphql/utilities/")),
    ("GraphQL execution (graphql-core)", ("graphql/execution/", "graphql/pyutils/", "graphql/type/",
                                          "graphql/error/")),
    ("strawberry websocket protocol handler", ("strawberry/subscriptions/",)),
    ("strawberry HTTP view", ("strawberry/http/", "strawberry/asgi/", "cross_web/")),
    ("strawberry schema/types/resolvers glue", ("strawberry/",)),
    ("hub fan-out (subscriptions/hub.py)", ("subscriptions/hub.py",)),
    ("subscription streams + event decode", ("resolvers/subscriptions.py", "inbox/events.py")),
    ("broadcaster", ("broadcaster/",)),
    ("project resolvers + types (schema/, resolvers/)", ("/schema/", "/resolvers/")),
    ("project domain (inbox/, server/, channels/)", ("/inbox/", "/server/", "/channels/")),
    ("websocket frames + transport (websockets, uvicorn ws)", ("uvicorn/protocols/websockets", "/websockets/")),
    # The server's own calls to the apps' APIs (a new Messenger contact's profile...): else
    # their frames fall through to the event loop's category.
    ("HTTP client (httpx, httpcore, anyio)", ("httpx/", "httpcore/", "anyio/")),
    ("HTTP protocol (uvicorn, httptools, h11)", ("uvicorn/protocols/http", "httptools", "/h11/")),
    ("starlette", ("starlette/",)),
    ("uvicorn other", ("uvicorn/",)),
    ("asyncio event loop", ("asyncio/", "uvloop")),
    ("logging", ("logging/",)),
]


def available() -> bool:
    return os.path.exists(PYSPY) or shutil.which("py-spy") is not None


WRAPPERS = ("(uvicorn/", "(starlette/", "(asyncio/", "(threading.py)", "(server/cli.py)", "(inbox)",
            "BodyLimit.", "GraphQLEndpoint.", "(contextlib.py)")


class Recorder:
    """py-spy record on `pid` until `stop()`; writes the raw profile to `output`."""

    def __init__(self, pid: int, output: pathlib.Path, rate: int = 200) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        self.process = subprocess.Popen(
            [PYSPY, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--output", str(output)], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        time.sleep(0.5)  # attached

    def stop(self) -> bool:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return False
        return self.output.exists() and self.output.stat().st_size > 0


def _frames(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def _short(frame: str) -> str:
    """`function (path:line)` -> `function (package/file.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def category(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def _waiting() -> tuple[str, ...]:
    """Innermost frames py-spy counts as running although they only wait: aiosqlite's
    worker thread blocked on its queue for the next statement (`tx.get()`, a lock wait
    its idle detection misses). Left in, they were 40 % of an inbound profile."""
    try:
        import inspect

        from aiosqlite import core
        lines, start = inspect.getsourcelines(core._connection_worker_thread)
    except (ImportError, AttributeError, OSError):
        return ()
    return tuple(f"_connection_worker_thread (aiosqlite/core.py:{start + number})"
                 for number, line in enumerate(lines) if "tx.get()" in line)


def summarise(path: pathlib.Path, top: int = 15) -> dict:
    waiting = _waiting()
    total = 0
    categories: collections.Counter = collections.Counter()
    self_time: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    with open(path) as lines:
        for line in lines:
            parsed = _frames(line)
            if parsed is None:
                continue
            stack, count = parsed
            if stack[-1] in waiting:
                continue
            total += count
            categories[category(stack)] += count
            self_time[_short(stack[-1])] += count
            for frame in {_short(f) for f in stack}:
                inclusive[frame] += count
    if not total:
        return {"samples": 0, "categories": [], "self": [], "inclusive": []}

    def share(items):
        return [(name, round(100 * n / total, 1)) for name, n in items]

    # The event loop, the server and the ASGI middleware chain are on (nearly) every
    # stack and say nothing about where the time goes.
    telling = [(name, n) for name, n in inclusive.most_common()
               if n < 0.9 * total and not any(marker in name for marker in WRAPPERS)]
    return {"samples": total, "categories": share(categories.most_common()),
            "self": share(self_time.most_common(top)), "inclusive": share(telling[:top + 10])}


def markdown(summary: dict, title: str) -> str:
    if not summary.get("samples"):
        return f"#### {title}\n\n(no samples)\n"
    out = [f"#### {title}", "",
           f"{summary['samples']} samples (py-spy at 200 Hz, CPU only, idle and aiosqlite's queue wait excluded).", "",
           "| category (innermost frame) | share |", "| --- | --- |"]
    out += [f"| {name} | {pct} % |" for name, pct in summary["categories"] if pct >= 0.5]
    out += ["", "| heaviest functions, self time | share |", "| --- | --- |"]
    out += [f"| `{name}` | {pct} % |" for name, pct in summary["self"][:10]]
    out += ["", "| heaviest functions, inclusive | share |", "| --- | --- |"]
    out += [f"| `{name}` | {pct} % |" for name, pct in summary["inclusive"][:20]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(markdown(summarise(pathlib.Path(argument)), os.path.basename(argument)))
