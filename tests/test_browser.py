"""One operator's afternoon in the admin, in a real headless Chromium.

Log in, compose one SMS (the live counter follows the text), send it and watch it become
"Delivered", send a batch of pasted numbers (preview, then confirm) and watch every message
settle, then read the dashboard. Mitto is the local sandbox and its delivery reports come back
to the live server over loopback, so each status shown was reached the way it is in production.

Screenshots of every step go to test-artifacts/screenshots/journey-*.png.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from django_mitto import encoding, validators
from django_mitto.models import Batch, DeliveryReport, Encoding, Message, Status
from tests.browser import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

USERNAME = "operator"
PASSWORD = "a-long-and-known-password"

#: How long a status may take to come back from the sandbox before the test gives up.
SETTLE_TIMEOUT = 15.0

#: The one SMS: the recipient ends in 1, so the sandbox reports it delivered.
RECIPIENT = "+41 79 555 12 31"
RECIPIENT_E164 = "+41795551231"
SHORT_TEXT = "Hi from django-mitto 👋 see you at 10"
MORE_TEXT = " and bring the blue folder, please"

#: The bulk text: GSM, long enough for two parts.
BULK_TEXT = (
    "Our shop on Main Street opens at 9 tomorrow for the summer sale: up to 50% off "
    "on shoes, bags and jackets. Show this message at the till for a free coffee. "
    "See you there!"
)
INVALID_NUMBERS = ("hello", "12345", "+41 79 123")

#: What the sandbox finally reports, by the recipient's last digit.
SANDBOX_RULE = {
    **{digit: Status.DELIVERED for digit in "0123456"},
    "7": Status.UNDELIVERED,
    "8": Status.EXPIRED,
    "9": Status.REJECTED,
}

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float = SETTLE_TIMEOUT) -> T:
    """Call ``read`` until ``done`` accepts its value or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def counter_figures(page: Any) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('#id_text_counter [data-field]')]
                .map((node) => [node.dataset.field, node.textContent.trim()]))"""
    )


def bulk_numbers() -> tuple[str, list[str], str]:
    """50 pasted lines: 46 distinct valid numbers, 1 of them again, 3 invalid entries.

    Returns the pasted text, the 46 numbers in E.164 and the one given twice.
    """
    valid = [f"+41791234{500 + i:03d}" for i in range(46)]
    lines = []
    for i, number in enumerate(valid):
        # Every fifth number written the way people write them, with spaces.
        lines.append(
            f"{number[:3]} {number[3:5]} {number[5:8]} {number[8:10]} {number[10:]}"
            if i % 5 == 0
            else number
        )
    duplicate = valid[7]
    lines.insert(20, "00" + duplicate[1:3] + " " + duplicate[3:])
    for position, raw in zip((3, 25, 40), INVALID_NUMBERS):
        lines.insert(position, raw)
    assert len(lines) == 50
    return "\n".join(lines) + "\n", valid, duplicate


def refusal(raw: str) -> str:
    """Why the validators refuse ``raw``: the reason the preview should give."""
    with pytest.raises(ValidationError) as caught:
        validators.normalize_recipient(raw)
    return " ".join(caught.value.messages)


def status_counts(page: Any) -> dict[str, int]:
    """The batch page's table of messages per status, by status label."""
    rows = page.evaluate(
        """() => [...document.querySelectorAll('.mitto-status-table tbody tr')].map((row) => [
            row.querySelector('th').textContent.trim(),
            row.querySelector('td').textContent.trim()])"""
    )
    return {label: int(count.replace(",", "")) for label, count in rows}


def test_from_one_sms_to_a_batch_to_the_dashboard(page, live_server, mitto_sandbox, settings):
    from playwright.sync_api import expect

    # Reports come back at once, each message to its own signed callback URL.
    settings.MITTO_CALLBACK_BASE_URL = live_server.url
    mitto_sandbox.callback_url = None
    mitto_sandbox.report_delay = 0
    get_user_model().objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)

    # 1. Log in.
    admin_login(page, live_server.url, USERNAME, PASSWORD)
    expect(page.locator("#user-tools")).to_contain_text(USERNAME)
    screenshot(page, "journey-01-login")

    # 2. Messages > Add: the counter follows what is typed.
    page.click("tr.model-message a.addlink")
    page.wait_for_url(re.compile(r".*/admin/django_mitto/message/add/$"))
    page.fill("#id_recipient", RECIPIENT)
    page.locator("#id_text").press_sequentially(SHORT_TEXT)
    info = encoding.analyze(SHORT_TEXT)
    assert info.encoding == encoding.UNICODE and info.parts == 1
    counter = page.locator("#id_text_counter")
    expect(counter.locator("[data-field=encoding]")).to_have_text("Unicode (Auto)")
    expect(counter.locator("[data-field=characters]")).to_have_text(str(info.characters))
    expect(counter.locator("[data-field=units]")).to_have_text(str(info.units))
    expect(counter.locator("[data-field=parts]")).to_have_text(str(info.parts))
    expect(counter.locator("[data-field=remaining]")).to_have_text(str(info.remaining))
    expect(counter).to_have_class(re.compile(r"\bmitto-counter--unicode\b"))
    # The emoji, the one character outside GSM, is picked out.
    expect(counter.locator("[data-field=nongsm-box]")).to_be_visible()
    marks = counter.locator("[data-field=nongsm] mark")
    expect(marks).to_have_text(list(info.non_gsm))
    assert list(info.non_gsm) == ["👋"]
    background = marks.first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")
    screenshot(page, "journey-02-compose-unicode")

    long_text = SHORT_TEXT
    while encoding.analyze(long_text).parts < 2:
        long_text += MORE_TEXT
    long_info = encoding.analyze(long_text)
    assert long_info.parts == 2
    page.fill("#id_text", long_text)
    expect(counter.locator("[data-field=parts]")).to_have_text("2")
    expect(counter.locator("[data-field=characters]")).to_have_text(str(long_info.characters))
    expect(counter.locator("[data-field=remaining]")).to_have_text(str(long_info.remaining))
    expect(counter).to_have_class(re.compile(r"\bmitto-counter--multipart\b"))
    assert counter_figures(page)["encoding"] == "Unicode (Auto)"
    screenshot(page, "journey-03-compose-two-parts")

    # 3. Send, then follow the message until its delivery report is in.
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r".*/admin/django_mitto/message/\d+/change/$"))
    expect(page.locator(".messagelist")).to_contain_text(
        f"The message to {RECIPIENT_E164} was queued for sending"
    )
    badge = page.locator(".field-status_badge .readonly")
    # Sent, or already delivered: the report may have come back before the page was drawn.
    expect(badge).to_have_text(re.compile(r"^\s*(Queued|Sending|Sent|Delivered)\s*$"))
    screenshot(page, "journey-04-message-sent")

    def delivered_on_the_page() -> bool:
        page.reload()
        return badge.inner_text().strip() == "Delivered"

    assert poll(delivered_on_the_page, bool), f"status still {badge.inner_text()!r}"
    report_row = page.locator("#mitto-timeline tr.mitto-timeline__report")
    expect(report_row).to_have_count(1)
    expect(report_row).to_contain_text("Delivery report")
    expect(report_row.locator(".mitto-status--delivered")).to_have_text("Delivered")
    expect(page.locator(".fieldBox.field-segments .readonly")).to_have_text("2")
    screenshot(page, "journey-05-message-delivered")

    message = Message.objects.get()
    assert (message.recipient, message.text, message.status) == (
        RECIPIENT_E164,
        long_text,
        Status.DELIVERED,
    )
    assert message.segments == 2
    assert DeliveryReport.objects.filter(message=message).count() == 1

    # 4. Send in bulk: paste, preview, confirm, follow the batch.
    pasted, valid, duplicate = bulk_numbers()
    bulk_info = encoding.analyze(BULK_TEXT)
    assert bulk_info.encoding == encoding.GSM and bulk_info.parts == 2
    page.goto(f"{live_server.url}/admin/")
    page.click("tr.model-batch a.addlink")  # "Add batch" is the bulk send page
    page.wait_for_url(re.compile(r".*/admin/django_mitto/batch/send/$"))
    page.fill("#id_numbers", pasted)
    page.fill("#id_text", BULK_TEXT)
    page.click("input[name=_preview]")
    expect(page.locator("#mitto-valid-count")).to_have_text(str(len(valid)))
    expect(page.locator("#mitto-invalid-count")).to_have_text(str(len(INVALID_NUMBERS)))
    expect(page.locator("#mitto-duplicate-count")).to_have_text("1")
    expect(page.locator("#mitto-encoding")).to_have_text(str(Encoding(bulk_info.encoding).label))
    expect(page.locator("#mitto-parts")).to_have_text(str(bulk_info.parts))
    expect(page.locator("#mitto-total-parts")).to_have_text(str(bulk_info.parts * len(valid)))
    invalid_rows = page.locator("#mitto-invalid tbody tr")
    expect(invalid_rows.locator("code")).to_have_text(list(INVALID_NUMBERS))
    expect(invalid_rows.locator(".mitto-reason")).to_have_text(
        [refusal(raw) for raw in INVALID_NUMBERS]
    )
    expect(page.locator("#mitto-duplicates tbody tr code").nth(1)).to_have_text(duplicate)
    send = page.locator("input[name=_send]")
    expect(send).to_have_value(f"Send {len(valid)} messages")
    screenshot(page, "journey-06-bulk-preview")

    send.click()
    page.wait_for_url(re.compile(r".*/admin/django_mitto/batch/\d+/change/$"))
    expect(page.locator(".messagelist")).to_contain_text(
        f"{len(valid)} messages to send, {bulk_info.parts * len(valid)} parts."
    )
    screenshot(page, "journey-07-batch-sent")

    batch = Batch.objects.get()
    expected = Counter(SANDBOX_RULE[number[-1]] for number in valid)
    expected_counts = {str(status.label): expected.get(status, 0) for status in Status}
    assert set(expected) == {
        Status.DELIVERED,
        Status.UNDELIVERED,
        Status.EXPIRED,
        Status.REJECTED,
    }
    # The page refreshes itself every few seconds; reloading without that is quicker.
    batch_url = f"{live_server.url}/admin/django_mitto/batch/{batch.pk}/change/"

    def counts_on_the_page() -> dict[str, int]:
        page.goto(batch_url + "?refresh=0")
        return status_counts(page)

    counts = poll(counts_on_the_page, lambda counts: counts == expected_counts)
    assert counts == expected_counts
    page.goto(batch_url)  # as a person would see it: settled, so no longer refreshing
    expect(page.locator(".mitto-status-table tfoot td.mitto-num")).to_have_text(str(len(valid)))
    progress = page.locator(".mitto-batch-progress .mitto-figure")
    expect(progress.nth(0).locator("dd").first).to_have_text("100.0%")
    expect(progress.nth(0)).to_contain_text(f"{len(valid)} of {len(valid)} messages")
    expect(progress.nth(1).locator("dd").first).to_have_text(
        f"{100 * expected[Status.DELIVERED] / len(valid):.1f}%"
    )
    expect(progress.nth(1)).to_contain_text(
        f"{expected[Status.DELIVERED]} delivered of {len(valid)} settled"
    )
    expect(page.locator(".mitto-refresh")).to_have_count(0)
    screenshot(page, "journey-08-batch-settled")

    assert sorted(batch.messages.values_list("recipient", flat=True)) == sorted(valid)
    assert len(mitto_sandbox.messages) == 1 + len(valid)

    # A status in the table leads to those messages of the batch.
    page.click(".mitto-status-table a:text-is('Undelivered')")
    page.wait_for_url(re.compile(r".*/admin/django_mitto/message/\?.*"))
    undelivered = sorted(n for n in valid if SANDBOX_RULE[n[-1]] == Status.UNDELIVERED)
    expect(page.locator("#result_list tbody tr")).to_have_count(len(undelivered))
    expect(page.locator("#result_list tbody .mitto-status")).to_have_text(
        ["Undelivered"] * len(undelivered)
    )
    shown = page.locator("#result_list tbody .field-recipient").all_inner_texts()
    assert sorted(shown) == undelivered
    screenshot(page, "journey-09-batch-undelivered")
    page.go_back()

    # 5. The dashboard counts both sends.
    page.click(".object-tools a:text-is('Dashboard')")
    page.wait_for_url(re.compile(r".*/admin/django_mitto/batch/dashboard/$"))
    chart = page.locator("svg.mitto-daily")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150
    assert page.locator("svg.mitto-daily rect.mitto-bar").count() >= 1
    failed = len(valid) - expected[Status.DELIVERED]
    delivered = expected[Status.DELIVERED] + 1  # the batch and the one SMS
    total = len(valid) + 1
    assert Message.objects.count() == total
    expect(page.locator("#mitto-total")).to_have_text(str(total))
    expect(page.locator("#mitto-in-flight")).to_have_text("0")
    expect(page.locator("#mitto-failed")).to_have_text(str(failed))
    expect(page.locator("#mitto-parts-used")).to_have_text(
        str(long_info.parts + bulk_info.parts * len(valid))
    )
    expect(page.locator("#mitto-delivery-rate")).to_have_text(f"{100 * delivered / total:.1f}%")
    expect(page.locator(".mitto-card-note")).to_have_text(
        f"{delivered} delivered of {total} settled"
    )
    expect(page.locator("svg.mitto-outcomes")).to_be_visible()
    screenshot(page, "journey-10-dashboard")
