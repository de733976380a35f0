"""Admin for messages: compose one SMS, follow it to its last delivery report, act on many.

The changelist is built for tables of millions of rows: it never counts the whole table (see
:class:`EstimatedCountPaginator`), shows no facet counts, sorts only on indexed columns, and
touches no relation per row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import services, validators
from ..conf import conf
from ..models import Batch, DeliveryReport, Message, Status
from .bigtable import (
    BigTableAdminMixin,
    EstimatedCountPaginator,
    _DateHierarchyQuerySet,
    _local,
)
from .conversion import mark_converted
from .export import CSV_FIELDS, _csv_lines
from .forms import MessageComposeForm
from .reports import DeliveryReportAdmin  # importable from here as before the split
from .timeline import TimelineEntry, build_timeline

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

__all__ = [
    "BatchListFilter",
    "DeliveryReportAdmin",
    "EstimatedCountPaginator",
    "MessageAdmin",
    "TimelineEntry",
]

# -- list filter ------------------------------------------------------------------------------------


class AccountListFilter(admin.SimpleListFilter):
    """Filter by Mitto account: the configured accounts, read from the settings (no query)."""

    title = _("account")
    parameter_name = "account"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[Any, str]]:
        choices = [(name, name) for name in conf.accounts()]
        value = self.value()
        # An account removed from the settings still has its messages: the URL can name it.
        if value and value not in conf.accounts():
            choices.append((value, value))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        return queryset.filter(account=value) if value else None


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


_PROVIDER_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}"
)
_PHONE_LIKE = re.compile(r"(?:\+|00)[0-9][0-9 ()./-]{6,20}")
# A national number ("079 123 45 67"), read with MITTO_DEFAULT_REGION when it is set.
_NATIONAL_PHONE_LIKE = re.compile(r"\(?[0-9][0-9 ()./-]{5,20}")


# -- the admin --------------------------------------------------------------------------------------


def with_account_field(fieldsets: Sequence[Any]) -> list[Any]:
    """``fieldsets`` with ``account`` first in the first one, when there are several accounts."""
    if not conf.SEVERAL_ACCOUNTS:
        return list(fieldsets)
    (name, options), *rest = fieldsets
    return [(name, {**options, "fields": ["account", *options["fields"]]}), *rest]


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

    add_fieldsets: _FieldsetSpec = [
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
    change_fieldsets: _FieldsetSpec = [
        (
            None,
            {
                "fields": [
                    ("recipient", "country"),
                    "sender",
                    "text",
                    "encoding",
                    ("text_length", "segments"),
                ]
            },
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
            {
                "fields": [
                    "created_at",
                    "sent_at",
                    "status_changed_at",
                    "converted_at",
                    "redacted_at",
                ]
            },
        ),
    ]

    class Media:
        css = {"all": ("django_mitto/admin.css",)}

    # -- columns -------------------------------------------------------------------------------

    @admin.display(description=_("text"))
    def text_preview(self, obj: Message) -> str:
        if obj.redacted_at is not None:
            return str(_("(redacted)"))
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

    def get_fieldsets(self, request: HttpRequest, obj: Message | None = None) -> _FieldsetSpec:
        fieldsets = self.add_fieldsets if obj is None else self.change_fieldsets
        return with_account_field(fieldsets)

    def get_readonly_fields(self, request: HttpRequest, obj: Message | None = None) -> list[str]:
        if obj is None:
            return []
        return flatten_fieldsets(with_account_field(self.change_fieldsets))

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = super().get_list_filter(request)
        # A filter with one choice is noise: only with several accounts.
        return [AccountListFilter, *filters] if conf.SEVERAL_ACCOUNTS else filters

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        return [*columns, "account"] if conf.SEVERAL_ACCOUNTS else columns

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
    ) -> HttpResponse:
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
        with transaction.atomic(using=router.db_for_write(Message)):
            for original in originals:
                if original.redacted_at is not None:
                    # Its number and text are gone (MITTO_RETENTION): nothing left to send.
                    problems.append(
                        str(
                            _("message %(pk)s: redacted, its recipient and text are gone")
                            % {"pk": original.pk}
                        )
                    )
                    continue
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
                        account=original.account,
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
