from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_mitto.admin.forms import counter_tables
from django_mitto.admin.message import EstimatedCountPaginator, MessageAdmin
from django_mitto.models import Batch, DeliveryReport, Message, Status
from django_mitto.signals import message_failed

ADD_URL = "/admin/django_mitto/message/add/"
CHANGELIST_URL = "/admin/django_mitto/message/"

VALID_POST = {
    "recipient": "+41 79 123 45 67",
    "sender": "Shop",
    "text": "Your code is 1234",
    "encoding": "Auto",
    "reference": "order-1",
    "validity": "",
    "udh": "",
    "pid": "",
}


def change_url(message: Message) -> str:
    return reverse("admin:django_mitto_message_change", args=[message.pk])


def make(count: int = 1, **fields: Any) -> list[Message]:
    """Messages already sent (so that saving them sends nothing)."""
    values = {
        "recipient": "+41791234567",
        "sender": "Shop",
        "text": "Hello",
        "status": Status.SENT,
        **fields,
    }
    return [Message.objects.create(**values) for _ in range(count)]


def run_action(client: Any, action: str, selected: list[Message], **kwargs: Any) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [m.pk for m in selected], "index": 0}
    return client.post(CHANGELIST_URL, data, **kwargs)


def flash_messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def viewer_client(client: Any, django_user_model: Any) -> Any:
    """A staff member who may only view messages."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="django_mitto", codename="view_message")
    )
    client.force_login(user)
    return client


@pytest.fixture
def message_admin() -> MessageAdmin:
    return admin.site._registry[Message]


# -- compose --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_compose_form_carries_the_counter_script_and_the_gsm_tables_from_python(
    admin_client,
) -> None:
    response = admin_client.get(ADD_URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert "/static/django_mitto/counter.js" in content
    assert "/static/django_mitto/admin.css" in content
    tables = re.search(
        r'<script id="id_text_gsm_tables" type="application/json">(.*?)</script>', content, re.S
    )
    assert tables is not None
    assert json.loads(tables.group(1)) == counter_tables()
    assert "€" in counter_tables()["extension"]
    assert "data-mitto-counter" in content
    assert 'data-encoding-name="encoding"' in content


@pytest.mark.django_db
def test_compose_form_defaults_to_the_default_sender_and_auto_encoding(admin_client) -> None:
    form = admin_client.get(ADD_URL).context["adminform"].form
    assert form["sender"].value() == "DjangoMitto"
    assert form["encoding"].value() == Message.Encoding.AUTO


@pytest.mark.django_db
def test_compose_form_hides_udh_and_pid_in_a_collapsed_advanced_section(admin_client) -> None:
    response = admin_client.get(ADD_URL)
    fieldsets = {fs.name: fs for fs in response.context["adminform"]}
    assert "collapse" in fieldsets["Advanced"].classes
    assert [f for line in fieldsets["Advanced"] for f in line.fields] == ["udh", "pid"]


@pytest.mark.django_db
def test_compose_form_offers_one_send_button_only(admin_client) -> None:
    content = admin_client.get(ADD_URL).content.decode()
    assert re.search(r'<input type="submit" value="Send" class="default" name="_save">', content)
    assert 'name="_addanother"' not in content
    assert 'name="_continue"' not in content


@pytest.mark.django_db(transaction=True)
def test_composing_a_message_creates_it_and_sends_it_after_commit(
    admin_client, mitto_sandbox
) -> None:
    response = admin_client.post(ADD_URL, VALID_POST)
    message = Message.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(message)
    assert message.status == Status.SENT
    assert message.recipient == "+41791234567"
    assert message.encoding == Message.Encoding.GSM
    (received,) = mitto_sandbox.messages
    assert received["to"] == "41791234567"
    assert received["body"]["text"] == "Your code is 1234"
    assert received["body"]["reference"] == "order-1"
    assert message.provider_id == received["id"]

    page = admin_client.get(response["Location"])
    notes = flash_messages(page)
    assert any("+41791234567" in note and "queued" in note for note in notes)
    assert 'class="mitto-status mitto-status--sent"' in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_composing_sends_even_when_the_save_hook_is_off(
    admin_client, mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    admin_client.post(ADD_URL, VALID_POST)
    assert Message.objects.get().status == Status.SENT
    assert len(mitto_sandbox.messages) == 1


@pytest.mark.django_db
def test_composing_leaves_the_message_queued_until_commit(admin_client) -> None:
    # Inside the test's transaction nothing commits, so nothing is sent.
    admin_client.post(ADD_URL, VALID_POST)
    assert Message.objects.get().status == Status.QUEUED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"recipient": "12345"}, "recipient"),
        ({"recipient": ""}, "recipient"),
        ({"sender": "x"}, "sender"),
        ({"sender": "far-too-long-sender"}, "sender"),
        ({"text": "Smile 😀", "encoding": "GSM"}, "text"),
        ({"text": "not hex", "encoding": "Binary"}, "text"),
        ({"text": "abc", "encoding": "Binary"}, "text"),
        ({"text": ""}, "text"),
        ({"text": "  \r\n "}, "text"),
        ({"udh": "XYZ"}, "udh"),
        ({"udh": "050"}, "udh"),
        ({"pid": "300"}, "pid"),
        ({"encoding": "Klingon"}, "encoding"),
    ],
)
def test_invalid_input_is_refused_on_its_field(admin_client, changes, field) -> None:
    response = admin_client.post(ADD_URL, {**VALID_POST, **changes})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert set(form.errors) == {field}
    assert len(form.errors[field]) == 1
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_gsm_error_names_the_characters_that_do_not_fit(admin_client) -> None:
    response = admin_client.post(ADD_URL, {**VALID_POST, "text": "Smile 😀", "encoding": "GSM"})
    assert "U+1F600" in response.context["adminform"].form.errors["text"][0]


@pytest.mark.django_db
def test_blank_sender_takes_the_default_sender(admin_client) -> None:
    admin_client.post(ADD_URL, {**VALID_POST, "sender": ""})
    assert Message.objects.get().sender == "DjangoMitto"


@pytest.mark.django_db
def test_blank_sender_without_a_default_is_refused(admin_client, settings) -> None:
    settings.MITTO_DEFAULT_SENDER = ""
    response = admin_client.post(ADD_URL, {**VALID_POST, "sender": ""})
    assert set(response.context["adminform"].form.errors) == {"sender"}


@pytest.mark.django_db
def test_line_breaks_are_saved_as_the_counter_counted_them(admin_client) -> None:
    admin_client.post(ADD_URL, {**VALID_POST, "text": "line one\r\nline two "})
    message = Message.objects.get()
    assert message.text == "line one\nline two "
    assert (message.text_length, message.segments) == (18, 1)


@pytest.mark.django_db
def test_auto_is_resolved_and_parts_counted_on_save(admin_client) -> None:
    admin_client.post(ADD_URL, {**VALID_POST, "text": "😀" * 36})
    message = Message.objects.get()
    assert (message.encoding, message.text_length, message.segments) == ("Unicode", 36, 2)


# -- follow: change view --------------------------------------------------------------------------


def _sent_message_with_reports() -> tuple[Message, list[DeliveryReport]]:
    start = timezone.now() - dt.timedelta(hours=1)
    (message,) = make(
        status=Status.DELIVERED,
        provider_id="abc-123",
        response_code=0,
        response_text="SMS sent",
        segments=1,
        mcc="228",
        mnc="01",
        delivery_status="DELIVRD",
    )
    Message.objects.filter(pk=message.pk).update(
        created_at=start,
        sent_at=start + dt.timedelta(seconds=1),
        status_changed_at=start + dt.timedelta(seconds=30),
    )
    words = [
        ("ACCEPTD", Status.SENT, 10),
        ("DELIVRD", Status.DELIVERED, 29),
        ("DELIVRD", Status.DELIVERED, 40),
    ]
    reports = []
    # Created newest first, to show that the timeline orders by time received.
    for word, status, seconds in reversed(words):
        report = DeliveryReport.objects.create(
            message=message,
            provider_id="abc-123",
            status=word,
            mapped_status=status,
            outcome="duplicate" if seconds == 40 else "applied",
            error_code="0",
            mcc="228",
            mnc="01",
            method="POST",
        )
        DeliveryReport.objects.filter(pk=report.pk).update(
            received_at=start + dt.timedelta(seconds=seconds)
        )
        reports.append(report)
    message.refresh_from_db()
    return message, reports


@pytest.mark.django_db
def test_change_view_is_read_only(admin_client) -> None:
    (message,) = make()
    response = admin_client.get(change_url(message))
    assert response.status_code == 200
    content = response.content.decode()
    assert response.context["title"] == "View message"
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert "<textarea" not in content
    assert 'name="recipient"' not in content
    assert response.context["adminform"].form.fields == {}


@pytest.mark.django_db
def test_posting_to_the_change_view_changes_nothing(admin_client) -> None:
    (message,) = make()
    response = admin_client.post(change_url(message), {**VALID_POST, "text": "Changed"})
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.text == "Hello"


@pytest.mark.django_db
def test_change_view_shows_what_mitto_said(admin_client) -> None:
    message, _reports = _sent_message_with_reports()
    content = admin_client.get(change_url(message)).content.decode()
    for text in ("abc-123", "SMS sent", "228", "01", "mitto-status--delivered"):
        assert text in content


@pytest.mark.django_db
def test_timeline_lists_events_and_reports_oldest_first(admin_client) -> None:
    message, _reports = _sent_message_with_reports()
    response = admin_client.get(change_url(message))
    timeline = response.context["timeline"]
    assert [entry.title for entry in timeline] == [
        "Created",
        "Accepted by Mitto",
        "Delivery report “ACCEPTD”",
        "Delivery report “DELIVRD”",
        "Current status",
        "Delivery report “DELIVRD”",
    ]
    assert [entry.status for entry in timeline] == [
        "queued",
        "sent",
        "sent",
        "delivered",
        "delivered",
        "delivered",
    ]
    assert "outcome: Duplicate" in timeline[-1].details
    assert "MCC/MNC 228/01" in timeline[2].details
    content = response.content.decode()
    section = content[content.index('id="mitto-timeline"') :]
    assert section.index("ACCEPTD") < section.index("DELIVRD")


@pytest.mark.django_db
def test_timeline_reads_all_reports_in_one_query(admin_client) -> None:
    message, _reports = _sent_message_with_reports()
    admin_client.get(change_url(message))  # caches filled (content types), whatever ran before
    with CaptureQueriesContext(connection) as few:
        admin_client.get(change_url(message))
    for _ in range(10):
        DeliveryReport.objects.create(message=message, status="DELIVRD", method="GET")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(change_url(message))
    assert len(many) == len(few)


@pytest.mark.django_db
def test_timeline_of_a_message_never_sent_shows_the_error(admin_client) -> None:
    (message,) = make(status=Status.FAILED, error="Mitto said no")
    Message.objects.filter(pk=message.pk).update(status_changed_at=timezone.now())
    timeline = admin_client.get(change_url(message)).context["timeline"]
    assert [entry.title for entry in timeline] == ["Created", "Current status"]
    assert timeline[-1].details == ("Mitto said no",)


# -- follow: changelist ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_shows_coloured_statuses_filters_search_and_dates(admin_client) -> None:
    make(status=Status.DELIVERED, text="Delivered one", batch=Batch.objects.create(text="Hi"))
    make(status=Status.UNKNOWN, text="Unknown one")
    response = admin_client.get(CHANGELIST_URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert '<span class="mitto-status mitto-status--delivered">Delivered</span>' in content
    assert "mitto-status--unknown" in content
    cl = response.context["cl"]
    assert [spec.title for spec in cl.filter_specs] == [
        "status",
        "encoding",
        "test",
        "batch",
        "created at",
    ]
    assert cl.date_hierarchy == "created_at"
    assert 'class="toplinks"' in content
    assert 'id="searchbar"' in content
    assert "/static/django_mitto/admin.css" in content


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["order-7", "+4179765", "abc-777", "parcel"])
def test_changelist_search_finds_recipient_provider_id_reference_and_text(
    admin_client, term
) -> None:
    make(3)
    (wanted,) = make(
        recipient="+41797654321", reference="order-7", provider_id="abc-777", text="Your parcel"
    )
    cl = admin_client.get(CHANGELIST_URL, {"q": term}).context["cl"]
    assert list(cl.result_list) == [wanted]


@pytest.mark.django_db
def test_changelist_filters_by_status(admin_client) -> None:
    make(2)
    unknown = make(2, status=Status.UNKNOWN)
    cl = admin_client.get(CHANGELIST_URL, {"status__exact": "unknown"}).context["cl"]
    assert set(cl.result_list) == set(unknown)


@pytest.mark.django_db
def test_batch_filter_offers_only_the_latest_batches_but_filters_by_any(admin_client) -> None:
    batches = [Batch.objects.create(text="Hi", total=1) for _ in range(25)]
    oldest = batches[0]
    in_oldest = make(2, batch=oldest)
    make(1, batch=batches[-1])
    response = admin_client.get(CHANGELIST_URL)
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "batch")
    offered = [value for value, _label in spec.lookup_choices]
    assert offered == [str(b.pk) for b in reversed(batches[-20:])]

    response = admin_client.get(CHANGELIST_URL, {"batch": str(oldest.pk)})
    assert set(response.context["cl"].result_list) == set(in_oldest)
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "batch")
    assert str(oldest.pk) in [value for value, _label in spec.lookup_choices]


@pytest.mark.django_db
def test_batch_filter_with_a_bad_value_shows_nothing(admin_client) -> None:
    make(2)
    cl = admin_client.get(CHANGELIST_URL, {"batch": "nope"}).context["cl"]
    assert list(cl.result_list) == []


def _changelist_queries(client: Any, params: dict[str, str] | None = None) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST_URL, params or {})
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [{}, {"status__exact": "sent", "q": "Hello"}, {"created_at__year": str(timezone.now().year)}],
)
def test_changelist_query_count_does_not_grow_with_rows(admin_client, params) -> None:
    batch = Batch.objects.create(text="Hello", total=3)
    make(3)
    make(2, batch=batch)
    admin_client.get(CHANGELIST_URL)  # session and content types warmed up
    few = _changelist_queries(admin_client, params)
    make(30)
    make(25, batch=batch, status=Status.DELIVERED)
    many = _changelist_queries(admin_client, params)
    assert len(few) == len(many), many
    assert len(many) <= 10


@pytest.mark.django_db
def test_changelist_never_counts_the_whole_table(admin_client) -> None:
    make(5)
    queries = _changelist_queries(admin_client) + _changelist_queries(
        admin_client, {"status__exact": "sent"}
    )
    counts = [sql for sql in queries if "COUNT(" in sql.upper()]
    assert counts
    assert all("LIMIT" in sql.upper() for sql in counts), counts


@pytest.mark.django_db
def test_long_list_says_more_than_and_pages_on(admin_client, message_admin, monkeypatch) -> None:
    monkeypatch.setattr(message_admin, "list_per_page", 2)
    make(30)
    response = admin_client.get(CHANGELIST_URL)
    paginator = response.context["cl"].paginator
    assert paginator.count_limit == 22
    assert paginator.count_is_partial
    assert "more than 22 messages" in response.content.decode()
    assert "Select all matching messages" in response.content.decode()

    response = admin_client.get(CHANGELIST_URL, {"p": "12"})
    paginator = response.context["cl"].paginator
    assert not paginator.count_is_partial
    assert paginator.count == 30
    assert len(response.context["cl"].result_list) == 2
    assert "30 messages" in response.content.decode()


@pytest.mark.django_db
def test_short_list_is_counted_exactly(admin_client) -> None:
    make(3)
    response = admin_client.get(CHANGELIST_URL)
    paginator = response.context["cl"].paginator
    assert (paginator.count, paginator.count_is_partial, paginator.count_is_estimate) == (
        3,
        False,
        False,
    )
    assert "3 messages" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db
def test_unfiltered_big_list_uses_the_postgresql_estimate(
    admin_client, message_admin, monkeypatch
) -> None:
    monkeypatch.setattr(message_admin, "list_per_page", 2)
    make(40)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    response = admin_client.get(CHANGELIST_URL)
    paginator = response.context["cl"].paginator
    assert paginator.count_is_estimate
    assert paginator.count == 40
    assert "about 40 messages" in response.content.decode()
    # A filter turns the estimate off: it would not know how many rows match.
    paginator = admin_client.get(CHANGELIST_URL, {"status__exact": "sent"}).context["cl"].paginator
    assert not paginator.count_is_estimate
    # A stale estimate does not outlive the rows: a short list is counted exactly.
    Message.objects.filter(pk__in=Message.objects.values("pk")[:37]).delete()
    paginator = admin_client.get(CHANGELIST_URL).context["cl"].paginator
    assert (paginator.count, paginator.count_is_estimate) == (3, False)


@pytest.mark.django_db
def test_paginator_counts_exactly_below_its_limit_and_caps_above() -> None:
    make(7)
    queryset = Message.objects.order_by("pk")
    exact = EstimatedCountPaginator(queryset, 1, page_number=1)
    assert (exact.count, exact.count_is_partial) == (7, False)
    capped = EstimatedCountPaginator(queryset.filter(status="sent"), 2, page_number=1)
    capped.count_limit = 4
    assert (capped.count, capped.count_is_partial) == (5, True)
    assert capped.num_pages == 3


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["UTC", "Europe/Zurich", "America/New_York"])
def test_date_hierarchy_lists_the_same_dates_as_django(zone, message_admin, rf) -> None:
    moments = [
        dt.datetime(2024, 12, 31, 23, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 1, 1, 0, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 3, 30, 1, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 3, 30, 23, 0, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 10, 26, 0, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc),
    ]
    for moment in moments:
        (message,) = make()
        Message.objects.filter(pk=message.pk).update(created_at=moment)
    make(status=Status.FAILED)
    request = rf.get(CHANGELIST_URL)
    with timezone.override(zone):
        ours = message_admin.get_queryset(request)
        plain = Message.objects.all()
        for filters, kind in [
            ({}, "year"),
            ({"status": "sent"}, "year"),
            ({"created_at__year": 2025}, "month"),
            ({"created_at__year": 2025, "created_at__month": 3}, "day"),
            ({"created_at__year": 2024}, "day"),
            ({"recipient": "nobody"}, "year"),
        ]:
            expected = list(plain.filter(**filters).datetimes("created_at", kind))
            assert list(ours.filter(**filters).datetimes("created_at", kind)) == expected
            assert (
                list(ours.filter(**filters).datetimes("created_at", kind, "DESC"))
                == (expected[::-1])
            )


@pytest.mark.django_db
def test_date_hierarchy_drills_down_by_year(admin_client) -> None:
    (old,) = make()
    Message.objects.filter(pk=old.pk).update(
        created_at=dt.datetime(2020, 5, 1, tzinfo=dt.timezone.utc)
    )
    make(2)
    response = admin_client.get(CHANGELIST_URL)
    assert "?created_at__year=2020" in response.content.decode()
    cl = admin_client.get(CHANGELIST_URL, {"created_at__year": "2020"}).context["cl"]
    assert [m.pk for m in cl.result_list] == [old.pk]


# -- actions --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_again_creates_new_messages_and_sends_them(admin_client, mitto_sandbox) -> None:
    originals = make(2, reference="order-9", text="Again")
    response = run_action(admin_client, "send_again", originals, follow=True)
    assert "2 new messages were queued to be sent again." in flash_messages(response)
    new = Message.objects.exclude(pk__in=[m.pk for m in originals])
    assert new.count() == 2
    assert {m.status for m in new} == {Status.SENT}
    assert {(m.recipient, m.text, m.reference) for m in new} == {
        ("+41791234567", "Again", "order-9")
    }
    assert len(mitto_sandbox.messages) == 2
    assert {m.provider_id for m in new} == {r["id"] for r in mitto_sandbox.messages}
    for original in originals:
        before = original.provider_id
        original.refresh_from_db()
        assert (original.status, original.provider_id) == (Status.SENT, before)


@pytest.mark.django_db
def test_send_again_skips_a_message_that_cannot_be_sent_and_says_why(admin_client) -> None:
    (good,) = make()
    (bad,) = make(recipient="not a number", status=Status.FAILED)
    response = run_action(admin_client, "send_again", [good, bad], follow=True)
    notes = flash_messages(response)
    assert "1 new message was queued to be sent again." in notes
    assert any("not a number" in note and "could not be sent again" in note for note in notes)
    assert Message.objects.count() == 3


@pytest.mark.django_db
def test_send_again_refuses_a_selection_over_its_limit(
    admin_client, message_admin, monkeypatch
) -> None:
    monkeypatch.setattr(message_admin, "send_again_limit", 2)
    selected = make(3)
    response = run_action(admin_client, "send_again", selected, follow=True)
    assert any("at most 2" in note for note in flash_messages(response))
    assert Message.objects.count() == 3


@pytest.mark.django_db
def test_mark_as_failed_touches_only_unknown_messages(
    admin_client, django_capture_on_commit_callbacks
) -> None:
    unknown = make(2, status=Status.UNKNOWN, error="Timed out. The message may have been sent.")
    others = make(1, status=Status.SENT) + make(1, status=Status.DELIVERED)
    failed: list[int] = []

    def on_failed(sender, message, error, **kwargs):
        failed.append(message.pk)

    message_failed.connect(on_failed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = run_action(admin_client, "mark_failed", unknown + others, follow=True)
    finally:
        message_failed.disconnect(on_failed)
    notes = flash_messages(response)
    assert "2 messages were marked as failed." in notes
    assert any(note.startswith("2 messages were skipped") for note in notes)
    for message in unknown:
        message.refresh_from_db()
        assert message.status == Status.FAILED
        assert message.error.startswith("Timed out. The message may have been sent.\n")
        assert "Marked as failed by admin on " in message.error
        assert message.status_changed_at is not None
    assert [Message.objects.get(pk=m.pk).status for m in others] == [
        Status.SENT,
        Status.DELIVERED,
    ]
    assert sorted(failed) == sorted(m.pk for m in unknown)


@pytest.mark.django_db
def test_export_as_csv_gives_one_row_per_selected_message(admin_client) -> None:
    (first,) = make(reference="order-1", provider_id="id-1")
    Message.objects.filter(pk=first.pk).update(segments=2)
    (second,) = make(
        status=Status.UNDELIVERED,
        reference="=HYPERLINK(1)",
        delivery_status="UNDELIV",
        error_code="1",
    )
    make(reference="not selected")
    response = run_action(admin_client, "export_csv", [first, second])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="mitto-messages-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "recipient",
        "status",
        "Mitto id",
        "reference",
        "parts",
        "created at",
        "sent at",
        "delivery status (raw)",
        "error code",
    ]
    assert len(rows) == 3
    by_reference = {row[3]: row for row in rows[1:]}
    assert by_reference["order-1"][:5] == ["+41791234567", "sent", "id-1", "order-1", "2"]
    assert dt.datetime.fromisoformat(by_reference["order-1"][5]) == first.created_at
    assert by_reference["order-1"][6] == ""
    # A spreadsheet must not take a reference for a formula.
    assert by_reference["'=HYPERLINK(1)"][7:] == ["UNDELIV", "1"]


# -- permissions ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_view_only_user_sees_the_list_without_add_button_or_sending_actions(
    viewer_client,
) -> None:
    make(2)
    response = viewer_client.get(CHANGELIST_URL)
    assert response.status_code == 200
    assert ADD_URL not in response.content.decode()
    actions = [name for name, _label in response.context["action_form"].fields["action"].choices]
    assert "export_csv" in actions
    for name in ("send_again", "mark_failed", "delete_selected"):
        assert name not in actions


@pytest.mark.django_db
def test_view_only_user_cannot_open_or_post_the_compose_form(viewer_client) -> None:
    assert viewer_client.get(ADD_URL).status_code == 403
    assert viewer_client.post(ADD_URL, VALID_POST).status_code == 403
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_view_only_user_cannot_run_send_again_or_mark_as_failed(viewer_client) -> None:
    selected = make(2, status=Status.UNKNOWN)
    run_action(viewer_client, "send_again", selected)
    run_action(viewer_client, "mark_failed", selected)
    assert Message.objects.count() == 2
    assert set(Message.objects.values_list("status", flat=True)) == {Status.UNKNOWN}


@pytest.mark.django_db
def test_view_only_user_can_read_a_message_and_export(viewer_client) -> None:
    (message,) = make()
    response = viewer_client.get(change_url(message))
    assert response.status_code == 200
    assert "timeline" in response.context
    assert run_action(viewer_client, "export_csv", [message]).status_code == 200


# -- in the browser -------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_changelist_and_timeline_render_in_the_browser(page, live_server, admin_user) -> None:
    from tests.browser import admin_login, screenshot

    message, _reports = _sent_message_with_reports()
    make(status=Status.FAILED, text="Could not be sent", error="Mitto said no")
    make(status=Status.UNKNOWN, text="Timed out")
    admin_login(page, live_server.url, "admin", "password")

    page.goto(live_server.url + CHANGELIST_URL)
    colours = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.mitto-status')].map(
            (node) => [node.textContent.trim(), getComputedStyle(node).backgroundColor]))"""
    )
    assert len(set(colours.values())) == 3, colours
    screenshot(page, "message-changelist")

    page.goto(live_server.url + change_url(message))
    rows = page.locator("#mitto-timeline tbody tr")
    assert rows.count() == 6
    assert page.locator("input[name=_save]").count() == 0
    screenshot(page, "message-change-timeline")


# -- delivery reports ------------------------------------------------------------------------------


def test_delivery_report_list_is_a_read_only_record_with_links_to_messages(admin_client) -> None:
    from django_mitto.models import DeliveryReport

    message = Message.objects.create(
        recipient="+41791234567", text="Hi", sender="Shop", status="sent"
    )
    DeliveryReport.objects.create(
        message=message, provider_id="abc", status="DELIVRD", mapped_status="delivered",
        outcome="applied", method="POST", payload={"body": {"id": "abc"}},
    )  # fmt: skip
    DeliveryReport.objects.create(
        provider_id="zzz", status="DELIVRD", outcome="unmatched", method="GET"
    )
    response = admin_client.get("/admin/django_mitto/deliveryreport/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"/admin/django_mitto/message/{message.pk}/change/" in page
    assert "2 results" in page or "2 delivery reports" in page
    assert admin_client.get("/admin/django_mitto/deliveryreport/add/").status_code == 403
    report = DeliveryReport.objects.get(provider_id="abc")
    detail = admin_client.get(f"/admin/django_mitto/deliveryreport/{report.pk}/change/")
    assert detail.status_code == 200
    assert b'name="provider_id"' not in detail.content  # nothing editable
    found = admin_client.get("/admin/django_mitto/deliveryreport/", {"q": "zzz"})
    assert (
        "zzz" in found.content.decode()
        and "abc" not in found.content.decode().split("result_list")[1]
    )


def test_delivery_report_list_costs_the_same_queries_for_few_and_many(
    admin_client, django_assert_max_num_queries
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_mitto.models import DeliveryReport

    def load() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/admin/django_mitto/deliveryreport/").status_code == 200
        return len(ctx.captured_queries)

    message = Message.objects.create(
        recipient="+41791234567", text="Hi", sender="Shop", status="sent"
    )
    DeliveryReport.objects.bulk_create(
        [
            DeliveryReport(message=message, provider_id=f"id{i}", status="DELIVRD", method="POST")
            for i in range(3)
        ]
    )
    few = load()
    DeliveryReport.objects.bulk_create(
        [
            DeliveryReport(message=message, provider_id=f"more{i}", status="DELIVRD", method="POST")
            for i in range(150)
        ]
    )
    assert load() == few


def test_search_by_phone_number_as_typed_or_mitto_id_finds_the_exact_message(admin_client) -> None:
    wanted = Message.objects.create(recipient="+41791234567", text="Wanted", sender="Shop")
    other = Message.objects.create(recipient="+41791234568", text="Other", sender="Shop")
    Message.objects.filter(pk=wanted.pk).update(provider_id="d88ae721-2938-45af-b8a0-b8de4231f702")
    for term in ("+41 79 123 45 67", "0041791234567", "d88ae721-2938-45af-b8a0-b8de4231f702"):
        response = admin_client.get("/admin/django_mitto/message/", {"q": term})
        page = response.content.decode()
        assert f"/admin/django_mitto/message/{wanted.pk}/change/" in page, term
        assert f"/admin/django_mitto/message/{other.pk}/change/" not in page, term
    # Anything else is still a substring search over text, reference, recipient and id.
    page = admin_client.get("/admin/django_mitto/message/", {"q": "Othe"}).content.decode()
    assert f"/admin/django_mitto/message/{other.pk}/change/" in page


# -- malformed input, formula-safe export, national numbers ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"text": "Ring\x07 the bell"}, "text"),
        ({"text": "Escape \x1b[0m"}, "text"),
        ({"text": "Hi\x00"}, "text"),
        ({"reference": "order\x00-1"}, "reference"),
        ({"reference": "order\t1"}, "reference"),
        ({"validity": "0"}, "validity"),
        ({"validity": "2881"}, "validity"),
        ({"validity": "99999999999"}, "validity"),
        ({"pid": "-1"}, "pid"),
        ({"text": "a" * (153 * 10 + 1)}, "text"),
    ],
)
def test_compose_form_refuses_malformed_input_on_its_field(admin_client, changes, field) -> None:
    response = admin_client.post(ADD_URL, {**VALID_POST, **changes})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert set(form.errors) == {field}
    assert len(form.errors[field]) == 1
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_compose_form_says_how_many_parts_a_too_long_text_takes(admin_client, settings) -> None:
    settings.MITTO_MAX_PARTS = 2
    response = admin_client.post(ADD_URL, {**VALID_POST, "text": "a" * 400})
    (error,) = response.context["adminform"].form.errors["text"]
    assert "3 SMS parts" in error
    assert "MITTO_MAX_PARTS" in error
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_compose_form_keeps_line_breaks_and_tabs_and_the_longest_validity(admin_client) -> None:
    admin_client.post(ADD_URL, {**VALID_POST, "text": "a\tb\r\nc", "validity": "2880"})
    message = Message.objects.get()
    assert (message.text, message.validity) == ("a\tb\nc", 2880)


@pytest.mark.django_db
def test_export_escapes_formulas_in_every_column(admin_client) -> None:
    # Values saved by code that skipped validation (update() writes no check).
    (message,) = make()
    Message.objects.filter(pk=message.pk).update(
        recipient="=1+2",
        provider_id="@SUM(A1)",
        reference="\t=cmd|' /C calc'!A0",
        delivery_status="\r=1",
        error_code="-2+3",
    )
    (plain,) = make(reference="-", error_code="-1")
    response = run_action(admin_client, "export_csv", [message, plain])
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_pk = {row[0]: row for row in rows[1:]}
    bad = by_pk["'=1+2"]
    assert bad[2:4] == ["'@SUM(A1)", "'\t=cmd|' /C calc'!A0"]
    assert bad[7:] == ["'\r=1", "'-2+3"]
    # An E.164 number or a plain negative number is no formula and keeps its form.
    good = by_pk["+41791234567"]
    assert (good[3], good[8]) == ("'-", "-1")


@pytest.mark.django_db
def test_search_finds_a_national_number_with_the_default_region(admin_client, settings) -> None:
    wanted = Message.objects.create(recipient="+41791234567", text="Wanted", sender="Shop")
    other = Message.objects.create(recipient="+41791234568", text="Other", sender="Shop")
    settings.MITTO_DEFAULT_REGION = "CH"
    for term in ("079 123 45 67", "0791234567", "079/123.45.67"):
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get(CHANGELIST_URL, {"q": term}).content.decode()
        assert f"/admin/django_mitto/message/{wanted.pk}/change/" in page, term
        assert f"/admin/django_mitto/message/{other.pk}/change/" not in page, term
        # The exact, indexed lookup on the E.164 form, not a substring search.
        listing = [q["sql"] for q in queries if "django_mitto_message" in q["sql"]]
        assert any("+41791234567" in sql for sql in listing)
        assert not any("LIKE" in sql.upper() for sql in listing), term


@pytest.mark.django_db
def test_search_for_a_national_number_without_a_region_is_a_text_search(
    admin_client, settings
) -> None:
    settings.MITTO_DEFAULT_REGION = ""
    wanted = Message.objects.create(
        recipient="+41791234567", text="Call 079 123 45 67", sender="Shop"
    )
    page = admin_client.get(CHANGELIST_URL, {"q": "079 123 45 67"}).content.decode()
    assert f"/admin/django_mitto/message/{wanted.pk}/change/" in page


# -- rules a one-line change would break ----------------------------------------------------------

#: The free-text columns of "Export as CSV" (by header) and the Message field each shows.
CSV_TEXT_COLUMNS = {
    "Mitto id": "provider_id",
    "reference": "reference",
    "delivery status (raw)": "delivery_status",
    "error code": "error_code",
}


def export_rows(client: Any, messages: list[Message]) -> list[dict[str, str]]:
    response = run_action(client, "export_csv", messages)
    assert response.status_code == 200
    reader = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    return list(reader)


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_export_escapes_a_formula_prefix_in_every_free_text_column(admin_client, prefix) -> None:
    (message,) = make(
        **{field: f"{prefix}1+2|{field}" for field in CSV_TEXT_COLUMNS.values()},
        recipient="+41791234567",
    )
    (row,) = export_rows(admin_client, [message])
    for header, field in CSV_TEXT_COLUMNS.items():
        assert row[header] == f"'{prefix}1+2|{field}", header
    # A phone number is not free text: it keeps its +.
    assert row["recipient"] == "+41791234567"


@pytest.mark.django_db
def test_export_leaves_other_text_as_it_is(admin_client) -> None:
    (message,) = make(
        provider_id="id-1", reference="order =1", delivery_status="DELIVRD", error_code="0"
    )
    (row,) = export_rows(admin_client, [message])
    assert [row[header] for header in CSV_TEXT_COLUMNS] == ["id-1", "order =1", "DELIVRD", "0"]
