"""Search by index (issue 15): `search` finds a substring of a contact's name or of any
message case-insensitively (docs/decisions.md), through trigram indexes of UPPER() of
the text, built here for existing rows and kept in step by the database itself.

- SQLite: FTS5 tables with the trigram tokenizer (case-sensitive, as they hold the text
  upper-cased by the same UPPER() the LIKE uses: Python's, server/db.py), filled by
  triggers on every insert, update and delete of a message or contact (a delete that
  cascades from a conversation, contact or channel included), in the writer's transaction.
  The tables keep their own copy of the text, so that a delete never depends on UPPER().
- PostgreSQL: pg_trgm GIN indexes on UPPER(body) and UPPER(name), which the planner
  uses for `UPPER(x) LIKE UPPER(pattern)`; the extension is created when missing (tests
  drop the public schema, and it with it).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops

_SQLITE = [
    # Built afresh: emptying a filled FTS table row by row would leave its index fragmented.
    "DROP TABLE IF EXISTS message_search",
    "DROP TABLE IF EXISTS contact_search",
    "CREATE VIRTUAL TABLE message_search"
    " USING fts5(body, conversation_id UNINDEXED, tokenize = 'trigram case_sensitive 1')",
    "CREATE VIRTUAL TABLE contact_search USING fts5(name, tokenize = 'trigram case_sensitive 1')",
    """CREATE TRIGGER IF NOT EXISTS message_search_insert AFTER INSERT ON message BEGIN
         INSERT INTO message_search (rowid, body, conversation_id) VALUES (new.id, upper(new.body), new.conversation_id);
       END""",
    """CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF body, conversation_id ON message BEGIN
         UPDATE message_search SET body = upper(new.body), conversation_id = new.conversation_id WHERE rowid = new.id;
       END""",
    """CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON message BEGIN
         DELETE FROM message_search WHERE rowid = old.id;
       END""",
    """CREATE TRIGGER IF NOT EXISTS contact_search_insert AFTER INSERT ON contact BEGIN
         INSERT INTO contact_search (rowid, name) VALUES (new.id, upper(new.name));
       END""",
    """CREATE TRIGGER IF NOT EXISTS contact_search_update AFTER UPDATE OF name ON contact BEGIN
         UPDATE contact_search SET name = upper(new.name) WHERE rowid = new.id;
       END""",
    """CREATE TRIGGER IF NOT EXISTS contact_search_delete AFTER DELETE ON contact BEGIN
         DELETE FROM contact_search WHERE rowid = old.id;
       END""",
    "INSERT INTO message_search (rowid, body, conversation_id) SELECT id, upper(body), conversation_id FROM message",
    "INSERT INTO contact_search (rowid, name) SELECT id, upper(name) FROM contact",
    # One b-tree per table: a term's lookup reads each trigram's list once.
    "INSERT INTO message_search (message_search) VALUES ('optimize')",
    "INSERT INTO contact_search (contact_search) VALUES ('optimize')",
]

_POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS message_body_search ON message USING gin (upper(body) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS contact_name_search ON contact USING gin (upper(name) gin_trgm_ops)",
]


async def _build(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        statements = _POSTGRES
    else:
        from server.db import unicode_case_folding

        await unicode_case_folding(client)  # the rows' UPPER() as the server's
        statements = _SQLITE
    for statement in statements:
        await client.execute_script(statement)


async def _drop(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        statements = ["DROP INDEX IF EXISTS message_body_search", "DROP INDEX IF EXISTS contact_name_search"]
    else:
        statements = [f"DROP TRIGGER IF EXISTS {table}_search_{when}"
                      for table in ("message", "contact") for when in ("insert", "update", "delete")]
        statements += ["DROP TABLE IF EXISTS message_search", "DROP TABLE IF EXISTS contact_search"]
    for statement in statements:
        await client.execute_script(statement)


class Migration(migrations.Migration):
    dependencies = [('inbox', '0010_messaging_apps')]

    initial = False

    operations = [
        ops.RunPython(_build, _drop),
    ]
