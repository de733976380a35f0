"""The django-mitto dashboard: messages per day, delivery rate, parts used and top operators.

Everything is read with two aggregate queries whatever the size of the message table (one
grouped by day and status, one grouped by MCC/MNC) and drawn on the server as inline SVG:
no JavaScript, nothing loaded from elsewhere. The numbers behind every picture are also in a
table, for screen readers and for copying.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import conf
from ..models import (
    DELIVERED_GROUP,
    FAILED_GROUP,
    IN_FLIGHT_GROUP,
    STATUS_GROUPS,
    STATUS_INFO,
    Message,
    Status,
    StatusGroup,
)

__all__ = [
    "DELIVERED",
    "FAILED",
    "GROUPS",
    "IN_FLIGHT",
    "STATUS_GROUP",
    "Dashboard",
    "can_view_messages",
    "dashboard_view",
    "percent",
]

DELIVERED = DELIVERED_GROUP
IN_FLIGHT = IN_FLIGHT_GROUP
FAILED = FAILED_GROUP

#: The three colours of every picture, bottom to top in a stacked bar.
GROUPS: tuple[StatusGroup, ...] = STATUS_GROUPS
#: status value -> group key (as declared; the pages read ``STATUS_INFO`` when they draw)
STATUS_GROUP: dict[str, str] = {s: info.group for s, info in STATUS_INFO.items()}
#: Statuses whose messages Mitto accepted, so whose parts count as used.
ACCEPTED_STATUSES = frozenset(s for s, info in STATUS_INFO.items() if info.parts_used)


def group_of(status: str) -> str | None:
    """The key of the dashboard group ``status`` belongs to (``None`` for a stray value)."""
    info = STATUS_INFO.get(status)
    return info.group if info is not None else None


def parts_count_as_used(status: str) -> bool:
    info = STATUS_INFO.get(status)
    return info is not None and info.parts_used


def is_final(status: str) -> bool:
    info = STATUS_INFO.get(status)
    return info is not None and info.final


def final_statuses() -> list[str]:
    """The final statuses in the order ``Status`` declares them."""
    return [s for s in Status if STATUS_INFO[s].final]


DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP_OPERATORS = 10


def percent(part: int, whole: int) -> float | None:
    """``part`` as a percentage of ``whole``; ``None`` when ``whole`` is 0."""
    return 100.0 * part / whole if whole else None


#: Shown where there is no number to show (a rate of nothing).
NO_VALUE = "\N{EN DASH}"


def format_percent(value: float | None) -> str:
    if value is None:
        return NO_VALUE
    rounded = round(value, 1)
    if rounded >= 100 and value < 100:
        rounded = 99.9  # never say 100 % while something is missing
    return gettext("%(value)s%%") % {"value": formats.number_format(rounded, 1)}


def format_count(value: int) -> str:
    return formats.number_format(value, force_grouping=True)


def can_view_messages(admin_site: AdminSite, request: HttpRequest) -> bool:
    """Whether the user may see messages: the Message admin's say, else the model permission."""
    model_admin = admin_site._registry.get(Message)
    if model_admin is not None:
        return bool(model_admin.has_view_permission(request))
    opts = Message._meta
    return request.user.has_perm(
        f"{opts.app_label}.{get_permission_codename('view', opts)}"
    ) or request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


# -- the numbers ---------------------------------------------------------------------------------


@dataclass
class Day:
    date: datetime.date
    counts: dict[str, int] = field(default_factory=lambda: {g.key: 0 for g in GROUPS})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def label(self) -> str:
        return formats.date_format(self.date, "SHORT_DATE_FORMAT")


@dataclass
class Operator:
    mcc: str
    mnc: str
    total: int
    delivered: int
    failed: int

    @property
    def in_flight(self) -> int:
        return self.total - self.delivered - self.failed

    @property
    def finished(self) -> int:
        return self.delivered + self.failed

    @property
    def delivery_rate(self) -> float | None:
        return percent(self.delivered, self.finished)

    @property
    def label(self) -> str:
        return f"{self.mcc} {self.mnc}".strip()


@dataclass
class Dashboard:
    """The aggregates the dashboard shows, for ``days`` days ending today (current time zone)."""

    days: list[Day]
    status_counts: dict[str, int]
    parts_used: int
    operators: list[Operator]
    #: Messages of the period marked as converted (Mitto's conversion tracking).
    converted: int = 0

    @property
    def start(self) -> datetime.date:
        return self.days[0].date

    @property
    def end(self) -> datetime.date:
        return self.days[-1].date

    @property
    def total(self) -> int:
        return sum(self.status_counts.values())

    def group_total(self, key: str) -> int:
        return sum(n for s, n in self.status_counts.items() if group_of(s) == key)

    @property
    def delivered(self) -> int:
        return self.group_total(DELIVERED)

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.status_counts.items() if is_final(s))

    @property
    def in_flight(self) -> int:
        return self.group_total(IN_FLIGHT)

    @property
    def failed(self) -> int:
        return self.group_total(FAILED)

    @property
    def delivery_rate(self) -> float | None:
        return percent(self.delivered, self.finished)

    @property
    def conversion_rate(self) -> float | None:
        """Converted messages per delivered message of the period (None before any delivery)."""
        return percent(self.converted, self.delivered)

    @classmethod
    def load(
        cls, queryset: QuerySet[Message] | None = None, *, days: int = DEFAULT_DAYS
    ) -> Dashboard:
        """Read the aggregates: one query by day and status, one by operator."""
        queryset = Message.objects.all() if queryset is None else queryset
        days = max(1, min(int(days), MAX_DAYS))
        end = timezone.localdate() if settings.USE_TZ else datetime.date.today()
        start = end - datetime.timedelta(days=days - 1)
        since = datetime.datetime.combine(start, datetime.time.min)
        if settings.USE_TZ:
            since = timezone.make_aware(since)
        recent = queryset.filter(created_at__gte=since).order_by()

        by_day = {
            start + datetime.timedelta(days=i): Day(start + datetime.timedelta(days=i))
            for i in range(days)
        }
        status_counts: dict[str, int] = {}
        parts_used = 0
        rows = (
            recent.annotate(day=TruncDate("created_at"))
            .values("day", "status")
            .annotate(
                n=Count("id"),
                parts=Sum("segments"),
                converted=Count("id", filter=Q(converted_at__isnull=False)),
            )
        )
        converted = 0
        for row in rows:
            converted += row["converted"]
            day = row["day"]
            if isinstance(day, datetime.datetime):  # some backends hand back a datetime
                day = day.date()
            status, n = row["status"], row["n"]
            status_counts[status] = status_counts.get(status, 0) + n
            if parts_count_as_used(status):
                parts_used += row["parts"] or 0
            bucket = by_day.get(day)
            group = group_of(status)
            if bucket is not None and group is not None:
                bucket.counts[group] += n

        delivered = [s for s in Status if group_of(s) == DELIVERED]
        failed = [s for s in Status if group_of(s) == FAILED]
        operators = [
            Operator(
                mcc=row["mcc"],
                mnc=row["mnc"],
                total=row["n"],
                delivered=row["delivered"],
                failed=row["failed"],
            )
            for row in recent.exclude(mcc="")
            .values("mcc", "mnc")
            .annotate(
                n=Count("id"),
                delivered=Count("id", filter=Q(status__in=delivered)),
                failed=Count("id", filter=Q(status__in=failed)),
            )
            .order_by("-n", "mcc", "mnc")[:TOP_OPERATORS]
        ]
        return cls(
            days=[by_day[d] for d in sorted(by_day)],
            status_counts=status_counts,
            parts_used=parts_used,
            operators=operators,
            converted=converted,
        )


# -- the pictures --------------------------------------------------------------------------------


def nice_ceiling(value: int, ticks: int = 4) -> tuple[int, int]:
    """A round top for an axis showing ``value``, and the step between ``ticks`` grid lines."""
    if value <= 0:
        return ticks, 1
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step >= raw and float(step).is_integer():
            step = int(step)
            return step * math.ceil(value / step), step
    step = int(10 * magnitude)  # pragma: no cover - the loop always returns
    return step * math.ceil(value / step), step


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    group: str
    title: str


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class Column:
    """One day's stacked bar."""

    x: float
    width: float
    rects: list[Rect]
    title: str
    day: Day


@dataclass
class DailyChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    columns: list[Column]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    summary: str

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top


def _round(value: float) -> float:
    return round(value, 2)


def daily_chart(days: list[Day], *, width: int = 960, height: int = 280) -> DailyChart:
    """Stacked bars, one per day: delivered at the bottom, then in flight, then failed."""
    left, right, top, bottom = 52, width - 12, 12, height - 30
    plot_height = bottom - top
    top_value, step = nice_ceiling(max((d.total for d in days), default=0))
    band = (right - left) / max(len(days), 1)
    bar = max(band * 0.72, 1.0)
    labels = {g.key: g.label for g in GROUPS}
    columns = []
    for i, day in enumerate(days):
        x = left + i * band + (band - bar) / 2
        y = float(bottom)
        rects = []
        for group in GROUPS:
            n = day.counts[group.key]
            if not n:
                continue
            h = plot_height * n / top_value
            y -= h
            rects.append(
                Rect(
                    x=_round(x),
                    y=_round(y),
                    width=_round(bar),
                    height=_round(h),
                    group=group.key,
                    title=gettext("%(day)s: %(count)s %(status)s")
                    % {"day": day.label, "count": format_count(n), "status": labels[group.key]},
                )
            )
        parts = ", ".join(f"{format_count(day.counts[g.key])} {labels[g.key]}" for g in GROUPS)
        columns.append(
            Column(
                x=_round(left + i * band),
                width=_round(band),
                rects=rects,
                title=gettext("%(day)s: %(total)s messages (%(parts)s)")
                % {"day": day.label, "total": format_count(day.total), "parts": parts},
                day=day,
            )
        )
    y_ticks = [
        Tick(_round(bottom - plot_height * v / top_value), format_count(v))
        for v in range(0, top_value + 1, step)
    ]
    # About six date labels, the last one on today.
    every = max(1, math.ceil(len(days) / 6))
    x_ticks = [
        Tick(_round(left + (i + 0.5) * band), formats.date_format(days[i].date, "MONTH_DAY_FORMAT"))
        for i in range(len(days) - 1, -1, -every)
    ]
    total = sum(d.total for d in days)
    summary = gettext("Messages per day from %(start)s to %(end)s: %(total)s in all.") % {
        "start": days[0].label if days else "",
        "end": days[-1].label if days else "",
        "total": format_count(total),
    }
    return DailyChart(
        width=width,
        height=height,
        plot_left=left,
        plot_right=right,
        plot_top=top,
        plot_bottom=bottom,
        columns=columns,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        summary=summary,
    )


@dataclass
class OperatorBar:
    operator: Operator
    y: float
    rects: list[Rect]
    label_y: float
    value_x: float
    value: str
    rate: str
    title: str


@dataclass
class OperatorChart:
    width: int
    height: int
    bar_left: int
    bars: list[OperatorBar]


def operator_chart(operators: list[Operator], *, width: int = 960) -> OperatorChart:
    """Horizontal stacked bars, one per operator, longest first, with count and delivery rate."""
    row, bar_height, bar_left = 30, 20, 96
    bar_right = width - 230
    top = max((o.total for o in operators), default=0) or 1
    labels = {g.key: g.label for g in GROUPS}
    bars = []
    for i, op in enumerate(operators):
        y = i * row + (row - bar_height) / 2
        x = float(bar_left)
        rects = []
        for group in GROUPS:
            n = {DELIVERED: op.delivered, IN_FLIGHT: op.in_flight, FAILED: op.failed}[group.key]
            if not n:
                continue
            w = (bar_right - bar_left) * n / top
            rects.append(
                Rect(
                    x=_round(x),
                    y=_round(y),
                    width=_round(w),
                    height=bar_height,
                    group=group.key,
                    title=gettext("MCC %(mcc)s MNC %(mnc)s: %(count)s %(status)s")
                    % {
                        "mcc": op.mcc,
                        "mnc": op.mnc or NO_VALUE,
                        "count": format_count(n),
                        "status": labels[group.key],
                    },
                )
            )
            x += w
        value = gettext("%(count)s · %(rate)s delivered") % {
            "count": format_count(op.total),
            "rate": format_percent(op.delivery_rate),
        }
        bars.append(
            OperatorBar(
                operator=op,
                y=_round(y),
                rects=rects,
                label_y=_round(y + bar_height / 2),
                value_x=_round(x + 8),
                value=value,
                rate=format_percent(op.delivery_rate),
                title=gettext("MCC %(mcc)s MNC %(mnc)s: %(count)s messages, %(rate)s delivered")
                % {
                    "mcc": op.mcc,
                    "mnc": op.mnc or NO_VALUE,
                    "count": format_count(op.total),
                    "rate": format_percent(op.delivery_rate),
                },
            )
        )
    return OperatorChart(
        width=width, height=max(len(operators), 1) * row, bar_left=bar_left, bars=bars
    )


@dataclass
class Share:
    """One segment of a 100 % bar."""

    key: str
    group: str
    label: str | Promise
    count: int
    share: str
    x: float
    width: float
    title: str


def share_bar(
    counts: Mapping[str, int],
    statuses: Iterable[str],
    *,
    whole: int | None = None,
    width: float = 100.0,
) -> list[Share]:
    """Segments of a bar ``width`` long, one per status with a count, in the order given.

    The bar stands for ``whole`` (default: the sum of the statuses shown); what the segments
    leave is the empty rest of the bar.
    """
    statuses = list(statuses)
    if whole is None:
        whole = sum(counts.get(s, 0) for s in statuses)
    shares = []
    x = 0.0
    for status in statuses:
        n = counts.get(status, 0)
        if not n:
            continue
        w = width * n / whole
        label = STATUS_INFO[status].label
        share = format_percent(percent(n, whole))
        shares.append(
            Share(
                key=status,
                group=STATUS_INFO[status].group,
                label=label,
                count=n,
                share=share,
                x=_round(x),
                width=_round(w),
                title=gettext("%(status)s: %(count)s (%(share)s)")
                % {"status": label, "count": format_count(n), "share": share},
            )
        )
        x += w
    return shares


#: The final statuses in the order the outcome bar shows them (as declared; the page reads
#: ``final_statuses()`` when it draws).
OUTCOME_ORDER = tuple(final_statuses())


# -- the view ------------------------------------------------------------------------------------


def dashboard_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The dashboard page; needs view permission on messages (the caller wraps admin_view)."""
    site = model_admin.admin_site
    if not can_view_messages(site, request):
        raise PermissionDenied
    try:
        days = int(request.GET.get("days", DEFAULT_DAYS))
    except ValueError:
        days = DEFAULT_DAYS
    days = max(1, min(days, MAX_DAYS))
    # With several accounts the page shows all of them or one (?account=<name>).
    accounts = conf.accounts() if conf.SEVERAL_ACCOUNTS else []
    account = request.GET.get("account", "")
    if account not in accounts:
        account = ""
    queryset = Message.objects.filter(account=account) if account else None
    data = Dashboard.load(queryset, days=days)
    opts = model_admin.model._meta
    context = {
        **site.each_context(request),
        "title": _("SMS dashboard"),
        "subtitle": None,
        "opts": opts,
        "dashboard": data,
        "days": days,
        "day_choices": [7, 30, 90],
        "accounts": accounts,
        "account": account,
        "account_query": f"&account={quote(account)}" if account else "",
        "daily": daily_chart(data.days),
        "operators": operator_chart(data.operators),
        "outcomes": share_bar(data.status_counts, final_statuses()),
        "groups": GROUPS,
        "delivery_rate": format_percent(data.delivery_rate),
        "conversion_rate": format_percent(data.conversion_rate),
        "usage_url": reverse("admin:django_mitto_usage", current_app=site.name),
        "has_batch_view_permission": model_admin.has_view_permission(request),
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/django_mitto/dashboard.html", context)
