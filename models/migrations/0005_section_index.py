from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('inbox', '0004_notifications')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Conversation',
            index=Index(fields=['company_id', 'status', 'assignee_id', 'deleted_at', 'activity_at', 'id', 'channel_id']),
        ),
    ]
