"""The admin side of conversion tracking and usage: the action, the dashboard card, the page."""

from __future__ import annotations

import csv
import datetime
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from django_mitto import services
from django_mitto.models import Message, Status

CHANGELIST_URL = "/admin/django_mitto/message/"
DASHBOARD_URL = "/admin/django_mitto/batch/dashboard/"
USAGE_URL = "/admin/django_mitto/batch/usage/"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
LONG_TEXT = "x" * 200  # two parts


def run_action(client: Any, selected: list[Message]) -> Any:
    data = {
        "action": "mark_converted",
        ACTION_CHECKBOX_NAME: [m.pk for m in selected],
        "index": 0,
    }
    return client.post(CHANGELIST_URL, data, follow=True)


def flash(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def viewer(client: Any, django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="django_mitto", codename="view_message")
    )
    client.force_login(user)
    return client


def sent(*numbers: str, text: str = "Hi", test: bool = False) -> list[Message]:
    """Messages sent through the sandbox (so Mitto knows their ids)."""
    out = []
    for number in numbers:
        message = services.send_sms(number, text, test=test)
        message.refresh_from_db()
        assert message.provider_id
        out.append(message)
    return out


# -- the action ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_action_marks_messages_and_says_what_it_skipped(
    mitto_sandbox, admin_client, make_message
) -> None:
    first, second = sent("+41791234567", "+41791234568")
    services.mark_converted(second)
    never_sent = make_message(status=Status.FAILED)
    response = run_action(admin_client, [first, second, never_sent])
    assert flash(response) == [
        "1 message was marked as converted.",
        "Skipped: 1 was already marked; 1 has no Mitto id (never accepted by Mitto).",
    ]
    first.refresh_from_db()
    assert first.converted_at is not None
    assert {m["id"]: bool(m.get("converted_at")) for m in mitto_sandbox.messages} == {
        first.provider_id: True,
        second.provider_id: True,
    }


@pytest.mark.django_db(transaction=True)
def test_action_reports_ids_mitto_does_not_know(mitto_sandbox, admin_client, make_message) -> None:
    stranger = make_message(provider_id="069d0e82-a437-47bc-b158-0f4065e83fce")
    response = run_action(admin_client, [stranger])
    assert flash(response) == [
        "Mitto knows no message with the id 069d0e82-a437-47bc-b158-0f4065e83fce."
    ]
    stranger.refresh_from_db()
    assert stranger.converted_at is None


@pytest.mark.django_db(transaction=True)
def test_action_stops_when_the_feature_is_off(mitto_sandbox, admin_client) -> None:
    selected = sent("+41791234567", "+41791234568")
    mitto_sandbox.conversion_enabled = False
    response = run_action(admin_client, selected)
    (message,) = flash(response)
    assert message.startswith("Stopped: Mitto refused to mark message")
    assert "account manager" in message
    assert not Message.objects.filter(converted_at__isnull=False).exists()


@pytest.mark.django_db
def test_view_only_user_cannot_mark_as_converted(viewer, make_message) -> None:
    message = make_message(provider_id="069d0e82-a437-47bc-b158-0f4065e83fce")
    response = viewer.get(CHANGELIST_URL)
    actions = [name for name, _label in response.context["action_form"].fields["action"].choices]
    assert "mark_converted" not in actions
    run_action(viewer, [message])
    message.refresh_from_db()
    assert message.converted_at is None


# -- the dashboard -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_shows_the_conversion_rate(admin_client, make_message) -> None:
    now = timezone.now()
    for n in range(4):
        message = make_message(status=Status.DELIVERED, provider_id=f"id-{n}")
        if n == 0:
            Message.objects.filter(pk=message.pk).update(converted_at=now)
    make_message(status=Status.UNDELIVERED, provider_id="id-9")
    response = admin_client.get(DASHBOARD_URL)
    assert response.context["dashboard"].converted == 1
    page = response.content.decode()
    assert '<dd id="mitto-conversion-rate">25' in page
    assert '<dd class="mitto-conversion-note">1 converted of 4 delivered</dd>' in page
    assert f'href="{USAGE_URL}"' in page


@pytest.mark.django_db
def test_dashboard_conversion_rate_without_deliveries(admin_client) -> None:
    response = admin_client.get(DASHBOARD_URL)
    assert response.context["dashboard"].conversion_rate is None


# -- the usage page ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_usage_page_shows_mitto_beside_the_local_count(
    mitto_sandbox, admin_client, settings
) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    sent("+41791234567")
    sent("+41791234568", text=LONG_TEXT)
    sent("+4915112345678")
    sent("+4915112345679", test=True)
    sent("+41791234569")
    mitto_sandbox.reset()
    sent("+41791234560")
    sent("+4915112345670")

    response = admin_client.get(USAGE_URL)
    assert response.status_code == 200
    rows = {row.country: row for row in response.context["report"].rows}
    assert (rows["CHE"].mitto_messages, rows["CHE"].local_messages) == (1, 4)
    page = response.content.decode()
    assert '<tr class="mitto-differs" data-country="CHE">' in page
    assert '<tr class="mitto-differs" data-country="DEU">' in page
    assert "-3" in page  # CHE: 1 at Mitto, 4 here


@pytest.mark.django_db(transaction=True)
def test_usage_page_agrees_when_everything_reached_mitto(
    mitto_sandbox, admin_client, settings
) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    sent("+41791234567")
    sent("+41791234568", text=LONG_TEXT)
    response = admin_client.get(USAGE_URL, {"start": TODAY.isoformat(), "end": TODAY.isoformat()})
    page = response.content.decode()
    assert '<tr class="" data-country="CHE">' in page
    assert "mitto-differs" not in page
    assert "0.1500" in page  # three parts at the sandbox's 0.05


@pytest.mark.django_db(transaction=True)
def test_usage_page_shows_the_local_count_when_mitto_cannot_be_asked(
    mitto_sandbox, admin_client, settings
) -> None:
    settings.MITTO_ACCOUNT_NAME = ""
    sent("+41791234567")
    response = admin_client.get(USAGE_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="mitto-usage-error"' in page and "MITTO_ACCOUNT_NAME" in page
    (row,) = response.context["report"].rows
    assert (row.country, row.mitto_messages, row.local_messages) == ("CHE", None, 1)
    assert settings.MITTO_API_KEY not in page


@pytest.mark.django_db
def test_usage_page_names_the_wrong_date(admin_client) -> None:
    response = admin_client.get(USAGE_URL, {"start": "2026-02-10", "end": "2026-02-01"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"end": ["The end is before the start."]}
    assert response.context["report"] is None
    response = admin_client.get(USAGE_URL, {"start": "tomorrow", "end": "2026-02-01"})
    assert "start" in response.context["form"].errors
    response = admin_client.get(USAGE_URL, {"start": "2024-01-01", "end": "2026-02-01"})
    assert response.context["form"].errors == {"end": ["Choose at most 366 days."]}


@pytest.mark.django_db
def test_usage_page_needs_view_permission_on_messages(client, django_user_model) -> None:
    user = django_user_model.objects.create_user("batches", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_batch"))
    client.force_login(user)
    assert client.get(USAGE_URL).status_code == 403
    client.logout()
    assert client.get(USAGE_URL).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_view_only_staff_can_see_usage(viewer, mitto_sandbox, settings) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    assert viewer.get(USAGE_URL).status_code == 200


def test_usage_url_name() -> None:
    assert reverse("admin:django_mitto_usage") == USAGE_URL


# -- manage.py mitto_usage -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_mitto_usage_prints_a_table_with_the_differences(mitto_sandbox, settings) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    sent("+41791234567")
    sent("+41791234568", text=LONG_TEXT)
    mitto_sandbox.reset()
    sent("+4915112345678")
    out = StringIO()
    call_command("mitto_usage", "--start", TODAY.isoformat(), stdout=out, no_color=True)
    lines = out.getvalue().splitlines()
    assert (
        lines[0]
        == f"Usage from {TODAY.isoformat()} to {TODAY.isoformat()} (UTC days, both included)"
    )
    assert lines[1].split() == [
        "Country", "Mitto", "messages", "Mitto", "cost", "Local", "messages", "Local", "parts",
        "Difference",
    ]  # fmt: skip
    assert lines[3].split() == ["CHE", "0", "-", "2", "3", "-2", "(differs)"]
    assert lines[4].split() == ["DEU", "1", "0.0500", "1", "1", "none"]
    assert lines[6].split() == ["Total", "1", "0.0500", "3", "4"]
    assert lines[7] == "Mitto's count differs from the local one for: CHE."


@pytest.mark.django_db(transaction=True)
def test_mitto_usage_csv(mitto_sandbox) -> None:
    sent("+41791234567")
    out = StringIO()
    call_command(
        "mitto_usage",
        "--csv",
        "--account-name",
        "Shop AG",
        "--start",
        TODAY.strftime("%Y%m%d"),
        "--end",
        TODAY.isoformat(),
        stdout=out,
    )
    rows = list(csv.reader(StringIO(out.getvalue())))
    assert rows == [
        [
            "country",
            "mitto_messages",
            "mitto_cost",
            "local_messages",
            "local_parts",
            "difference",
            "matches",
        ],
        ["CHE", "1", "0.0500", "1", "1", "0", "yes"],
    ]
    body = mitto_sandbox.messages  # the usage call is not a message
    assert len(body) == 1


@pytest.mark.django_db(transaction=True)
def test_mitto_usage_errors_name_the_problem(mitto_sandbox, settings) -> None:
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    with pytest.raises(CommandError, match="--start: 'soon' is not a date"):
        call_command("mitto_usage", "--start", "soon", stdout=StringIO())
    with pytest.raises(CommandError, match="end date is before the start"):
        call_command(
            "mitto_usage", "--start", "2026-02-10", "--end", "2026-02-01", stdout=StringIO()
        )
    settings.MITTO_API_KEY = "wrong-key-77"
    with pytest.raises(CommandError, match="HTTP 401") as caught:
        call_command("mitto_usage", stdout=StringIO())
    assert "wrong-key-77" not in str(caught.value)


# -- in the browser ------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_usage_page_in_the_browser(page, live_server, admin_user, mitto_sandbox, settings) -> None:
    from tests.browser import admin_login, screenshot

    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    sent("+41791234567")
    sent("+41791234568", text=LONG_TEXT)
    mitto_sandbox.reset()
    sent("+4915112345678")
    admin_login(page, live_server.url, "admin", "password")
    # From the dashboard, follow the link.
    page.goto(live_server.url + DASHBOARD_URL)
    page.click("#mitto-usage-link")
    page.wait_for_url(f"**{USAGE_URL}")
    assert page.locator("h1").inner_text() == "Usage and cost"
    differing = page.locator("#mitto-usage-table tbody tr.mitto-differs")
    assert differing.count() == 1
    assert differing.first.get_attribute("data-country") == "CHE"
    background = differing.first.locator("td").first.evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    assert background == "rgb(255, 243, 205)"
    cells = page.locator('#mitto-usage-table tr[data-country="DEU"] td').all_inner_texts()
    assert cells == ["1", "0.0500", "1", "1", "none"]
    screenshot(page, "admin-usage")
    # A period the other way round: the field is named, nothing else breaks.
    page.fill("#id_start", TODAY.isoformat())
    page.fill("#id_end", (TODAY - datetime.timedelta(days=3)).isoformat())
    page.click("input[type=submit][value=Show]")
    assert page.locator("#error-end").inner_text() == "The end is before the start."
    assert page.locator("#mitto-usage-table").count() == 0
    screenshot(page, "admin-usage-wrong-period")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_mark_as_converted_in_the_browser(page, live_server, admin_user, mitto_sandbox) -> None:
    from tests.browser import admin_login, screenshot

    converted, other = sent("+41791234567", "+41791234568")
    Message.objects.filter(pk__in=[converted.pk, other.pk]).update(status=Message.Status.DELIVERED)
    admin_login(page, live_server.url, "admin", "password")
    page.goto(live_server.url + CHANGELIST_URL)
    page.check(f'input[name="_selected_action"][value="{converted.pk}"]')
    page.select_option('select[name="action"]', "mark_converted")
    page.click('button[name="index"]')
    page.wait_for_load_state()
    assert "converted" in page.locator(".messagelist").inner_text().lower()
    converted.refresh_from_db()
    other.refresh_from_db()
    assert converted.converted_at is not None and other.converted_at is None
    # Mitto was told about that message only.
    told = [record["id"] for record in mitto_sandbox.messages if record.get("converted_at")]
    assert told == [converted.provider_id]
    page.goto(live_server.url + DASHBOARD_URL)
    assert page.locator("#mitto-conversion-rate").inner_text() == "50.0%"
    screenshot(page, "admin-conversion-rate")
