from __future__ import annotations

from django.contrib import admin

from ..models import DeliveryReport, Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["recipient", "short_text", "status", "segments", "test", "created_at"]
    list_filter = ["status", "encoding", "test"]
    search_fields = ["recipient", "provider_id", "reference"]
    list_select_related = ["batch"]


@admin.register(DeliveryReport)
class DeliveryReportAdmin(admin.ModelAdmin):
    list_display = ["provider_id", "status", "mapped_status", "outcome", "received_at"]
    list_filter = ["outcome", "mapped_status"]
    search_fields = ["provider_id"]
