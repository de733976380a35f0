"""The whole round trip over loopback, no mocks: Django (live server) <-> the Mitto sandbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from django_mitto import services
from django_mitto.models import DeliveryReport, Message

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


def wait_for_status(message: Message, *statuses: str, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message.refresh_from_db()
        if message.status in statuses or time.monotonic() > deadline:
            return message
        time.sleep(0.05)


# Every round trip runs against both documented reply shapes ("id": "..." and "ids": ["..."])
# and both response formats: the id must be read in each, or no report could ever match.
@pytest.fixture(params=["id", "ids"])
def reply_shape(request) -> str:
    return request.param


@pytest.fixture(params=["json", "xml"])
def response_format(request, settings) -> str:
    settings.MITTO_RESPONSE_FORMAT = request.param
    return request.param


@pytest.fixture
def mitto_sandbox_options(reply_shape, response_format) -> dict:
    return {"reply_shape": reply_shape}


@pytest.fixture
def account_callback(mitto_sandbox, live_server, settings):
    """Reports go to the account-wide URL (the secret in the path)."""
    settings.MITTO_CALLBACK_BASE_URL = ""
    mitto_sandbox.callback_url = (
        f"{live_server.url}/mitto/callback/{settings.MITTO_CALLBACK_SECRET}/"
    )
    return mitto_sandbox


@pytest.fixture
def per_message_callback(mitto_sandbox, live_server, settings):
    """Each message carries its own signed callback URL."""
    settings.MITTO_CALLBACK_BASE_URL = live_server.url
    mitto_sandbox.callback_url = None
    return mitto_sandbox


@pytest.mark.parametrize(
    ("recipient", "final"),
    [
        ("+41791234561", "delivered"),
        ("+41791234567", "undelivered"),
        ("+41791234568", "expired"),
        ("+41791234569", "rejected"),
    ],
)
def test_saved_message_ends_with_the_reported_status(
    account_callback, recipient, final, reply_shape, response_format
) -> None:
    message = Message.objects.create(recipient=recipient, text="Your code is 1234")
    message = wait_for_status(message, final)
    (received,) = account_callback.messages
    assert received["format"] == response_format
    assert message.provider_id == received["id"]
    assert message.error == ""
    assert message.status == final
    assert message.delivery_status == final
    assert message.mcc == "228" and message.mnc == "01"
    report = DeliveryReport.objects.get()
    assert report.message_id == message.pk
    assert report.outcome == "applied"


def test_per_message_callback_url_names_the_message(per_message_callback) -> None:
    message = services.send_sms("+41791234561", "Hi")
    message = wait_for_status(message, "delivered")
    assert message.status == "delivered"
    (record,) = per_message_callback.messages
    assert f"/mitto/callback/m{message.pk}." in record["callback_url"]


def test_get_callbacks_work_too(account_callback) -> None:
    account_callback.callback_method = "GET"
    message = services.send_sms("+41791234567", "Hi")
    message = wait_for_status(message, "undelivered")
    assert message.status == "undelivered"
    assert DeliveryReport.objects.get().method == "GET"


def test_intermediate_and_duplicate_reports_settle_on_the_final_status(account_callback) -> None:
    account_callback.intermediate = True
    account_callback.duplicate_reports = True
    # Reports that arrive before the answer is recorded wait as pending and are applied in
    # another order (tested apart); here the id is known first.
    account_callback.report_delay = 1.0
    message = services.send_sms("+41791234561", "Hi")
    account_callback.wait_for_reports(3)
    message = wait_for_status(message, "delivered")
    outcomes = sorted(DeliveryReport.objects.values_list("outcome", flat=True))
    assert outcomes == ["applied", "applied", "duplicate"]
    assert message.status == "delivered"


def test_reordered_reports_never_move_a_final_status_back(account_callback) -> None:
    account_callback.reorder_reports = True
    # With no delay the final report can arrive before the answer is recorded: it waits as
    # pending, the later "buffered" then applies to the still "sent" message and the final
    # one after it (both applied, in the order applied). Here the id is known first.
    account_callback.report_delay = 1.0
    message = services.send_sms("+41791234561", "Hi")
    account_callback.wait_for_reports(2)
    message.refresh_from_db()
    assert message.status == "delivered"
    assert sorted(DeliveryReport.objects.values_list("outcome", flat=True)) == ["applied", "stale"]


def test_bulk_send_gets_a_report_per_recipient(account_callback) -> None:
    numbers = ["+41791234561", "+41791234567", "+41791234568", "+41791234569"]
    batch = services.send_bulk(numbers, "Sale today")
    account_callback.wait_for_reports(4)
    statuses = dict(batch.messages.values_list("recipient", "status"))
    assert statuses == dict(zip(numbers, ["delivered", "undelivered", "expired", "rejected"]))
    ids = {"+" + m["to"]: m["id"] for m in account_callback.messages}
    assert dict(batch.messages.values_list("recipient", "provider_id")) == ids
    assert set(DeliveryReport.objects.values_list("outcome", flat=True)) == {"applied"}


def test_wrong_api_key_ends_failed_with_a_clear_error(account_callback, settings) -> None:
    settings.MITTO_API_KEY = "not-the-key"
    message = services.send_sms("+41791234561", "Hi")
    message.refresh_from_db()
    assert message.status == "failed"
    assert "HTTP 401" in message.error and "MITTO_API_KEY" in message.error
    assert account_callback.messages == []


def test_timeout_after_the_request_was_read_ends_unknown_and_is_never_resent(
    account_callback, settings
) -> None:
    settings.MITTO_TIMEOUT = 0.3
    account_callback.add_fault("timeout", seconds=1.0, times=1)
    message = services.send_sms("+41791234561", "Hi")
    message.refresh_from_db()
    assert message.status == "unknown"
    services.send_message(message.pk)
    time.sleep(1.2)
    message.refresh_from_db()
    assert message.attempts == 1
    assert len(account_callback.messages) == 1  # Mitto got it once; no second request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.demo
def test_demo_runs_the_round_trip_and_stops_on_ctrl_c(tmp_path) -> None:
    """The demo command's servers: the admin answers, an order's SMS turns delivered, Ctrl-C
    stops everything."""
    port, sandbox_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "example_project" / "demo.py"), "--port", str(port),
             "--sandbox-port", str(sandbox_port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        output = log.read_text()
        assert f"http://127.0.0.1:{port}/admin/" in output, output
        assert "password:" in output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as response:
            assert response.status == 200
            assert b"Django" in response.read()

        # Saving an order creates its confirmation SMS; the sandbox reports it to the demo's server.
        shell_env = {
            **env,
            "MITTO_API_URL": f"http://127.0.0.1:{sandbox_port}",
            "MITTO_CALLBACK_BASE_URL": f"http://127.0.0.1:{port}",
        }

        def shell(code: str) -> str:
            return subprocess.run(
                [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
                cwd=ROOT / "example_project", env=shell_env, capture_output=True, text=True,
                check=True, timeout=60,
            ).stdout.strip().splitlines()[-1]  # fmt: skip

        order_pk = shell(
            "from orders.models import Order; "
            "print(Order.objects.create(customer='Ada', phone='+41791234561', total=42).pk)"
        )
        status = ""
        deadline = time.monotonic() + 20
        while status != "delivered" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = shell(
                f"from orders.models import Order; print(Order.objects.get(pk={order_pk}).confirmation.status)"
            )
        assert status == "delivered"

        process.send_signal(signal.SIGINT)
        # The demo gives its servers ten seconds to stop, then kills them: a loaded machine
        # may need all of it.
        process.wait(timeout=40)
        assert not port_open(port)
        assert not port_open(sandbox_port)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
