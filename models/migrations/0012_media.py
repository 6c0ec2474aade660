from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('inbox', '0011_search_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MediaFile',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='media_files', on_delete=OnDelete.CASCADE)),
                ('channel_id', fields.IntField(null=True)),
                ('conversation_id', fields.IntField(null=True, db_index=True)),
                ('message_id', fields.IntField(null=True)),
                ('uploaded_by_id', fields.IntField(null=True)),
                ('kind', fields.CharField(max_length=8)),
                ('name', fields.CharField(null=True, max_length=255)),
                ('content_type', fields.CharField(null=True, max_length=255)),
                ('size', fields.BigIntField(default=0)),
                ('status', fields.CharField(max_length=16)),
                ('source', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.IntField(default=0)),
                ('first_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('leased_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'media_file', 'app': 'inbox', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['channel_id'])], 'pk_attr': 'id', 'table_description': 'A file the server keeps (inbox/media.py): an inbound attachment fetched from its'},
            bases=['Model'],
        ),
    ]
