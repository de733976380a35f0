"""Tests of the django-mitto sandbox (a local Mitto-compatible gateway).

They need neither Django nor a database: the sandbox is standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from django_mitto.sandbox import (
    DEFAULT_GET_TEMPLATE,
    DEFAULT_POST_TEMPLATE,
    Sandbox,
    final_status,
    mitto_timestamp,
)
from django_mitto.sandbox.records import DEFAULT_KEEP, MAX_PAGE_SIZE
from django_mitto.sandbox.reports import append_query, render_template, url_escape
from django_mitto.sandbox.validation import validate

ROOT = Path(__file__).resolve().parent.parent
KEY = "sandbox-key"
HEADERS = {"X-Mitto-API-Key": KEY}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
SENDTIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"from": "MITTO SMS", "to": "491725551234", "text": "Hello, World!"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def is_dashed_uuid(value: str) -> bool:
    return str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4


class Receiver:
    """A tiny HTTP server that records delivery reports; can fail the first N with 500."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                path, _, query = self.path.partition("?")
                with receiver.cond:
                    failing = receiver.fail > 0
                    if failing:
                        receiver.fail -= 1
                    receiver.requests.append(
                        {
                            "method": self.command,
                            "path": path,
                            "query": dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
                            "body": body,
                            "content_type": self.headers.get("Content-Type"),
                            "answered": 500 if failing else 200,
                        }
                    )
                    receiver.cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dlr"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def wait(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {n} reports, got {self.requests}"
                self.cond.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(report_delay=0, retry_backoff=0.05) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    yield recv
    recv.close()


def send(sb: Sandbox, path: str = "/sms", body: Any = None, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", HEADERS)
    kwargs.setdefault("timeout", 5)
    return requests.post(sb.url + path, json=message() if body is None else body, **kwargs)


# -- answers -------------------------------------------------------------------------------


def test_single_sms_json_shape(sandbox: Sandbox) -> None:
    response = send(sandbox, "/sms", message(to="+41791234567"))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = response.json()
    assert set(data) == {
        "id",
        "timestamp",
        "to",
        "responseCode",
        "responseText",
        "textLength",
        "messageParts",
    }
    assert is_dashed_uuid(data["id"])
    assert TIMESTAMP.match(data["timestamp"])
    assert data["to"] == "+41791234567"
    assert data["responseCode"] == 0
    assert data["responseText"] == "SMS sent"
    assert data["textLength"] == 13
    assert data["messageParts"] == 1


def test_test_flag_long_and_unicode_texts(sandbox: Sandbox) -> None:
    data = send(sandbox, "/sms.json", message(text="x" * 161, test=True)).json()
    assert data["test"] is True
    assert (data["textLength"], data["messageParts"]) == (161, 2)
    data = send(sandbox, "/sms", message(text="Grüezi 😀", type="auto")).json()
    assert (data["textLength"], data["messageParts"]) == (8, 1)
    data = send(sandbox, "/sms", message(text="ж" * 71, type="unicode")).json()
    assert (data["textLength"], data["messageParts"]) == (71, 2)
    data = send(sandbox, "/sms", message(text="0A0B0C", type="Byte")).json()
    assert (data["responseCode"], data["textLength"]) == (0, 3)


def test_timestamp_format() -> None:
    assert mitto_timestamp(1_555_177_866_309_118_200) == "2019-04-13T17:51:06.3091182Z"


def test_xml_single_and_paths(sandbox: Sandbox) -> None:
    for path in ("/sms.xml", "/sms?format=xml", "/v2/sms.xml", "/SMS.XML/"):
        response = send(sandbox, path, message(test=True))
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(response.content)
        assert root.tag == "response"
        fields = {child.tag: child.text for child in root}
        assert fields["responseCode"] == "0"
        assert fields["responseText"] == "SMS sent"
        assert fields["to"] == "491725551234"
        assert fields["test"] == "true"
        assert is_dashed_uuid(fields["id"] or "")
        assert TIMESTAMP.match(fields["timestamp"] or "")
    assert send(sandbox, "/v2/sms.json").json()["responseCode"] == 0
    assert send(sandbox, "/sms?format=json").json()["responseCode"] == 0


def test_bulk_with_array_and_comma_string(sandbox: Sandbox) -> None:
    numbers = ["491725551234", "+41791234567", "491725551234"]
    data = send(sandbox, "/smsbulk", message(to=numbers)).json()
    assert data["responseCode"] == 0
    assert data["responseText"] == "SMS sent"
    assert "test" not in data
    assert [item["to"] for item in data["messages"]] == numbers
    ids = [item["id"] for item in data["messages"]]
    assert len(set(ids)) == 3
    assert all(is_dashed_uuid(i) for i in ids)
    for item in data["messages"]:
        assert set(item) == {"id", "timestamp", "to", "textLength", "messageParts"}
        assert TIMESTAMP.match(item["timestamp"])
        assert (item["textLength"], item["messageParts"]) == (13, 1)

    data = send(sandbox, "/smsbulk.json", message(to="491725551234, 41791234567", test=True)).json()
    assert data["test"] is True
    assert [item["to"] for item in data["messages"]] == ["491725551234", "41791234567"]
    assert len(sandbox.messages) == 5


def test_bulk_xml_shape(sandbox: Sandbox) -> None:
    response = send(sandbox, "/smsbulk.xml", message(to=["491725551234", "41791234567"]))
    root = ET.fromstring(response.content)
    assert root.tag == "response"
    assert root.findtext("responseCode") == "0"
    items = root.findall("messages/message")
    assert [item.findtext("to") for item in items] == ["491725551234", "41791234567"]
    assert all(TIMESTAMP.match(item.findtext("timestamp") or "") for item in items)
    assert [item.findtext("messageParts") for item in items] == ["1", "1"]


@pytest.mark.parametrize(
    ("path", "overrides", "code", "text"),
    [
        ("/sms", {"type": "Klingon"}, 2, "Invalid type"),
        ("/sms", {"type": 7}, 2, "Invalid type"),
        ("/sms", {"text": ""}, 3, "Empty message"),
        ("/sms", {"text": ...}, 3, "Empty message"),
        ("/sms", {"text": "你好"}, 4, "Message text is invalid"),
        ("/sms", {"text": "XYZ", "type": "binary"}, 4, "Message text is invalid"),
        ("/sms", {"text": "ABC", "type": "binary"}, 4, "Message text is invalid"),
        ("/sms", {"from": ""}, 5, "Empty sender"),
        ("/sms", {"from": ...}, 5, "Empty sender"),
        ("/sms", {"from": "AB"}, 6, "Invalid sender"),
        ("/sms", {"from": "ABCDEFGHIJKL"}, 6, "Invalid sender"),
        ("/sms", {"from": "123456789012345"}, 6, "Invalid sender"),
        ("/sms", {"from": "12"}, 6, "Invalid sender"),
        ("/sms", {"from": "Hi<>!"}, 6, "Invalid sender"),
        ("/sms", {"to": ""}, 7, "Empty receiver"),
        ("/sms", {"to": ...}, 7, "Empty receiver"),
        ("/smsbulk", {"to": []}, 7, "Empty receiver"),
        ("/smsbulk", {"to": " "}, 7, "Empty receiver"),
        ("/sms", {"to": "12345"}, 8, "Invalid receiver"),
        ("/sms", {"to": "phone"}, 8, "Invalid receiver"),
        ("/sms", {"to": "0041791234567"}, 8, "Invalid receiver"),
        ("/sms", {"to": "1234567890123456"}, 8, "Invalid receiver"),
        ("/sms", {"to": ["491725551234"]}, 8, "Invalid receiver"),
        ("/smsbulk", {"to": ["491725551234", "nope"]}, 8, "Invalid receiver"),
        ("/smsbulk", {"to": "491725551234,,41791234567"}, 8, "Invalid receiver"),
    ],
)
def test_validation_codes(
    sandbox: Sandbox, path: str, overrides: dict[str, Any], code: int, text: str
) -> None:
    response = send(sandbox, path, message(**overrides))
    assert response.status_code == 400
    assert response.json() == {"responseCode": code, "responseText": text}
    assert sandbox.messages == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "GSM"},
        {"type": "unicode", "text": "你好"},
        {"type": "AUTO", "text": "你好"},
        {"type": "Binary", "text": "0a0B"},
        {"type": None},
        {"from": "+41791234567"},
        {"from": "123"},
        {"from": "ABC"},
        {"from": "Shop-24 AG"},
        {"to": 491725551234},
        {"to": "+491725551234"},
        {"text": "Price: 5€ [ok]"},
    ],
)
def test_valid_variants(sandbox: Sandbox, overrides: dict[str, Any]) -> None:
    response = send(sandbox, "/sms", message(**overrides))
    assert response.status_code == 200, response.text
    assert response.json()["responseCode"] == 0


def test_lowest_code_wins_and_xml_error(sandbox: Sandbox) -> None:
    body = {"type": "nope", "text": "", "from": "", "to": ""}
    assert send(sandbox, "/sms", body).json()["responseCode"] == 2
    response = send(sandbox, "/sms.xml", {"text": "hi", "to": "491725551234"})
    assert response.status_code == 400
    root = ET.fromstring(response.content)
    assert (root.findtext("responseCode"), root.findtext("responseText")) == ("5", "Empty sender")


@pytest.mark.parametrize("headers", [{}, {"X-Mitto-API-Key": "wrong"}])
def test_missing_or_wrong_api_key(sandbox: Sandbox, headers: dict[str, str]) -> None:
    response = send(sandbox, "/sms", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "responseCode": 401,
        "responseText": "Invalid or no API Key specified",
    }
    assert sandbox.messages == []


def test_api_key_check_can_be_disabled() -> None:
    with Sandbox(api_key=None) as sb:
        assert send(sb, headers={}).status_code == 200


def test_bad_bodies_methods_and_paths(sandbox: Sandbox) -> None:
    response = requests.post(sandbox.url + "/sms", data="{nope", headers=HEADERS, timeout=5)
    assert response.status_code == 400
    assert response.json()["responseCode"] == 400
    assert send(sandbox, "/sms", ["a", "list"]).status_code == 400
    response = requests.get(sandbox.url + "/sms", headers=HEADERS, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert send(sandbox, "/unknown").status_code == 404


def test_keep_alive_and_chunked_body(sandbox: Sandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    body = json.dumps(message()).encode()
    headers = {**HEADERS, "Content-Type": "application/json"}
    for _ in range(3):
        connection.request("POST", "/sms", body, headers)
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length")
        json.loads(response.read())
    sock = connection.sock
    connection.request("POST", "/sms", iter([body[:10], body[10:]]), headers, encode_chunked=True)
    response = connection.getresponse()
    assert json.loads(response.read())["responseCode"] == 0
    assert connection.sock is sock  # still the same connection
    connection.close()


# -- delivery reports ----------------------------------------------------------------------


def test_post_report_with_default_template(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.callback_url = receiver.url  # settings can change while running
    data = send(sandbox, body=message(reference="order-42")).json()
    reports = sandbox.wait_for_reports(1)
    [request] = receiver.wait(1)
    assert request["method"] == "POST"
    assert request["content_type"] == "application/json"
    payload = json.loads(request["body"])
    assert payload["id"] == data["id"]
    assert payload["status"] == "delivered"
    assert payload["errorcode"] == "0"
    assert payload["reference"] == "order-42"
    assert payload["receiver"] == "491725551234"
    assert payload["mccmnc"] == "22801"
    assert SENDTIME.match(payload["sendtime"])
    assert abs(int(payload["sendtimestamp"]) - time.time()) < 60
    assert reports[0]["message_id"] == data["id"]
    assert reports[0]["http_status"] == 200
    assert reports[0]["attempt"] == 1
    assert reports[0]["body"] == request["body"]


def test_get_report_with_default_template(receiver: Receiver) -> None:
    with Sandbox(
        report_delay=0, callback_url=receiver.url + "?token=s3cret", callback_method="get"
    ) as sb:
        data = send(sb, body=message(to="+41791234568", reference="a&b c")).json()
        sb.wait_for_reports(1)
    [request] = receiver.wait(1)
    assert request["method"] == "GET"
    assert request["query"]["token"] == "s3cret"
    assert request["query"]["id"] == data["id"]
    assert request["query"]["status"] == "expired"
    assert request["query"]["errorcode"] == "2"
    assert request["query"]["reference"] == "a&b c"
    assert request["query"]["receiver"] == "+41791234568"
    assert request["query"]["mccmnc"] == "22801"
    assert SENDTIME.match(request["query"]["sendtime"])


def test_status_by_last_digit(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.callback_url = receiver.url
    numbers = [f"4179123456{digit}" for digit in range(10)]
    send(sandbox, "/smsbulk", message(to=numbers))
    sandbox.wait_for_reports(10)
    got = {}
    for request in receiver.wait(10):
        payload = json.loads(request["body"])
        got[payload["receiver"]] = (payload["status"], payload["errorcode"])
    expected = {n: ("delivered", "0") for n in numbers[:7]}
    expected[numbers[7]] = ("undelivered", "1")
    expected[numbers[8]] = ("expired", "2")
    expected[numbers[9]] = ("rejected", "3")
    assert got == expected
    assert final_status("+41 79 123 45 69") == ("rejected", 3)
    statuses = {m["to"]: m["status"] for m in sandbox.messages}
    assert statuses[numbers[9]] == "rejected"


def test_custom_template_words_and_per_message_callback(receiver: Receiver) -> None:
    template = '{"messageId":"~msgid~","state":"~status~","net":"~mcc~/~mnc~","q":"~reference~"}'
    with Sandbox(
        report_delay=0,
        callback_url="http://127.0.0.1:9/never-used",
        callback_template=template,
        status_words={"delivered": "Delivered"},
        mcc="262",
        mnc="02",
    ) as sb:
        data = send(sb, body=message(callback=receiver.url, reference='say "hi"\\')).json()
        sb.wait_for_reports(1)
    payload = json.loads(receiver.wait(1)[0]["body"])
    assert payload == {
        "messageId": data["id"],
        "state": "Delivered",
        "net": "262/02",
        "q": 'say "hi"\\',
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["delivered"]),
        ({"intermediate": True}, ["buffered", "delivered"]),
        ({"duplicate_reports": True}, ["delivered", "delivered"]),
        ({"intermediate": True, "reorder_reports": True}, ["delivered", "buffered"]),
        ({"reorder_reports": True}, ["delivered", "buffered"]),
        (
            {"intermediate": True, "duplicate_reports": True},
            ["buffered", "delivered", "delivered"],
        ),
    ],
)
def test_report_sequences(receiver: Receiver, options: dict[str, Any], expected: list[str]) -> None:
    with Sandbox(report_delay=0, callback_url=receiver.url, **options) as sb:
        data = send(sb).json()
        sb.wait_for_reports(len(expected))
        time.sleep(0.05)  # nothing more arrives
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [b["status"] for b in bodies] == expected
    assert {b["id"] for b in bodies} == {data["id"]}
    assert {b["errorcode"] for b in bodies} == {"0"}


def test_report_retried_after_receiver_error(receiver: Receiver) -> None:
    receiver.fail = 2
    with Sandbox(report_delay=0, callback_url=receiver.url, retry_backoff=0.01) as sb:
        send(sb)
        [ok] = sb.wait_for_reports(1)
        reports = sb.reports
        callbacks = sb.messages[0]["callbacks"]
    assert [(r["attempt"], r["http_status"], r["ok"]) for r in reports] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert reports[0]["error"] == "HTTP 500"
    assert ok["attempt"] == 3
    assert len(callbacks) == 3


def test_report_gives_up_after_three_retries() -> None:
    with Sandbox(
        report_delay=0, callback_url="http://127.0.0.1:9/closed", retry_backoff=0.01
    ) as sb:
        send(sb)
        deadline = time.monotonic() + 5
        while len(sb.reports) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        reports = sb.reports
        with pytest.raises(TimeoutError, match="4 callback attempt"):
            sb.wait_for_reports(1, timeout=0.05)
    assert [r["attempt"] for r in reports] == [1, 2, 3, 4]
    assert all(r["error"] and not r["ok"] for r in reports)


def test_test_messages_get_no_report_unless_asked(receiver: Receiver) -> None:
    with Sandbox(report_delay=0, callback_url=receiver.url) as sb:
        send(sb, body=message(test=True))
        send(sb, body=message(to="41791234560"))
        sb.wait_for_reports(1)
        time.sleep(0.1)
        assert len(receiver.requests) == 1
        assert json.loads(receiver.requests[0]["body"])["receiver"] == "41791234560"
        with pytest.raises(TimeoutError, match="report_test_messages"):
            sb.wait_for_reports(2, timeout=0.05)
        sb.report_test_messages = True
        send(sb, body=message(test=True))
        sb.wait_for_reports(2)


def test_no_callback_url_means_no_report(sandbox: Sandbox) -> None:
    send(sandbox)
    with pytest.raises(TimeoutError, match="no callback URL"):
        sandbox.wait_for_reports(1, timeout=0.05)


def test_report_delay(receiver: Receiver) -> None:
    with Sandbox(report_delay=0.15, callback_url=receiver.url) as sb:
        started = time.monotonic()
        send(sb)
        sb.wait_for_reports(1)
        assert time.monotonic() - started >= 0.14


def test_template_helpers() -> None:
    values = {"msgid": "a b", "status": "ok"}
    assert render_template("x=~msgid~&s=~status~&u=~unknown~", values, url_escape) == (
        "x=a%20b&s=ok&u=~unknown~"
    )
    assert append_query("http://h/p", "a=1") == "http://h/p?a=1"
    assert append_query("http://h/p?t=1", "a=1") == "http://h/p?t=1&a=1"
    assert "~msgid~" in DEFAULT_GET_TEMPLATE
    assert json.loads(render_template(DEFAULT_POST_TEMPLATE, {}, str))["mccmnc"] == ""


# -- faults --------------------------------------------------------------------------------


def test_latency_fault(sandbox: Sandbox) -> None:
    sandbox.add_fault("latency", seconds=0.2, times=1)
    started = time.monotonic()
    assert send(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.19
    started = time.monotonic()
    assert send(sandbox).status_code == 200
    assert time.monotonic() - started < 0.15


@pytest.mark.parametrize(
    ("kind", "status"), [("error_500", 500), (503, 503), ("500", 500), ("unavailable", 503)]
)
def test_error_faults(sandbox: Sandbox, kind: str | int, status: int) -> None:
    sandbox.add_fault(kind, times=1)
    response = send(sandbox)
    assert response.status_code == status
    if status == 500:
        assert response.json() == {"responseCode": 1, "responseText": "Internal error"}
    assert send(sandbox).status_code == 200
    assert len(sandbox.messages) == 1


def test_rate_limit_fault(sandbox: Sandbox) -> None:
    sandbox.add_fault("rate_limit", retry_after=7, times=2)
    for _ in range(2):
        response = send(sandbox)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
    assert send(sandbox).status_code == 200


def test_reset_fault(sandbox: Sandbox) -> None:
    sandbox.add_fault("reset", times=1)
    with pytest.raises(requests.ConnectionError):
        send(sandbox)
    assert send(sandbox).status_code == 200


def test_timeout_fault(sandbox: Sandbox) -> None:
    sandbox.add_fault("timeout", seconds=2, times=1)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        send(sandbox, timeout=0.5)
    assert time.monotonic() - started < 1.5
    # Like Mitto receiving the message and the answer getting lost: it was accepted.
    assert len(sandbox.messages) == 1
    assert sandbox.messages[0]["to"] == "491725551234"
    assert send(sandbox).status_code == 200
    assert len(sandbox.messages) == 2


def test_per_recipient_faults_and_times(sandbox: Sandbox) -> None:
    sandbox.add_fault("503", recipient="+41791234567", times=2)
    sandbox.add_fault("reset", recipient="41791234500")
    assert send(sandbox).status_code == 200
    assert send(sandbox, body=message(to="41791234567")).status_code == 503
    bulk = message(to=["491725551234", "+41791234567"])
    assert send(sandbox, "/smsbulk", bulk).status_code == 503
    assert send(sandbox, "/smsbulk", bulk).status_code == 200
    for _ in range(2):  # times=None: forever
        with pytest.raises(requests.ConnectionError):
            send(sandbox, body=message(to="41791234500"))
    assert [f["kind"] for f in sandbox.faults.snapshot()] == ["reset"]
    sandbox.clear_faults()
    assert send(sandbox, body=message(to="41791234500")).status_code == 200


def test_faults_come_before_the_key_check(sandbox: Sandbox) -> None:
    sandbox.add_fault("503", times=1)
    assert send(sandbox, headers={}).status_code == 503
    assert send(sandbox, headers={}).status_code == 401


def test_bad_fault_arguments(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="Unknown fault kind"):
        sandbox.add_fault("explode")
    with pytest.raises(ValueError, match="times"):
        sandbox.add_fault("503", times=0)


def test_faults_over_http(sandbox: Sandbox) -> None:
    url = sandbox.url + "/_sandbox/faults"
    created = requests.post(url, json={"kind": "429", "retry_after": 3, "times": 1}, timeout=5)
    assert created.status_code == 201
    assert created.json()["kind"] == "rate_limit"
    assert requests.get(url, timeout=5).json()[0]["times"] == 1
    response = send(sandbox)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert requests.get(url, timeout=5).json() == []
    requests.post(url, json={"kind": "error_500", "recipient": "491725551234"}, timeout=5)
    assert send(sandbox).status_code == 500
    assert requests.delete(url, timeout=5).json() == {"cleared": 1}
    assert send(sandbox).status_code == 200
    bad = requests.post(url, json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400
    assert "Unknown fault kind" in bad.json()["error"]
    assert requests.post(url, json={"times": 1}, timeout=5).status_code == 400


# -- inspection and control ----------------------------------------------------------------


def test_messages_and_reset_over_http(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.callback_url = receiver.url
    data = send(sandbox, "/sms.xml", message(reference="r1"))
    assert data.status_code == 200
    sandbox.wait_for_reports(1)
    messages = requests.get(sandbox.url + "/_sandbox/messages", timeout=5).json()
    [record] = messages
    assert is_dashed_uuid(record["id"])
    assert record["path"] == "/sms.xml"
    assert record["format"] == "xml"
    assert record["body"] == message(reference="r1")
    assert TIMESTAMP.match(record["received_at"])
    assert record["test"] is False
    assert record["status"] == "delivered"
    [callback] = record["callbacks"]
    assert callback["url"] == receiver.url
    assert callback["method"] == "POST"
    assert callback["http_status"] == 200
    assert callback["attempt"] == 1
    assert json.loads(callback["body"])["id"] == record["id"]
    assert requests.get(sandbox.url + "/_sandbox/reports", timeout=5).json() == [callback]

    sandbox.add_fault("latency", seconds=0.01)
    reset = requests.post(sandbox.url + "/_sandbox/reset", timeout=5)
    assert reset.json() == {"reset": True}
    assert sandbox.messages == []
    assert sandbox.reports == []
    assert sandbox.faults.snapshot() == []
    assert requests.get(sandbox.url + "/_sandbox/messages", timeout=5).json() == []


def test_reset_drops_pending_reports(receiver: Receiver) -> None:
    with Sandbox(report_delay=0.1, callback_url=receiver.url) as sb:
        send(sb)
        sb.reset()
        time.sleep(0.2)
        assert receiver.requests == []
        assert sb.reports == []


def test_settings_over_http(sandbox: Sandbox, receiver: Receiver) -> None:
    url = sandbox.url + "/_sandbox/settings"
    assert "api_key" not in requests.get(url, timeout=5).json()
    changed = requests.post(
        url, json={"callback_url": receiver.url, "callback_method": "get"}, timeout=5
    )
    assert changed.json()["callback_method"] == "GET"
    send(sandbox)
    sandbox.wait_for_reports(1)
    assert receiver.wait(1)[0]["method"] == "GET"
    assert requests.post(url, json={"api_key": "x"}, timeout=5).status_code == 400
    assert requests.post(url, json={"report_delay": -1}, timeout=5).status_code == 400
    assert requests.post(url, json={"status_words": ["x"]}, timeout=5).status_code == 400
    assert requests.post(url, json={"status_words": {"gone": "x"}}, timeout=5).status_code == 400


def test_messages_snapshot_is_a_copy(sandbox: Sandbox) -> None:
    send(sandbox)
    snapshot = sandbox.messages
    snapshot[0]["body"]["to"] = "changed"
    assert sandbox.messages[0]["body"]["to"] == "491725551234"


def test_lifecycle() -> None:
    sb = Sandbox()
    with pytest.raises(RuntimeError):
        _ = sb.url
    sb.start()
    url = sb.url
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        with pytest.raises(RuntimeError):
            sb.start()
        session = requests.Session()
        assert session.post(url + "/sms", json=message(), headers=HEADERS, timeout=5).ok
    finally:
        sb.stop()
    sb.stop()  # idempotent
    assert not sb.running
    with pytest.raises(requests.ConnectionError):
        session.post(url + "/sms", json=message(), headers=HEADERS, timeout=5)


# -- command line --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_sandbox_does_not_import_django() -> None:
    code = (
        "import sys, django_mitto.sandbox, django_mitto.sandbox.__main__; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), timeout=30, check=True)


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django_mitto.sandbox", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    for option in ("--port", "--api-key", "--callback-url", "--report-delay", "--quiet", "--keep"):
        assert option in result.stdout


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "django_mitto.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    if not ready:
        process.kill()
        pytest.fail("the sandbox CLI did not print its URL")
    line = process.stdout.readline()
    match = re.fullmatch(r"Mitto sandbox serving on (http://127\.0\.0\.1:\d+)\n", line)
    assert match, line
    return process, match.group(1)


def test_cli_serves_and_stops_on_sigterm() -> None:
    process, url = _start_cli("--quiet", "--api-key", "cli-key")
    try:
        response = requests.post(
            url + "/sms", json=message(), headers={"X-Mitto-API-Key": "cli-key"}, timeout=5
        )
        assert response.json()["responseCode"] == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    _, stderr = process.communicate()
    assert stderr == ""


def test_cli_logs_requests_without_the_key() -> None:
    process, url = _start_cli("--api-key", "very-secret-key")
    try:
        requests.post(url + "/sms", json=message(), headers={"X-Mitto-API-Key": "x"}, timeout=5)
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    _, stderr = process.communicate()
    assert '"POST /sms" 401' in stderr
    assert "very-secret-key" not in stderr


# -- reply shapes --------------------------------------------------------------------------


def test_reply_shape_ids_answers_with_an_ids_array() -> None:
    with Sandbox(report_delay=0, reply_shape="ids") as sb:
        data = send(sb, "/sms", message()).json()
        assert set(data) == {
            "ids",
            "timestamp",
            "to",
            "responseCode",
            "responseText",
            "textLength",
            "messageParts",
        }
        (message_id,) = data["ids"]
        assert is_dashed_uuid(message_id)
        assert sb.messages[0]["id"] == message_id
        bulk = send(sb, "/smsbulk", message(to=["491725551234", "41791234567"])).json()
        assert all("id" not in item and len(item["ids"]) == 1 for item in bulk["messages"])
        assert [item["ids"][0] for item in bulk["messages"]] == [m["id"] for m in sb.messages[1:]]
        root = ET.fromstring(send(sb, "/sms.xml", message()).content)
        assert root.find("id") is None
        assert root.findtext("ids/id") == sb.messages[-1]["id"]
        root = ET.fromstring(send(sb, "/smsbulk.xml", message(to=["491725551234"])).content)
        assert root.findtext("messages/message/ids/id") == sb.messages[-1]["id"]


def test_reply_shape_is_a_setting(sandbox: Sandbox) -> None:
    url = sandbox.url + "/_sandbox/settings"
    assert requests.get(url, timeout=5).json()["reply_shape"] == "id"
    assert (
        requests.patch(url, json={"reply_shape": "IDS"}, timeout=5).json()["reply_shape"] == "ids"
    )
    assert "ids" in send(sandbox).json()
    answer = requests.patch(url, json={"reply_shape": "messageid"}, timeout=5)
    assert answer.status_code == 400 and "reply_shape" in answer.json()["error"]
    with pytest.raises(ValueError, match="reply_shape"):
        Sandbox(reply_shape="uuid")


def test_cli_reply_shape() -> None:
    process, url = _start_cli("--quiet", "--reply-shape", "ids")
    try:
        data = requests.post(url + "/sms", json=message(), headers=HEADERS, timeout=5).json()
        assert is_dashed_uuid(data["ids"][0]) and "id" not in data
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


# -- answers without counts -------------------------------------------------------------


def test_answers_leave_out_the_counts_when_told(sandbox: Sandbox) -> None:
    counts = {"textLength", "messageParts"}
    assert counts <= set(send(sandbox).json())
    url = sandbox.url + "/_sandbox/settings"
    assert requests.get(url, timeout=5).json()["answer_counts"] is True
    assert requests.patch(url, json={"answer_counts": False}, timeout=5).json()[
        "answer_counts"
    ] is False  # fmt: skip
    single = send(sandbox).json()
    assert not counts & set(single) and single["responseCode"] == 0 and "id" in single
    bulk = send(sandbox, "/smsbulk", message(to=["491725551234", "41791234567"])).json()
    assert [sorted(item) for item in bulk["messages"]] == [["id", "timestamp", "to"]] * 2
    root = ET.fromstring(send(sandbox, "/smsbulk.xml", message(to=["491725551234"])).content)
    assert root.find("messages/message/messageParts") is None
    assert root.findtext("messages/message/id") == sandbox.messages[-1]["id"]
    answer = requests.patch(url, json={"answer_counts": "no"}, timeout=5)
    assert answer.status_code == 400 and "answer_counts" in answer.json()["error"]


def test_cli_no_counts() -> None:
    process, url = _start_cli("--quiet", "--no-counts")
    try:
        data = requests.post(url + "/sms", json=message(), headers=HEADERS, timeout=5).json()
        assert data["responseCode"] == 0 and "messageParts" not in data and "textLength" not in data
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


# -- bounded memory: --keep, paging, shared request bodies ---------------------------------


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"4179{start + n:07d}" for n in range(count)]


def test_keep_drops_the_oldest_records(receiver: Receiver) -> None:
    with Sandbox(keep=3, report_delay=0, callback_url=receiver.url) as sb:
        assert sb.keep == 3
        sent = numbers(2) + numbers(3, start=10)
        send(sb, "/smsbulk", message(to=sent[:2]))
        send(sb, "/smsbulk", message(to=sent[2:]))
        sb.wait_for_reports(5)
        kept = sb.messages
        assert [m["to"] for m in kept] == sent[-3:]
        assert [m["seq"] for m in kept] == [3, 4, 5]
        listed = requests.get(sb.url + "/_sandbox/messages", timeout=5).json()
        assert [m["id"] for m in listed] == [m["id"] for m in kept]
        page = sb.messages_page()
        assert (page["oldest"], page["dropped"], page["last"]) == (3, 2, 5)
        # Callback attempts are kept the same way: the last 3 of the 5.
        assert len(sb.reports) == 3
        # A bulk bigger than keep keeps its last recipients.
        send(sb, "/smsbulk", message(to=numbers(5, start=20)))
        assert [m["to"] for m in sb.messages] == numbers(3, start=22)
        assert sb.messages_page()["dropped"] == 7
        sb.reset()
        assert sb.messages == [] and sb.messages_page()["dropped"] == 0
        send(sb)
        assert [m["seq"] for m in sb.messages] == [11]  # numbers are never reused


def test_a_report_for_a_dropped_record_is_still_sent(receiver: Receiver) -> None:
    with Sandbox(keep=1, report_delay=0.2, callback_url=receiver.url) as sb:
        first = send(sb, "/sms", message(to="41791234561")).json()["id"]
        second = send(sb, "/sms", message(to="41791234562")).json()["id"]
        assert [m["id"] for m in sb.messages] == [second]  # the first record is dropped...
        sb.wait_for_reports(2)
        reported = {json.loads(r["body"])["id"] for r in receiver.wait(2)}
        assert reported == {first, second}  # ...but its report goes out
        assert [m["id"] for m in sb.messages] == [second]
        assert len(sb.messages[0]["callbacks"]) == 1


def test_keep_must_be_positive() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="keep"):
            Sandbox(keep=bad)  # type: ignore[arg-type]
    assert Sandbox().keep == DEFAULT_KEEP == 10_000


def test_paging_returns_every_record_once(sandbox: Sandbox) -> None:
    send(sandbox, "/smsbulk", message(to=numbers(23)))
    for n in range(4):
        send(sandbox, "/sms", message(to=numbers(1, start=100 + n)[0]))
    everything = [m["id"] for m in sandbox.messages]
    assert len(everything) == 27

    url = sandbox.url + "/_sandbox/messages"
    seen: list[str] = []
    since: int | None = 0
    pages = 0
    while since is not None:
        page = requests.get(url, params={"since": since, "limit": 5}, timeout=5).json()
        assert len(page["messages"]) <= 5
        seen += [m["id"] for m in page["messages"]]
        since = page["next"]
        pages += 1
    assert seen == everything
    assert pages == 6
    assert page["next"] is None and page["last"] == 27 and page["oldest"] == 1
    assert page["dropped"] == 0

    # Polling from "last" gives only what came in since.
    assert requests.get(url, params={"since": 27}, timeout=5).json()["messages"] == []
    fresh = send(sandbox).json()["id"]
    later = requests.get(url, params={"since": page["last"]}, timeout=5).json()
    assert [m["id"] for m in later["messages"]] == [fresh]
    assert later["last"] == 28 and later["next"] is None

    # since may be a message id; limit alone starts from the oldest (default limit 100).
    by_id = requests.get(url, params={"since": everything[24], "limit": 2}, timeout=5).json()
    assert [m["id"] for m in by_id["messages"]] == everything[25:27]
    assert by_id["next"] == 27
    first = requests.get(url, params={"limit": 1}, timeout=5).json()
    assert [m["id"] for m in first["messages"]] == everything[:1]
    assert first["next"] == 1
    assert len(sandbox.messages_page(since=0)["messages"]) == 28
    # Without since and limit, the answer is the plain list, as before.
    assert [m["id"] for m in requests.get(url, timeout=5).json()] == [*everything, fresh]


def test_paging_with_dropped_records() -> None:
    with Sandbox(keep=4, report_delay=0) as sb:
        send(sb, "/smsbulk", message(to=numbers(10)))
        page = sb.messages_page(since=2, limit=3)
        assert [m["seq"] for m in page["messages"]] == [7, 8, 9]
        assert (page["next"], page["oldest"], page["dropped"]) == (9, 7, 6)
        assert [m["seq"] for m in sb.messages_page(since=9)["messages"]] == [10]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_PAGE_SIZE + 1)}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"since": "", "limit": "5"}, "since"),
        ({"since": "-1"}, "since"),
        ({"since": "not-an-id"}, "since"),
        ({"since": "99"}, "since"),  # no message has that number yet
        ({"since": "²"}, "since"),
    ],
)
def test_bad_paging_parameters_get_400_naming_them(
    sandbox: Sandbox, query: dict[str, str], parameter: str
) -> None:
    send(sandbox)
    response = requests.get(sandbox.url + "/_sandbox/messages", params=query, timeout=5)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter
    assert parameter in response.json()["error"]


def test_limit_up_to_the_maximum_is_accepted(sandbox: Sandbox) -> None:
    send(sandbox, "/smsbulk", message(to=numbers(3)))
    url = sandbox.url + "/_sandbox/messages"
    page = requests.get(url, params={"limit": MAX_PAGE_SIZE}, timeout=5).json()
    assert len(page["messages"]) == 3
    with pytest.raises(ValueError, match="limit"):
        sandbox.messages_page(limit=0)


def _bytes_kept(recipients: int, text: str) -> int:
    """Memory the sandbox keeps for one bulk request to ``recipients`` numbers."""
    sb = Sandbox(report_delay=0)
    sb.accept("/smsbulk", "json", True, *_bulk(3, text))  # warm up
    body, ok = _bulk(recipients, text)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = sb.accept("/smsbulk", "json", True, body, ok)
        del items  # the answer is not kept
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _bulk(recipients: int, text: str) -> tuple[dict[str, Any], Any]:
    body = {"from": "DjangoMitto", "to": numbers(recipients), "text": text}
    return body, validate(body, True)


def test_a_bulk_body_is_stored_once(sandbox: Sandbox) -> None:
    send(sandbox, "/smsbulk", message(to=numbers(3), reference="spring"))
    records = sandbox.messages
    assert records[0]["body"] is records[1]["body"] is records[2]["body"]
    assert all(r["body"]["to"] == numbers(3) and r["reference"] == "spring" for r in records)

    # Each recipient costs a small record (id, time, status, a reference to the shared part):
    # about 300 bytes on CPython 3.11, where a copy of every shared field per recipient (the
    # sandbox before it shared them) cost about 700. The text is kept once: a text 600
    # characters longer costs 600-odd bytes for the request, not 1.2 MB (600 per recipient);
    # the allocator's own noise is some kilobytes either way, more on some Python versions.
    short = _bytes_kept(2000, "Hi")
    long = _bytes_kept(2000, "Hi" + "x" * 600)
    assert short / 2000 < 450, short / 2000
    assert abs(long - short) < 50_000, (short, long)


def test_cli_keep() -> None:
    from django_mitto.sandbox.__main__ import build_parser, main

    assert build_parser().parse_args([]).keep == DEFAULT_KEEP
    assert main(["--keep", "0", "--port", "0"]) == 2
    process, url = _start_cli("--quiet", "--keep", "2")
    try:
        send_to = {"X-Mitto-API-Key": KEY}
        body = message(to=numbers(3))
        assert requests.post(url + "/smsbulk", json=body, headers=send_to, timeout=5).ok
        listed = requests.get(url + "/_sandbox/messages", timeout=5).json()
        assert [m["to"] for m in listed] == numbers(3)[1:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
