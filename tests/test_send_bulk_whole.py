"""send_bulk: what a batch and its rows store and send, problems counted, opt-outs, chunks."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ValidationError

from django_mitto import optouts, services
from django_mitto.models import Batch, Message

pytestmark = pytest.mark.django_db(transaction=True)


# -- what is stored and sent ---------------------------------------------------------------------


def test_a_batch_stores_the_text_it_sends(mitto_sandbox) -> None:
    batch = services.send_bulk(["+41791234561", "+41791234562"], "Sale starts today")
    assert batch.text == "Sale starts today"
    assert Batch.objects.get(pk=batch.pk).text == "Sale starts today"


def test_every_message_of_a_bulk_send_stores_and_sends_its_sender_encoding_and_pid(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_DEFAULT_SENDER = "Default"
    numbers = ["+41791234561", "+41791234562"]
    batch = services.send_bulk(numbers, "Привет", sender="Shop", pid=65)
    rows = list(batch.messages.values_list("sender", "encoding", "pid"))
    assert rows == [("Shop", "Unicode", 65)] * 2
    assert [
        (m["body"]["from"], m["body"]["type"], m["body"].get("pid")) for m in mitto_sandbox.messages
    ] == [("Shop", "Unicode", 65)] * 2


# -- problems ------------------------------------------------------------------------------------


def test_twenty_one_bad_recipients_are_named_twenty_and_one_more(mitto_sandbox) -> None:
    with pytest.raises(ValidationError) as caught:
        services.send_bulk([f"bad{n}" for n in range(21)], "Hi")
    (message,) = caught.value.message_dict["recipients"]
    assert "bad19: " in message and "bad20" not in message  # the first twenty are named
    assert message.endswith(" … and 1 more")
    assert not Message.objects.exists()


# -- opt-outs ------------------------------------------------------------------------------------


def test_a_bulk_send_ignoring_opt_outs_lists_no_number_as_left_out(mitto_sandbox) -> None:
    optouts.add_opt_out("+41791234562")
    batch = services.send_bulk(["+41791234561", "+41791234562"], "Outage", ignore_opt_out=True)
    assert batch.opted_out_numbers == []
    assert (batch.total, batch.opted_out) == (2, 0)
    assert len(mitto_sandbox.messages) == 2


def test_numbers_left_out_for_their_opt_out_are_logged_as_left_out_not_as_sent(
    mitto_sandbox, caplog
) -> None:
    optouts.add_opt_out("+41791234562")
    with caplog.at_level(logging.INFO, logger="django_mitto"):
        batch = services.send_bulk(["+41791234561", "+41791234562"], "Sale")
    assert batch.opted_out_numbers == ["+41791234562"]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "opted out" in r.getMessage()]
    assert said == [("INFO", "Bulk send: 1 recipient(s) left out, they opted out")]


def test_ignoring_opt_outs_when_no_number_opted_out_warns_of_nothing(mitto_sandbox, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="django_mitto"):
        batch = services.send_bulk(["+41791234561"], "Outage", ignore_opt_out=True)
    assert batch.total == 1
    assert not [r for r in caplog.records if "opted out" in r.getMessage()]


# -- chunks --------------------------------------------------------------------------------------


def test_a_chunk_size_of_one_reads_and_inserts_the_recipients_one_by_one(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 1
    calls: list[tuple[str, int]] = []
    batch = services.send_bulk(
        ["+41791234561", "+41791234562", "+41791234563"],
        "Hi",
        progress=lambda stage, count: calls.append((stage, count)),
    )
    assert calls == [("validate", 1), ("insert", 1)] * 3
    assert batch.total == 3
    assert len(mitto_sandbox.messages) == 3


def test_plan_batch_plans_only_the_queued_messages_of_its_own_batch(unsent) -> None:
    first = services.send_bulk(["+41791234561", "+41791234562"], "One")
    second = services.send_bulk(["+41791234563"], "Two")
    single = services.send_sms("+41791234564", "Three")
    assert (second.messages.get().status, single.status) == ("queued", "queued")
    own = list(first.messages.order_by("pk").values_list("pk", flat=True))
    assert services.plan_batch(first) == [own]
