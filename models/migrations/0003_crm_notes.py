from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models import LinkTargetKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('inbox', '0002_delivery_queue')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Note',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='notes', on_delete=OnDelete.CASCADE)),
                ('target_kind', fields.CharEnumField(description='PERSON: PERSON\nLEAD: LEAD\nDEAL: DEAL', enum_type=LinkTargetKind, max_length=8)),
                ('target_id', fields.IntField()),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', null=True, db_constraint=True, to_field='id', related_name='notes', on_delete=OnDelete.SET_NULL)),
                ('content', fields.TextField(unique=False)),
                ('entries', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('window_start', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('edited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'note', 'app': 'inbox', 'indexes': [Index(fields=['target_kind', 'target_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A note on a person, lead or deal. The inbox writes one per link and 24-hour'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConversationLink',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='conversation_links', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='links', on_delete=OnDelete.CASCADE)),
                ('target_kind', fields.CharEnumField(description='PERSON: PERSON\nLEAD: LEAD\nDEAL: DEAL', enum_type=LinkTargetKind, max_length=8)),
                ('target_id', fields.IntField()),
                ('conversation_url', fields.CharField(max_length=2048)),
                ('current_note', fields.ForeignKeyField('inbox.Note', source_field='current_note_id', null=True, db_constraint=True, to_field='id', related_name='writing_links', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'conversation_link', 'app': 'inbox', 'unique_together': (('conversation', 'target_kind', 'target_id'),), 'pk_attr': 'id', 'table_description': 'A conversation linked to a person, lead or deal: its messages go into notes there.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Person',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='persons', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=255)),
                ('email', fields.CharField(null=True, max_length=320)),
                ('phone', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'person', 'app': 'inbox', 'indexes': [Index(fields=['company_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A person of the CRM: what a conversation is most often linked to.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Deal',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='deals', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=255)),
                ('value', fields.FloatField(null=True)),
                ('currency', fields.CharField(null=True, max_length=3)),
                ('person', fields.ForeignKeyField('inbox.Person', source_field='person_id', null=True, db_constraint=True, to_field='id', related_name='deals', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'deal', 'app': 'inbox', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Lead',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='leads', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=255)),
                ('person', fields.ForeignKeyField('inbox.Person', source_field='person_id', null=True, db_constraint=True, to_field='id', related_name='leads', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'lead', 'app': 'inbox', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
