"""Admin for delivery reports: every report as received, a record never edited by hand."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import DeliveryReport
from .bigtable import BigTableAdminMixin


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
    fields = tuple(readonly_fields)

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
