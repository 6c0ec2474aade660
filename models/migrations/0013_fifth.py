from tortoise import migrations
from tortoise.migrations import operations as ops
from models import ChannelKind
from tortoise import fields

# channel.kind's description no longer lists the kinds (tortoise's default for an enum
# field): a messaging app added as a module of channels/ then needs no migration. The
# column stays varchar(16); stored values are unchanged.


class Migration(migrations.Migration):
    dependencies = [('inbox', '0012_media')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Channel',
            name='kind',
            field=fields.CharEnumField(description='The messaging app (ChannelKind): one per module of channels/', enum_type=ChannelKind, max_length=16),
        ),
    ]
