from __future__ import annotations

from django.urls import path

from .views import DeliveryReportView

app_name = "django_mitto"

urlpatterns = [
    path("callback/<str:token>/", DeliveryReportView.as_view(), name="callback"),
    # The same view without the trailing slash: APPEND_SLASH would answer a POST with a redirect
    # that loses its body (or, under DEBUG, raise), and Mitto's report would be lost.
    path("callback/<str:token>", DeliveryReportView.as_view(), name="callback-no-slash"),
]
