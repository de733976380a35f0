"""django-mitto's URLs, and a bare Django view (no DRF, no token, no rules) that does one UPDATE
of a message by id, setting what a delivery report sets: the baseline of
``bench/bench_reports_view.py``."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from django_mitto.models import Message


@csrf_exempt
def bare_report(request: HttpRequest, pk: int) -> HttpResponse:
    # The row change a delivery report makes (the status, the raw status, when it changed),
    # without the report, the lookup, the rules or DRF.
    status = str(json.loads(request.body).get("status", ""))
    Message.objects.filter(pk=pk).update(
        status=status[:12], delivery_status=status[:32], status_changed_at=timezone.now()
    )
    return HttpResponse(b'{"status": "ok"}', content_type="application/json")


urlpatterns = [
    path("mitto/", include("django_mitto.urls")),
    path("bare/<int:pk>/", bare_report),
]
