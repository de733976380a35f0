"""The delivery-report endpoint Mitto calls (GET or POST)."""

from __future__ import annotations

import logging
from typing import Any

from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .callbacks import address_allowed, check_token, client_address, record_report
from .serializers import REPORT_FIELDS, DeliveryReportSerializer, resolve_aliases

logger = logging.getLogger("django_mitto.callbacks")

try:  # Django 5.1+
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - older Django

    def login_not_required(view: Any) -> Any:
        return view


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-storable copy of the payload (no NUL characters, which PostgreSQL refuses)."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _flat(querydict: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in querydict:
        values = querydict.getlist(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class DeliveryReportView(APIView):
    """Takes Mitto's delivery reports at ``callback/<token>/``.

    Answers 200 for stored reports (applied, duplicate, or not matched yet) and for pings
    without report fields, 400 naming a malformed field, 403 for a wrong token or address.
    """

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    http_method_names = ["get", "post", "head", "options"]

    def _refuse(self) -> Response:
        return Response({"detail": "Forbidden."}, status=status.HTTP_403_FORBIDDEN)

    def get(self, request: Request, token: str) -> Response:
        return self._handle(request, token, body=None)

    def head(self, request: Request, token: str) -> Response:
        return self._handle(request, token, body=None)

    def post(self, request: Request, token: str) -> Response:
        body = request.data
        if not isinstance(body, dict):
            if hasattr(body, "getlist"):
                body = _flat(body)
            else:
                return Response(
                    {"detail": "The body must be a JSON object or a form."},
                    status=status.HTTP_400_BAD_REQUEST,
                )
        return self._handle(request, token, body=body)

    def _handle(self, request: Request, token: str, body: dict[str, Any] | None) -> Response:
        address = client_address(request.META)
        check = check_token(token)
        if not check.valid or not address_allowed(address):
            logger.warning("Delivery report refused from %s", address or "?")
            return self._refuse()
        query = _flat(request.query_params)
        data = {**query, **(body or {})}
        if not REPORT_FIELDS.intersection(str(k).lower() for k in data):
            return Response({"status": "ok", "detail": "Ready for delivery reports."})
        payload: dict[str, Any] = _clean({"query": query} if body is None else {"query": query, "body": body})
        serializer = DeliveryReportSerializer(
            data=resolve_aliases(data), id_required=check.message_pk is None
        )
        if not serializer.is_valid():
            return Response({"errors": serializer.errors}, status=status.HTTP_400_BAD_REQUEST)
        report = record_report(
            serializer.to_report(payload),
            method=request.method or "",
            remote_addr=address,
            message_pk=check.message_pk,
        )
        return Response({"status": "ok", "outcome": report.outcome})
