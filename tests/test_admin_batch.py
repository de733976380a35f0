"""The Batch admin: bulk send (preview, confirm), a batch's progress page, the batch list."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from django_mitto.admin.batch import BatchProgress
from django_mitto.admin.bulk import (
    CSV,
    PASTED,
    BulkSendForm,
    CsvError,
    analyze_entries,
    decode_csv,
    parse_csv,
    parse_pasted,
)
from django_mitto.models import Batch, Message, Status

SEND_URL = "/admin/django_mitto/batch/send/"

# 3 valid, 3 invalid (hello, 12345, +41 79 123), 2 duplicates, written in several styles.
PASTED_NUMBERS = """+41 79 123 45 61
0791234562, 0041791234563; hello
12345
+41 79 123
+41791234561
079 123 45 62
"""


@pytest.fixture(autouse=True)
def _region(settings: Any) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "numbers": "",
        "sender": "DjangoMitto",
        "text": "Our shop opens at 9 tomorrow.",
        "encoding": "Auto",
        "reference": "",
        "_preview": "Preview",
    }
    data.update(overrides)
    return data


def numbers(count: int, start: int = 1_000_000) -> list[str]:
    return [f"+4179{start + i}" for i in range(count)]


def preview(client: Any, **overrides: Any) -> Any:
    response = client.post(SEND_URL, form_data(**overrides))
    assert response.status_code == 200
    return response


def confirm_data(response: Any, **overrides: Any) -> dict[str, Any]:
    """The data the preview page would send back when the person clicks "Send"."""
    form = response.context["form"]
    data = {
        name: form[name].value() or ""
        for name in ("numbers", "csv_data", "csv_name", "sender", "text", "encoding", "reference")
    }
    data["digest"] = form["digest"].value()
    if form["test"].value():
        data["test"] = "on"
    data["_send"] = "Send"
    data.update(overrides)
    return data


def make_staff(django_user_model: Any, username: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="django_mitto", codename__in=codenames)
    )
    return user


# -- parsing -------------------------------------------------------------------------------------


def test_pasted_numbers_are_split_on_lines_commas_semicolons_and_spaces() -> None:
    entries = parse_pasted("0791234561 0791234562\n+41 79 123 45 63;0041791234564,\t0791234565")
    assert [e.raw for e in entries] == [
        "0791234561",
        "0791234562",
        "+41 79 123 45 63",
        "0041791234564",
        "0791234565",
    ]
    assert [e.position for e in entries] == [1, 1, 2, 2, 2]
    assert {e.source for e in entries} == {PASTED}


def test_a_spaced_number_that_does_not_parse_is_reported_whole() -> None:
    entries = parse_pasted("+41 79 123")
    assert [e.raw for e in entries] == ["+41 79 123"]


def test_csv_with_bom_semicolons_and_a_header_picks_columns_by_name() -> None:
    text = decode_csv(
        "\ufeffName;Phone;Ref\nAnna;+41791234561;order-1\n\nBob;079 123 45 62;\n".encode()
    )
    entries, layout = parse_csv(text)
    assert layout.header
    assert (layout.number_column, layout.reference_column) == (2, 3)
    assert [(e.raw, e.reference, e.position, e.source) for e in entries] == [
        ("+41791234561", "order-1", 2, CSV),
        ("079 123 45 62", "", 4, CSV),
    ]


def test_csv_without_header_reads_numbers_then_references() -> None:
    entries, layout = parse_csv("+41791234561,a\n0791234562,b\n")
    assert not layout.header
    assert [(e.raw, e.reference) for e in entries] == [("+41791234561", "a"), ("0791234562", "b")]


def test_csv_with_excel_sep_line_uses_that_delimiter() -> None:
    entries, layout = parse_csv("sep=;\nphone;ref\n+41791234561;a,b\n")
    assert layout.header
    assert [(e.raw, e.reference, e.position) for e in entries] == [("+41791234561", "a,b", 3)]


def test_csv_header_naming_only_the_number_column_brings_no_references() -> None:
    entries, layout = parse_csv("name,mobile\nAnna,+41791234561\n")
    assert layout.reference_column is None
    assert [(e.raw, e.reference) for e in entries] == [("+41791234561", "")]


def test_csv_that_is_not_utf8_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        decode_csv("Nummer;Référence\n".encode("cp1252"))


swiss_mobiles = st.integers(min_value=0, max_value=9_999_999).map(lambda n: f"+4179{n:07d}")
separators = st.sampled_from([",", ";", "\n", " ", "\t", ", ", " ; ", "\r\n", "|"])


@given(st.lists(st.tuples(swiss_mobiles, separators), min_size=1, max_size=30))
def test_any_separator_mix_gives_each_number_once_in_order(items: list[tuple[str, str]]) -> None:
    text = "".join(number + sep for number, sep in items)
    result = analyze_entries(parse_pasted(text, "CH"), "CH")
    assert result.numbers == list(dict.fromkeys(number for number, _ in items))
    assert not result.rejected
    assert len(result.duplicates) == len(items) - len(result.numbers)


@given(st.text(max_size=200))
def test_parsing_any_text_never_fails_and_loses_nothing(text: str) -> None:
    entries = parse_pasted(text, "CH")
    for entry in entries:
        assert entry.raw
        assert entry.raw in text
    try:
        parse_csv(text)
    except CsvError as exc:
        reason = str(exc)  # said to the person who uploaded the file
    else:
        reason = "parsed"
    assert reason


def test_csv_with_only_a_reference_column_is_refused_with_a_reason() -> None:
    with pytest.raises(CsvError, match="no column of numbers"):
        parse_csv("REFERENCE\norder-1\n")


def test_analysis_dedupes_by_normalised_number_and_keeps_the_first() -> None:
    result = analyze_entries(parse_pasted(PASTED_NUMBERS), "CH")
    assert result.numbers == ["+41791234561", "+41791234562", "+41791234563"]
    assert [(d.entry.raw, d.number, d.first.position) for d in result.duplicates] == [
        ("+41791234561", "+41791234561", 1),
        ("079 123 45 62", "+41791234562", 2),
    ]
    assert [r.entry.raw for r in result.rejected] == ["hello", "12345", "+41 79 123"]


# -- preview -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_batch_leads_to_the_bulk_send_page(admin_client: Any) -> None:
    response = admin_client.get(reverse("admin:django_mitto_batch_add"))
    assert response.status_code == 302
    assert response.url == reverse("admin:django_mitto_batch_send") == SEND_URL


@pytest.mark.django_db
def test_send_page_starts_with_the_default_sender_and_auto(
    admin_client: Any, settings: Any
) -> None:
    settings.MITTO_DEFAULT_SENDER = "ShopSender"
    response = admin_client.get(SEND_URL)
    assert response.status_code == 200
    form = response.context["form"]
    assert form["sender"].value() == "ShopSender"
    assert form["encoding"].value() == "Auto"
    assert 'enctype="multipart/form-data"' in response.content.decode()
    assert 'name="_send"' not in response.content.decode()


@pytest.mark.django_db
def test_preview_of_pasted_numbers_counts_invalid_and_duplicates(admin_client: Any) -> None:
    response = preview(admin_client, numbers=PASTED_NUMBERS)
    result = response.context["preview"]
    assert len(result.recipients) == 3
    assert len(result.rejected) == 3
    assert len(result.duplicates) == 2
    assert [r.reason for r in result.rejected] == [
        "hello is not a phone number.",
        "12345 is not a valid phone number.",
        "+41 79 123 is not a valid phone number.",
    ]
    page = response.content.decode()
    assert '<dd id="mitto-valid-count">3</dd>' in page
    assert '<dd id="mitto-invalid-count">3</dd>' in page
    assert '<dd id="mitto-duplicate-count">2</dd>' in page
    assert "12345 is not a valid phone number." in page
    assert "+41791234563" in page
    # GSM text of 29 characters: one part each, three in all.
    assert '<dd id="mitto-encoding" class="mitto-figure-text">GSM 03.38</dd>' in page
    assert '<dd id="mitto-parts">1</dd>' in page
    assert '<dd id="mitto-total-parts">3</dd>' in page
    assert 'name="_send"' in page
    assert "Send 3 messages" in page
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_preview_shows_unicode_and_the_parts_of_a_long_text(admin_client: Any) -> None:
    text = "Grüße aus Zürich 😀 " * 5  # 100 characters with an emoji: Unicode, 67 per part
    response = preview(admin_client, numbers="\n".join(numbers(4)), text=text)
    result = response.context["preview"]
    assert result.info.encoding == "Unicode"
    assert result.parts_per_message == 2
    assert result.total_parts == 8
    page = response.content.decode()
    assert '<dd id="mitto-encoding" class="mitto-figure-text">Unicode (UCS-2)</dd>' in page
    assert '<dd id="mitto-total-parts">8</dd>' in page


@pytest.mark.django_db
def test_preview_of_a_csv_with_header_and_references(admin_client: Any) -> None:
    csv_text = (
        "\ufeffName;Phone;Reference\n"
        "Anna;+41791234561;order-1\n"
        "Bob;079 123 45 62;order-2\n"
        "Eve;nope;order-3\n"
        "Anna again;0041791234561;order-4\n"
    )
    upload = SimpleUploadedFile("customers.csv", csv_text.encode(), content_type="text/csv")
    response = admin_client.post(SEND_URL, {**form_data(), "csv_file": upload})
    assert response.status_code == 200
    result = response.context["preview"]
    assert [(r.number, r.reference) for r in result.recipients] == [
        ("+41791234561", "order-1"),
        ("+41791234562", "order-2"),
    ]
    assert [(r.entry.raw, r.entry.position) for r in result.rejected] == [("nope", 4)]
    assert [(d.entry.position, d.first.position) for d in result.duplicates] == [(5, 2)]
    assert result.csv_layout.header
    page = response.content.decode()
    assert "Header row found." in page
    assert "References from column 3 (“Reference”)." in page
    assert "file, line 4" in page
    # The file travels back in the form, so the confirming request carries the numbers again.
    form = response.context["form"]
    assert form["csv_data"].value() == csv_text.lstrip("\ufeff")
    assert form["csv_name"].value() == "customers.csv"
    assert form["digest"].value() == result.digest


@pytest.mark.django_db
def test_pasted_numbers_and_a_csv_file_are_sent_together(admin_client: Any) -> None:
    upload = SimpleUploadedFile("more.csv", b"+41791234562\n+41791234561\n")
    response = admin_client.post(
        SEND_URL, {**form_data(numbers="+41791234561"), "csv_file": upload}
    )
    result = response.context["preview"]
    assert result.numbers == ["+41791234561", "+41791234562"]
    assert len(result.duplicates) == 1


# -- errors name their field ---------------------------------------------------------------------


@pytest.mark.django_db
def test_text_that_does_not_fit_gsm_is_an_error_on_the_text(admin_client: Any) -> None:
    response = preview(admin_client, numbers="+41791234561", text="Hi 😀", encoding="GSM")
    errors = response.context["form"].errors
    assert list(errors) == ["text"]
    assert "not in the GSM alphabet" in errors["text"][0]
    assert "Please correct the error below." in response.content.decode()
    assert 'name="_send"' not in response.content.decode()


@pytest.mark.django_db
def test_an_unknown_encoding_is_an_error_on_the_encoding(admin_client: Any) -> None:
    response = preview(admin_client, numbers="+41791234561", encoding="Klingon")
    assert list(response.context["form"].errors) == ["encoding"]


@pytest.mark.django_db
def test_binary_text_that_is_not_hex_is_an_error_on_the_text(admin_client: Any) -> None:
    response = preview(admin_client, numbers="+41791234561", text="xyz", encoding="Binary")
    assert "hexadecimal" in response.context["form"].errors["text"][0]


@pytest.mark.django_db
def test_an_invalid_sender_is_an_error_on_the_sender(admin_client: Any) -> None:
    response = preview(admin_client, numbers="+41791234561", sender="a!")
    assert list(response.context["form"].errors) == ["sender"]


@pytest.mark.django_db
def test_no_sender_and_no_default_is_an_error_on_the_sender(
    admin_client: Any, settings: Any
) -> None:
    settings.MITTO_DEFAULT_SENDER = ""
    response = preview(admin_client, numbers="+41791234561", sender="")
    assert "MITTO_DEFAULT_SENDER" in response.context["form"].errors["sender"][0]


@pytest.mark.django_db
def test_only_invalid_numbers_is_an_error_on_the_numbers(admin_client: Any) -> None:
    response = preview(admin_client, numbers="hello\n123")
    errors = response.context["form"].errors
    assert list(errors) == ["numbers"]
    assert errors["numbers"][0].startswith("No valid numbers")
    # The reasons are still shown, so the person can fix the numbers.
    assert len(response.context["preview"].rejected) == 2
    assert "hello is not a phone number." in response.content.decode()


@pytest.mark.django_db
def test_no_numbers_at_all_is_an_error_on_the_numbers(admin_client: Any) -> None:
    response = preview(admin_client, numbers="  \n ")
    assert response.context["form"].errors["numbers"] == ["Enter numbers, or upload a CSV file."]


@pytest.mark.django_db
def test_a_csv_over_the_size_cap_is_refused_on_the_file_field(admin_client: Any) -> None:
    big = SimpleUploadedFile("big.csv", b"+41791234561\n" * (1024 * 1024 // 13 + 10))
    response = admin_client.post(SEND_URL, {**form_data(), "csv_file": big})
    errors = response.context["form"].errors
    assert list(errors) == ["csv_file"]
    assert "largest file accepted is 1.0\xa0MB" in errors["csv_file"][0]


@pytest.mark.django_db
def test_a_carried_csv_over_the_size_cap_is_refused(admin_client: Any) -> None:
    data = form_data(csv_data="+41791234561\n" * (1024 * 1024 // 13 + 10), csv_name="x.csv")
    response = admin_client.post(SEND_URL, data)
    assert "csv_data" in response.context["form"].errors
    assert response.context["preview"] is None


@pytest.mark.django_db
def test_a_carried_csv_can_be_left_out(admin_client: Any) -> None:
    data = form_data(numbers="+41791234561", csv_data="+41791234562\n", csv_clear="on")
    response = admin_client.post(SEND_URL, data)
    assert response.context["preview"].numbers == ["+41791234561"]
    assert response.context["form"]["csv_data"].value() == ""


@pytest.mark.django_db
def test_a_csv_that_is_not_utf8_is_refused_on_the_file_field(admin_client: Any) -> None:
    upload = SimpleUploadedFile("latin1.csv", "Numéro\n0791234561\n".encode("latin-1"))
    response = admin_client.post(SEND_URL, {**form_data(), "csv_file": upload})
    assert "not UTF-8" in response.context["form"].errors["csv_file"][0]


def test_the_recipient_cap_is_an_error_on_the_numbers() -> None:
    form = BulkSendForm(form_data(numbers="\n".join(numbers(3))), region="CH")
    form.max_recipients = 2
    assert not form.is_valid()
    assert "more than one bulk send takes (2)" in form.errors["numbers"][0]


# -- confirm and send ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_confirm_sends_one_batch_through_smsbulk_in_chunks(
    admin_client: Any, admin_user: Any, mitto_sandbox: Any, settings: Any
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 20
    recipients = numbers(45)
    pasted = "\n".join(recipients) + "\nnot a number\n" + recipients[0]
    response = preview(admin_client, numbers=pasted, reference="spring-sale")
    assert response.context["preview"].requests == 3

    response = admin_client.post(SEND_URL, confirm_data(response))

    batch = Batch.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:django_mitto_batch_change", args=[batch.pk])
    assert batch.total == 45
    assert batch.created_by == admin_user
    assert batch.sender == "DjangoMitto"
    messages = list(batch.messages.order_by("pk"))
    assert [m.recipient for m in messages] == recipients
    assert {m.status for m in messages} == {Status.SENT}
    assert {m.reference for m in messages} == {"spring-sale"}
    provider_ids = {m.provider_id for m in messages}
    assert len(provider_ids) == 45
    assert "" not in provider_ids

    received = mitto_sandbox.messages
    assert len(received) == 45
    assert {r["path"] for r in received} == {"/smsbulk"}
    requests = {json.dumps(r["body"]["to"]) for r in received}
    assert sorted(len(json.loads(to)) for to in requests) == [5, 20, 20]
    assert {r["id"] for r in received} == provider_ids

    page = admin_client.get(response.url)
    assert f"Batch {batch.pk}: 45 messages to send, 45 parts." in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_confirm_of_a_csv_sends_each_row_with_its_reference(
    admin_client: Any, mitto_sandbox: Any
) -> None:
    upload = SimpleUploadedFile(
        "orders.csv", b"phone,ref\n+41791234561,A-1\n+41791234562,\n+41791234563,A-3\n"
    )
    response = admin_client.post(SEND_URL, {**form_data(reference="fallback"), "csv_file": upload})
    response = admin_client.post(SEND_URL, confirm_data(response))
    assert response.status_code == 302
    batch = Batch.objects.get()
    assert list(batch.messages.order_by("pk").values_list("recipient", "reference")) == [
        ("+41791234561", "A-1"),
        ("+41791234562", "fallback"),
        ("+41791234563", "A-3"),
    ]
    assert sorted(r["reference"] for r in mitto_sandbox.messages) == ["A-1", "A-3", "fallback"]


@pytest.mark.django_db
def test_confirm_after_the_form_changed_previews_again_and_sends_nothing(
    admin_client: Any,
) -> None:
    response = preview(admin_client, numbers="+41791234561\n+41791234562")
    data = confirm_data(response, numbers="+41791234561\n+41791234562\n+41791234563")
    response = admin_client.post(SEND_URL, data)
    assert response.status_code == 200
    assert not Batch.objects.exists()
    assert "changed since the preview" in response.content.decode()
    # The new preview counts what was submitted, whatever the page said before.
    assert len(response.context["preview"].recipients) == 3
    assert response.context["form"]["digest"].value() == response.context["preview"].digest


@pytest.mark.django_db
def test_confirm_without_a_preview_sends_nothing(admin_client: Any) -> None:
    response = admin_client.post(SEND_URL, form_data(numbers="+41791234561", _send="Send"))
    assert response.status_code == 200
    assert not Batch.objects.exists()


# -- permissions ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_view_only_staff_cannot_reach_the_send_page_nor_see_a_send_button(
    client: Any, django_user_model: Any
) -> None:
    user = make_staff(django_user_model, "viewer", "view_batch", "view_message")
    client.force_login(user)
    assert client.get(SEND_URL).status_code == 403
    assert client.post(SEND_URL, form_data(numbers="+41791234561")).status_code == 403
    response = client.get(reverse("admin:django_mitto_batch_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert SEND_URL not in page
    assert reverse("admin:django_mitto_batch_add") not in page
    assert 'class="addlink"' not in page
    assert reverse("admin:django_mitto_dashboard") in page


@pytest.mark.django_db
def test_sending_needs_add_permission_on_messages_too(client: Any, django_user_model: Any) -> None:
    user = make_staff(django_user_model, "half", "add_batch", "view_batch")
    client.force_login(user)
    assert client.get(SEND_URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="add_message"))
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get(SEND_URL).status_code == 200


@pytest.mark.django_db
def test_admin_index_offers_add_batch_only_to_those_who_may_send(
    client: Any, django_user_model: Any
) -> None:
    user = make_staff(django_user_model, "half", "add_batch", "view_batch")
    client.force_login(user)
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_mitto_batch_changelist") in index
    assert reverse("admin:django_mitto_batch_add") not in index
    user.user_permissions.add(Permission.objects.get(codename="add_message"))
    client.force_login(django_user_model.objects.get(pk=user.pk))
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_mitto_batch_add") in index


@pytest.mark.django_db
def test_the_send_page_needs_a_staff_login(client: Any) -> None:
    response = client.get(SEND_URL)
    assert response.status_code == 302
    assert "/admin/login/" in response.url


@pytest.mark.django_db
def test_a_batch_page_cannot_be_edited(admin_client: Any) -> None:
    batch = Batch.objects.create(text="Hello", total=0)
    url = reverse("admin:django_mitto_batch_change", args=[batch.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert admin_client.post(url, {"text": "Changed"}).status_code == 403
    batch.refresh_from_db()
    assert batch.text == "Hello"


# -- the batch page ------------------------------------------------------------------------------


def make_batch(statuses: dict[str, int], *, segments: int = 2, **fields: Any) -> Batch:
    total = sum(statuses.values())
    batch = Batch.objects.create(sender="DjangoMitto", text="Hello there", total=total, **fields)
    rows = []
    n = 0
    for status, count in statuses.items():
        for _ in range(count):
            rows.append(
                Message(
                    batch=batch,
                    recipient=f"+4179{2_000_000 + n}",
                    text="Hello there",
                    status=status,
                    segments=segments,
                )
            )
            n += 1
    Message.objects.bulk_create(rows)
    return batch


MIXED = {
    Status.DELIVERED: 4,
    Status.UNDELIVERED: 1,
    Status.FAILED: 1,
    Status.SENT: 2,
    Status.QUEUED: 2,
}


@pytest.mark.django_db
def test_batch_progress_reads_counts_with_one_query(django_assert_num_queries: Any) -> None:
    batch = make_batch(MIXED)
    with django_assert_num_queries(1):
        progress = BatchProgress.load(batch)
    assert progress.total == 10
    assert progress.progressed == 8  # sent + final
    assert progress.percent_label == "80.0%"
    assert progress.delivery_rate_label == "66.7%"  # 4 delivered of 6 settled
    assert progress.parts_used == 14  # sent, delivered, undelivered: 7 messages x 2 parts
    assert progress.parts_total == 20
    assert [s.key for s in progress.bar] == ["delivered", "undelivered", "failed", "sent"]
    assert sum(s.width for s in progress.bar) == pytest.approx(80.0)


@pytest.mark.django_db
def test_batch_page_shows_counts_progress_and_delivery_rate(admin_client: Any) -> None:
    batch = make_batch(MIXED)
    response = admin_client.get(reverse("admin:django_mitto_batch_change", args=[batch.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<dd>80.0%</dd>" in page
    assert "8 of 10 messages" in page
    assert "<dd>66.7%</dd>" in page
    assert "4 delivered of 6 settled" in page
    assert "<dd>14</dd>" in page
    assert '<svg class="mitto-bar"' in page
    assert re.search(
        r"<th scope=\"row\">.*?Delivered</a></th>\s*<td class=\"mitto-num\">4</td>", page, re.S
    )
    messages_url = reverse("admin:django_mitto_message_changelist")
    assert f'{messages_url}?batch={batch.pk}"' in page
    # Messages are still on their way: the page refreshes itself.
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Stop refreshing" in page


@pytest.mark.django_db
def test_the_message_link_lists_only_the_batch_messages(admin_client: Any) -> None:
    batch = make_batch({Status.SENT: 3})
    make_batch({Status.SENT: 2})
    messages_url = reverse("admin:django_mitto_message_changelist")
    response = admin_client.get(f"{messages_url}?batch={batch.pk}")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 3


@pytest.mark.django_db
def test_batch_page_stops_refreshing_when_every_message_is_settled(admin_client: Any) -> None:
    batch = make_batch({Status.DELIVERED: 3, Status.EXPIRED: 1})
    response = admin_client.get(reverse("admin:django_mitto_batch_change", args=[batch.pk]))
    page = response.content.decode()
    assert 'http-equiv="refresh"' not in page
    assert "<dd>100.0%</dd>" in page
    assert "<dd>75.0%</dd>" in page


@pytest.mark.django_db
def test_batch_page_refresh_can_be_stopped(admin_client: Any) -> None:
    batch = make_batch({Status.QUEUED: 1})
    url = reverse("admin:django_mitto_batch_change", args=[batch.pk])
    assert 'http-equiv="refresh"' not in admin_client.get(url + "?refresh=0").content.decode()


def test_refresh_slows_down_then_stops_while_only_reports_are_awaited() -> None:
    now = timezone.now()
    waiting = BatchProgress({Status.SENT: 2, Status.DELIVERED: 1}, {}, created_at=now)
    assert waiting.refresh_seconds(now) == 5
    assert waiting.refresh_seconds(now + datetime.timedelta(hours=1)) == 30
    assert waiting.refresh_seconds(now + datetime.timedelta(days=3)) is None
    sending = BatchProgress({Status.QUEUED: 1}, {}, created_at=now)
    assert sending.refresh_seconds(now + datetime.timedelta(days=3)) == 5


@pytest.mark.django_db
def test_batch_page_warns_about_messages_in_unknown_state(admin_client: Any) -> None:
    batch = make_batch({Status.UNKNOWN: 2, Status.DELIVERED: 1})
    page = admin_client.get(reverse("admin:django_mitto_batch_change", args=[batch.pk]))
    assert "2 messages may or may not have reached Mitto" in page.content.decode()


# -- the batch list ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_batch_list_shows_progress_without_a_query_per_row(
    admin_client: Any, admin_user: Any
) -> None:
    url = reverse("admin:django_mitto_batch_changelist")
    make_batch(MIXED, created_by=admin_user)
    with CaptureQueriesContext(connection) as one:
        response = admin_client.get(url)
    assert response.status_code == 200
    for _ in range(4):
        make_batch({Status.DELIVERED: 2, Status.QUEUED: 2}, created_by=admin_user)
    with CaptureQueriesContext(connection) as five:
        response = admin_client.get(url)
    assert len(five) == len(one)
    page = response.content.decode()
    assert '<progress class="mitto-progress" max="10" value="8">80.0%</progress>' in page
    assert page.count('<progress class="mitto-progress" max="4" value="2">50.0%</progress>') == 4
    assert "Hello there" in page
    assert admin_user.get_username() in page
    assert reverse("admin:django_mitto_batch_send") in page
    assert reverse("admin:django_mitto_dashboard") in page


@pytest.mark.django_db
def test_batch_list_can_be_sorted_by_progress(admin_client: Any) -> None:
    # Settled (sent or final) messages per batch: 3, 1, 2.
    three = make_batch({Status.DELIVERED: 2, Status.SENT: 1, Status.QUEUED: 1})
    one = make_batch({Status.FAILED: 1, Status.SENDING: 2})
    two = make_batch({Status.UNDELIVERED: 1, Status.EXPIRED: 1, Status.UNKNOWN: 1})
    url = reverse("admin:django_mitto_batch_changelist")
    ascending = admin_client.get(url + "?o=7")  # column 7 is "progress"
    assert ascending.status_code == 200
    assert [b.pk for b in ascending.context["cl"].result_list] == [one.pk, two.pk, three.pk]
    descending = admin_client.get(url + "?o=-7")
    assert [b.pk for b in descending.context["cl"].result_list] == [three.pk, two.pk, one.pk]


# -- in a real browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_bulk_send_in_the_browser(
    page: Any, live_server: Any, admin_user: Any, mitto_sandbox: Any
) -> None:
    from tests.browser import admin_login, screenshot

    admin_login(page, live_server.url, "admin", "password")
    page.goto(live_server.url + SEND_URL)
    page.fill("#id_numbers", PASTED_NUMBERS)
    page.fill("#id_text", "Our shop opens at 9 tomorrow.")
    page.click("input[name=_preview]")
    assert page.inner_text("#mitto-valid-count") == "3"
    assert page.inner_text("#mitto-invalid-count") == "3"
    assert page.inner_text("#mitto-duplicate-count") == "2"
    screenshot(page, "admin-batch-send-preview")
    page.click("input[name=_send]")
    page.wait_for_url(re.compile(r".*/admin/django_mitto/batch/\d+/change/.*"))
    assert "3 messages to send" in page.inner_text(".messagelist")
    screenshot(page, "admin-batch-progress")
    assert len(mitto_sandbox.messages) == 3
