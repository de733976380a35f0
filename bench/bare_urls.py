"""django-mitto's URLs, and a bare Django view (no DRF, no token, no rules) that does one UPDATE
of a message by id: the baseline of ``bench/bench_reports_view.py``."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from django_mitto.models import Message


@csrf_exempt
def bare_report(request: HttpRequest, pk: int) -> HttpResponse:
    data = json.loads(request.body)
    Message.objects.filter(pk=pk).update(delivery_status=str(data.get("status", ""))[:32])
    return HttpResponse(b'{"status": "ok"}', content_type="application/json")


urlpatterns = [
    path("mitto/", include("django_mitto.urls")),
    path("bare/<int:pk>/", bare_report),
]
