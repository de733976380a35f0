# A report's Mitto id is looked up only while the report waits for its message (unmatched):
# indexed only there, so that a report applied on arrival writes one index fewer.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_mitto", "0008_fewer_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="deliveryreport",
            name="mitto_report_provider_id",
        ),
        migrations.AddIndex(
            model_name="deliveryreport",
            index=models.Index(
                condition=models.Q(("outcome", "unmatched")),
                fields=["provider_id"],
                name="mitto_report_waiting_id",
            ),
        ),
    ]
