"""What MittoClient.send_bulk() sends and how it reads each item of Mitto's answer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.canned import Reply
from tests.test_client import make_client


def test_send_bulk_without_recipients_is_refused_before_any_request(canned) -> None:
    with pytest.raises(ValueError) as info:
        make_client(canned.url).send_bulk([], "Hi", sender="Shop")
    assert str(info.value) == "send_bulk() needs at least one recipient."
    assert canned.requests == []


def test_send_bulk_posts_every_option_it_is_given(canned) -> None:
    canned.reply(Reply(body={"responseCode": 0, "ids": ["a1", "a2"]}))
    make_client(canned.url).send_bulk(
        ["+41791234561", "+41791234562"],
        "Hi",
        sender="Shop",
        type="Unicode",
        reference="order-7",
        udh="050003CC0201",
        validity=60,
        pid=64,
        flash=True,
        test=True,
        callback="https://example.com/cb/",
    )
    (request,) = canned.requests
    assert request["path"] == "/smsbulk"
    assert request["body"] == {
        "from": "Shop",
        "to": ["41791234561", "41791234562"],
        "text": "Hi",
        "type": "Unicode",
        "reference": "order-7",
        "udh": "050003CC0201",
        "validity": 60,
        "pid": 64,
        "flash": True,
        "test": True,
        "callback": "https://example.com/cb/",
    }


def test_a_bulk_answer_whose_messages_is_one_object_gives_one_result(canned) -> None:
    canned.reply(
        Reply(
            body={
                "responseCode": 0,
                "messages": {"id": "a1", "to": "41791234561", "messageParts": 2},
            }
        )
    )
    result = make_client(canned.url).send_bulk(["+41791234561"], "Hi", sender="Shop")
    assert [(m.id, m.to, m.parts) for m in result.messages] == [("a1", "41791234561", 2)]


def test_bulk_items_keep_their_details_when_the_answer_also_lists_the_ids(canned) -> None:
    canned.reply(
        Reply(
            body={
                "responseCode": 0,
                "ids": ["a1", "a2"],
                "messages": [
                    {"id": "a1", "to": "41791234561", "textLength": 2, "messageParts": 1},
                    {"id": "a2", "to": "41791234562", "textLength": 2, "messageParts": 1},
                ],
            }
        )
    )
    result = make_client(canned.url).send_bulk(
        ["+41791234561", "+41791234562"], "Hi", sender="Shop"
    )
    assert [(m.id, m.to, m.text_length, m.parts) for m in result.messages] == [
        ("a1", "41791234561", 2, 1),
        ("a2", "41791234562", 2, 1),
    ]


def test_a_bulk_item_that_names_no_recipient_has_an_empty_to(canned) -> None:
    canned.reply(Reply(body={"responseCode": 0, "ids": ["a1", "a2"]}))
    result = make_client(canned.url).send_bulk(
        ["+41791234561", "+41791234562"], "Hi", sender="Shop"
    )
    assert [(m.id, m.to) for m in result.messages] == [("a1", ""), ("a2", "")]


def test_bulk_items_sharing_a_timestamp_each_carry_it(canned) -> None:
    stamp = "2019-08-21T14:55:29.6488926Z"
    canned.reply(
        Reply(
            body={
                "responseCode": 0,
                "messages": [
                    {"id": "a1", "to": "41791234561", "timestamp": stamp},
                    {"id": "a2", "to": "41791234562", "timestamp": stamp},
                    {"id": "a3", "to": "41791234563", "timestamp": stamp},
                ],
            }
        )
    )
    result = make_client(canned.url).send_bulk(
        ["+41791234561", "+41791234562", "+41791234563"], "Hi", sender="Shop"
    )
    expected = datetime(2019, 8, 21, 14, 55, 29, 648892, tzinfo=timezone.utc)
    assert [m.timestamp for m in result.messages] == [expected, expected, expected]


def test_a_bulk_item_whose_timestamp_is_no_text_has_no_timestamp(canned) -> None:
    canned.reply(
        Reply(
            body={
                "responseCode": 0,
                "messages": [
                    {"id": "a1", "to": "41791234561", "timestamp": ["2019-08-21T14:55:29Z"]},
                    {"id": "a2", "to": "41791234562", "timestamp": {"at": "2019-08-21"}},
                    {"id": "a3", "to": "41791234563", "timestamp": "2019-08-21T14:55:29Z"},
                ],
            }
        )
    )
    result = make_client(canned.url).send_bulk(
        ["+41791234561", "+41791234562", "+41791234563"], "Hi", sender="Shop"
    )
    assert [(m.id, m.timestamp) for m in result.messages] == [
        ("a1", None),
        ("a2", None),
        ("a3", datetime(2019, 8, 21, 14, 55, 29, tzinfo=timezone.utc)),
    ]
