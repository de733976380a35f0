"""Admin for messages: compose one SMS, follow it to its last delivery report, act on many.

The changelist is built for tables of millions of rows: it never counts the whole table (see
:class:`EstimatedCountPaginator`), shows no facet counts, sorts only on indexed columns, and
touches no relation per row.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.db import connections, transaction
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import services, validators
from ..conf import conf
from ..models import Batch, DeliveryReport, Message, Status
from .conversion import mark_converted
from .forms import MessageComposeForm

__all__ = [
    "BatchListFilter",
    "DeliveryReportAdmin",
    "EstimatedCountPaginator",
    "MessageAdmin",
    "TimelineEntry",
]


# -- counting without counting everything ----------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """A paginator whose ``count`` stays cheap however big the table is.

    ``COUNT(*)`` runs over a subquery limited to ``count_limit + 1`` rows, ``count_limit``
    being ``pages_ahead`` pages past the page shown: below that the count is exact. Above it,
    an unfiltered list on PostgreSQL shows the planner's row estimate (``pg_class.reltuples``,
    read in the same query), and any other list shows "more than ``count_limit``".

    The trade-off: a big list says "about 1,000,000" or "more than 1,100" rather than an exact
    figure, and its last pages are reached ``pages_ahead`` pages at a time (the limit moves
    along with the page shown). After ``ANALYZE`` the estimate is usually within a few percent;
    when it is stale, the last pages it promises may be empty or a few rows may lie beyond
    them, and any page number is accepted rather than refused. In exchange a page load costs
    the same few milliseconds at a thousand rows or a hundred million, where an exact
    ``COUNT(*)`` reads the whole table (or index) on every page load.

    ``count_is_estimate`` and ``count_is_partial`` tell the templates which case applies.
    """

    #: Pages counted exactly beyond the current one.
    pages_ahead = 10

    def __init__(
        self, object_list: Any, per_page: int, *args: Any, page_number: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.count_limit = (max(page_number, 1) + self.pages_ahead) * self.per_page
        self.count_is_estimate = False
        self.count_is_partial = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        limited = queryset.order_by().values("pk")[: self.count_limit + 1]
        connection = connections[queryset.db]
        estimate = None
        if self._can_estimate(queryset, connection.vendor):
            sql, params = limited.query.get_compiler(using=queryset.db).as_sql()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*), (SELECT reltuples::bigint FROM pg_class"
                    f" WHERE oid = %s::regclass) FROM ({sql}) AS limited",
                    [connection.ops.quote_name(queryset.model._meta.db_table), *params],
                )
                counted, estimate = cursor.fetchone()
        else:
            counted = limited.count()
        if counted <= self.count_limit:
            return counted
        # -1 (PostgreSQL 14+) or 0 means "never analysed".
        if estimate is not None and estimate > self.count_limit:
            self.count_is_estimate = True
            return int(estimate)
        self.count_is_partial = True
        return counted

    @staticmethod
    def _can_estimate(queryset: QuerySet, vendor: str) -> bool:
        """The table's row estimate is this queryset's count: PostgreSQL, no filter."""
        query = queryset.query
        return vendor == "postgresql" and not (
            query.where or query.distinct or query.is_sliced or query.combinator
        )

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            # An estimate may fall short of the real count: let any page be asked for.
            if self.count_is_estimate and int(number) >= 1:
                return int(number)
            raise

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        if not self.count_is_estimate:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)


class _DateHierarchyQuerySet(QuerySet):
    """A queryset whose ``datetimes()`` finds the buckets present without a DISTINCT over all rows.

    The admin's date hierarchy asks for the distinct years (or months, or days) of the listed
    rows; the database answers that by truncating the date of every row. Here the range comes
    from ``MIN``/``MAX`` (an index lookup each) and each candidate bucket is checked with one
    more index lookup, all candidates in one query.
    """

    #: Above this many candidate buckets, let the database do it the usual way.
    max_buckets = 100

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = super().aggregate(*args, **kwargs)
        # The date hierarchy asks for MIN and MAX of its field just before datetimes():
        # remember them so that datetimes() need not ask again.
        if not args and set(kwargs) == {"first", "last"}:
            self._bounds = {(kwargs["first"], kwargs["last"]): result}
        return result

    def datetimes(
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None, **kwargs: Any
    ) -> Any:
        query = self.query
        if (
            kind not in ("year", "month", "day")
            or tzinfo is not None
            or kwargs
            or query.distinct
            or query.is_sliced
            or query.combinator
            or connections[self.db].vendor not in ("postgresql", "sqlite", "mysql")
        ):
            return super().datetimes(field_name, kind, order, tzinfo, **kwargs)
        first, last = Min(field_name), Max(field_name)
        bounds = getattr(self, "_bounds", {}).get((first, last))
        if bounds is None:
            bounds = self.aggregate(first=first, last=last)
        if bounds["first"] is None:
            return []
        starts = _bucket_starts(_local(bounds["first"]), _local(bounds["last"]), kind)
        if len(starts) > self.max_buckets:
            return super().datetimes(field_name, kind, order, tzinfo)
        ends = [*starts[1:], _next_bucket(starts[-1], kind)]
        present = self._present(field_name, list(zip(starts, ends)))
        found = [start for start, hit in zip(starts, present) if hit]
        return found if order == "ASC" else found[::-1]

    def _present(
        self, field_name: str, ranges: list[tuple[dt.datetime, dt.datetime]]
    ) -> list[bool]:
        """For each [start, end) range, whether any row of this queryset falls in it.

        One ``SELECT (SELECT MIN(...) ...), (SELECT MIN(...) ...), ...``; the queryset is compiled
        once and its SQL reused for every range (compiling one ORM subquery per range costs more
        than running the query). ``MIN`` rather than ``EXISTS``: the planner then walks the index
        from the start of the range, where for ``EXISTS`` it may bet on a sequential scan meeting
        a matching row early, and lose badly when the rows are stored in date order.
        """
        connection = connections[self.db]
        field = self.model._meta.get_field(field_name)
        sql, params = self.order_by().values(field_name).query.get_compiler(self.db).as_sql()
        column = "mitto_probe." + connection.ops.quote_name(field.column)
        probe = (
            f"(SELECT MIN({column}) FROM ({sql}) AS mitto_probe"
            f" WHERE {column} >= %s AND {column} < %s)"
        )
        values: list[Any] = []
        for start, end in ranges:
            values += [*params, field.get_db_prep_value(start, connection)]
            values.append(field.get_db_prep_value(end, connection))
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join([probe] * len(ranges)), values)
            return [first is not None for first in cursor.fetchone()]


def _local(value: dt.datetime) -> dt.datetime:
    return timezone.localtime(value) if timezone.is_aware(value) else value


def _make(year: int, month: int = 1, day: int = 1) -> dt.datetime:
    value = dt.datetime(year, month, day)
    return timezone.make_aware(value) if settings.USE_TZ else value


def _next_bucket(start: dt.datetime, kind: str) -> dt.datetime:
    if kind == "year":
        return _make(start.year + 1)
    if kind == "month":
        return _make(start.year + start.month // 12, start.month % 12 + 1)
    following = start.date() + dt.timedelta(days=1)
    return _make(following.year, following.month, following.day)


def _bucket_starts(first: dt.datetime, last: dt.datetime, kind: str) -> list[dt.datetime]:
    start = {
        "year": lambda: _make(first.year),
        "month": lambda: _make(first.year, first.month),
        "day": lambda: _make(first.year, first.month, first.day),
    }[kind]()
    starts = []
    while start <= last and len(starts) <= _DateHierarchyQuerySet.max_buckets:
        starts.append(start)
        start = _next_bucket(start, kind)
    return starts


# -- list filter ------------------------------------------------------------------------------------


class BatchListFilter(admin.SimpleListFilter):
    """Filter by batch: offers the latest batches only; any batch id works in the URL."""

    title = _("batch")
    parameter_name = "batch"
    #: How many of the latest batches the filter offers.
    latest = 20

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[Any, str]]:
        choices = [
            (
                str(pk),
                _("#%(pk)s, %(date)s (%(total)s)")
                % {
                    "pk": pk,
                    "date": _local(created).strftime("%Y-%m-%d %H:%M"),
                    "total": total,
                },
            )
            for pk, created, total in Batch.objects.order_by("-created_at", "-pk").values_list(
                "pk", "created_at", "total"
            )[: self.latest]
        ]
        value = self.value()
        # A batch given in the URL is offered too, so the filter shows (and applies) it.
        if value and value not in {pk for pk, _label in choices}:
            choices.append((value, _("#%(pk)s") % {"pk": value}))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        if not value:
            return None
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(batch_id=int(value))


# -- timeline ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a message's timeline in the change view."""

    when: dt.datetime
    title: str
    status: str = ""
    status_label: str = ""
    details: tuple[str, ...] = ()
    report: DeliveryReport | None = None
    order: int = 0


def build_timeline(message: Message, reports: Iterable[DeliveryReport]) -> list[TimelineEntry]:
    """The known events of ``message``, oldest first: created, sent, each report, last status."""
    labels = dict(Status.choices)
    entries = [
        TimelineEntry(
            when=message.created_at,
            title=str(_("Created")),
            status=Status.QUEUED,
            status_label=str(labels[Status.QUEUED]),
            order=0,
        )
    ]
    if message.sent_at:
        details = []
        if message.provider_id:
            details.append(str(_("Mitto id %(id)s") % {"id": message.provider_id}))
        if message.response_code is not None:
            details.append(
                str(
                    _("response %(code)s %(text)s")
                    % {
                        "code": message.response_code,
                        "text": message.response_text,
                    }
                ).strip()
            )
        if message.segments:
            details.append(
                ngettext("%(count)d part", "%(count)d parts", message.segments)
                % {"count": message.segments}
            )
        entries.append(
            TimelineEntry(
                when=message.sent_at,
                title=str(_("Accepted by Mitto")),
                status=Status.SENT,
                status_label=str(labels[Status.SENT]),
                details=tuple(details),
                order=1,
            )
        )
    outcomes = dict(DeliveryReport.Outcome.choices)
    for report in reports:
        details = [str(_("outcome: %(outcome)s") % {"outcome": outcomes.get(report.outcome, "-")})]
        if report.error_code:
            details.append(str(_("error code %(code)s") % {"code": report.error_code}))
        if report.mcc or report.mnc:
            details.append(
                str(
                    _("MCC/MNC %(mcc)s/%(mnc)s")
                    % {"mcc": report.mcc or "-", "mnc": report.mnc or "-"}
                )
            )
        entries.append(
            TimelineEntry(
                when=report.received_at,
                title=str(_("Delivery report “%(status)s”") % {"status": report.status or "?"}),
                status=report.mapped_status,
                status_label=str(labels.get(report.mapped_status, _("not understood"))),
                details=tuple(details),
                report=report,
                order=2,
            )
        )
    if message.status_changed_at:
        details = [message.error] if message.error else []
        entries.append(
            TimelineEntry(
                when=message.status_changed_at,
                title=str(_("Current status")),
                status=message.status,
                status_label=str(labels.get(message.status, message.status)),
                details=tuple(details),
                order=3,
            )
        )
    return sorted(entries, key=lambda entry: (entry.when, entry.order))


# -- CSV --------------------------------------------------------------------------------------------

#: Columns of "Export as CSV", in order.
CSV_FIELDS = (
    "recipient",
    "status",
    "provider_id",
    "reference",
    "segments",
    "created_at",
    "sent_at",
    "delivery_status",
    "error_code",
)
# A cell starting with one of these is a formula to a spreadsheet (tab and carriage return
# too: some spreadsheets skip them and read the formula behind).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain number (an E.164 recipient, "+41791234567") is no formula: it is left as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_value(name: str, value: Any) -> Any:
    """A cell of the export; any text a spreadsheet could run as a formula is quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def _csv_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([str(Message._meta.get_field(name).verbose_name) for name in CSV_FIELDS])
    for row in rows:
        yield writer.writerow([_csv_value(name, value) for name, value in zip(CSV_FIELDS, row)])


_PROVIDER_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}"
)
_PHONE_LIKE = re.compile(r"(?:\+|00)[0-9][0-9 ()./-]{6,20}")
# A national number ("079 123 45 67"), read with MITTO_DEFAULT_REGION when it is set.
_NATIONAL_PHONE_LIKE = re.compile(r"\(?[0-9][0-9 ()./-]{5,20}")


# -- the admin --------------------------------------------------------------------------------------


class BigTableAdminMixin:
    """Changelist settings for tables that grow without bound: no full COUNT, no facets."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django 5.0+: facet counts would COUNT per filter choice
        show_facets = admin.ShowFacets.NEVER

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return self.paginator(
            queryset, per_page, orphans, allow_empty_first_page, page_number=page_number
        )


@admin.register(Message)
class MessageAdmin(BigTableAdminMixin, admin.ModelAdmin):
    """Send one SMS, follow every message to its last report, resend, settle, export."""

    form = MessageComposeForm
    list_display = [
        "recipient",
        "text_preview",
        "status_badge",
        "segments",
        "test",
        "created_at",
        "last_change",
    ]
    # Sorting on a column without an index would sort the whole table on every page.
    sortable_by = ["recipient", "status_badge", "created_at"]
    # No related object is shown per row, so none is joined.
    list_select_related = ()
    list_filter = [
        "status",
        "encoding",
        "test",
        BatchListFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["recipient", "provider_id", "reference", "text"]
    search_help_text = _("Recipient, Mitto id, reference or text.")
    date_hierarchy = "created_at"
    actions = ["send_again", "mark_failed", "export_csv", mark_converted]
    #: "Send again" refuses a selection bigger than this (use send_bulk() for more).
    send_again_limit = 1000

    add_fieldsets = [
        (None, {"fields": ["recipient", "sender", "text", "encoding"]}),
        (_("Options"), {"fields": ["reference", "test", "flash", "validity"]}),
        (
            _("Advanced"),
            {
                "classes": ["collapse"],
                "fields": ["udh", "pid"],
                "description": _("User data header and protocol id, for special messages only."),
            },
        ),
    ]
    change_fieldsets = [
        (
            None,
            {"fields": ["recipient", "sender", "text", "encoding", ("text_length", "segments")]},
        ),
        (
            _("Status"),
            {
                "fields": [
                    "status_badge",
                    "error",
                    "provider_id",
                    ("response_code", "response_text"),
                    ("delivery_status", "error_code"),
                    ("mcc", "mnc"),
                    "attempts",
                ]
            },
        ),
        (
            _("Options"),
            {
                "fields": [
                    "reference",
                    "test",
                    "flash",
                    "validity",
                    "udh",
                    "pid",
                    "batch",
                    "metadata",
                ]
            },
        ),
        (
            _("Dates"),
            {"fields": ["created_at", "sent_at", "status_changed_at", "converted_at"]},
        ),
    ]

    class Media:
        css = {"all": ("django_mitto/admin.css",)}

    # -- columns -------------------------------------------------------------------------------

    @admin.display(description=_("text"))
    def text_preview(self, obj: Message) -> str:
        return obj.short_text

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Message) -> str:
        return format_html(
            '<span class="mitto-status mitto-status--{}">{}</span>',
            obj.status,
            obj.get_status_display(),
        )

    @admin.display(description=_("last change"))
    def last_change(self, obj: Message) -> dt.datetime | None:
        return obj.status_changed_at

    # -- querysets and paging ------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return _DateHierarchyQuerySet(
            queryset.model, query=queryset.query.chain(), using=queryset.db
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # A phone number or a Mitto id is looked up exactly, through an index: the common
        # "what happened to this message?" search stays fast on a big table, and a number
        # typed with spaces ("+41 79 123 45 67"), or nationally ("079 123 45 67") when
        # MITTO_DEFAULT_REGION is set, still matches its E.164 form: it is read by the same
        # parsing as a recipient.
        term = search_term.strip()
        if _PROVIDER_ID.fullmatch(term):
            return queryset.filter(provider_id=term), False
        if _PHONE_LIKE.fullmatch(term) or (
            conf.DEFAULT_REGION and _NATIONAL_PHONE_LIKE.fullmatch(term)
        ):
            try:
                number = validators.normalize_recipient(term)
            except ValidationError:
                pass
            else:
                return queryset.filter(recipient=number), False
        return super().get_search_results(request, queryset, search_term)

    # -- compose (add) and follow (change) -----------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        # A saved message is a record of what was sent: nothing in it is edited. The
        # model-level permission remains, for the actions that settle a status.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def get_fieldsets(self, request: HttpRequest, obj: Message | None = None) -> list[Any]:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Message | None = None) -> list[str]:
        if obj is None:
            return []
        return flatten_fieldsets(self.change_fieldsets)

    def get_form(
        self, request: HttpRequest, obj: Message | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        kwargs["form"] = MessageComposeForm if obj is None else forms.ModelForm
        return super().get_form(request, obj, change=change, **kwargs)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            "title": _("Send an SMS"),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Message | None = None,
    ) -> TemplateResponse:
        if obj is not None and obj.pk:
            reports = DeliveryReport.objects.filter(message=obj).order_by("received_at", "pk")
            context["timeline"] = build_timeline(obj, reports)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Message, form: Any, change: bool) -> None:
        if change:  # never reached (no change permission on a message), but never save over one
            return
        obj.status = Status.QUEUED
        super().save_model(request, obj, form, change)
        # With the post_save hook off, a message composed here is still meant to go out.
        services.queue_for_sending(obj)

    def response_add(
        self, request: HttpRequest, obj: Message, post_url_continue: str | None = None
    ) -> HttpResponse:
        if IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request,
            _(
                "The message to %(recipient)s was queued for sending. "
                "Its status and Mitto's answer are shown below."
            )
            % {"recipient": obj.recipient},
            messages.SUCCESS,
        )
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(url)

    # -- actions -------------------------------------------------------------------------------

    @admin.action(description=_("Send again (as new messages)"), permissions=["add"])
    def send_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        originals = list(queryset.order_by("pk")[: self.send_again_limit + 1])
        if len(originals) > self.send_again_limit:
            self.message_user(
                request,
                _("Select at most %(limit)d messages to send again; for more, send in bulk.")
                % {"limit": self.send_again_limit},
                messages.ERROR,
            )
            return
        queued = 0
        problems: list[str] = []
        # New rows are created together; each is sent once they are all committed.
        with transaction.atomic():
            for original in originals:
                try:
                    services.send_sms(
                        original.recipient,
                        original.text,
                        sender=original.sender or None,
                        encoding=original.encoding,
                        reference=original.reference,
                        udh=original.udh,
                        validity=original.validity,
                        pid=original.pid,
                        flash=original.flash,
                        test=original.test,
                        metadata=original.metadata,
                    )
                except ValidationError as exc:
                    problems.append(f"{original.recipient}: {'; '.join(exc.messages)}")
                else:
                    queued += 1
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d new message was queued to be sent again.",
                    "%(count)d new messages were queued to be sent again.",
                    queued,
                )
                % {"count": queued},
                messages.SUCCESS,
            )
        if problems:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message could not be sent again: %(problems)s",
                    "%(count)d messages could not be sent again: %(problems)s",
                    len(problems),
                )
                % {"count": len(problems), "problems": " | ".join(problems[:10])},
                messages.WARNING,
            )

    @admin.action(
        description=_("Mark as failed (only “unknown”: checked, not sent)"),
        permissions=["change"],
    )
    def mark_failed(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = queryset.count()
        pks = list(queryset.filter(status=Status.UNKNOWN).values_list("pk", flat=True))
        changed = services.mark_failed(pks, by=request.user.get_username())
        if changed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message was marked as failed.",
                    "%(count)d messages were marked as failed.",
                    changed,
                )
                % {"count": changed},
                messages.SUCCESS,
            )
        skipped = selected - changed
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message was skipped: only messages in “unknown” can be marked "
                    "as failed.",
                    "%(count)d messages were skipped: only messages in “unknown” can be marked "
                    "as failed.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Export as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        rows = queryset.order_by("-created_at", "-pk").values_list(*CSV_FIELDS)
        response = StreamingHttpResponse(
            _csv_lines(rows.iterator(chunk_size=2000)), content_type="text/csv; charset=utf-8"
        )
        stamp = _local(timezone.now()).strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="mitto-messages-{stamp}.csv"'
        return response


@admin.register(DeliveryReport)
class DeliveryReportAdmin(BigTableAdminMixin, admin.ModelAdmin):
    """Every delivery report as received: a record, never edited or added by hand."""

    list_display = [
        "received_at",
        "provider_id",
        "status",
        "mapped_status",
        "outcome",
        "message_link",
        "fields_seen",
        "method",
        "remote_addr",
    ]
    # "Outcome: Unparsed" lists the callbacks that could not be read, with the fields they had.
    list_filter = ["outcome", "mapped_status", "method"]
    search_fields = ["=provider_id", "=reference"]
    search_help_text = _("Exact Mitto id or reference.")
    list_select_related = ["message"]
    date_hierarchy = None
    sortable_by = ["received_at"]
    readonly_fields = [
        "received_at",
        "message",
        "provider_id",
        "status",
        "mapped_status",
        "outcome",
        "error_code",
        "reference",
        "recipient",
        "mcc",
        "mnc",
        "provider_sent_at",
        "method",
        "remote_addr",
        "fields_seen",
        "payload",
    ]
    fields = readonly_fields

    @admin.display(description=_("fields received"))
    def fields_seen(self, report: DeliveryReport) -> str:
        return ", ".join(report.field_names()) or "-"

    @admin.display(description=_("message"))
    def message_link(self, report: DeliveryReport) -> str:
        if report.message is None:
            return "-"
        url = reverse("admin:django_mitto_message_change", args=[report.message_id])
        return format_html('<a href="{}">{}</a>', url, report.message.recipient)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: DeliveryReport | None = None
    ) -> bool:
        return False
