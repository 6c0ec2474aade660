"""Issue 14's last criterion: adding a fifth messaging app touches only its own module
(with its GraphQL input type) and its tests. Echo (tests/fifth_app/channels/echo.py) is
such an app, kept outside channels/: a `channels/` folder on sys.path joins the package.
ChannelKind is built once, when the models are imported, so Echo's own tests
(tests/fifth_app/check_echo.py) run in a test session of their own with tests/fifth_app on
PYTHONPATH: it is a kind, in the GraphQL schema and its install input, has its setting,
needs no migration, installs, receives a webhook and sends a reply to a local fake."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import models
from channels import providers
from server.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
FIFTH = ROOT / "tests" / "fifth_app"


def test_the_fifth_app_is_not_an_app_of_this_session():
    assert "ECHO" not in {kind.value for kind in models.ChannelKind}
    assert "ECHO" not in {app.kind.value for app in providers()}
    assert "INBOX_ECHO_API_BASE" not in {name for name, _, _ in SETTINGS}


def test_a_fifth_app_added_as_its_module_and_its_tests_works():
    # Its own session on SQLite and in-memory broadcast: never this session's PostgreSQL
    # database (a second session would reset its schema) or Redis.
    env = {key: value for key, value in os.environ.items() if not key.startswith("INBOX_")}
    env["PYTHONPATH"] = os.pathsep.join([str(FIFTH), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(FIFTH / "check_echo.py")],
                          capture_output=True, text=True, timeout=170, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout[-2000:]
