from __future__ import annotations

from django.urls import path

from .views import DeliveryReportView, InboundMessageView

app_name = "django_mitto"

urlpatterns = [
    path("callback/<str:token>/", DeliveryReportView.as_view(), name="callback"),
    # The same view without the trailing slash: APPEND_SLASH would answer a POST with a redirect
    # that loses its body (or, under DEBUG, raise), and Mitto's report would be lost.
    path("callback/<str:token>", DeliveryReportView.as_view(), name="callback-no-slash"),
    # Replies (MO messages), with the same rules.
    path("inbound/<str:token>/", InboundMessageView.as_view(), name="inbound"),
    path("inbound/<str:token>", InboundMessageView.as_view(), name="inbound-no-slash"),
]
