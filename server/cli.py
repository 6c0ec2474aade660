"""The `inbox` command: serve, bootstrap, demo, export-schema."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

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
    serve = commands.add_parser("serve", help="serve GraphQL at /graphql (GraphiQL in a browser)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    boot = commands.add_parser("bootstrap", help="create a company and its first admin; prints JSON")
    boot.add_argument("--company", required=True)
    boot.add_argument("--admin-name", required=True)
    boot.add_argument("--admin-email", required=True)
    demo = commands.add_parser("demo", help="serve with a demo company, users, channels and conversations")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    commands.add_parser("export-schema", help="print the GraphQL SDL")
    return parser


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from .app import create_app

    # Migrations run first so that a failure stops here with a clear message.
    asyncio.run(_migrate(settings))
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                ws_ping_interval=settings.ws_ping_interval, ws_ping_timeout=settings.ws_ping_interval)


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
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "export-schema":
        from schema import schema

        sys.stdout.write(schema.as_str() + "\n")
        return 0
    if args.command == "serve":
        serve(settings, args.host, args.port)
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
        import os

        from .demo import run_demo

        if "INBOX_DATABASE_URL" not in os.environ:  # keep demo data out of the real inbox
            settings = dataclasses.replace(settings, database_url="sqlite://inbox-demo.sqlite3")

        run_demo(settings, args.host, args.port)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
