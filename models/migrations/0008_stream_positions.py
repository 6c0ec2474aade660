from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('inbox', '0007_note_lines')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='ConversationEvent',
            index=Index(fields=['company_id', 'id']),
        ),
        ops.AddField(
            model_name='Message',
            name='update_seq',
            field=fields.BigIntField(null=True),
        ),
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['company_id', 'update_seq']),
        ),
    ]
