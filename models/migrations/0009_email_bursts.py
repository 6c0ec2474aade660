from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('inbox', '0008_stream_positions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='EmailBurst',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('inbox.User', source_field='user_id', db_constraint=True, to_field='id', related_name='email_bursts', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('inbox.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='email_bursts', on_delete=OnDelete.CASCADE)),
                ('until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'email_burst', 'app': 'inbox', 'unique_together': (('user', 'conversation'),), 'pk_attr': 'id', 'table_description': "Until when a user's new-message emails about a conversation collapse: the first"},
            bases=['Model'],
        ),
    ]
