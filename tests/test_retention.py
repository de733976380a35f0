"""Retention: old messages redacted with their statistics kept, older ones deleted, in batches."""

from __future__ import annotations

import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_mitto import retention, services
from django_mitto.admin.dashboard import Dashboard
from django_mitto.exceptions import MittoConfigurationError
from django_mitto.models import Batch, DeliveryReport, Message, Status

pytestmark = pytest.mark.django_db

NOW = timezone.now()
RETENTION = {"redact_after_days": 90, "delete_after_days": 365}


@pytest.fixture(autouse=True)
def _retention(settings: Any) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_RETENTION = dict(RETENTION)


def make(days_old: float, recipient: str = "+41791234567", **fields: Any) -> Message:
    """A sent and delivered message created ``days_old`` days ago, with one delivery report."""
    message = Message.objects.create(recipient=recipient, text="Your code is 123456", **fields)
    created = NOW - datetime.timedelta(days=days_old)
    provider_id = f"id-{message.pk}"
    Message.objects.filter(pk=message.pk).update(
        created_at=created,
        sent_at=created,
        status=Status.DELIVERED,
        provider_id=provider_id,
        mcc="228",
        mnc="01",
        status_changed_at=created,
    )
    report = DeliveryReport.objects.create(
        message=message,
        provider_id=provider_id,
        status="DELIVERED",
        mapped_status=Status.DELIVERED,
        recipient=recipient,
        mcc="228",
        mnc="01",
        method="POST",
        payload={"body": {"id": provider_id, "to": recipient, "status": "DELIVERED"}},
    )
    DeliveryReport.objects.filter(pk=report.pk).update(received_at=created)
    message.refresh_from_db()
    return message


def snapshot() -> list[tuple[Any, ...]]:
    fields = [f.attname for f in Message._meta.concrete_fields]
    reports = [f.attname for f in DeliveryReport._meta.concrete_fields]
    return [
        *Message.objects.order_by("pk").values_list(*fields),
        *DeliveryReport.objects.order_by("pk").values_list(*reports),
    ]


# -- redaction --------------------------------------------------------------------------------


def test_old_message_is_redacted_and_keeps_its_statistics() -> None:
    old = make(100, segments=2, text_length=19)
    result = retention.purge(now=NOW)
    old.refresh_from_db()
    assert old.recipient == Message.REDACTED_RECIPIENT
    assert old.text == ""
    assert old.redacted_at == NOW
    # What the statistics read is untouched.
    assert old.country == "CHE"
    assert (old.status, old.provider_id, old.mcc, old.mnc) == (
        Status.DELIVERED,
        f"id-{old.pk}",
        "228",
        "01",
    )
    assert old.segments == 1  # "Your code is 123456" is one part, measured on create
    report = old.delivery_reports.get()
    assert report.payload == {} and report.recipient == ""
    assert (report.status, report.mapped_status, report.mcc) == (
        "DELIVERED",
        Status.DELIVERED,
        "228",
    )
    assert result.count("messages.redact") == 1
    assert result.count("reports.redact") == 1


def test_a_number_quoted_in_the_error_is_redacted_too() -> None:
    refused = make(100, recipient="+4179123")
    Message.objects.filter(pk=refused.pk).update(
        status=Status.FAILED, error="recipient: +4179123 is not a valid phone number."
    )
    retention.purge(now=NOW)
    refused.refresh_from_db()
    assert refused.error == "recipient: [redacted] is not a valid phone number."
    assert refused.status == Status.FAILED


def test_newer_messages_are_left_alone() -> None:
    new = make(89)
    before = snapshot()
    result = retention.purge(now=NOW)
    assert snapshot() == before
    assert result.rows == 0
    new.refresh_from_db()
    assert new.recipient == "+41791234567" and new.redacted_at is None


def test_country_is_stored_on_create_and_in_bulk() -> None:
    assert Message.objects.create(recipient="+33612345678", text="x").country == "FRA"
    batch = services.send_bulk(["+4915123456789", "+41791234567"], "Hi")
    assert sorted(batch.messages.values_list("country", flat=True)) == ["CHE", "DEU"]


def test_redaction_stores_the_country_of_a_message_saved_without_one() -> None:
    old = make(100, recipient="+4915123456789")
    Message.objects.filter(pk=old.pk).update(country="")  # as saved before countries were kept
    retention.purge(now=NOW)
    old.refresh_from_db()
    assert (old.country, old.recipient) == ("DEU", Message.REDACTED_RECIPIENT)


def test_usage_counts_are_the_same_after_redaction() -> None:
    for days, number in [(100, "+41791234567"), (100, "+4915123456789"), (120, "+33612345678")]:
        make(days, recipient=number)
    Message.objects.update(country="")  # the oldest rows have no stored country
    start = (NOW - datetime.timedelta(days=130)).date()
    before = services.local_usage(start, NOW.date())
    retention.purge(now=NOW)
    assert services.local_usage(start, NOW.date()) == before
    assert before == {"CHE": (1, 1), "DEU": (1, 1), "FRA": (1, 1)}


def test_dashboard_is_unchanged_by_a_purge_that_only_redacts(settings: Any) -> None:
    for i in range(30):
        message = make(i * 5, recipient=f"+4179{3_000_000 + i}")
        Message.objects.filter(pk=message.pk).update(
            status=list(Status)[i % len(Status)], segments=1 + i % 3
        )
    before = Dashboard.load(days=200)
    result = retention.purge(now=NOW)
    assert result.count("messages.redact") == 11  # older than 90 days: i = 19..29
    assert result.count("messages.delete") == 0
    after = Dashboard.load(days=200)
    assert after.status_counts == before.status_counts
    assert after.parts_used == before.parts_used
    assert after.operators == before.operators
    assert after.days == before.days


def test_running_twice_changes_nothing_the_second_time() -> None:
    for days in (10, 100, 200, 400):
        make(days)
    first = retention.purge(now=NOW)
    assert first.rows > 0
    before = snapshot()
    second = retention.purge(now=NOW + datetime.timedelta(minutes=5))
    assert second.rows == 0
    assert snapshot() == before


# -- dry run ----------------------------------------------------------------------------------


def test_dry_run_counts_and_changes_nothing() -> None:
    for days in (10, 100, 100, 200, 400, 500):
        make(days)
    before = snapshot()
    dry = retention.purge(now=NOW, dry_run=True)
    assert snapshot() == before
    assert dry.dry_run
    real = retention.purge(now=NOW)
    # The dry run's counts are the real run's.
    assert [(s.name, s.rows) for s in dry.steps] == [(s.name, s.rows) for s in real.steps]
    assert real.count("messages.delete") == 2
    assert real.count("messages.redact") == 3


def test_dry_run_command_prints_counts_and_changes_nothing() -> None:
    make(100)
    make(400)
    before = snapshot()
    out = StringIO()
    call_command("mitto_purge", "--dry-run", stdout=out)
    assert snapshot() == before
    text = out.getvalue()
    assert "Dry run: nothing was changed." in text
    assert "messages deleted (older than" in text and "): 1" in text
    assert "messages redacted (recipient and text) (older than" in text


# -- deletion ---------------------------------------------------------------------------------


def test_deletion_removes_reports_and_messages_past_the_delete_age() -> None:
    kept = make(364)
    gone = make(366)
    unmatched = DeliveryReport.objects.create(provider_id="x", status="DELIVERED", method="GET")
    DeliveryReport.objects.filter(pk=unmatched.pk).update(
        received_at=NOW - datetime.timedelta(days=400)
    )
    batch = Batch.objects.create(text="Hi", total=1)
    Batch.objects.filter(pk=batch.pk).update(created_at=NOW - datetime.timedelta(days=366))
    result = retention.purge(now=NOW)
    assert not Message.objects.filter(pk=gone.pk).exists()
    assert not DeliveryReport.objects.filter(message_id=gone.pk).exists()
    assert not DeliveryReport.objects.filter(pk=unmatched.pk).exists()
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert Message.objects.filter(pk=kept.pk, recipient=Message.REDACTED_RECIPIENT).exists()
    assert DeliveryReport.objects.filter(message_id=kept.pk).count() == 1
    assert result.count("reports.delete") == 2
    assert result.count("messages.delete") == 1
    assert result.count("batches.delete") == 1


def test_a_newer_report_of_a_deleted_message_is_kept_and_detached() -> None:
    gone = make(400)
    late = DeliveryReport.objects.create(
        message=gone, provider_id=gone.provider_id, status="DELIVERED", method="POST"
    )
    retention.purge(now=NOW)
    late.refresh_from_db()
    assert late.message_id is None
    assert not Message.objects.filter(pk=gone.pk).exists()


def test_delete_receivers_still_see_whole_messages() -> None:
    from django.db.models.signals import post_delete

    gone = make(400, recipient="+4915123456789")
    seen: list[tuple[str, str]] = []

    def receiver(sender: Any, instance: Message, **kwargs: Any) -> None:
        seen.append((instance.recipient, instance.text))

    post_delete.connect(receiver, sender=Message)
    try:
        retention.purge(now=NOW)
    finally:
        post_delete.disconnect(receiver, sender=Message)
    assert seen == [("+4915123456789", "Your code is 123456")]
    assert not Message.objects.filter(pk=gone.pk).exists()


def test_a_key_set_to_none_turns_its_part_off(settings: Any) -> None:
    settings.MITTO_RETENTION = {"redact_after_days": 90}
    old = make(400)
    result = retention.purge(now=NOW)
    assert [s.name for s in result.steps] == ["messages.redact", "reports.redact", "inbound.redact"]
    old.refresh_from_db()
    assert old.recipient == Message.REDACTED_RECIPIENT


# -- batching ---------------------------------------------------------------------------------


def test_batches_cover_every_row_when_there_are_more_rows_than_a_batch(settings: Any) -> None:
    old = [make(100, recipient=f"+4179{3_000_000 + i}") for i in range(11)]
    newer = make(10)
    for i in range(7):
        make(400, recipient=f"+4179{4_000_000 + i}")
    with CaptureQueriesContext(connection) as queries:
        result = retention.purge(now=NOW, batch_size=3)
    redact = next(s for s in result.steps if s.name == "messages.redact")
    delete = next(s for s in result.steps if s.name == "messages.delete")
    assert (redact.rows, redact.batches) == (11, 4)  # 3 + 3 + 3 + 2
    assert (delete.rows, delete.batches) == (7, 3)  # 3 + 3 + 1
    assert Message.objects.filter(pk__in=[m.pk for m in old], redacted_at=NOW).count() == 11
    assert Message.objects.filter(redacted_at__isnull=True).get() == newer
    assert Message.objects.count() == 12
    # Each redaction statement changes one range of keys.
    updates = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('UPDATE "django_mitto_message" SET "recipient"')
    ]
    assert len(updates) == 4
    assert all('"id" > ' in sql for sql in updates[1:])
    assert all('"id" <= ' in sql for sql in updates[:3])
    assert redact.longest_batch > 0


def test_batch_size_comes_from_the_setting(settings: Any) -> None:
    settings.MITTO_RETENTION = {**RETENTION, "batch_size": 2}
    for i in range(5):
        make(100, recipient=f"+4179{3_000_000 + i}")
    result = retention.purge(now=NOW)
    assert next(s for s in result.steps if s.name == "messages.redact").batches == 3


# -- command and configuration -----------------------------------------------------------------


def test_command_prints_a_summary() -> None:
    make(100)
    out = StringIO()
    call_command("mitto_purge", "--batch-size", "1", stdout=out)
    text = out.getvalue()
    assert "messages redacted (recipient and text)" in text
    assert "1 in 1 batches" in text
    assert "Purge done: 2 rows" in text
    assert Message.objects.get().recipient == Message.REDACTED_RECIPIENT


def test_purge_without_the_setting_is_refused(settings: Any) -> None:
    settings.MITTO_RETENTION = None
    make(400)
    with pytest.raises(MittoConfigurationError, match="MITTO_RETENTION is not set"):
        retention.purge(now=NOW)
    with pytest.raises(CommandError, match="MITTO_RETENTION is not set"):
        call_command("mitto_purge", stdout=StringIO())
    assert Message.objects.get().redacted_at is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ([90, 365], "must be a dict or None"),
        ({"redact_after_day": 90}, "unknown key 'redact_after_day'"),
        ({"redact_after_days": "90"}, "MITTO_RETENTION['redact_after_days']"),
        ({"delete_after_days": 0}, "MITTO_RETENTION['delete_after_days']"),
        ({"redact_after_days": True}, "MITTO_RETENTION['redact_after_days']"),
        ({"batch_size": 2.5}, "MITTO_RETENTION['batch_size']"),
        ({"redact_after_days": 90, "delete_after_days": 30}, "less than"),
    ],
)
def test_check_e014_names_the_bad_key(settings: Any, value: Any, named: str) -> None:
    settings.MITTO_RETENTION = value
    errors = [e for e in run_checks() if e.id == "django_mitto.E014"]
    assert len(errors) == 1
    assert named in errors[0].msg
    with pytest.raises(MittoConfigurationError, match="MITTO_RETENTION"):
        retention.purge(now=NOW)


@pytest.mark.parametrize("value", [None, RETENTION, {"redact_after_days": 30, "batch_size": 500}])
def test_check_e014_accepts_good_values(settings: Any, value: Any) -> None:
    settings.MITTO_RETENTION = value
    assert not [e for e in run_checks() if e.id == "django_mitto.E014"]


# -- the admin on redacted messages -------------------------------------------------------------


def test_admin_shows_redacted_messages(admin_client: Any) -> None:
    old = make(100)
    retention.purge(now=NOW)
    changelist = admin_client.get("/admin/django_mitto/message/")
    assert changelist.status_code == 200
    body = changelist.content.decode()
    assert Message.REDACTED_RECIPIENT in body and "(redacted)" in body
    assert "Your code is" not in body
    page = admin_client.get(f"/admin/django_mitto/message/{old.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "CHE" in body and f"id-{old.pk}" in body
    assert admin_client.get("/admin/django_mitto/batch/dashboard/?days=200").status_code == 200
    reports = admin_client.get("/admin/django_mitto/deliveryreport/")
    assert reports.status_code == 200
    search = admin_client.get("/admin/django_mitto/message/", {"q": "+41791234567"})
    assert search.status_code == 200 and f"/{old.pk}/change/" not in search.content.decode()


def test_admin_will_not_send_a_redacted_message_again(admin_client: Any) -> None:
    old = make(100)
    retention.purge(now=NOW)
    response = admin_client.post(
        "/admin/django_mitto/message/",
        {"action": "send_again", "_selected_action": [old.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "redacted, its recipient and text are gone" in response.content.decode()
    assert Message.objects.count() == 1


def test_admin_csv_export_of_redacted_messages(admin_client: Any) -> None:
    old = make(100)
    retention.purge(now=NOW)
    response = admin_client.post(
        "/admin/django_mitto/message/",
        {"action": "export_csv", "_selected_action": [old.pk]},
    )
    content = b"".join(response.streaming_content).decode()
    assert f"{Message.REDACTED_RECIPIENT},delivered,id-{old.pk}" in content


# -- the schedule examples of the README ---------------------------------------------------------


def readme_block(marker: str) -> str:
    """The README's code block containing ``marker``, dedented."""
    import textwrap
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    for block in readme.split(".. code-block:: python\n\n")[1:]:
        lines = []
        for line in block.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line)
        code = textwrap.dedent("\n".join(lines))
        if marker in code:
            return code
    raise AssertionError(f"no README block with {marker!r}")


def test_readme_celery_beat_example_purges() -> None:
    pytest.importorskip("celery")
    old = make(100)
    namespace: dict[str, Any] = {"__name__": "shop.tasks"}
    exec(readme_block("CELERY_BEAT_SCHEDULE"), namespace)
    assert namespace["CELERY_BEAT_SCHEDULE"]["purge-sms"]["task"] == namespace["purge_sms"].name
    namespace["purge_sms"]()
    old.refresh_from_db()
    assert old.recipient == Message.REDACTED_RECIPIENT


def test_readme_tasks_example_purges_and_books_the_next_run(settings: Any) -> None:
    pytest.importorskip("django_tasks")
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    old = make(100)
    namespace: dict[str, Any] = {"__name__": "shop.tasks"}
    exec(readme_block("@task()"), namespace)
    purge_sms = namespace["purge_sms"]
    assert purge_sms.call() == 2  # the message and its report
    old.refresh_from_db()
    assert old.recipient == Message.REDACTED_RECIPIENT
    (booked,) = purge_sms.get_backend().results
    assert booked.task.run_after > timezone.now() + datetime.timedelta(hours=23)


# -- replies ------------------------------------------------------------------------------------


def _reply(days_old: float, text: str = "STOP please") -> Any:
    from django_mitto.models import InboundMessage

    reply = InboundMessage.objects.create(
        sender="+41791234567",
        recipient="+41780000000",
        text=text,
        payload={"body": {"from": "41791234567", "text": text}},
    )
    InboundMessage.objects.filter(pk=reply.pk).update(
        received_at=NOW - datetime.timedelta(days=days_old)
    )
    return reply


def test_old_replies_are_redacted_and_older_ones_deleted() -> None:
    from django_mitto.models import InboundMessage

    recent, old, ancient = _reply(10), _reply(100), _reply(400)
    result = retention.purge(now=NOW)
    assert not InboundMessage.objects.filter(pk=ancient.pk).exists()
    old.refresh_from_db()
    assert (old.sender, old.text, old.payload) == ("", "", {})
    assert old.recipient == "+41780000000"  # our own number: not personal data
    recent.refresh_from_db()
    assert (recent.sender, recent.text) == ("+41791234567", "STOP please")
    assert result.count("inbound.redact") == 1
    assert result.count("inbound.delete") == 1
    assert retention.purge(now=NOW).count("inbound.redact") == 0
