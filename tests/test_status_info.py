"""The status table: every status described once, and the admin pages drawn from it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from django_mitto.models import (
    FINAL_STATUSES,
    STATUS_GROUPS,
    STATUS_INFO,
    STATUS_RANK,
    Batch,
    Message,
    Status,
    StatusGroup,
    StatusInfo,
)
from django_mitto.templatetags.mitto_admin import status_css

DASHBOARD_URL = "/admin/django_mitto/batch/dashboard/"
MESSAGES_URL = "/admin/django_mitto/message/"


def change(status: str, **fields: Any) -> StatusInfo:
    """The table's entry for ``status`` with ``fields`` changed."""
    return dataclasses.replace(STATUS_INFO[status], **fields)


def make(status: str, count: int = 1, *, batch: Batch | None = None, segments: int = 1) -> None:
    Message.objects.bulk_create(
        Message(
            recipient=f"+4179{3_000_000 + i}",
            text="Hello",
            status=status,
            segments=segments,
            batch=batch,
        )
        for i in range(count)
    )


# -- the table -----------------------------------------------------------------------------------


def test_every_status_has_an_entry_with_every_attribute() -> None:
    groups = {g.key for g in STATUS_GROUPS}
    assert set(STATUS_INFO) == set(Status), "STATUS_INFO must describe every Status, no more"
    for status in Status:
        info = STATUS_INFO[status]
        for f in dataclasses.fields(StatusInfo):
            value = getattr(info, f.name)
            assert value is not None and value != "", f"{status}: {f.name} is empty"
        assert str(info.label) == str(status.label)
        assert info.group in groups, f"{status}: unknown group {info.group!r}"
        assert isinstance(info.rank, int) and isinstance(info.final, bool)
        assert isinstance(info.parts_used, bool) and isinstance(info.on_its_way, bool)


def test_the_rules_names_are_read_from_the_table() -> None:
    assert {s for s, info in STATUS_INFO.items() if info.final} == FINAL_STATUSES
    assert {s: info.rank for s, info in STATUS_INFO.items()} == STATUS_RANK
    # A final status outranks every other, so no report can move a message out of it.
    assert min(STATUS_RANK[s] for s in FINAL_STATUSES) > max(
        STATUS_RANK[s] for s in Status if s not in FINAL_STATUSES
    )
    assert not any(STATUS_INFO[s].on_its_way for s in FINAL_STATUSES)


def test_each_status_is_in_exactly_one_group_listed_in_declared_order() -> None:
    listed = [s for g in STATUS_GROUPS for s in g.statuses]
    assert sorted(listed) == sorted(Status), "every status in exactly one group"
    order = list(Status)
    for group in STATUS_GROUPS:
        assert [order.index(s) for s in group.statuses] == sorted(
            order.index(s) for s in group.statuses
        )
    assert STATUS_GROUPS[0].statuses == (Status.DELIVERED,)


@pytest.mark.parametrize("colour", ["red", "#12345", "#12345g", "#123456; } body { x: y"])
def test_a_colour_that_is_not_plain_hex_is_refused(colour: str) -> None:
    with pytest.raises(ValueError, match="colour"):
        change(Status.SENT, colour=colour)
    with pytest.raises(ValueError, match="colour"):
        change(Status.SENT, chart_colour=colour)
    with pytest.raises(ValueError, match="colour"):
        StatusGroup("new", "New", colour)


def test_the_style_sheet_colours_every_status_and_group_from_the_table() -> None:
    css = status_css()
    for status, info in STATUS_INFO.items():
        assert f".mitto-status.mitto-status--{status} {{ background: {info.colour}; }}" in css
        assert f".mitto-status-{status} {{ fill: {info.chart_colour};" in css
    for group in STATUS_GROUPS:
        assert f"--mitto-{group.key.replace('_', '-')}: {group.colour};" in css
        assert f".mitto-{group.key} {{" in css


# -- the pages read it -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_changing_a_colour_changes_the_message_list_and_the_dashboard(
    admin_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(Status.DELIVERED)
    make(Status.EXPIRED)
    monkeypatch.setitem(STATUS_INFO, Status.DELIVERED, change(Status.DELIVERED, colour="#123456"))
    monkeypatch.setitem(STATUS_INFO, Status.EXPIRED, change(Status.EXPIRED, chart_colour="#abcdef"))

    page = admin_client.get(MESSAGES_URL).content.decode()
    assert '<span class="mitto-status mitto-status--delivered">Delivered</span>' in page
    assert ".mitto-status.mitto-status--delivered { background: #123456; }" in page
    assert "#2e7d32" not in page  # the old colour is gone

    page = admin_client.get(DASHBOARD_URL).content.decode()
    assert re.search(r'class="[^"]*mitto-status-expired"', page)
    assert ".mitto-status-expired { fill: #abcdef; background-color: #abcdef; }" in page


def cards(page: str) -> dict[str, int]:
    """The dashboard's figures, by the id of their card."""
    found = dict(re.findall(r'<dd id="mitto-([\w-]+)">([\d,]+)</dd>', page))
    return {name: int(value.replace(",", "")) for name, value in found.items()}


@pytest.mark.django_db
def test_moving_a_status_to_another_group_changes_the_dashboard(
    admin_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(Status.EXPIRED, 3)
    make(Status.SENT, 2)
    before = cards(admin_client.get(DASHBOARD_URL).content.decode())
    assert before["failed"] == 3 and before["in-flight"] == 2

    monkeypatch.setitem(STATUS_INFO, Status.EXPIRED, change(Status.EXPIRED, group="in_flight"))
    after = cards(admin_client.get(DASHBOARD_URL).content.decode())
    assert after["failed"] == 0 and after["in-flight"] == 5
    assert after["total"] == before["total"] == 5


@pytest.mark.django_db
def test_whether_parts_count_as_used_comes_from_the_table(
    admin_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(Status.FAILED, 2, segments=3)
    make(Status.DELIVERED, 1, segments=2)
    assert cards(admin_client.get(DASHBOARD_URL).content.decode())["parts-used"] == 2

    monkeypatch.setitem(STATUS_INFO, Status.FAILED, change(Status.FAILED, parts_used=True))
    assert cards(admin_client.get(DASHBOARD_URL).content.decode())["parts-used"] == 8


def batch_rows(page: str) -> dict[str, str]:
    """The batch page's status table: status label -> the group class of its swatch."""
    table = page[page.index('<table class="mitto-status-table">') :]
    return dict(
        (label.strip(), group)
        for group, label in re.findall(
            r'<span class="mitto-swatch mitto-(\w+)" aria-hidden="true"></span>\s*'
            r"(?:<a [^>]*>)?([^<]+)",
            table,
        )
    )


@pytest.mark.django_db
def test_the_batch_page_follows_the_table(
    admin_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = Batch.objects.create(text="Hello", total=4)
    make(Status.REJECTED, 2, batch=batch)
    make(Status.SENT, 2, batch=batch)
    url = f"/admin/django_mitto/batch/{batch.pk}/change/"

    page = admin_client.get(url).content.decode()
    assert batch_rows(page)["Rejected"] == "failed"
    assert '<rect class="mitto-fill mitto-failed"' in page
    assert "This page refreshes itself" in page  # sent messages await their reports

    monkeypatch.setitem(
        STATUS_INFO,
        Status.REJECTED,
        change(Status.REJECTED, group="delivered", label="Refused by the network"),
    )
    monkeypatch.setitem(STATUS_INFO, Status.SENT, change(Status.SENT, on_its_way=False))
    page = admin_client.get(url).content.decode()
    rows = batch_rows(page)
    assert rows["Refused by the network"] == "delivered"
    assert "Rejected" not in rows
    assert '<rect class="mitto-fill mitto-failed"' not in page
    # Rejected now counts as delivered: 2 delivered of 2 settled.
    assert "2 delivered of 2 settled" in page
    assert "This page refreshes itself" not in page
