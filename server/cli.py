"""The `inbox` command: serve, bootstrap, demo, export-schema."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from urllib.parse import urlparse

from .config import SETTINGS, Settings


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, default, text in SETTINGS:
        lines.append(f"  {name} (default: {default or 'empty'})\n      {text}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbox", description="A CRM messaging inbox served as a GraphQL API with real-time subscriptions.",
        epilog=_settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve GraphQL at /graphql, the web inbox at / and GraphiQL")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (more than 1 needs PostgreSQL and Redis)")
    boot = commands.add_parser("bootstrap", help="create a company and its first admin; prints JSON")
    boot.add_argument("--company", required=True)
    boot.add_argument("--admin-name", required=True)
    boot.add_argument("--admin-email", required=True)
    demo = commands.add_parser("demo", help="serve with a demo company, users, channels and conversations")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    commands.add_parser("export-schema", help="print the GraphQL SDL")
    return parser


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def one_server_per_sqlite_file(settings: Settings, workers: int = 1):
    """SQLite is one process (STACK.md): `--workers N` is refused on it, and a server
    holds its file for its life so that a second one on the same file stops at once."""
    from .db import DatabaseInUse, holding_sqlite_file

    if workers > 1 and urlparse(settings.database_url).scheme == "sqlite":
        raise SystemExit(f"inbox serve: --workers {workers} needs PostgreSQL (INBOX_DATABASE_URL=postgres://...) "
                         "and Redis (INBOX_BROADCAST_URL=redis://...): a SQLite database serves one process")
    try:
        with holding_sqlite_file(settings.database_url):
            yield
    except DatabaseInUse as error:
        raise SystemExit(f"inbox serve: {error}. SQLite serves one process: run one server per database "
                         "file, or several on PostgreSQL (INBOX_DATABASE_URL=postgres://...)") from None


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    from .app import create_app
    from .serving import uvicorn_options

    if workers < 1:
        raise SystemExit("inbox serve: --workers must be at least 1")
    with one_server_per_sqlite_file(settings, workers):
        # Migrations run once, here, before any worker starts (and a failure stops here
        # with a clear message); the workers skip them.
        asyncio.run(_migrate(settings))
        options = dict(host=host, port=port, **uvicorn_options(settings))
        if workers == 1:
            uvicorn.run(create_app(settings, migrate=False), **options)
        else:
            # Each worker process builds its own app from the same INBOX_* environment;
            # one signing key for all of them, or a /media URL signed by one worker would
            # not open on another (other hosts must set INBOX_MEDIA_SECRET themselves).
            os.environ.setdefault("INBOX_MEDIA_SECRET", secrets.token_urlsafe(32))
            uvicorn.run("server.cli:worker_app", factory=True, workers=workers, **options)


def worker_app():
    """The app of one `inbox serve --workers N` worker process (uvicorn's factory)."""
    from .app import create_app

    settings = Settings.from_env()
    configure_logging(settings)
    return create_app(settings, migrate=False)


async def _migrate(settings: Settings) -> None:
    from .db import close_database, open_database

    await open_database(settings.database_url)
    await close_database()


async def _bootstrap(settings: Settings, company: str, name: str, email: str) -> dict:
    from inbox.accounts import bootstrap
    from schema.ids import global_id

    from .db import close_database, open_database

    await open_database(settings.database_url)
    try:
        company_row, user, token = await bootstrap(company, name, email)
    finally:
        await close_database()
    return {"companyId": str(company_row.id), "userId": global_id("User", user.id), "token": token}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    if args.command == "export-schema":
        from schema import schema

        sys.stdout.write(schema.as_str() + "\n")
        return 0
    if args.command == "serve":
        serve(settings, args.host, args.port, args.workers)
        return 0
    if args.command == "bootstrap":
        from inbox.errors import InboxError

        try:
            print(json.dumps(asyncio.run(_bootstrap(settings, args.company, args.admin_name, args.admin_email))))
        except InboxError as error:
            print(f"inbox bootstrap: {error} ({error.code})", file=sys.stderr)
            return 2
        return 0
    if args.command == "demo":
        import dataclasses

        from .demo import run_demo

        if "INBOX_DATABASE_URL" not in os.environ:  # keep demo data out of the real inbox
            settings = dataclasses.replace(settings, database_url="sqlite://inbox-demo.sqlite3")

        with one_server_per_sqlite_file(settings):
            run_demo(settings, args.host, args.port)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
