"""Rules of send_sms, send_bulk and month_to_date that a caller relies on."""

from __future__ import annotations

import datetime as dt
import time
import types

import pytest
from django.core.exceptions import ValidationError

from django_mitto import services
from django_mitto.models import Message, OptOut

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_account_is_refused_with_code_invalid_choice(mitto_sandbox) -> None:
    with pytest.raises(ValidationError) as single:
        services.send_sms("+41791234567", "Hello", account="nope")
    assert [e.code for e in single.value.error_dict["account"]] == ["invalid_choice"]
    with pytest.raises(ValidationError) as bulk:
        services.send_bulk(["+41791234567"], "Hello", account="nope")
    assert [e.code for e in bulk.value.error_dict["account"]] == ["invalid_choice"]
    assert Message.objects.count() == 0


def test_an_opted_out_number_is_refused_on_recipient_with_code_opted_out(mitto_sandbox) -> None:
    OptOut.objects.create(number="+41791234567")
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41791234567", "Hello")
    assert [e.code for e in info.value.error_dict["recipient"]] == ["opted_out"]
    assert mitto_sandbox.messages == []


def test_send_bulk_records_the_pid_in_the_batch_options(mitto_sandbox) -> None:
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi", pid=64)
    batch.refresh_from_db()
    assert batch.options["pid"] == 64
    assert "PID" not in batch.options


def test_send_bulk_turns_a_none_reference_into_an_empty_one(mitto_sandbox) -> None:
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi", references=["r", None])
    references = dict(batch.messages.values_list("recipient", "reference"))
    assert references == {"+41791234567": "r", "+41791234568": ""}


class _FrozenDatetime(dt.datetime):
    """2024-03-31 23:30 UTC; without a time zone, the local (process) time then."""

    @classmethod
    def now(cls, tz=None):
        frozen = dt.datetime(2024, 3, 31, 23, 30, tzinfo=dt.timezone.utc)
        if tz is None:
            return frozen.astimezone().replace(tzinfo=None)
        return frozen.astimezone(tz)


def test_month_to_date_follows_the_utc_calendar_not_the_local_one(monkeypatch) -> None:
    clock = types.SimpleNamespace(datetime=_FrozenDatetime, timezone=dt.timezone, date=dt.date)
    monkeypatch.setattr(services, "dt", clock)
    monkeypatch.setenv("TZ", "Europe/Zurich")
    time.tzset()
    try:
        assert services.month_to_date() == (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    finally:
        monkeypatch.undo()
        time.tzset()
