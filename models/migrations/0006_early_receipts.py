from tortoise import migrations
from tortoise.migrations import operations as ops
from models import DeliveryStatus
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('inbox', '0005_section_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='EarlyReceipt',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.ForeignKeyField('inbox.Channel', source_field='channel_id', db_constraint=True, to_field='id', related_name='early_receipts', on_delete=OnDelete.CASCADE)),
                ('external_id', fields.CharField(max_length=255)),
                ('status', fields.CharEnumField(description='RECEIVED: RECEIVED\nPENDING: PENDING\nSENT: SENT\nDELIVERED: DELIVERED\nREAD: READ\nFAILED: FAILED', enum_type=DeliveryStatus, max_length=10)),
                ('failure_reason', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'early_receipt', 'app': 'inbox', 'unique_together': (('channel', 'external_id', 'status'),), 'pk_attr': 'id', 'table_description': 'A status report naming a provider message id that no reply carries yet: the app'},
            bases=['Model'],
        ),
    ]
