from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models import NotificationKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('inbox', '0003_crm_notes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='NEW_MESSAGE_ASSIGNED_TO_ME: NEW_MESSAGE_ASSIGNED_TO_ME\nNEW_MESSAGE_ASSIGNED_TO_OTHERS: NEW_MESSAGE_ASSIGNED_TO_OTHERS\nNEW_MESSAGE_UNASSIGNED: NEW_MESSAGE_UNASSIGNED\nCONVERSATION_ASSIGNED_TO_ME: CONVERSATION_ASSIGNED_TO_ME', enum_type=NotificationKind, max_length=32)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('message', fields.ForeignKeyField('inbox.Message', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.SET_NULL)),
                ('actor', fields.ForeignKeyField('inbox.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='caused_notifications', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notification', 'app': 'inbox', 'indexes': [Index(fields=['user_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A desktop notification of one user: stored only while its desktop toggle is on.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NotificationEmail',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('inbox.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='notification_emails', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notification_emails', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='notification_emails', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='NEW_MESSAGE_ASSIGNED_TO_ME: NEW_MESSAGE_ASSIGNED_TO_ME\nNEW_MESSAGE_ASSIGNED_TO_OTHERS: NEW_MESSAGE_ASSIGNED_TO_OTHERS\nNEW_MESSAGE_UNASSIGNED: NEW_MESSAGE_UNASSIGNED\nCONVERSATION_ASSIGNED_TO_ME: CONVERSATION_ASSIGNED_TO_ME', enum_type=NotificationKind, max_length=32)),
                ('to_address', fields.CharField(max_length=320)),
                ('facts', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('first_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('leased_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('failed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'notification_email', 'app': 'inbox', 'indexes': [Index(fields=['next_attempt_at']), Index(fields=['user_id', 'conversation_id'])], 'pk_attr': 'id', 'table_description': 'The email outbox: one row per email still to send, written in the transaction of'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NotificationPreference',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notification_preferences', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='NEW_MESSAGE_ASSIGNED_TO_ME: NEW_MESSAGE_ASSIGNED_TO_ME\nNEW_MESSAGE_ASSIGNED_TO_OTHERS: NEW_MESSAGE_ASSIGNED_TO_OTHERS\nNEW_MESSAGE_UNASSIGNED: NEW_MESSAGE_UNASSIGNED\nCONVERSATION_ASSIGNED_TO_ME: CONVERSATION_ASSIGNED_TO_ME', enum_type=NotificationKind, max_length=32)),
                ('desktop', fields.BooleanField()),
                ('email', fields.BooleanField()),
            ],
            options={'table': 'notification_preference', 'app': 'inbox', 'unique_together': (('user', 'kind'),), 'pk_attr': 'id', 'table_description': 'The desktop and email toggles of one user for one kind (no row: the defaults of SPEC 5).'},
            bases=['Model'],
        ),
    ]
