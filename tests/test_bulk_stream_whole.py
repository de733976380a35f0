"""send_bulk: opt-outs per account, problems named, duplicates, statistics; usage's currency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction

from django_mitto import optouts, services
from django_mitto.models import Message
from tests.canned import Reply

pytestmark = pytest.mark.django_db(transaction=True)


def _errors(**kwargs: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(**kwargs)
    return info.value.message_dict


# -- what is read -------------------------------------------------------------------------------


def test_a_bulk_send_leaves_out_the_numbers_opted_out_of_its_own_account_only(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_ACCOUNTS = {
        "marketing": {"API_KEY": mitto_sandbox.api_key, "API_URL": mitto_sandbox.url}
    }
    optouts.add_opt_out("+41791234561", account="marketing")
    optouts.add_opt_out("+41791234562")  # out of the default account, not of marketing
    numbers = ["+41791234561", "+41791234562", "+41791234563"]
    batch = services.send_bulk(numbers, "Hi", account="marketing")
    assert batch.opted_out_numbers == ["+41791234561"]
    assert (batch.opted_out, batch.total) == (1, 2)
    assert sorted(batch.messages.values_list("recipient", flat=True)) == [
        "+41791234562",
        "+41791234563",
    ]
    assert sorted(m["to"] for m in mitto_sandbox.messages) == ["41791234562", "41791234563"]


def test_a_bad_recipient_that_is_no_string_is_named_as_python_writes_it(mitto_sandbox) -> None:
    errors = _errors(recipients=["+41791234567", Decimal("41791234568")], text="Hi")
    assert errors["recipients"] == [
        "Invalid recipients: Decimal('41791234568'): Expected text, got Decimal."
    ]
    assert not Message.objects.exists()


@pytest.mark.parametrize("bad", [21, 22])
def test_bad_references_are_named_twenty_at_most(mitto_sandbox, bad) -> None:
    numbers = [f"+417912345{n:02}" for n in range(bad)]
    errors = _errors(recipients=numbers, text="Hi", references=["r" * 256] * bad)
    (message,) = errors["references"]
    assert message.count("at most 255 are allowed") == 20
    assert "#20: " in message and "#21: " not in message
    # The others are counted, as bad recipients are.
    assert message.endswith(f" … and {bad - 20} more")
    assert not Message.objects.exists()


# -- duplicates ---------------------------------------------------------------------------------


def test_duplicates_of_two_thousand_numbers_are_all_dropped_and_counted(unsent) -> None:
    numbers = [f"+4179123{n:04}" for n in range(2000)]
    batch = services.send_bulk(numbers + numbers, "Hi")
    assert (batch.duplicates, batch.total) == (2000, 2000)
    batch.refresh_from_db()
    assert batch.total == 2000
    kept = list(batch.messages.order_by("pk").values_list("recipient", flat=True))
    assert kept == numbers  # each number once, the first occurrence kept
    assert unsent.pending == [("batch", (batch.pk,))]  # handed over once, sent by a worker


# -- statistics after a big insert (PostgreSQL) ---------------------------------------------------


@pytest.mark.postgres
def test_a_bulk_send_of_ten_thousand_refreshes_postgresqls_statistics_of_the_messages(
    unsent,
) -> None:
    """The row estimate the admin's message list shows for a big table (``pg_class``) counts
    the new rows at once, before the batch even commits."""
    using = router.db_for_write(Message)
    connection = connections[using]
    estimate_sql = "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass"
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(estimate_sql, [table])
        assert cursor.fetchone()[0] < 10_000
    with transaction.atomic(using=using):  # uncommitted: no autovacuum can have counted them
        batch = services.send_bulk([f"+417912{n:05}" for n in range(10_000)], "Hi")
        assert batch.total == 10_000
        with connection.cursor() as cursor:
            cursor.execute(estimate_sql, [table])
            assert cursor.fetchone()[0] == 10_000
    assert Message.objects.filter(batch=batch).count() == 10_000


# -- usage ----------------------------------------------------------------------------------------


def test_usage_without_any_currency_from_mitto_has_an_empty_currency(canned_api) -> None:
    canned_api.reply(Reply(body=[{"country": "CHE", "messagesCount": 1, "cost": "0.07"}]))
    today = dt.datetime.now(dt.timezone.utc).date()
    report = services.usage(today, today, account_name="Shop AG")
    assert report.currency == ""
    assert report.mitto_cost == Decimal("0.07")
