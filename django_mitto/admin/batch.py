from __future__ import annotations

from django.contrib import admin

from ..models import Batch


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["pk", "sender", "total", "created_at", "completed_at"]
