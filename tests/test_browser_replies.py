"""Opt-outs and replies in the admin, in a real headless Chromium.

Import a CSV file of opt-outs and find them in the list; then a customer answers a message
(the sandbox pushes the reply to the live server's inbound URL), the operator opens the
conversation, answers from the page, and the answer reaches the sandbox. A STOP reply then
opts the number out, and the conversation says so.

Screenshots go to test-artifacts/screenshots/replies-*.png.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_mitto import services
from django_mitto.models import InboundMessage, Message, OptOut, Status
from tests.browser import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

USERNAME = "operator"
PASSWORD = "a-long-and-known-password"
SECRET = "inbound-secret"


def sandbox_reply(sandbox_url: str, sender: str, text: str) -> dict[str, Any]:
    request = urllib.request.Request(
        sandbox_url + "/_sandbox/inbound",
        data=json.dumps({"from": sender, "to": "DjangoMitto", "text": text}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_opt_out_import_and_a_conversation_answered_from_the_admin(
    page: Any, live_server: Any, mitto_sandbox: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MITTO_CALLBACK_SECRET = SECRET
    settings.MITTO_DEFAULT_SENDER = "DjangoMitto"
    mitto_sandbox.inbound_url = f"{live_server.url}/mitto/inbound/{SECRET}/"
    get_user_model().objects.create_superuser(USERNAME, "op@example.com", PASSWORD)
    admin_login(page, live_server.url, USERNAME, PASSWORD)

    # Opt-outs: import a CSV file from the list's "Import CSV" button.
    csv_file = tmp_path / "stop-list.csv"
    csv_file.write_text("phone\n+41 79 555 00 01\n0041795550002\nnot a number\n")
    page.goto(f"{live_server.url}/admin/django_mitto/optout/")
    page.click("#mitto-optout-import")
    page.set_input_files("#id_csv_file", str(csv_file))
    page.fill("#id_note", "paper form")
    page.click("input[name=_import]")
    assert "2 opt-outs added, 0 already there." in page.inner_text(".messagelist")
    assert "not a number" in page.inner_text("#mitto-optout-invalid")
    screenshot(page, "replies-import")
    assert sorted(OptOut.objects.values_list("number", flat=True)) == [
        "+41795550001",
        "+41795550002",
    ]
    page.goto(f"{live_server.url}/admin/django_mitto/optout/?q=0041+79+555+00+02")
    assert page.locator("#result_list tbody tr").count() == 1

    # A customer answers a message; the reply arrives through the sandbox.
    sent = services.send_sms("+41795551231", "Your table is booked for 8 pm")
    delivery = sandbox_reply(mitto_sandbox.url, "+41795551231", "Can we come at 9?")
    assert delivery["http_status"] == 200
    page.goto(f"{live_server.url}/admin/django_mitto/inboundmessage/")
    assert "Can we come at 9?" in page.inner_text("#result_list")
    page.click("#result_list a.mitto-thread-link")
    page.wait_for_url("**/inboundmessage/thread/**")  # count() does not wait for the page
    thread = page.locator("#mitto-thread li")
    assert thread.count() == 2
    assert "Your table is booked" in thread.nth(0).inner_text()
    assert "Can we come at 9?" in thread.nth(1).inner_text()
    assert InboundMessage.objects.get().in_reply_to == sent

    # The operator answers from the page.
    assert page.input_value("#id_sender") == "DjangoMitto"
    page.fill("#id_text", "Yes, 9 pm is fine")
    page.click("input[name=_reply]")
    assert "Reply sent to +41795551231." in page.inner_text(".messagelist")
    assert page.locator("#mitto-thread li").count() == 3
    assert "Yes, 9 pm is fine" in page.locator("#mitto-thread li").nth(2).inner_text()
    screenshot(page, "replies-thread")
    answer = Message.objects.order_by("pk").last()
    deadline = time.monotonic() + 10
    while answer.status != Status.SENT and time.monotonic() < deadline:
        time.sleep(0.1)
        answer.refresh_from_db()
    assert answer.status in (Status.SENT, Status.DELIVERED)
    assert [m["to"] for m in mitto_sandbox.messages] == ["41795551231", "41795551231"]

    # STOP opts the number out; the page says so and refuses the next answer.
    sandbox_reply(mitto_sandbox.url, "+41795551231", "STOP")
    page.reload()
    assert "This number opted out" in page.inner_text("#mitto-thread-opted-out")
    page.fill("#id_text", "One more thing")
    page.click("input[name=_reply]")
    assert "opted out" in page.inner_text(".errornote, .errorlist")
    screenshot(page, "replies-opted-out")
    assert Message.objects.count() == 2
