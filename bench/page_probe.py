"""The inbox page query in-process, for working on it: server CPU per page
(time.process_time), its statements, and the plans of the slowest ones.

    .venv/bin/python bench/page_probe.py prepare --database sqlite:///tmp/page.sqlite3
    .venv/bin/python bench/page_probe.py measure --database sqlite:///tmp/page.sqlite3 [--count 200]
        [--search "conversation 4242"] [--total]

`prepare` seeds 100k conversations the way bench/run.py does (through a real server
for the template rows, then bench/seed.py) and keeps the admin's token beside the
database (PostgreSQL: its public schema is DROPPED first). `measure` runs the
benchmark's page query with the schema, in this process, without HTTP."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import run  # noqa: E402  (bench/run.py)


def token_file(database_url: str) -> pathlib.Path:
    name = database_url.rsplit("/", 1)[1].split("?")[0]
    return run.OUT / f"page-probe-{name}.json"


def prepare(database_url: str, conversations: int) -> None:
    run.OUT.mkdir(exist_ok=True)
    if database_url.startswith("postgres"):
        database = run.Database(database_url)
        database.fresh()  # its public schema dropped
    else:
        database = run.Database(None)
        database.sqlite_path = database_url.removeprefix("sqlite://")
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(database.sqlite_path + suffix).unlink(missing_ok=True)
    admin, _, rows, _ = run.seeded_inbox(run.inbox_env(database_url, "memory://"), database, conversations, "probe")
    token_file(database_url).write_text(json.dumps({"admin": admin}))
    print(f"seeded {rows}")


class Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


async def measure(database_url: str, count: int, first: int, explain: bool, profile: str | None,
                  search: str | None = None, total: bool = False) -> None:
    from inbox.accounts import authenticate
    from schema import schema
    from schema.context import Context
    from server.config import Settings
    from server.db import close_database, open_database

    admin = json.loads(token_file(database_url).read_text())["admin"]
    await open_database(database_url)
    settings = Settings.from_env()
    statements = Statements()
    db_log = logging.getLogger("tortoise.db_client")
    db_log.addHandler(statements)
    try:
        query = run.PAGE_WITH_TOTAL if total else run.PAGE
        if search is not None:
            # The benchmark's page, filtered: seeded bodies are "Seeded message N of conversation I".
            query = query.replace("$first: Int)", "$first: Int, $search: String)").replace(
                "inbox(section: $section, first: $first)", "inbox(section: $section, first: $first, search: $search)")

        async def page(query: str = query, size: int = first) -> dict:
            principal = await authenticate(admin)
            result = await schema.execute(query, variable_values={"section": "UNASSIGNED", "first": size,
                                                                  **({"search": search} if search else {})},
                                          context_value=Context(None, None, settings, principal))
            if result.errors:
                raise SystemExit(f"errors: {result.errors}")
            return result.data

        for size in (5, 25, 100):
            db_log.setLevel(logging.DEBUG)
            statements.seen.clear()
            data = await page(size=size)
            db_log.setLevel(logging.WARNING)
            print(f"first {size}: {len(data['inbox']['edges'])} edges, {len(statements.seen)} statements")
        db_log.setLevel(logging.DEBUG)
        statements.seen.clear()
        await page()
        db_log.setLevel(logging.WARNING)
        for text in statements.seen:
            print("  ", text[:220])
        for _ in range(20):  # warm-up
            await page()
        cpu, wall = [], []
        profiler = None
        if profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        for _ in range(count):
            c, w = time.process_time(), time.perf_counter()
            await page()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        wall.sort()
        print(f"{count} pages of {first}: CPU mean {statistics.mean(cpu) * 1e3:.2f} ms, "
              f"median {statistics.median(cpu) * 1e3:.2f} ms; wall p50 {wall[len(wall) // 2] * 1e3:.2f} ms, "
              f"p95 {wall[int(len(wall) * 0.95)] * 1e3:.2f} ms")
        if explain:
            await explain_statements(statements.seen)
    finally:
        await close_database()


async def explain_statements(texts: list[str]) -> None:
    """EXPLAIN (ANALYZE on PostgreSQL) of the statements of one page, with their logged parameters."""
    import ast
    from tortoise import connections

    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    for text in texts:
        sql, _, params = text.rpartition(": ")
        try:
            values = ast.literal_eval(params)
        except (ValueError, SyntaxError):
            sql, values = text, []
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        _, rows = await connection.execute_query(prefix + sql, list(values))
        print("\n" + sql[:300])
        for row in rows:
            row = dict(row)
            print("    ", row.get("QUERY PLAN") or row.get("detail"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("prepare", "measure"))
    parser.add_argument("--database", required=True)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--first", type=int, default=25)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--profile", default=None, help="write cProfile stats of the measured loop here")
    parser.add_argument("--search", default=None, help="measure the page of this search term")
    parser.add_argument("--total", action="store_true", help="with totalCount")
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.database, args.conversations)
    else:
        asyncio.run(measure(args.database, args.count, args.first, args.explain, args.profile, args.search,
                            args.total))


if __name__ == "__main__":
    main()
