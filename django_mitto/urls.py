from __future__ import annotations

from django.urls import path

from .views import DeliveryReportView

app_name = "django_mitto"

urlpatterns = [
    path("callback/<str:token>/", DeliveryReportView.as_view(), name="callback"),
]
