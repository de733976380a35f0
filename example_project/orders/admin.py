from django.contrib import admin

from .models import Order


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["pk", "customer", "phone", "total", "confirmation_status", "created_at"]
    readonly_fields = ["confirmation"]
    list_select_related = ["confirmation"]

    @admin.display(description="SMS")
    def confirmation_status(self, order):
        return order.confirmation.get_status_display() if order.confirmation else "-"
