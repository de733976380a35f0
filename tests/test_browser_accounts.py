"""The admin's account choice, in a real headless Chromium: absent with one Mitto account,
offered (compose and bulk forms) with several, and the message goes through the one chosen.

Screenshots go to test-artifacts/screenshots/accounts-*.png.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_mitto.models import Message, Status
from django_mitto.sandbox import Sandbox
from tests.browser import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

USERNAME = "operator"
PASSWORD = "a-long-and-known-password"


def test_account_choice_appears_only_with_several_accounts(
    page: Any, live_server: Any, settings: Any
) -> None:
    from playwright.sync_api import expect

    with (
        Sandbox(api_key="default-key", report_delay=0) as default,
        Sandbox(api_key="marketing-key", report_delay=0) as marketing,
    ):
        settings.MITTO_API_URL = default.url
        settings.MITTO_API_KEY = "default-key"
        settings.MITTO_CALLBACK_BASE_URL = live_server.url
        default.callback_url = marketing.callback_url = None
        settings.MITTO_ACCOUNTS = {}
        get_user_model().objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)
        admin_login(page, live_server.url, USERNAME, PASSWORD)

        # One account: no choice on the compose form, the bulk form or the changelist.
        page.goto(f"{live_server.url}/admin/django_mitto/message/add/")
        expect(page.locator("#id_recipient")).to_be_visible()
        expect(page.locator("#id_account")).to_have_count(0)
        screenshot(page, "accounts-01-one-account-compose")
        page.goto(f"{live_server.url}/admin/django_mitto/batch/send/")
        expect(page.locator("#id_numbers")).to_be_visible()
        expect(page.locator("#id_account")).to_have_count(0)

        # Two accounts: the choice is there, "default" first and chosen.
        settings.MITTO_ACCOUNTS = {
            "marketing": {
                "API_KEY": "marketing-key",
                "API_URL": marketing.url,
                "DEFAULT_SENDER": "Promo",
            }
        }
        page.goto(f"{live_server.url}/admin/django_mitto/batch/send/")
        expect(page.locator("#id_account")).to_be_visible()
        page.goto(f"{live_server.url}/admin/django_mitto/message/add/")
        account = page.locator("#id_account")
        expect(account).to_be_visible()
        assert account.locator("option").all_inner_texts() == ["default", "marketing"]
        expect(account).to_have_value("default")

        account.select_option("marketing")
        page.fill("#id_recipient", "+41 79 555 12 31")
        page.fill("#id_text", "Spring sale: 20% off until Sunday")
        screenshot(page, "accounts-02-several-accounts-compose")
        page.click("input[name=_save]")
        page.wait_for_url(re.compile(r".*/message/\d+/change/$"))

        deadline = time.monotonic() + 15
        message = Message.objects.get()
        while message.status != Status.DELIVERED and time.monotonic() < deadline:
            time.sleep(0.1)
            message.refresh_from_db()
        assert (message.account, message.sender, message.status) == (
            "marketing",
            "Promo",
            Status.DELIVERED,
        )
        assert default.messages == []
        assert [m["body"]["from"] for m in marketing.messages] == ["Promo"]

        # The changelist offers the account filter.
        page.goto(f"{live_server.url}/admin/django_mitto/message/")
        expect(page.locator("#changelist-filter a[href*='account=marketing']")).to_have_count(1)
        screenshot(page, "accounts-03-changelist-filter")
