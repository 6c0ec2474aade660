"""What we borrow from inside the libraries we use: patches, overrides of internal
classes and reads of private attributes live here and nowhere else, each with a
one-line reason. They were written against the versions below; tests/test_borrowed.py
fails when an installed version differs, so that an upgrade re-reads this package first.

- aiosqlite: a transaction's statements run in one hand-off to aiosqlite's thread (the
  inbound path, inbox/sql.py `transaction_at_once`), through tortoise's SQLite client.
- graphql_core: per-event executors with memos of their own (a leak in 3.3.2), and the
  executor of a websocket operation noted for direct delivery.
- graphql_string: the built-in String scalar refuses NUL (PostgreSQL's text cannot hold it).
- strawberry: the graphql-core schema behind strawberry's, its document validation and
  execution context classes, starlette's socket behind its websocket adapter.
- strawberry_ws: our websocket protocol handlers (issue 11's bounds, direct delivery,
  4403/4408 on the legacy protocol).
- tortoise: model instances from rows we read ourselves, user copies, SQLite's
  connection for a Unicode UPPER(), and a model's table and columns for our own SQL.
- broadcaster: the backend interface (a private module), a Broadcast's backend and
  listener task, for the hub's own Redis backend, failure detection and closing.
- uvicorn_ws: uvicorn's websocket protocol behind an ASGI `send` (its flow control, its
  transport), for direct delivery's frames written to the socket (hand-built, measured).
- uvicorn_http: uvicorn's httptools request cycle, one socket write per HTTP response, and
  whether a request's whole body has arrived (no body deadline to arm).

Nothing outside this package reads a private attribute of a library object or imports a
private module (tests/test_borrowed.py scans for it)."""

# distribution -> the version this package was written for
WRITTEN_FOR = {
    "aiosqlite": "0.22.1",
    "graphql-core": "3.3.2",
    "strawberry-graphql": "0.341.2",
    "tortoise-orm": "1.1.9",
    "uvicorn": "0.54.0",
    "websockets": "16.1.1",
    "broadcaster": "0.3.1",
}
