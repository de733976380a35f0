"""The dashboard: a fixed handful of queries whatever the table size, inline SVG, right totals."""

from __future__ import annotations

import datetime
import re
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_mitto.admin.dashboard import (
    ACCEPTED_STATUSES,
    STATUS_GROUP,
    Dashboard,
    daily_chart,
    nice_ceiling,
    operator_chart,
)
from django_mitto.models import FINAL_STATUSES, Message, Status

URL = "/admin/django_mitto/batch/dashboard/"

STATUSES = list(Status)
#: 12 operators, so the top 10 leaves two out.
OPERATORS = [("228", "01"), ("228", "02"), ("228", "03"), ("262", "01"), ("262", "02")] + [
    ("208", f"{n:02d}") for n in range(1, 8)
]


def make_messages(count: int, *, offset: int = 0, days: int = 30) -> list[Message]:
    """``count`` messages spread over ``days`` days, every status, 12 operators, 1-3 parts.

    ``created_at`` is auto_now_add, so it is set after the insert with ``bulk_update``.
    """
    today = timezone.localdate()
    rows = []
    for i in range(offset, offset + count):
        # Operator i % 13: every 13th message has no operator (no report named one yet).
        operator = OPERATORS[i % 13] if i % 13 < len(OPERATORS) else ("", "")
        # A skewed spread, so the top 10 has a clear order.
        if i % 3 == 0:
            operator = OPERATORS[0]
        rows.append(
            Message(
                recipient=f"+4179{3_000_000 + i}",
                text="Hello",
                status=STATUSES[i % len(STATUSES)],
                segments=1 + i % 3,
                mcc=operator[0],
                mnc=operator[1],
            )
        )
    created = Message.objects.bulk_create(rows)
    for n, message in enumerate(created):
        day = today - datetime.timedelta(days=(n + offset) % days)
        message.created_at = timezone.make_aware(datetime.datetime.combine(day, datetime.time(12)))
    Message.objects.bulk_update(created, ["created_at"])
    return created


def expected(messages: list[Message]) -> dict[str, Any]:
    statuses = Counter(m.status for m in messages)
    finished = sum(n for s, n in statuses.items() if s in FINAL_STATUSES)
    return {
        "total": len(messages),
        "delivered": statuses[Status.DELIVERED],
        "finished": finished,
        "parts": sum(m.segments for m in messages if m.status in ACCEPTED_STATUSES),
        "groups": Counter(STATUS_GROUP[m.status] for m in messages),
    }


def get(client: Any, url: str = URL) -> tuple[Any, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return response, len(queries)


# -- the numbers ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_reads_everything_with_two_queries(django_assert_num_queries: Any) -> None:
    messages = make_messages(120)
    with django_assert_num_queries(2):
        data = Dashboard.load()
    want = expected(messages)
    assert data.total == want["total"]
    assert data.delivered == want["delivered"]
    assert data.finished == want["finished"]
    assert data.parts_used == want["parts"]
    assert data.delivery_rate == pytest.approx(100 * want["delivered"] / want["finished"])
    assert len(data.days) == 30
    assert data.days[-1].date == timezone.localdate()
    assert sum(d.total for d in data.days) == 120
    for key, n in want["groups"].items():
        assert sum(d.counts[key] for d in data.days) == n


@pytest.mark.django_db
def test_operators_are_the_top_ten_by_count_with_their_delivery_rate() -> None:
    messages = make_messages(260)
    data = Dashboard.load()
    with_operator = [m for m in messages if m.mcc]
    counts = Counter((m.mcc, m.mnc) for m in with_operator)
    assert len(data.operators) == 10
    assert [o.total for o in data.operators] == sorted((n for n in counts.values()), reverse=True)[
        :10
    ]
    top = data.operators[0]
    assert (top.mcc, top.mnc) == ("228", "01")
    mine = [m for m in with_operator if (m.mcc, m.mnc) == ("228", "01")]
    delivered = sum(m.status == Status.DELIVERED for m in mine)
    finished = sum(m.status in FINAL_STATUSES for m in mine)
    assert top.delivered == delivered
    assert top.finished == finished
    assert top.delivery_rate == pytest.approx(100 * delivered / finished)


@pytest.mark.django_db
def test_messages_older_than_the_period_are_left_out() -> None:
    make_messages(10)
    old = make_messages(5, offset=10)
    Message.objects.filter(pk__in=[m.pk for m in old]).update(
        created_at=timezone.now() - datetime.timedelta(days=45)
    )
    assert Dashboard.load().total == 10
    assert Dashboard.load(days=90).total == 15


@pytest.mark.django_db
def test_days_follow_the_current_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: late UTC evening is tomorrow there
    timezone.deactivate()
    today = timezone.localdate()
    (message,) = make_messages(1)
    local_noon = timezone.make_aware(datetime.datetime.combine(today, datetime.time(12)))
    # 13:00 local yesterday is 23:00 UTC the day before yesterday.
    Message.objects.filter(pk=message.pk).update(
        created_at=local_noon - datetime.timedelta(hours=23)
    )
    data = Dashboard.load()
    assert data.days[-2].date == today - datetime.timedelta(days=1)
    assert data.days[-2].total == 1


@pytest.mark.django_db
def test_dashboard_works_without_time_zones(admin_client: Any, settings: Any) -> None:
    settings.USE_TZ = False
    Message.objects.bulk_create([Message(recipient="+41791234561", text="Hi")])
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert response.context["dashboard"].total == 1


def test_axis_tops_are_round() -> None:
    assert nice_ceiling(0) == (4, 1)
    assert nice_ceiling(7) == (8, 2)
    assert nice_ceiling(97) == (100, 25)
    assert nice_ceiling(1234) == (1500, 500)


@pytest.mark.django_db
def test_each_day_is_one_stacked_bar_with_a_tooltip_per_segment() -> None:
    make_messages(90)
    chart = daily_chart(Dashboard.load().days)
    assert len(chart.columns) == 30
    for column in chart.columns:
        heights = [r.height for r in column.rects]
        assert [r.group for r in column.rects] == [
            g for g in ("delivered", "in_flight", "failed") if column.day.counts[g]
        ]
        assert all(r.title for r in column.rects)
        # Stacked: each segment sits on the one below.
        for below, above in zip(column.rects, column.rects[1:], strict=False):
            assert above.y + above.height == pytest.approx(below.y, abs=0.02)
        top_value = int(chart.y_ticks[-1].label.replace(",", ""))
        expected_height = (chart.plot_bottom - chart.plot_top) * column.day.total / top_value
        assert sum(heights) == pytest.approx(expected_height, abs=0.05)


@pytest.mark.django_db
def test_operator_bars_are_as_long_as_their_counts() -> None:
    make_messages(130)
    chart = operator_chart(Dashboard.load().operators)
    lengths = [sum(r.width for r in bar.rects) for bar in chart.bars]
    assert lengths == sorted(lengths, reverse=True)
    ratio = lengths[1] / lengths[0]
    assert ratio == pytest.approx(chart.bars[1].operator.total / chart.bars[0].operator.total, 0.01)


# -- the page ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_queries_do_not_grow_with_the_table(admin_client: Any) -> None:
    make_messages(10)
    small, small_queries = get(admin_client)
    assert small.status_code == 200
    make_messages(490, offset=10)
    large, large_queries = get(admin_client)
    assert large.status_code == 200
    assert small_queries == large_queries
    # Session, user, and the two aggregates.
    assert large_queries == 4


@pytest.mark.django_db
def test_dashboard_page_has_svg_charts_and_correct_totals(admin_client: Any) -> None:
    messages = make_messages(500)
    want = expected(messages)
    response = admin_client.get(URL)
    page = response.content.decode()
    assert page.count('<svg class="mitto-chart') == 3
    assert f'<dd id="mitto-total">{want["total"]}</dd>' in page
    rate = round(100 * want["delivered"] / want["finished"], 1)
    assert f'<dd id="mitto-delivery-rate">{rate}%</dd>' in page
    assert f'<dd id="mitto-parts-used">{want["parts"]:,}</dd>' in page
    assert f'<dd id="mitto-in-flight">{want["groups"]["in_flight"]}</dd>' in page
    assert f'<dd id="mitto-failed">{want["groups"]["failed"]}</dd>' in page
    # Every bar has a tooltip.
    bars = re.findall(r'<rect class="mitto-bar[^"]*"[^>]*>(.*?)</rect>', page)
    assert bars
    assert all(b.startswith("<title>") and b.endswith("</title>") for b in bars)
    # The numbers are in tables too.
    assert 'id="mitto-daily-table"' in page
    assert 'id="mitto-operator-table"' in page
    assert page.count("<tr>") >= 30 + 10
    # Nothing comes from elsewhere and nothing runs.
    # (Not a search for "cdn": the page's random CSRF token may hold those letters.)
    assert not re.search(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//', page)


@pytest.mark.django_db
def test_svg_numbers_are_not_localized(admin_client: Any, settings: Any) -> None:
    settings.USE_THOUSAND_SEPARATOR = True
    settings.LANGUAGE_CODE = "de"
    make_messages(50)
    page = admin_client.get(URL, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    for attr in re.findall(r' (?:x|y|width|height)="([^"]*)"', page):
        assert "," not in attr


@pytest.mark.django_db
def test_empty_dashboard_renders(admin_client: Any) -> None:
    response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<dd id="mitto-total">0</dd>' in page
    assert '<dd id="mitto-delivery-rate">\N{EN DASH}</dd>' in page
    assert "No delivery report named an operator in this period." in page


@pytest.mark.django_db
def test_dashboard_period_can_be_chosen(admin_client: Any) -> None:
    response = admin_client.get(URL + "?days=7")
    assert len(response.context["dashboard"].days) == 7
    assert admin_client.get(URL + "?days=abc").context["days"] == 30
    assert admin_client.get(URL + "?days=100000").context["days"] == 366


# -- permissions ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_view_only_staff_can_view_the_dashboard(client: Any, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_message"))
    client.force_login(user)
    assert client.get(URL).status_code == 200


@pytest.mark.django_db
def test_dashboard_needs_view_permission_on_messages(client: Any, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("batches", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_batch"))
    client.force_login(user)
    assert client.get(URL).status_code == 403
    # ...and the batch list does not offer it.
    changelist = client.get(reverse("admin:django_mitto_batch_changelist"))
    assert URL not in changelist.content.decode()


@pytest.mark.django_db
def test_dashboard_needs_a_staff_login(client: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_dashboard_url_name() -> None:
    assert reverse("admin:django_mitto_dashboard") == URL


# -- in a real browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_in_the_browser(page: Any, live_server: Any, admin_user: Any) -> None:
    from tests.browser import admin_login, screenshot

    make_messages(500)
    admin_login(page, live_server.url, "admin", "password")
    page.goto(live_server.url + URL)
    daily = page.locator("svg.mitto-daily")
    box = daily.bounding_box()
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 150
    assert page.locator("svg.mitto-daily rect.mitto-bar").count() >= 30
    assert page.locator("svg.mitto-operators g.mitto-operator").count() == 10
    # A bar is drawn in its group's colour, from the stylesheet.
    fill = page.locator("svg.mitto-daily rect.mitto-delivered").first.evaluate(
        "el => getComputedStyle(el).fill"
    )
    assert fill == "rgb(0, 158, 115)"
    screenshot(page, "admin-dashboard")
