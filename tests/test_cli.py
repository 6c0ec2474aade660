"""The `inbox` command line (SPEC §7), run as a user runs it: real processes."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from server.config import SETTINGS

from conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
INBOX = shutil.which("inbox") or str(pathlib.Path(sys.executable).parent / "inbox")


def run_inbox(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([INBOX, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@contextlib.contextmanager
def serving(env: dict, command: str = "serve"):
    """`inbox serve` (or `demo`) in a process of its own; yields (base url, process)."""
    port = free_port()
    process = subprocess.Popen([INBOX, command, "--port", str(port)], env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 503):
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        yield base, process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()


@pytest.fixture
def sqlite_env(tmp_path) -> dict:
    return {"INBOX_DATABASE_URL": f"sqlite://{tmp_path}/cli.sqlite3", "INBOX_BROADCAST_URL": "memory://"}


def graphql(base: str, token: str, query: str) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    return response.json()


def test_help_lists_every_setting():
    done = run_inbox("--help")
    assert done.returncode == 0
    for name, _, _ in SETTINGS:
        assert name in done.stdout


def test_export_schema_prints_the_committed_sdl():
    done = run_inbox("export-schema")
    assert done.returncode == 0
    assert done.stdout.strip() == (ROOT / "graphql" / "schema.graphql").read_text().strip()


def test_bootstrap_works_on_an_empty_database_and_prints_a_working_token(sqlite_env):
    done = run_inbox("bootstrap", "--company", "Acme", "--admin-name", "Ada", "--admin-email", "ada@acme.test",
                     env=sqlite_env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed) == {"companyId", "userId", "token"}
    with serving(sqlite_env) as (base, _):
        body = graphql(base, printed["token"], "{ me { id name isAdmin } }")
    assert body["data"]["me"] == {"id": printed["userId"], "name": "Ada", "isAdmin": True}


def test_bootstrap_works_while_serve_runs(sqlite_env):
    with serving(sqlite_env) as (base, _):
        done = run_inbox("bootstrap", "--company", "Beta", "--admin-name", "Bea", "--admin-email", "bea@b.test",
                         env=sqlite_env)
        assert done.returncode == 0, done.stderr
        body = graphql(base, json.loads(done.stdout)["token"], "{ me { name } }")
    assert body["data"]["me"]["name"] == "Bea"


def test_bootstrap_refuses_bad_input_with_its_code(sqlite_env):
    done = run_inbox("bootstrap", "--company", "Acme", "--admin-name", "Ada", "--admin-email", "not-an-email",
                     env=sqlite_env)
    assert done.returncode != 0
    assert "BAD_USER_INPUT" in done.stderr


def test_serve_answers_healthz_and_shows_graphiql_to_a_browser(sqlite_env):
    with serving(sqlite_env) as (base, _):
        health = httpx.get(f"{base}/healthz")
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
    assert health.status_code == 200
    assert page.status_code == 200 and "graphiql" in page.text.lower()


@pytest.mark.parametrize("asked", ["", "true"])
def test_serve_logs_a_line_per_request_only_when_asked_for(sqlite_env, asked):
    with serving({**sqlite_env, "INBOX_ACCESS_LOG": asked}) as (base, process):
        assert httpx.get(f"{base}/healthz").status_code == 200
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert ("GET /healthz" in output) == bool(asked), output


def test_healthz_is_503_when_the_broadcast_backend_is_unreachable(sqlite_env):
    with serving({**sqlite_env, "INBOX_BROADCAST_URL": "redis://127.0.0.1:1/0"}) as (base, _):
        health = httpx.get(f"{base}/healthz")
    assert health.status_code == 503
    assert health.json() == {"database": True, "broadcast": False}


def test_demo_serves_a_live_inbox_across_every_section(tmp_path):
    env = {"INBOX_DATABASE_URL": f"sqlite://{tmp_path}/demo.sqlite3", "INBOX_BROADCAST_URL": "memory://"}
    with serving(env, command="demo") as (base, process):
        body = None
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline and not any("Ada Admin" in line for line in lines):
            lines.append(process.stdout.readline())
        token = next(line.split()[-1] for line in lines if "Ada Admin" in line)
        body = graphql(base, token, "{ inboxCounts { unassigned assignedToMe assignedToOthers closed } "
                                    "channels { kind } }")
    counts = body["data"]["inboxCounts"]
    assert all(counts[key] > 0 for key in counts), counts
    assert sum(counts.values()) == 30
    assert sorted(c["kind"] for c in body["data"]["channels"]) == ["CUSTOM", "MESSENGER", "WHATSAPP"]


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    assert [name for name, _, _ in SETTINGS if f"`{name}`" not in readme] == []


def test_a_stalled_request_does_not_keep_a_stopping_server_alive(sqlite_env):
    import socket as sockets

    with serving(sqlite_env) as (base, process):
        # Given a client that sent half of a request's body and then stalled
        port = int(base.rsplit(":", 1)[1])
        stalled = sockets.create_connection(("127.0.0.1", port))
        stalled.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"query\":")
        time.sleep(0.2)  # the server is now reading that body (no event to wait on from outside)
        # When the server is asked to stop
        started = time.monotonic()
        process.terminate()
        # Then it stops within its graceful-shutdown bound, not when the client lets go
        process.wait(30)
        stalled.close()
    assert time.monotonic() - started < 25
