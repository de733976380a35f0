"""The Batch admin: send in bulk (preview, then confirm), follow a batch, open the dashboard."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import router, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..bulk import send_preview
from ..conf import conf
from ..exceptions import MittoConfigurationError, MittoError
from ..models import STATUS_INFO, STATUS_RANK, Batch, Message, Status
from . import dashboard, usage
from .bulk import BulkSendForm
from .message import AccountListFilter

__all__ = ["BatchAdmin", "BatchProgress"]


def progressed_statuses() -> list[str]:
    """Statuses that count as progress on a batch: surely handed to Mitto (sent) or settled."""
    return [s for s, info in STATUS_INFO.items() if info.rank >= STATUS_RANK[Status.SENT]]


def pending_statuses() -> list[str]:
    """While a batch has messages in these statuses its page keeps refreshing itself."""
    return [s for s, info in STATUS_INFO.items() if info.on_its_way]


def bar_order() -> list[str]:
    """The statuses on the batch's progress bar, settled ones first, in declared order."""
    progressed = progressed_statuses()
    settled: list[str] = [s for s in Status if s in progressed and STATUS_INFO[s].final]
    return settled + [s for s in Status if s in progressed and s not in settled]


#: The same, as read when this module was imported.
PROGRESSED_STATUSES = frozenset(progressed_statuses())
PENDING_STATUSES = frozenset(pending_statuses())
BAR_ORDER = tuple(bar_order())

#: Seconds between two refreshes of a batch page while messages are on their way...
REFRESH_FAST = 5
#: ...and once every message has left and only delivery reports are awaited.
REFRESH_SLOW = 30
#: Mitto's networks give up on a message after 48 hours by default: stop waiting then.
REFRESH_FOR = datetime.timedelta(hours=48)
#: After the send, how long the page refreshes fast while waiting for delivery reports.
FAST_FOR = datetime.timedelta(minutes=10)


def _message_count(condition: Q | None = None) -> Coalesce:
    """The number of a batch's messages (matching ``condition``), as a correlated subquery.

    A subquery rather than a JOIN + GROUP BY over the whole message table: it is only
    evaluated for the batches on the page and uses the index on ``batch_id``.
    """
    counted = (
        Message.objects.filter(batch=OuterRef("pk"))
        .order_by()
        .values("batch")
        .annotate(n=Count("pk", filter=condition))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@dataclass
class BatchProgress:
    """How far a batch has come, read with one aggregate query."""

    counts: dict[str, int]
    parts: dict[str, int]
    created_at: datetime.datetime | None = None

    @classmethod
    def load(cls, batch: Batch) -> BatchProgress:
        counts: dict[str, int] = {}
        parts: dict[str, int] = {}
        for row in (
            Message.objects.filter(batch=batch)
            .order_by()
            .values("status")
            .annotate(n=Count("id"), parts=Sum("segments"))
        ):
            counts[row["status"]] = row["n"]
            parts[row["status"]] = row["parts"] or 0
        return cls(counts=counts, parts=parts, created_at=batch.created_at)

    def count(self, *statuses: str) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def progressed(self) -> int:
        return self.count(*progressed_statuses())

    @property
    def finished(self) -> int:
        return self.count(*(s for s, info in STATUS_INFO.items() if info.final))

    @property
    def delivered(self) -> int:
        return self.count(*(s for s in STATUS_INFO if dashboard.group_of(s) == dashboard.DELIVERED))

    @property
    def pending(self) -> int:
        return self.count(*pending_statuses())

    @property
    def unknown(self) -> int:
        return self.count(Status.UNKNOWN)

    @property
    def percent(self) -> float | None:
        return dashboard.percent(self.progressed, self.total)

    @property
    def percent_label(self) -> str:
        return dashboard.format_percent(self.percent)

    @property
    def delivery_rate(self) -> float | None:
        return dashboard.percent(self.delivered, self.finished)

    @property
    def delivery_rate_label(self) -> str:
        return dashboard.format_percent(self.delivery_rate)

    @property
    def parts_used(self) -> int:
        return sum(n for s, n in self.parts.items() if dashboard.parts_count_as_used(s))

    @property
    def parts_total(self) -> int:
        return sum(self.parts.values())

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per status, in the model's order, with its count and colour group."""
        total = self.total
        return [
            {
                "status": status.value,
                "label": STATUS_INFO[status].label,
                "count": self.counts.get(status, 0),
                "share": dashboard.format_percent(
                    dashboard.percent(self.counts.get(status, 0), total)
                ),
                "group": STATUS_INFO[status].group,
            }
            for status in Status
        ]

    @property
    def bar(self) -> list[dashboard.Share]:
        return dashboard.share_bar(self.counts, bar_order(), whole=self.total)

    def refresh_seconds(self, now: datetime.datetime | None = None) -> int | None:
        """How often the batch page reloads itself; ``None`` once nothing is pending."""
        if not self.pending:
            return None
        # Some have not left yet (on their way, not yet accepted by Mitto): refresh fast.
        unsent = [s for s, info in STATUS_INFO.items() if info.on_its_way and not info.parts_used]
        if self.count(*unsent) or self.created_at is None:
            return REFRESH_FAST
        age = (now or timezone.now()) - self.created_at
        if age < FAST_FOR:
            return REFRESH_FAST
        if age < REFRESH_FOR:
            return REFRESH_SLOW
        return None


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "created_by",
        "sender",
        "short_text",
        "total",
        "progress",
        "completed_at",
    ]
    list_display_links = ["id", "created_at"]
    list_select_related = ["created_by"]
    search_fields = ["text", "sender"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "sender",
        "text",
        "encoding",
        "test",
        "options",
        "total",
        "created_by",
        "created_at",
        "completed_at",
    )
    change_list_template = "admin/django_mitto/batch/change_list.html"
    change_form_template = "admin/django_mitto/batch/change_form.html"
    send_template = "admin/django_mitto/batch/send.html"
    send_form_class = BulkSendForm

    # -- permissions: a batch is created by the bulk send and never edited

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    # -- the account, shown and filtered only when there are several

    def get_fields(self, request: HttpRequest, obj: Batch | None = None) -> Any:
        fields = super().get_fields(request, obj)
        return ["account", *fields] if conf.SEVERAL_ACCOUNTS else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Batch | None = None) -> Any:
        return self.get_fields(request, obj)

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = super().get_list_filter(request)
        return [AccountListFilter, *filters] if conf.SEVERAL_ACCOUNTS else filters

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        return [*columns, "account"] if conf.SEVERAL_ACCOUNTS else columns

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Adding a batch is sending one, which creates messages too: both add permissions."""
        if not super().has_add_permission(request):
            return False
        message_admin = self.admin_site._registry.get(Message)
        if message_admin is not None:
            return bool(message_admin.has_add_permission(request))
        opts = Message._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('add', opts)}")

    def has_send_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request)

    def has_dashboard_permission(self, request: HttpRequest) -> bool:
        return dashboard.can_view_messages(self.admin_site, request)

    # -- the list

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_count=_message_count(),
                progressed_count=_message_count(Q(status__in=progressed_statuses())),
            )
        )

    @admin.display(description=_("text"))
    def short_text(self, obj: Batch) -> str:
        return obj.text if len(obj.text) <= 40 else obj.text[:39] + "…"

    @admin.display(description=_("progress"), ordering="progressed_count")
    def progress(self, obj: Batch) -> str:
        total = getattr(obj, "message_count", None)
        done = getattr(obj, "progressed_count", None)
        if total is None or done is None:
            return dashboard.NO_VALUE
        label = dashboard.format_percent(dashboard.percent(done, total))
        title = gettext("%(done)s of %(total)s sent or settled") % {
            "done": dashboard.format_count(done),
            "total": dashboard.format_count(total),
        }
        return format_html(
            '<span class="mitto-progress-cell" title="{}">'
            '<progress class="mitto-progress" max="{}" value="{}">{}</progress> '
            '<span class="mitto-progress-label">{}</span></span>',
            title,
            max(total, 1),
            done,
            label,
            label,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_send": self.has_send_permission(request),
            "can_view_dashboard": self.has_dashboard_permission(request),
        }
        return super().changelist_view(request, extra_context)

    # -- one batch

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Batch | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk is not None:
            progress = BatchProgress.load(obj)
            refresh = progress.refresh_seconds()
            if request.GET.get("refresh") == "0":
                refresh = None
            messages_url = None
            if dashboard.can_view_messages(self.admin_site, request):
                messages_url = reverse(
                    f"{self.admin_site.name}:{Message._meta.app_label}_"
                    f"{Message._meta.model_name}_changelist"
                )
            context.update(
                progress=progress,
                refresh_seconds=refresh,
                auto_refresh_paused=request.GET.get("refresh") == "0" and progress.pending,
                messages_url=messages_url,
                can_view_dashboard=self.has_dashboard_permission(request),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A batch is made by sending one: "Add batch" leads to the bulk send page.
        return redirect(f"{self.admin_site.name}:django_mitto_batch_send")

    # -- custom pages

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("send/", wrap(self.send_view), name="django_mitto_batch_send"),
            path("dashboard/", wrap(self.dashboard_view), name="django_mitto_dashboard"),
            path("usage/", wrap(self.usage_view), name="django_mitto_usage"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard.dashboard_view(self, request)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        return usage.usage_view(self, request)

    def send_view(self, request: HttpRequest) -> HttpResponse:
        """Bulk send: the numbers are checked and previewed first, then sent on confirmation."""
        if not self.has_send_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = self.send_form_class(request.POST, request.FILES)
            if form.is_valid() and "_send" in request.POST:
                if form.is_confirmed():
                    response = self._send(request, form)
                    if response is not None:
                        return response
                else:
                    messages.warning(
                        request,
                        gettext(
                            "The numbers or the message changed since the preview. Check the "
                            "preview below, then send."
                        ),
                    )
            form.carry()
        else:
            form = self.send_form_class()
        opts = self.opts
        recipients = ["numbers", "csv_file"]
        if form["csv_data"].value():
            recipients.append("csv_clear")
        message_fields = ["sender", "text", "encoding", "test", "reference"]
        if "account" in form.fields:
            message_fields.insert(0, "account")
        fieldsets = [
            (_("Recipients"), {"fields": recipients}),
            (_("Message"), {"fields": message_fields}),
        ]
        hidden = ["csv_data", "csv_name", "digest"]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Send in bulk"),
            "subtitle": None,
            "opts": opts,
            "form": form,
            # AdminForm lays out any form; the stubs ask for a ModelForm.
            "adminform": helpers.AdminForm(form, fieldsets, {}, model_admin=self),  # type: ignore[arg-type]
            "hidden_fields": [form[name] for name in hidden],
            "preview": form.preview,
            "can_send": form.preview is not None and not form.errors and form.is_bound,
            "has_view_permission": self.has_view_permission(request),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.send_template, context)

    def _send(self, request: HttpRequest, form: BulkSendForm) -> HttpResponse | None:
        """Create and send the batch; ``None`` when the service refused (errors on the form)."""
        preview = form.preview
        assert preview is not None
        batch: Batch | None = None
        try:
            # Sending starts when this block commits, so the batch exists even if sending fails.
            with transaction.atomic(using=router.db_for_write(Batch)):
                batch = send_preview(preview, created_by=request.user)
        except ValidationError as exc:
            if batch is not None:
                raise
            fields = {"recipients": "numbers", "references": "csv_file"}
            for name, errors in exc.message_dict.items():
                target = fields.get(name, name)
                form.add_error(target if target in form.fields else None, errors)
            return None
        except (MittoError, MittoConfigurationError) as exc:
            if batch is None:
                raise
            self.log_addition(request, batch, [{"added": {}}])
            messages.error(
                request,
                gettext("Batch %(pk)s was created, but sending it failed: %(error)s")
                % {"pk": batch.pk, "error": exc},
            )
            return self._redirect_to(batch)
        self.log_addition(request, batch, [{"added": {}}])
        messages.success(
            request,
            ngettext(
                "Batch %(pk)s: %(count)s message to send, %(parts)s parts.",
                "Batch %(pk)s: %(count)s messages to send, %(parts)s parts.",
                len(preview.recipients),
            )
            % {
                "pk": batch.pk,
                "count": dashboard.format_count(len(preview.recipients)),
                "parts": dashboard.format_count(preview.total_parts),
            },
        )
        if preview.opted_out:
            messages.warning(
                request,
                ngettext(
                    "%(count)s number opted out and was left out.",
                    "%(count)s numbers opted out and were left out.",
                    len(preview.opted_out),
                )
                % {"count": dashboard.format_count(len(preview.opted_out))},
            )
        return self._redirect_to(batch)

    def _redirect_to(self, batch: Batch) -> HttpResponseRedirect:
        opts = self.opts
        return redirect(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", batch.pk
        )
