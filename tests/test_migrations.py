"""The committed migrations describe the models exactly: a model change without its
migration fails here (`tortoise makemigrations` writes the missing one)."""
from __future__ import annotations

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
