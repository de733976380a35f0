# Every message and report write is one INSERT into each of its indexes: the claim token is
# always looked up with the rows' ids (no index), a report's outcome is indexed only where it
# is "unmatched" (the reports waiting for their message), and no pattern ("_like") indexes.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_mitto", "0007_message_batch_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="deliveryreport",
            name="outcome",
            field=models.CharField(
                blank=True,
                choices=[
                    ("applied", "Applied"),
                    ("duplicate", "Duplicate"),
                    ("stale", "Older than the current status"),
                    ("unmatched", "No message yet"),
                    ("unknown_status", "Unknown status word"),
                    ("unparsed", "Unparsed"),
                    ("mismatched", "Id of another message"),
                ],
                max_length=16,
                verbose_name="outcome",
            ),
        ),
        migrations.AlterField(
            model_name="deliveryreport",
            name="provider_id",
            field=models.CharField(blank=True, max_length=64, verbose_name="Mitto id"),
        ),
        migrations.AlterField(
            model_name="message",
            name="claim",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="deliveryreport",
            index=models.Index(fields=["provider_id"], name="mitto_report_provider_id"),
        ),
        migrations.AddIndex(
            model_name="deliveryreport",
            index=models.Index(
                condition=models.Q(("outcome", "unmatched")),
                fields=["received_at"],
                name="mitto_report_unmatched",
            ),
        ),
    ]
