from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models import ChannelKind, ConversationStatus, DeliveryStatus, EventKind, MessageDirection
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Company',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'company', 'app': 'inbox', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='users', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=255)),
                ('email', fields.CharField(max_length=320)),
                ('is_admin', fields.BooleanField(default=False)),
                ('available', fields.BooleanField(default=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'user', 'app': 'inbox', 'unique_together': (('company', 'email'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Channel',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='channels', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='MESSENGER: MESSENGER\nWHATSAPP: WHATSAPP\nCUSTOM: CUSTOM', enum_type=ChannelKind, max_length=16)),
                ('name', fields.CharField(max_length=255)),
                ('installed_by', fields.ForeignKeyField('inbox.User', source_field='installed_by_id', db_constraint=True, to_field='id', related_name='installed_channels', on_delete=OnDelete.RESTRICT)),
                ('config', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('token_hash', fields.CharField(null=True, unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('uninstalled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'channel', 'app': 'inbox', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ChannelMember',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.ForeignKeyField('inbox.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'channel_member', 'app': 'inbox', 'unique_together': (('channel', 'user'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Contact',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='contacts', on_delete=OnDelete.CASCADE)),
                ('channel', fields.ForeignKeyField('inbox.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='contacts', on_delete=OnDelete.CASCADE)),
                ('external_id', fields.CharField(max_length=255)),
                ('name', fields.CharField(max_length=255)),
                ('avatar_url', fields.CharField(null=True, max_length=2048)),
            ],
            options={'table': 'contact', 'app': 'inbox', 'unique_together': (('channel', 'external_id'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('channel', fields.ForeignKeyField('inbox.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('contact', fields.OneToOneField('inbox.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='conversation', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ConversationStatus.OPEN, description='OPEN: OPEN\nCLOSED: CLOSED', enum_type=ConversationStatus, max_length=8)),
                ('assignee', fields.ForeignKeyField('inbox.User', source_field='assignee_id', null=True, db_constraint=True, to_field='id', related_name='assigned_conversations', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('activity_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_message_id', fields.IntField(null=True)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversation', 'app': 'inbox', 'indexes': [Index(fields=['company_id', 'status', 'activity_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConversationEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='CREATED: CREATED\nMESSAGE_ADDED: MESSAGE_ADDED\nASSIGNED: ASSIGNED\nUNASSIGNED: UNASSIGNED\nCLOSED: CLOSED\nREOPENED: REOPENED\nDELETED: DELETED\nRESTORED: RESTORED\nLINKED: LINKED\nUNLINKED: UNLINKED\nREAD: READ', enum_type=EventKind, max_length=16)),
                ('actor', fields.ForeignKeyField('inbox.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='acted_events', on_delete=OnDelete.SET_NULL)),
                ('assignee', fields.ForeignKeyField('inbox.User', source_field='assignee_id', null=True, db_constraint=True, to_field='id', related_name='assignment_events', on_delete=OnDelete.SET_NULL)),
                ('message_id', fields.IntField(null=True)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversation_event', 'app': 'inbox', 'indexes': [Index(fields=['conversation_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Message',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('channel', fields.ForeignKeyField('inbox.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('direction', fields.CharEnumField(description='INBOUND: INBOUND\nOUTBOUND: OUTBOUND', enum_type=MessageDirection, max_length=8)),
                ('body', fields.TextField(unique=False)),
                ('sent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(description='RECEIVED: RECEIVED\nPENDING: PENDING\nSENT: SENT\nDELIVERED: DELIVERED\nREAD: READ\nFAILED: FAILED', enum_type=DeliveryStatus, max_length=10)),
                ('author', fields.ForeignKeyField('inbox.User', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.SET_NULL)),
                ('external_id', fields.CharField(null=True, max_length=255)),
                ('client_message_id', fields.CharField(null=True, max_length=255)),
                ('failure_reason', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'message', 'app': 'inbox', 'unique_together': (('channel', 'external_id'),), 'indexes': [Index(fields=['conversation_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReadState',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='read_states', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='read_states', on_delete=OnDelete.CASCADE)),
                ('last_read_message_id', fields.IntField(default=0)),
            ],
            options={'table': 'read_state', 'app': 'inbox', 'unique_together': (('user', 'conversation'),), 'pk_attr': 'id', 'table_description': 'How far one user has read one conversation.'},
            bases=['Model'],
        ),
    ]
