from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint

class Migration(migrations.Migration):
    dependencies = [('inbox', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Delivery',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('message', fields.OneToOneField('inbox.Message', source_field='message_id', db_constraint=True, to_field='id', related_name='delivery', on_delete=OnDelete.CASCADE)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('first_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('leased_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'delivery', 'app': 'inbox', 'indexes': [Index(fields=['next_attempt_at'])], 'pk_attr': 'id', 'table_description': 'The durable send queue: one row per outbound message until the messaging app'},
            bases=['Model'],
        ),
        ops.AddConstraint(
            model_name='Message',
            constraint=UniqueConstraint(fields=('author', 'client_message_id'), name=None),
        ),
    ]
