"""What the client's errors say: the system's cause, Mitto's words, the probe's local address."""

from __future__ import annotations

import errno
import io
import itertools
import json
import time

import pytest
import requests
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError

from django_mitto.client import _reasons
from django_mitto.exceptions import MittoAPIError, MittoTransportError
from tests.canned import CannedServer, Reply
from tests.test_client import make_client


def test_probe_names_the_refusal_urllib3_1_26_keeps_only_as_the_context(monkeypatch) -> None:
    # urllib3 1.26 (_new_conn) raises NewConnectionError inside the handler of the socket's
    # error, without "from" and without the error in its arguments: the system's words are
    # only in its __context__. requests' long message, cut at 200 characters, loses them.
    pool = HTTPConnectionPool("127.0.0.1", 1)

    def refuse(*args, **kwargs):
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        except OSError as refused:
            try:
                raise NewConnectionError(
                    HTTPConnection("127.0.0.1", 1),
                    f"Failed to establish a new connection: {refused}",
                )
            except NewConnectionError as failed:
                try:
                    raise MaxRetryError(pool, "/sms", failed)
                except MaxRetryError as exhausted:
                    raise requests.exceptions.ConnectionError(exhausted) from None

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    probe = make_client("http://127.0.0.1:1").probe("+41791234567", "Hi", sender="Shop")
    assert isinstance(probe.error, MittoTransportError)
    assert (probe.reached, probe.error.request_sent) == (False, False)
    assert str(probe.error).startswith(
        f"POST /sms: ConnectionError: [Errno {errno.ECONNREFUSED}] Connection refused: "
    )
    # requests' own message (pool, url, the connection) is longer than the 200 characters
    # kept, so the front is the only place left that names the refusal.
    assert str(probe.error).endswith("…")


def test_probe_error_without_the_systems_words_goes_straight_to_requests_words() -> None:
    with CannedServer() as canned:
        canned.reply(Reply(body={"id": "abc", "responseCode": 0}, before=lambda: time.sleep(0.8)))
        probe = make_client(canned.url, timeout=0.2).probe("+41791234567", "Hi", sender="Shop")
    assert isinstance(probe.error, MittoTransportError)
    assert (probe.reached, probe.error.request_sent) == (False, True)
    # A read timeout carries no errno: nothing stands between the class and requests' words.
    assert str(probe.error).startswith("POST /sms: ReadTimeout: HTTPConnectionPool(host=")


def test_errors_quote_a_json_answer_that_holds_none_of_the_known_words_whole() -> None:
    problem = {"status": 404, "title": "Not Found"}
    listed = ["try", "later"]
    with CannedServer() as canned:
        canned.reply(Reply(404, problem), Reply(500, listed))
        client = make_client(canned.url)
        with pytest.raises(MittoAPIError) as converted:
            client.mark_converted("abc-1")
        with pytest.raises(MittoAPIError) as usage:
            client.usage("2024-01-01", "2024-01-31", account_name="Shop AG")
    assert converted.value.response_text == json.dumps(problem)
    assert str(converted.value) == (
        "Mitto knows no message with id abc-1 to mark as converted "
        f"(HTTP 404: {json.dumps(problem)})."
    )
    assert usage.value.response_text == json.dumps(listed)
    assert str(usage.value) == (
        f"Mitto answered HTTP 500 on POST /usage/bycountry: {json.dumps(listed)}."
    )


class _Replay(requests.adapters.BaseAdapter):
    """Answers from memory, as an adapter that replays recorded answers does: its response's
    ``raw`` is a plain file, with no connection and no socket."""

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response.raw = io.BytesIO(b'{"id": "abc", "responseCode": 0}')
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_a_probe_answered_without_a_socket_reports_no_local_address_and_reads_the_answer() -> None:
    client = make_client("http://mitto.test")
    client.session.mount("http://", _Replay())
    probe = client.probe("+41791234567", "Hi", sender="Shop")
    assert (probe.reached, probe.status_code, probe.error) == (True, 200, None)
    assert probe.local_address == ""
    assert probe.result is not None and probe.result.id == "abc"


def test_a_chain_of_causes_that_loops_back_is_walked_once_so_reading_it_ends() -> None:
    # No library is known to make one, but `raise a from b` after `raise b from a` does; the
    # transport errors of send() and probe() walk the chain, and must not walk it forever.
    outer = requests.exceptions.ConnectionError("outer")
    inner = OSError("inner")
    outer.__cause__ = inner
    inner.__cause__ = outer
    assert list(itertools.islice(_reasons(outer), 10)) == [outer, inner]
