"""Conversion tracking (``/sms/converted``) and usage by country (``/usage/bycountry``)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import requests
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from django_mitto import services
from django_mitto.client import MittoClient, UsageRow, parse_usage
from django_mitto.countries import country_of
from django_mitto.exceptions import (
    MittoAPIError,
    MittoAuthenticationError,
    MittoConfigurationError,
)
from django_mitto.models import Message
from django_mitto.sandbox import Sandbox
from tests.canned import CannedServer, Reply

KEY = "secret-api-key-123"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
LONG_TEXT = "x" * 200  # two GSM parts


@pytest.fixture
def sandbox():
    with Sandbox(api_key=KEY, report_delay=0) as box:
        yield box


def client_for(url: str, key: str = KEY) -> MittoClient:
    return MittoClient(key, api_url=url, timeout=5, response_format="json", test_mode=False)


# -- client and sandbox: /sms/converted ------------------------------------------------------------


def test_mark_converted_accepts_a_message_mitto_sent(sandbox) -> None:
    client = client_for(sandbox.url)
    sent = client.send("+41791234567", "Your code", sender="Shop")
    assert client.mark_converted(sent.id) is None
    (record,) = sandbox.messages
    assert record["converted_at"]


def test_mark_converted_unknown_id_is_a_404_naming_the_id(sandbox) -> None:
    with pytest.raises(MittoAPIError) as caught:
        client_for(sandbox.url).mark_converted("069d0e82-a437-47bc-b158-0f4065e83fce")
    assert caught.value.status_code == 404
    assert "069d0e82-a437-47bc-b158-0f4065e83fce" in str(caught.value)
    assert not caught.value.retryable


def test_mark_converted_feature_off_is_a_400_with_a_hint(sandbox) -> None:
    client = client_for(sandbox.url)
    sent = client.send("+41791234567", "Your code", sender="Shop")
    sandbox.conversion_enabled = False
    with pytest.raises(MittoAPIError) as caught:
        client.mark_converted(sent.id)
    assert caught.value.status_code == 400
    assert "not enabled" in caught.value.response_text
    assert "account manager" in str(caught.value)
    assert "converted_at" not in sandbox.messages[0]


def test_mark_converted_rate_limited_is_retryable(sandbox) -> None:
    sandbox.add_fault("rate_limit", times=1, retry_after=7)
    with pytest.raises(MittoAPIError) as caught:
        client_for(sandbox.url).mark_converted("any")
    assert caught.value.status_code == 429
    assert caught.value.retryable
    assert caught.value.retry_after == 7


def test_mark_converted_with_a_wrong_key_is_an_authentication_error(sandbox) -> None:
    with pytest.raises(MittoAuthenticationError) as caught:
        client_for(sandbox.url, key="wrong-key-999").mark_converted("any")
    assert "whitelisted" in str(caught.value)
    assert "wrong-key-999" not in str(caught.value)


def test_mark_converted_needs_an_id(sandbox) -> None:
    with pytest.raises(ValueError, match="messageId"):
        client_for(sandbox.url).mark_converted("  ")


def test_sandbox_conversion_answers_400_without_message_id(sandbox) -> None:
    response = requests.post(
        sandbox.url + "/sms/converted", json={}, headers={"X-Mitto-API-Key": KEY}, timeout=5
    )
    assert response.status_code == 400
    assert response.json() == "messageId is required"


def test_sandbox_extras_can_be_changed_over_http(sandbox) -> None:
    url = sandbox.url + "/_sandbox/extras"
    changed = requests.patch(
        url, json={"conversion_enabled": False, "usage_shape": "object"}, timeout=5
    ).json()
    assert changed["conversion_enabled"] is False
    assert changed["usage_shape"] == "object"
    assert sandbox.conversion_enabled is False
    bad = requests.patch(url, json={"usage_shape": "csv"}, timeout=5)
    assert bad.status_code == 400
    assert "usage_shape" in bad.json()["error"]


# -- client and sandbox: /usage/bycountry ----------------------------------------------------------


@pytest.mark.parametrize("shape", ["list", "object"])
def test_usage_counts_per_country_in_either_shape(sandbox, shape) -> None:
    sandbox.usage_shape = shape
    client = client_for(sandbox.url)
    client.send("+41791234567", "Hi", sender="Shop")
    client.send("+41791234568", LONG_TEXT, sender="Shop")
    client.send("+4915112345678", "Hallo", sender="Shop")
    client.send("+4915112345679", "not counted", sender="Shop", test=True)
    rows = client.usage(TODAY, TODAY, account_name="Shop AG")
    assert rows == [
        UsageRow("CHE", 2, Decimal("0.1500")),  # three parts at 0.05
        UsageRow("DEU", 1, Decimal("0.0500")),
    ]


def test_usage_sends_dates_and_account_name(sandbox) -> None:
    with CannedServer() as canned:
        canned.reply(Reply(200, []))
        client_for(canned.url).usage(
            datetime.date(2020, 2, 15), "20200228", account_name=" Starfleet Academy "
        )
        (request,) = canned.requests
    assert request["path"] == "/usage/bycountry"
    assert request["body"] == {
        "startDate": "2020-02-15",
        "endDate": "2020-02-28",
        "accountName": "Starfleet Academy",
    }


def test_usage_leaves_out_days_outside_the_period(sandbox) -> None:
    client = client_for(sandbox.url)
    client.send("+41791234567", "Hi", sender="Shop")
    yesterday = TODAY - datetime.timedelta(days=1)
    assert client.usage(yesterday, yesterday, account_name="Shop AG") == []


def test_usage_needs_an_account_name(sandbox) -> None:
    with pytest.raises(MittoConfigurationError, match="MITTO_ACCOUNT_NAME"):
        client_for(sandbox.url).usage(TODAY, TODAY, account_name="")


def test_usage_refuses_a_bad_date_naming_it(sandbox) -> None:
    with pytest.raises(ValueError, match="start"):
        client_for(sandbox.url).usage("15.02.2020", TODAY, account_name="Shop AG")


def test_sandbox_usage_names_the_missing_field(sandbox) -> None:
    response = requests.post(
        sandbox.url + "/usage/bycountry",
        json={"startDate": "2020-02-15", "endDate": "2020-02-28"},
        headers={"X-Mitto-API-Key": KEY},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json() == "accountName is required"


def test_usage_error_status_raises_with_mittos_words(sandbox) -> None:
    with CannedServer() as canned:
        canned.reply(Reply(400, '"Unknown account name"'))
        with pytest.raises(MittoAPIError, match="Unknown account name") as caught:
            client_for(canned.url).usage(TODAY, TODAY, account_name="Nope")
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "answer",
    [
        [{"country": "CHE", "messagesCount": "3", "cost": "0.21"}],
        {"CHE": {"messagesCount": "3", "cost": "0.21"}},
        {"country": "CHE", "messagesCount": 3, "cost": 0.21},
        {"usage": [{"Country": "che", "MessagesCount": "3", "Cost": "0.21"}]},
        {"responseCode": 0, "countries": {"CHE": {"messagesCount": "3", "cost": "0.21"}}},
        [
            {"country": "CHE", "messagesCount": "1", "cost": "0.07"},
            {"country": "CHE", "messagesCount": "2", "cost": "0.14"},
        ],
    ],
    ids=["list", "object", "single", "wrapped-list", "wrapped-object", "repeated"],
)
def test_parse_usage_reads_every_shape(answer) -> None:
    assert parse_usage(answer) == [UsageRow("CHE", 3, Decimal("0.21"))]


def test_parse_usage_names_an_item_it_cannot_read() -> None:
    with pytest.raises(MittoAPIError, match="messagesCount 'many'"):
        parse_usage([{"country": "CHE", "messagesCount": "many", "cost": "1"}])
    with pytest.raises(MittoAPIError, match="no country"):
        parse_usage([{"messagesCount": "1"}])
    with pytest.raises(MittoAPIError, match="neither a list nor an object"):
        parse_usage("OK")


def test_country_of_numbers() -> None:
    assert country_of("+41791234567") == "CHE"
    assert country_of("4915112345678") == "DEU"
    assert country_of("+12025550123") == "USA"
    assert country_of("+77012345678") == "KAZ"
    assert country_of("+88234") == "???"
    assert country_of("garbage") == "???"


# -- services -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_service_mark_converted_records_the_time_once(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Your code: 1234")
    message.refresh_from_db()
    before = timezone.now()
    marked = services.mark_converted(message)
    assert marked.converted_at is not None and marked.converted_at >= before
    assert mitto_sandbox.messages[0]["converted_at"]
    # A second call does not ask Mitto again (it would now be refused).
    mitto_sandbox.conversion_enabled = False
    again = services.mark_converted(message.pk)
    assert again.converted_at == marked.converted_at


@pytest.mark.django_db(transaction=True)
def test_service_mark_converted_needs_a_mitto_id(mitto_sandbox, make_message) -> None:
    message = make_message(status=Message.Status.FAILED)
    with pytest.raises(ValidationError) as caught:
        services.mark_converted(message)
    (error,) = caught.value.error_dict["provider_id"]
    assert error.code == "required"
    assert error.message == (
        "This message has no Mitto id (it was never accepted by Mitto), so it cannot be marked "
        "as converted."
    )
    message.refresh_from_db()
    assert message.converted_at is None


@pytest.mark.django_db(transaction=True)
def test_service_mark_converted_refused_leaves_no_date(mitto_sandbox, make_message) -> None:
    message = make_message(provider_id="069d0e82-a437-47bc-b158-0f4065e83fce")
    with pytest.raises(MittoAPIError) as caught:
        services.mark_converted(message)
    assert caught.value.status_code == 404
    message.refresh_from_db()
    assert message.converted_at is None


@pytest.mark.django_db(transaction=True)
def test_service_usage_shows_mitto_beside_the_local_count(mitto_sandbox, settings) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    services.send_sms("+41791234567", "Hi")
    services.send_sms("+41791234568", LONG_TEXT)
    services.send_sms("+4915112345678", "Hallo")
    services.send_sms("+4915112345679", "test call", test=True)
    # Sent from here, but Mitto never heard of it (another account, a lost request...).
    Message.objects.filter(pk=services.send_sms("+33612345678", "Salut").pk).update(
        sent_at=timezone.now()
    )
    mitto_sandbox.reset()
    services.send_sms("+41791234569", "Hi")
    services.send_sms("+4915112345670", "Hallo")

    report = services.usage(TODAY, TODAY)
    by_country = {row.country: row for row in report.rows}
    assert set(by_country) == {"CHE", "DEU", "FRA"}
    che, fra = by_country["CHE"], by_country["FRA"]
    assert (che.mitto_messages, che.local_messages, che.local_parts) == (1, 3, 4)
    assert che.difference == -2 and not che.matches
    assert (fra.mitto_messages, fra.mitto_cost, fra.local_messages) == (0, None, 1)
    assert report.local_messages == 6 and report.local_parts == 7
    assert report.mitto_messages == 2 and report.mitto_cost == Decimal("0.1000")
    assert {row.country for row in report.differences} == {"CHE", "DEU", "FRA"}


@pytest.mark.django_db(transaction=True)
def test_service_usage_agrees_when_every_message_reached_mitto(mitto_sandbox, settings) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    services.send_sms("+41791234567", "Hi")
    services.send_sms("+41791234568", LONG_TEXT)
    report = services.usage(TODAY, TODAY)
    (che,) = report.rows
    assert (che.mitto_messages, che.local_messages, che.local_parts) == (2, 2, 3)
    assert che.matches and report.differences == []


@pytest.mark.django_db
def test_service_usage_refuses_an_end_before_the_start() -> None:
    with pytest.raises(ValidationError) as caught:
        services.local_usage(TODAY, TODAY - datetime.timedelta(days=1))
    (error,) = caught.value.error_dict["end"]
    assert (error.code, error.message) == ("invalid", "The end date is before the start date.")


@pytest.mark.django_db(transaction=True)
def test_local_usage_counts_the_utc_days_of_the_period_and_no_other(make_message) -> None:
    utc = datetime.timezone.utc
    for n, sent_at in enumerate(
        [
            datetime.datetime(2024, 3, 9, 23, 59, 59, tzinfo=utc),  # the day before
            datetime.datetime(2024, 3, 10, 0, 0, tzinfo=utc),  # the first moment of the period
            datetime.datetime(2024, 3, 11, 23, 59, 59, tzinfo=utc),  # its last second
            datetime.datetime(2024, 3, 12, 0, 0, tzinfo=utc),  # the day after
        ]
    ):
        message = make_message(provider_id=f"id-{n}")
        Message.objects.filter(pk=message.pk).update(sent_at=sent_at)
    start, end = datetime.date(2024, 3, 10), datetime.date(2024, 3, 11)
    assert services.local_usage(start, end) == {"CHE": (2, 2)}
    assert services.local_usage(end, end) == {"CHE": (1, 1)}


@pytest.mark.django_db(transaction=True)
def test_local_usage_counts_a_message_stored_without_country_by_its_number(make_message) -> None:
    # A message saved before countries were stored: its recipient's country is counted.
    sent_at = datetime.datetime(2024, 3, 10, 12, 0, tzinfo=datetime.timezone.utc)
    old = make_message(provider_id="old-1")
    Message.objects.filter(pk=old.pk).update(
        sent_at=sent_at, recipient="+4915123456789", country=""
    )
    new = make_message(provider_id="new-1")
    Message.objects.filter(pk=new.pk).update(sent_at=sent_at)
    day = datetime.date(2024, 3, 10)
    assert services.local_usage(day, day) == {"CHE": (1, 1), "DEU": (1, 1)}


_countries = st.sampled_from(["CHE", "DEU", "FRA", "USA", "KAZ", "SHN", "XKX"])
_usage = st.dictionaries(
    _countries,
    st.tuples(
        st.integers(min_value=0, max_value=10**9),
        st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False),
    ),
    max_size=7,
)


@given(usage=_usage, as_strings=st.booleans(), wrapped=st.booleans())
def test_list_and_object_answers_read_the_same(usage, as_strings, wrapped) -> None:
    def value(x):
        return str(x) if as_strings else (float(x) if isinstance(x, Decimal) else x)

    items = {c: {"messagesCount": value(n), "cost": value(cost)} for c, (n, cost) in usage.items()}
    as_list = [{"country": c, **fields} for c, fields in items.items()]
    as_object = dict(items)
    if wrapped:
        as_list, as_object = {"usage": as_list}, {"countries": as_object}
    expected = [
        (c, n, cost if as_strings else Decimal(str(float(cost))))
        for c, (n, cost) in sorted(usage.items())
    ]
    for answer in (as_list, as_object):
        rows = parse_usage(answer)
        assert [(r.country, r.messages_count, r.cost) for r in rows] == expected


def test_sandbox_command_line_sets_the_extras() -> None:
    from django_mitto.sandbox import extras
    from django_mitto.sandbox.__main__ import build_parser

    args = build_parser().parse_args(
        ["--conversion-disabled", "--usage-shape", "object", "--usage-price", "0.07"]
    )
    box = Sandbox()
    assert extras.configure(box, args) == {
        "conversion_enabled": False,
        "usage_shape": "object",
        "usage_price": "0.07",
    }
    defaults = extras.configure(Sandbox(), build_parser().parse_args([]))
    assert defaults == {"conversion_enabled": True, "usage_shape": "list", "usage_price": "0.05"}
    with pytest.raises(ValueError, match="usage_price"):
        extras.configure(Sandbox(), build_parser().parse_args(["--usage-price", "-1"]))


# -- the client's words for each refusal, and the usage shapes a sample of mutants showed untested -


def test_mark_converted_refusals_say_what_mitto_answered_and_what_to_do() -> None:
    with CannedServer() as canned:
        canned.reply(
            Reply(400, '"Conversion rate tracking is not enabled for this customer account"'),
            Reply(400, b""),
            Reply(404, {"responseText": "Message not found"}),
            Reply(404, b""),
            Reply(429, b"", headers={"Retry-After": "7"}),
            Reply(500, "Internal Server Error", content_type="text/plain"),
            Reply(502, b""),
        )
        client = client_for(canned.url)
        caught = []
        for _ in range(7):
            with pytest.raises(MittoAPIError) as error:
                client.mark_converted("abc-1")
            caught.append(error.value)
    hint = (
        "Mitto answers 400 when conversion tracking is not enabled for the account: ask your "
        "Mitto account manager to enable it."
    )
    assert [(e.status_code, str(e), e.response_text) for e in caught] == [
        (
            400,
            "Mitto refused to mark message abc-1 as converted (HTTP 400: Conversion rate "
            f"tracking is not enabled for this customer account). {hint}",
            "Conversion rate tracking is not enabled for this customer account",
        ),
        (
            400,
            f"Mitto refused to mark message abc-1 as converted (HTTP 400: no text). {hint}",
            "",
        ),
        (
            404,
            "Mitto knows no message with id abc-1 to mark as converted (HTTP 404: Message not "
            "found).",
            "Message not found",
        ),
        (404, "Mitto knows no message with id abc-1 to mark as converted (HTTP 404: no text).", ""),
        (429, "Mitto answered HTTP 429 (too many requests): try again later.", ""),
        (
            500,
            "Mitto answered HTTP 500 on POST /sms/converted: Internal Server Error.",
            "Internal Server Error",
        ),
        (502, "Mitto answered HTTP 502 on POST /sms/converted: no text.", ""),
    ]
    assert caught[4].retry_after == 7


def test_mark_converted_with_a_wrong_key_says_what_to_check(sandbox) -> None:
    with pytest.raises(MittoAuthenticationError) as caught:
        client_for(sandbox.url, key="wrong-key-999").mark_converted("any")
    assert str(caught.value) == (
        "Mitto refused the API key (HTTP 401) on POST /sms/converted: check MITTO_API_KEY and "
        "that this server's IP address is whitelisted at Mitto."
    )


def test_usage_without_an_account_name_says_where_to_find_it(sandbox) -> None:
    with pytest.raises(MittoConfigurationError) as caught:
        client_for(sandbox.url).usage(TODAY, TODAY, account_name="  ")
    assert str(caught.value) == (
        "Mitto's usage report needs the account name tied to the API key (MITTO_ACCOUNT_NAME); "
        "ask your Mitto account manager if you do not know it."
    )


def test_usage_refuses_a_bad_end_date_naming_it(sandbox) -> None:
    with pytest.raises(ValueError) as caught:
        client_for(sandbox.url).usage(TODAY, "31.12.2024", account_name="Shop AG")
    assert str(caught.value) == "end: '31.12.2024' is not a date (YYYY-MM-DD)."
    assert sandbox.messages == []


def test_usage_takes_datetimes_for_their_dates() -> None:
    with CannedServer() as canned:
        canned.reply(Reply(body=[]))
        rows = client_for(canned.url).usage(
            datetime.datetime(2024, 3, 1, 23, 30, tzinfo=datetime.timezone.utc),
            datetime.datetime(2024, 3, 31, 8, 0),
            account_name="Shop AG",
        )
    assert rows == []
    assert canned.requests[0]["body"] == {
        "startDate": "2024-03-01",
        "endDate": "2024-03-31",
        "accountName": "Shop AG",
    }


def test_usage_error_without_words_says_so() -> None:
    with CannedServer() as canned:
        canned.reply(Reply(500, b""), Reply(400, {"responseText": "Unknown account name"}))
        client = client_for(canned.url)
        with pytest.raises(MittoAPIError) as empty:
            client.usage(TODAY, TODAY, account_name="Shop AG")
        with pytest.raises(MittoAPIError) as worded:
            client.usage(TODAY, TODAY, account_name="Nope")
    assert str(empty.value) == "Mitto answered HTTP 500 on POST /usage/bycountry: no text."
    assert worded.value.response_text == "Unknown account name"
    assert str(worded.value) == (
        "Mitto answered HTTP 400 on POST /usage/bycountry: Unknown account name."
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"CHE": 12}, [UsageRow("CHE", 12)]),
        ([{"country": "CHE", "messages": "3"}], [UsageRow("CHE", 3)]),
        ([{"country": "CHE", "count": 3}], [UsageRow("CHE", 3)]),
        ([{"country": "CHE", "messagesCount": 3, "cost": ""}], [UsageRow("CHE", 3)]),
        (
            [{"country": "CHE", "messagesCount": 3, "cost": "0,21", "currency": "EUR"}],
            [UsageRow("CHE", 3, Decimal("0.21"), "EUR")],
        ),
    ],
    ids=["bare-count", "messages", "count", "empty-cost", "comma-cost"],
)
def test_parse_usage_reads_the_other_spellings_of_an_item(answer, expected) -> None:
    assert parse_usage(answer) == expected


def test_parse_usage_refusal_carries_mittos_code_and_words() -> None:
    with pytest.raises(MittoAPIError) as caught:
        parse_usage({"responseCode": 5, "responseText": "Invalid account name"})
    assert str(caught.value) == (
        "Mitto refused the usage request: responseCode 5 (Invalid account name)."
    )
    assert (caught.value.response_code, caught.value.response_text) == (5, "Invalid account name")


@pytest.mark.django_db
def test_service_usage_report_carries_mittos_currency(settings) -> None:
    with CannedServer() as canned:
        canned.reply(
            Reply(
                body=[
                    {"country": "CHE", "messagesCount": 1, "cost": "0.07"},
                    {"country": "DEU", "messagesCount": 2, "cost": "0.10", "currency": "EUR"},
                ]
            )
        )
        settings.MITTO_API_URL = canned.url
        settings.MITTO_API_KEY = KEY
        settings.MITTO_ACCOUNT_NAME = "Shop AG"
        report = services.usage(TODAY, TODAY)
    assert report.currency == "EUR"
    assert report.mitto_cost == Decimal("0.17")


def test_usage_answer_that_is_not_json_is_quoted_in_the_error() -> None:
    with CannedServer() as canned:
        canned.reply(Reply(200, "<html>Maintenance</html>", content_type="text/html"))
        with pytest.raises(MittoAPIError) as info:
            client_for(canned.url).usage(TODAY, TODAY, account_name="Shop AG")
    assert str(info.value) == "Mitto's usage answer is not JSON: '<html>Maintenance</html>'"
    assert (info.value.status_code, info.value.response_text) == (200, "<html>Maintenance</html>")


# -- what the seed-4 sample of the client's mutants showed untested -------------------------------


def test_mark_converted_without_an_id_says_what_it_needs(sandbox) -> None:
    with pytest.raises(ValueError) as caught:
        client_for(sandbox.url).mark_converted("")
    assert str(caught.value) == "mark_converted() needs Mitto's message id (messageId)."
    assert sandbox.messages == []


def test_a_refused_key_on_conversion_or_usage_keeps_mittos_words() -> None:
    with CannedServer() as canned:
        canned.reply(
            Reply(401, "Invalid API key", content_type="text/plain"),
            Reply(401, "Invalid API key", content_type="text/plain"),
        )
        client = client_for(canned.url)
        with pytest.raises(MittoAuthenticationError) as converted:
            client.mark_converted("abc-1")
        with pytest.raises(MittoAuthenticationError) as usage:
            client.usage(TODAY, TODAY, account_name="Shop AG")
    for caught, path in ((converted, "/sms/converted"), (usage, "/usage/bycountry")):
        assert str(caught.value) == (
            f"Mitto refused the API key (HTTP 401) on POST {path}: check MITTO_API_KEY and that "
            "this server's IP address is whitelisted at Mitto."
        )
        assert (caught.value.status_code, caught.value.response_text) == (401, "Invalid API key")


@pytest.mark.parametrize("cost", ["NaN", "Infinity", "-inf"])
def test_parse_usage_names_a_cost_that_is_no_finite_number(cost) -> None:
    item = {"country": "CHE", "messagesCount": 3, "cost": cost}
    with pytest.raises(MittoAPIError) as caught:
        parse_usage([item])
    assert str(caught.value) == (
        f"Mitto's usage answer has an item that cannot be read (cost {cost!r} is not a number): "
        f"{item!r}"
    )


# -- what the seed-5 sample of the client's mutants showed untested -------------------------------


def test_refusals_worded_as_message_error_or_detail_keep_mittos_words() -> None:
    with CannedServer() as canned:
        canned.reply(
            Reply(404, {"message": "Message not found"}),
            Reply(400, {"detail": "Unknown account name"}),
            Reply(500, {"error": "Try later"}),
        )
        client = client_for(canned.url)
        with pytest.raises(MittoAPIError) as message:
            client.mark_converted("abc-1")
        with pytest.raises(MittoAPIError) as detail:
            client.usage(TODAY, TODAY, account_name="Nope")
        with pytest.raises(MittoAPIError) as error:
            client.usage(TODAY, TODAY, account_name="Shop AG")
    assert (str(message.value), message.value.response_text) == (
        "Mitto knows no message with id abc-1 to mark as converted (HTTP 404: Message not found).",
        "Message not found",
    )
    assert (str(detail.value), detail.value.response_text) == (
        "Mitto answered HTTP 400 on POST /usage/bycountry: Unknown account name.",
        "Unknown account name",
    )
    assert (str(error.value), error.value.response_text) == (
        "Mitto answered HTTP 500 on POST /usage/bycountry: Try later.",
        "Try later",
    )


def test_usage_of_a_country_listed_twice_adds_the_cost_that_is_known() -> None:
    with CannedServer() as canned:
        canned.reply(
            Reply(
                body=[
                    {"country": "CHE", "messagesCount": 2, "cost": "0.14"},
                    {"country": "CHE", "messagesCount": 1},
                ]
            )
        )
        rows = client_for(canned.url).usage(TODAY, TODAY, account_name="Shop AG")
    assert rows == [UsageRow("CHE", 3, Decimal("0.14"))]


@pytest.mark.django_db(transaction=True)
def test_service_mark_converted_keeps_the_time_another_call_recorded_meanwhile(
    settings, make_message
) -> None:
    from django.db import connection as thread_connection

    message = make_message(provider_id="069d0e82-a437-47bc-b158-0f4065e83fce")
    first = datetime.datetime(2024, 3, 10, 12, 0, tzinfo=datetime.timezone.utc)

    def marked_elsewhere() -> None:  # another worker's mark_converted, while Mitto answers this
        Message.objects.filter(pk=message.pk).update(converted_at=first)
        thread_connection.close()

    with CannedServer() as canned:
        canned.reply(Reply(200, b"", before=marked_elsewhere))
        settings.MITTO_API_URL = canned.url
        marked = services.mark_converted(message)
    assert marked.converted_at == first
    message.refresh_from_db()
    assert message.converted_at == first


@pytest.mark.parametrize(
    ("today", "start"),
    [
        (datetime.date(2024, 5, 17), datetime.date(2024, 5, 1)),
        (datetime.date(2024, 2, 29), datetime.date(2024, 2, 1)),
        (datetime.date(2024, 3, 1), datetime.date(2024, 3, 1)),
    ],
)
def test_month_to_date_runs_from_the_first_of_the_month_to_today(today, start) -> None:
    assert services.month_to_date(today) == (start, today)
