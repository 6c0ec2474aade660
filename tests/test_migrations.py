"""The committed migrations describe the models exactly: a model change without its
migration fails here (`tortoise makemigrations` writes the missing one)."""
from __future__ import annotations

import json
import subprocess
import sys

DETECT = """
import asyncio
from tortoise.cli.cli import tortoise_cli_context
from tortoise.migrations.autodetector import MigrationAutodetector
from server.config import tortoise_config

async def main():
    config = tortoise_config("sqlite://:memory:")
    async with tortoise_cli_context(config) as ctx:
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    print(len(writers))

asyncio.run(main())
"""


def test_models_have_no_changes_missing_from_migrations():
    done = subprocess.run([sys.executable, "-c", DETECT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", "models changed: run `tortoise makemigrations`"


NOTE_LINES = """
import asyncio, json, sys, tempfile
from tortoise import Tortoise, connections
from tortoise.migrations.api import migrate
from server.config import tortoise_config

async def main():
    config = tortoise_config(f"sqlite://{tempfile.mkdtemp()}/db.sqlite3")
    await migrate(config=config, target="inbox.0006_early_receipts")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    db = connections.get("default")
    entries = [{"messageId": 2, "sender": "Jane <J>", "sentAt": "2026-03-01T09:05:00+00:00", "body": "b & c"},
               {"messageId": 1, "sender": "Jane <J>", "sentAt": "2026-03-01T09:00:00+00:00", "body": "a"}]
    content = ("Conversation with Jane &lt;J&gt; on App\\nUnassigned\\nhttp://x/c/1\\n\\n"
               "[2026-03-01 09:00 UTC] Jane &lt;J&gt;: a\\n[2026-03-01 09:05 UTC] Jane &lt;J&gt;: b &amp; c")
    await db.execute_query("INSERT INTO company (id, name, created_at) VALUES (1, 'Acme', '2026-03-01')")
    await db.execute_query(
        "INSERT INTO note (id, company_id, target_kind, target_id, content, entries, created_at, updated_at)"
        " VALUES (1, 1, 'PERSON', 1, ?, ?, '2026-03-01', '2026-03-01')", [content, json.dumps(entries)])
    await Tortoise.close_connections()
    await migrate(config=config)
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    import models
    from inbox import notes
    note = await models.Note.get(id=1)
    lines = (await notes.lines_of([1]))[1]
    print(json.dumps([notes.note_text(note.content, lines) == content, note.message_count, len(lines),
                      note.content]))
    await Tortoise.close_connections()

asyncio.run(main())
"""


def test_notes_written_before_note_lines_keep_their_text_and_take_new_lines():
    done = subprocess.run([sys.executable, "-c", NOTE_LINES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    same, count, lines, header = json.loads(done.stdout.strip().splitlines()[-1])
    assert (same, count, lines) == (True, 2, 2)
    assert header == "Conversation with Jane &lt;J&gt; on App\nUnassigned\nhttp://x/c/1\n"


KINDS = """
import asyncio, json, tempfile
from tortoise import Tortoise, connections
from tortoise.migrations.api import migrate
from server.config import tortoise_config

async def main():
    config = tortoise_config(f"sqlite://{tempfile.mkdtemp()}/db.sqlite3")
    await migrate(config=config, target="inbox.0012_media")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    db = connections.get("default")
    await db.execute_query("INSERT INTO company (id, name, created_at) VALUES (1, 'Acme', '2026-03-01')")
    await db.execute_query("INSERT INTO user (id, company_id, name, email, is_admin, available, token_hash,"
                           " created_at) VALUES (1, 1, 'Ada', 'a@x', 1, 1, 'h', '2026-03-01')")
    for pk, kind in enumerate(["MESSENGER", "WHATSAPP", "CUSTOM", "TELEGRAM"], 1):
        await db.execute_query("INSERT INTO channel (id, company_id, kind, name, installed_by_id, config, created_at)"
                               " VALUES (?, 1, ?, 'c', 1, '{}', '2026-03-01')", [pk, kind])
    await Tortoise.close_connections()
    await migrate(config=config)
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    import models
    print(json.dumps([channel.kind.value for channel in await models.Channel.all().order_by("id")]))
    await Tortoise.close_connections()

asyncio.run(main())
"""


def test_channels_stored_before_0013_keep_their_kind():
    """0013 makes channel.kind's description stable (a new app's kind needs no migration);
    the column and its values are untouched."""
    done = subprocess.run([sys.executable, "-c", KINDS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["MESSENGER", "WHATSAPP", "CUSTOM", "TELEGRAM"]
