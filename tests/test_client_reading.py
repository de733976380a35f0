"""How the client reads Mitto's XML answers, bulk items and usage reports, detail by detail."""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_mitto.client import UsageRow, parse_usage
from django_mitto.exceptions import MittoAPIError
from tests.canned import Reply
from tests.test_client import make_client

# -- XML answers ----------------------------------------------------------------------------------


def test_an_xml_answer_in_a_namespace_is_read_like_one_without(canned) -> None:
    # .NET's serializers put the whole answer in a default namespace.
    canned.reply(
        Reply(
            content_type="application/xml",
            body='<SmsResponse xmlns="http://schemas.datacontract.org/2004/07/Mitto.Api">'
            "<Id>abc</Id><ResponseCode>0</ResponseCode><ResponseText>SMS sent</ResponseText>"
            "<MessageParts>2</MessageParts></SmsResponse>",
        )
    )
    result = make_client(canned.url, response_format="xml").send("41791234567", "Hi", sender="Shop")
    assert (result.id, result.response_code, result.response_text, result.parts) == (
        "abc",
        0,
        "SMS sent",
        2,
    )


def test_an_empty_xml_element_is_an_empty_value(canned) -> None:
    canned.reply(
        Reply(
            content_type="application/xml",
            body="<response><id>abc</id><responseCode>0</responseCode><responseText/><to></to>"
            "</response>",
        )
    )
    result = make_client(canned.url, response_format="xml").send("41791234567", "Hi", sender="Shop")
    # No text, and the recipient is the number sent to.
    assert (result.response_text, result.to) == ("", "41791234567")


@pytest.mark.parametrize(
    "body",
    [
        "<response><id>abc</id><to>41791234567</to></response>",
        "<response/>",
    ],
    ids=["fields", "empty"],
)
def test_an_xml_answer_without_a_response_code_is_reported_as_such(canned, body) -> None:
    canned.reply(Reply(content_type="application/xml", body=body))
    with pytest.raises(MittoAPIError) as info:
        make_client(canned.url, response_format="xml").send("41791234567", "Hi", sender="Shop")
    # Well-formed XML: not called invalid, but named for what it lacks.
    assert str(info.value) == f"Mitto answered HTTP 200 without a responseCode: {body!r}"
    assert (info.value.status_code, info.value.response_code) == (200, None)


# -- bulk items -----------------------------------------------------------------------------------


def test_a_bulk_items_answer_keeps_its_non_ascii_letters(canned) -> None:
    canned.reply(
        Reply(
            body={
                "responseCode": 0,
                "messages": [{"id": "a1", "to": "41791234561", "note": "Zürich, grüße"}],
            }
        )
    )
    (item,) = make_client(canned.url).send_bulk(["+41791234561"], "Hi", sender="Shop").messages
    assert item.answer() == '{"id": "a1", "to": "41791234561", "note": "Zürich, grüße"}'


# -- usage reports --------------------------------------------------------------------------------


def test_a_usage_refusal_without_words_says_no_text() -> None:
    with pytest.raises(MittoAPIError) as caught:
        parse_usage({"responseCode": 5})
    assert str(caught.value) == "Mitto refused the usage request: responseCode 5 (no text)."
    assert (caught.value.response_code, caught.value.response_text) == (5, "")


def test_a_usage_answer_under_a_four_letter_key_is_unwrapped() -> None:
    answer = {"data": [{"country": "CHE", "messagesCount": "3", "cost": "0.21"}]}
    assert parse_usage(answer) == [UsageRow("CHE", 3, Decimal("0.21"))]


def test_a_usage_cost_that_is_no_number_is_named_in_the_error() -> None:
    item = {"country": "CHE", "messagesCount": 3, "cost": "abc"}
    with pytest.raises(MittoAPIError) as caught:
        parse_usage([item])
    assert str(caught.value) == (
        "Mitto's usage answer has an item that cannot be read (cost 'abc' is not a number): "
        f"{item!r}"
    )


def test_a_usage_item_without_a_country_is_named_in_the_error() -> None:
    item = {"messagesCount": "1"}
    with pytest.raises(MittoAPIError) as caught:
        parse_usage([item])
    assert str(caught.value) == (
        f"Mitto's usage answer has an item that cannot be read (an item has no country): {item!r}"
    )


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({"messagesCount": 1}, {"messagesCount": 2}, UsageRow("CHE", 3)),
        (
            {"messagesCount": 1},
            {"messagesCount": 2, "cost": "0.14"},
            UsageRow("CHE", 3, Decimal("0.14")),
        ),
        (
            {"messagesCount": 1, "cost": "0.07", "currency": "EUR"},
            {"messagesCount": 2, "cost": "0.14", "currency": "EUR"},
            UsageRow("CHE", 3, Decimal("0.21"), "EUR"),
        ),
        (
            {"messagesCount": 1, "cost": "0.07"},
            {"messagesCount": 2, "cost": "0.14", "currency": "CHF"},
            UsageRow("CHE", 3, Decimal("0.21"), "CHF"),
        ),
    ],
    ids=[
        "no-cost-stays-none",
        "cost-of-the-second-only",
        "currency-kept",
        "currency-of-the-second",
    ],
)
def test_a_country_listed_twice_sums_counts_and_known_costs_and_keeps_its_currency(
    first, second, expected
) -> None:
    answer = [{"country": "CHE", **first}, {"country": "CHE", **second}]
    assert parse_usage(answer) == [expected]


def test_a_country_listed_twice_in_two_currencies_is_refused_by_name() -> None:
    answer = [
        {"country": "CHE", "messagesCount": 1, "cost": "0.07", "currency": "EUR"},
        {"country": "CHE", "messagesCount": 2, "cost": "0.14", "currency": "CHF"},
    ]
    with pytest.raises(MittoAPIError, match=r"CHE twice .*\(EUR and CHF\)"):
        parse_usage(answer)
