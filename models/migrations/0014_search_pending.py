from tortoise import migrations
from tortoise.migrations import operations as ops

# PostgreSQL: the search indexes' pending lists (GIN's fast update: new rows' trigrams
# wait in a list that every search reads whole until it is merged) are kept to 256 kB,
# from the server's default of 4 MB. Measured at 1M conversations: a search read about
# 2 MB of pending entries, 3.5 ms, against 0.07 ms once merged (issue 15). A smaller list
# is merged more often, each time for less: inserts cost about the same. SQLite: nothing.

_LIMIT_KB = 256
_INDEXES = ("message_body_search", "contact_name_search")


async def _limit(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for index in _INDEXES:
            await client.execute_script(f"ALTER INDEX IF EXISTS {index} SET (gin_pending_list_limit = {_LIMIT_KB})")


async def _unlimit(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for index in _INDEXES:
            await client.execute_script(f"ALTER INDEX IF EXISTS {index} RESET (gin_pending_list_limit)")


class Migration(migrations.Migration):
    dependencies = [('inbox', '0013_fifth')]

    initial = False

    operations = [
        ops.RunPython(_limit, _unlimit),
    ]
