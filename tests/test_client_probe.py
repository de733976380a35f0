"""The client's probe, conversion and usage calls, detail by detail."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from django_mitto.client import MittoClient, SendResult
from django_mitto.exceptions import (
    MittoAPIError,
    MittoAuthenticationError,
    MittoTransportError,
)
from tests.canned import Reply
from tests.test_client import KEY, make_client

TODAY = "2024-03-01"


def unused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# -- SendResult.answer() ---------------------------------------------------------------------------


def test_a_result_without_an_answer_on_record_gives_an_empty_answer_not_null() -> None:
    # A result built by hand (a custom backend, a late id) has neither an answer nor an item:
    # the error notes print "-" for it, never the JSON of nothing.
    assert SendResult(id="late-id").answer() == ""
    # The answer kept on record wins over an item.
    assert SendResult(id="a1", raw='{"id": "a1"}', item={"id": "a1", "x": 1}).answer() == (
        '{"id": "a1"}'
    )


# -- probe() ---------------------------------------------------------------------------------------


def test_probe_of_an_api_that_does_not_answer_gives_up_after_the_timeout(canned) -> None:
    canned.reply(Reply(body={"id": "abc", "responseCode": 0}, before=lambda: time.sleep(1.5)))
    started = time.monotonic()
    probe = make_client(canned.url, timeout=0.3).probe("+41791234567", "Hi", sender="Shop")
    assert time.monotonic() - started < 1.2
    assert (probe.reached, probe.result) == (False, None)
    assert isinstance(probe.error, MittoTransportError)
    assert probe.error.request_sent is True
    assert str(probe.error).startswith("POST /sms: ReadTimeout: ")


def test_probe_error_keeps_the_first_200_characters_of_requests_words() -> None:
    words = "Max retries exceeded " + "".join(f"{n:03d}," for n in range(100))

    class FailingSession(requests.Session):
        def post(self, *args, **kwargs):
            raise requests.exceptions.ConnectionError(words)

    client = MittoClient(
        KEY,
        api_url="http://mitto.example",
        timeout=5,
        response_format="json",
        test_mode=False,
        session=FailingSession(),
    )
    probe = client.probe("+41791234567", "Hi", sender="Shop")
    assert probe.reached is False
    assert str(probe.error) == f"POST /sms: ConnectionError: {words[:199]}…"


def test_probe_of_an_answer_that_is_no_json_object_lists_no_fields(canned) -> None:
    canned.reply(Reply(502, "<html>Bad gateway</html>", content_type="text/html"))
    probe = make_client(canned.url).probe("+41791234567", "Hi", sender="Shop")
    assert (probe.reached, probe.status_code, probe.result) == (True, 502, None)
    assert isinstance(probe.error, MittoAPIError)
    assert probe.fields == {}
    assert probe.unknown_fields == []


def test_probe_with_a_refused_key_names_the_path_in_its_error(canned) -> None:
    canned.reply(Reply(401, "Invalid API key", content_type="text/plain"))
    probe = make_client(canned.url).probe("+41791234567", "Hi", sender="Shop")
    assert (probe.reached, probe.status_code, probe.key_accepted) == (True, 401, False)
    assert isinstance(probe.error, MittoAuthenticationError)
    assert str(probe.error) == (
        "Mitto refused the API key (HTTP 401) on POST /sms: check MITTO_API_KEY and that this "
        "server's IP address is whitelisted at Mitto."
    )


@pytest.mark.parametrize("test", [True, False])
def test_probe_refused_by_mitto_still_says_whether_it_was_a_test(canned, test) -> None:
    canned.reply(Reply(400, {"responseCode": 4, "responseText": "Invalid sender"}))
    probe = make_client(canned.url).probe("+41791234567", "Hi", sender="Shop", test=test)
    assert (probe.reached, probe.status_code, probe.result) == (True, 400, None)
    assert isinstance(probe.error, MittoAPIError)
    assert probe.test is test


# -- mark_converted() and usage() ------------------------------------------------------------------


def test_conversion_and_usage_on_an_unreachable_api_name_their_path() -> None:
    client = make_client(f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(MittoTransportError) as converted:
        client.mark_converted("abc-1")
    with pytest.raises(MittoTransportError) as usage:
        client.usage(TODAY, TODAY, account_name="Shop AG")
    assert str(converted.value) == (
        "POST /sms/converted: ConnectionError (the request never reached Mitto)."
    )
    assert str(usage.value) == (
        "POST /usage/bycountry: ConnectionError (the request never reached Mitto)."
    )
    assert (converted.value.request_sent, usage.value.request_sent) == (False, False)


@pytest.mark.parametrize("status", [300, 308])
def test_conversion_and_usage_answered_by_any_3xx_say_it_is_a_redirect(canned, status) -> None:
    canned.reply(
        Reply(status, "Elsewhere", content_type="text/plain"),
        Reply(status, "Elsewhere", content_type="text/plain"),
    )
    client = make_client(canned.url)
    with pytest.raises(MittoAPIError) as converted:
        client.mark_converted("abc-1")
    with pytest.raises(MittoAPIError) as usage:
        client.usage(TODAY, TODAY, account_name="Shop AG")
    for caught, path in ((converted, "/sms/converted"), (usage, "/usage/bycountry")):
        assert str(caught.value) == (
            f"Mitto answered HTTP {status} (a redirect) on POST {path}; set MITTO_API_URL to the "
            "final address."
        )
        assert (caught.value.status_code, caught.value.response_text) == (status, "Elsewhere")


def test_usage_refuses_a_bad_start_date_naming_it(canned) -> None:
    with pytest.raises(ValueError) as caught:
        make_client(canned.url).usage("15.02.2020", TODAY, account_name="Shop AG")
    assert str(caught.value) == "start: '15.02.2020' is not a date (YYYY-MM-DD)."
    assert canned.requests == []
