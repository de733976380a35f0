"""Opt-outs: refused by send_sms, rejected on save, left out of bulk sends, admin import/export."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_mitto import optouts, services
from django_mitto.models import Batch, Message, OptOut, Status
from tests.test_admin_batch import SEND_URL, confirm_data, preview

IMPORT_URL = "/admin/django_mitto/optout/import/"
EXPORT_URL = "/admin/django_mitto/optout/export/"


def opt_out(number: str, **fields: Any) -> OptOut:
    return OptOut.objects.create(number=number, **fields)


# -- send_sms and the save hook ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["sent at once", "in a transaction"])
def test_send_sms_refuses_an_opted_out_number_on_recipient(
    mitto_sandbox: Any, in_transaction: bool
) -> None:
    # Sent at once, the INSERT itself checks the opt-out; in a transaction, a query before it.
    opt_out("+41791234567")
    atomic = transaction.atomic() if in_transaction else contextlib.nullcontext()
    with pytest.raises(ValidationError) as info, atomic:
        services.send_sms("079 123 45 67", "Hello", region="CH")
    assert list(info.value.message_dict) == ["recipient"]
    assert "+41791234567 opted out" in info.value.message_dict["recipient"][0]
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


@pytest.mark.django_db(transaction=True)
def test_an_opt_out_of_another_account_does_not_block(mitto_sandbox: Any) -> None:
    opt_out("+41791234567", account="marketing")
    message = services.send_sms("+41791234567", "Hello")
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.django_db(transaction=True)
def test_ignore_opt_out_sends_a_transactional_message_and_logs_it(
    mitto_sandbox: Any, caplog: Any
) -> None:
    opt_out("+41791234567")
    with caplog.at_level(logging.WARNING, logger="django_mitto"):
        message = services.send_sms("+41791234567", "Your code is 1234", ignore_opt_out=True)
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234567"]
    assert "although the number opted out (ignore_opt_out=True)" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_saved_message_to_an_opted_out_number_ends_rejected_unsent(mitto_sandbox: Any) -> None:
    opt_out("+41791234567")
    message = Message.objects.create(recipient="+41 79 123 45 67", text="Hi", sender="Shop")
    message.refresh_from_db()
    assert message.status == Status.REJECTED
    assert "opted out" in message.error
    assert message.attempts == 0
    assert mitto_sandbox.messages == []


@pytest.mark.django_db(transaction=True)
def test_a_saved_message_is_rejected_even_when_send_on_save_is_off(
    mitto_sandbox: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    opt_out("+41791234567")
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    message.refresh_from_db()
    assert message.status == Status.REJECTED
    # Nothing queued is left for mitto_dispatch to send later.
    services.send_message(message.pk)
    assert mitto_sandbox.messages == []


# -- send_bulk -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_bulk_leaves_opted_out_numbers_out_and_counts_them(mitto_sandbox: Any) -> None:
    opt_out("+41791234562")
    opt_out("+41791234564")
    batch = services.send_bulk(
        ["+41791234561", "+41791234562", "+41791234563", "+41791234564"],
        "Sale",
        references=["a", "b", "c", "d"],
    )
    assert batch.opted_out_numbers == ["+41791234562", "+41791234564"]
    batch = Batch.objects.get(pk=batch.pk)
    assert (batch.total, batch.opted_out) == (2, 2)
    assert list(batch.messages.order_by("pk").values_list("recipient", "reference")) == [
        ("+41791234561", "a"),
        ("+41791234563", "c"),
    ]
    assert sorted(m["to"] for m in mitto_sandbox.messages) == ["41791234561", "41791234563"]


@pytest.mark.django_db(transaction=True)
def test_send_bulk_with_ignore_opt_out_sends_to_everyone(mitto_sandbox: Any, caplog: Any) -> None:
    opt_out("+41791234562")
    with caplog.at_level(logging.WARNING, logger="django_mitto"):
        batch = services.send_bulk(["+41791234561", "+41791234562"], "Outage", ignore_opt_out=True)
    batch.refresh_from_db()
    assert (batch.total, batch.opted_out) == (2, 0)
    assert len(mitto_sandbox.messages) == 2
    assert "1 number(s) that opted out (ignore_opt_out=True)" in caplog.text


# -- bounded queries -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_checking_numbers_costs_one_query_per_chunk_whatever_the_table_size() -> None:
    size = optouts.chunk_size()
    checked = [f"+4179{1_000_000 + i}" for i in range(size * 3 + 1)]

    def count_queries() -> tuple[int, set[str]]:
        with CaptureQueriesContext(connection) as queries:
            found = optouts.opted_out_numbers(checked)
        return len(queries), found

    small_count, found = count_queries()
    assert found == set()
    OptOut.objects.bulk_create(
        [OptOut(number=f"+4178{1_000_000 + i}") for i in range(5000)]
        + [OptOut(number=checked[i]) for i in range(0, len(checked), 7)],
        batch_size=900,
    )
    big_count, found = count_queries()
    assert found == set(checked[::7])
    assert small_count == big_count == 4  # ceil(len(checked) / chunk size)


# -- keywords ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", True),
        ("stop please", True),
        ("Stop!", True),
        ("Arrêt", True),
        ("  arret  merci", True),
        ("STOPP", True),
        ("unsubscribe", True),
        ("don't stop", False),
        ("stopping by later", False),
        ("", False),
    ],
)
def test_opt_out_keywords_are_the_first_word_folded(text: str, expected: bool) -> None:
    assert optouts.is_opt_out_keyword(text) is expected


def test_opt_out_keywords_come_from_the_setting(settings: Any) -> None:
    settings.MITTO_OPT_OUT_KEYWORDS = ["HALT"]
    assert optouts.is_opt_out_keyword("halt")
    assert not optouts.is_opt_out_keyword("STOP")


# -- admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_add_normalises_the_number_and_refuses_a_bad_one(admin_client: Any) -> None:
    url = "/admin/django_mitto/optout/add/"
    data = {"number": "0041 79 123 45 67", "account": "default", "source": "admin", "note": ""}
    response = admin_client.post(url, data)
    assert response.status_code == 302
    assert OptOut.objects.get().number == "+41791234567"
    response = admin_client.post(url, {**data, "number": "hello"})
    assert response.status_code == 200
    assert "hello is not a phone number" in str(response.context["adminform"].form.errors["number"])
    response = admin_client.post(url, data)
    assert "already exists" in response.content.decode()


@pytest.mark.django_db
def test_admin_import_adds_valid_numbers_and_lists_the_rest(admin_client: Any) -> None:
    opt_out("+41791234561")
    upload = SimpleUploadedFile(
        "stop.csv", b"phone;name\n+41791234561;A\n+41 79 123 45 62;B\nhello;C\n+41791234562;D\n"
    )
    response = admin_client.post(
        IMPORT_URL, {"csv_file": upload, "account": "default", "note": "shop list"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 opt-out added, 1 already there." in page
    assert "hello is not a phone number" in page
    assert [(line, raw) for line, raw, _reason in response.context["result"].invalid] == [
        (4, "hello")
    ]
    added = OptOut.objects.get(number="+41791234562")
    assert (added.source, added.note) == (OptOut.Source.IMPORT, "shop list")
    assert OptOut.objects.count() == 2


@pytest.mark.django_db
def test_admin_import_refuses_a_file_that_is_not_utf8(admin_client: Any) -> None:
    upload = SimpleUploadedFile("stop.csv", "Nümmer\n+41791234561\n".encode("latin-1"))
    response = admin_client.post(IMPORT_URL, {"csv_file": upload, "account": "default"})
    assert "not UTF-8" in str(response.context["form"].errors["csv_file"])
    assert OptOut.objects.count() == 0


@pytest.mark.django_db
def test_admin_export_streams_the_filtered_opt_outs(admin_client: Any) -> None:
    opt_out("+41791234561", source=OptOut.Source.IMPORT, note="=cmd()")
    opt_out("+41791234562", source=OptOut.Source.KEYWORD)
    response = admin_client.get(EXPORT_URL + "?source__exact=import")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response["Content-Type"] == "text/csv"
    assert lines[0] == "number,account,source,created_at,note"
    assert len(lines) == 2
    assert lines[1].startswith("+41791234561,default,import,")
    assert lines[1].endswith(",'=cmd()")


@pytest.mark.django_db
def test_admin_search_finds_a_number_written_locally(admin_client: Any, settings: Any) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"
    opt_out("+41791234561")
    opt_out("+41791234562")
    response = admin_client.get("/admin/django_mitto/optout/?q=079+123+45+62")
    assert [o.number for o in response.context["cl"].result_list] == ["+41791234562"]


@pytest.mark.django_db(transaction=True)
def test_bulk_preview_lists_opted_out_numbers_apart_and_the_send_skips_them(
    admin_client: Any, mitto_sandbox: Any, settings: Any
) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"
    opt_out("+41791234562")
    response = preview(admin_client, numbers="+41791234561\n079 123 45 62\n+41791234563")
    result = response.context["preview"]
    assert result.numbers == ["+41791234561", "+41791234563"]
    assert [r.number for r in result.opted_out] == ["+41791234562"]
    page = response.content.decode()
    assert 'id="mitto-opted-out-count">1<' in page
    assert "Opted out: not sent" in page

    response = admin_client.post(SEND_URL, confirm_data(response), follow=True)
    batch = Batch.objects.get()
    assert sorted(batch.messages.values_list("recipient", flat=True)) == [
        "+41791234561",
        "+41791234563",
    ]
    assert "1 number opted out and was left out." in response.content.decode()
    assert "1 recipient opted out and was left out." in response.content.decode()
    assert len(mitto_sandbox.messages) == 2


@pytest.mark.django_db
def test_bulk_preview_with_only_opted_out_numbers_is_an_error(admin_client: Any) -> None:
    opt_out("+41791234562")
    response = preview(admin_client, numbers="+41791234562")
    assert "Every valid number opted out" in str(response.context["form"].errors["numbers"])


@pytest.mark.django_db
def test_add_opt_outs_adds_many_and_reports_each_invalid_number() -> None:
    opt_out("+41791234561")
    result = optouts.add_opt_outs(
        ["+41791234561", "0041791234562", "nope", "+41791234562"],
        source=OptOut.Source.API,
        note="CRM sync",
    )
    assert (result.added, result.existing) == (1, 1)
    assert [(position, raw) for position, raw, _reason in result.invalid] == [(3, "nope")]
    added = OptOut.objects.get(number="+41791234562")
    assert (added.source, added.note) == (OptOut.Source.API, "CRM sync")


@pytest.mark.django_db
def test_add_opt_out_is_idempotent_and_names_the_field_of_a_bad_number() -> None:
    first, created = optouts.add_opt_out("+41 79 123 45 67", note="phone call")
    again, created_again = optouts.add_opt_out("0041791234567", source=OptOut.Source.ADMIN)
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert again.source == OptOut.Source.API
    with pytest.raises(ValidationError) as info:
        optouts.add_opt_out("hello")
    assert list(info.value.message_dict) == ["number"]
