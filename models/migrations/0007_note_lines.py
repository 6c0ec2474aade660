from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


async def split_notes(apps, schema_editor) -> None:
    """A note the inbox still writes keeps its header as content and gets one NoteLine per
    message it held (its JSON entries); the public text stays exactly the same."""
    import json
    from datetime import datetime

    from inbox.notes import message_line

    client = schema_editor.client
    postgres = client.capabilities.dialect == "postgres"
    notes = await client.execute_query_dict("SELECT id, content, entries FROM note WHERE edited_at IS NULL")
    insert = ("INSERT INTO note_line (note_id, message_id, sent_at, line) VALUES ($1, $2, $3, $4)" if postgres
              else "INSERT INTO note_line (note_id, message_id, sent_at, line) VALUES (?, ?, ?, ?)")
    update = ("UPDATE note SET content = $1, message_count = $2 WHERE id = $3" if postgres
              else "UPDATE note SET content = ?, message_count = ? WHERE id = ?")
    for note in notes:
        entries = note["entries"]
        entries = json.loads(entries) if isinstance(entries, str) else (entries or [])
        lines = sorted((datetime.fromisoformat(e["sentAt"]), e["messageId"],
                        message_line(datetime.fromisoformat(e["sentAt"]), e["sender"], e["body"])) for e in entries)
        tail = "".join("\n" + line for _, _, line in lines)
        content = note["content"]
        header = content[:len(content) - len(tail)] if content.endswith(tail) else content
        for sent_at, message_id, line in lines:
            await client.execute_query(insert, [note["id"], message_id, sent_at, line])
        await client.execute_query(update, [header, len(entries), note["id"]])


class DropEntries(ops.RemoveField):
    """RemoveField without SQLite's table remake (both databases drop a column in place):
    dropping the old `note` table would cascade to its lines and null every link's
    current note."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor:
            await state_editor.client.execute_script('ALTER TABLE "note" DROP COLUMN "entries"')


class Migration(migrations.Migration):
    dependencies = [('inbox', '0006_early_receipts')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NoteLine',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('note', fields.ForeignKeyField('inbox.Note', source_field='note_id', db_constraint=True, to_field='id', related_name='lines', on_delete=OnDelete.CASCADE)),
                ('message_id', fields.IntField()),
                ('sent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('line', fields.TextField(unique=False)),
            ],
            options={'table': 'note_line', 'app': 'inbox', 'indexes': [Index(fields=['note_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One message the inbox wrote into a note, escaped, kept apart from the note so that'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ConversationLink',
            name='note_max_messages',
            field=fields.IntField(default=200, db_default=200),
        ),
        ops.AddField(
            model_name='Note',
            name='message_count',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.RunPython(split_notes),
        DropEntries(model_name='Note', name='entries'),
    ]
