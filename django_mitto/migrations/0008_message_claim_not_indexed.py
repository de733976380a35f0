# The claim token is always looked up with the rows' ids: its index only cost every write.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_mitto", "0007_message_batch_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="claim",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
    ]
