from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models import ChannelKind
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('inbox', '0009_email_bursts')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Channel',
            name='kind',
            field=fields.CharEnumField(description='MESSENGER: MESSENGER\nWHATSAPP: WHATSAPP\nCUSTOM: CUSTOM\nTELEGRAM: TELEGRAM', enum_type=ChannelKind, max_length=16),
        ),
        ops.AddField(
            model_name='Conversation',
            name='last_inbound_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # Conversations of before: their reply window starts at the contact's latest message.
        ops.RunSQL(
            "UPDATE conversation SET last_inbound_at = (SELECT MAX(m.sent_at) FROM message m"
            " WHERE m.conversation_id = conversation.id AND m.direction = 'INBOUND')",
            reverse_sql="SELECT 1",
        ),
        ops.AddField(
            model_name='Delivery',
            name='external_id',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name='Delivery',
            name='parts_sent',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='Delivery',
            name='template',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Message',
            name='attachments',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
