"""The delivery-report endpoint Mitto calls (GET or POST)."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from django.db import transaction
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.exceptions import ParseError
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
    # A looser signature than Django's decorator, which mypy (reading 5.1+ stubs) compares.
    def login_not_required(view: Any) -> Any:  # type: ignore[misc]
        return view


_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-storable copy of the input: no NUL characters and no lone surrogates (which
    PostgreSQL refuses), no uploaded files, bounded depth."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN, inf: not JSON
        return None
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _clean(f"<{type(value).__name__}>")


def _flat(querydict: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in querydict:
        values = querydict.getlist(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


class _JSONParser(JSONParser):
    """JSON parser that answers 400, not 500, to absurdly deep nesting."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


# Autocommit even under ATOMIC_REQUESTS: a stored report must be visible to the send path at
# once (see callbacks.record_report), and a failing receiver must not roll it back.
@method_decorator(
    [csrf_exempt, login_not_required, transaction.non_atomic_requests], name="dispatch"
)
class DeliveryReportView(APIView):
    """Takes Mitto's delivery reports at ``callback/<token>/``.

    The token (and the caller's address) is checked before the body is read. Answers 200 for
    stored reports (applied, duplicate, or not matched yet) and for GET/HEAD pings without
    report fields, 400 naming a malformed field, 403 for a wrong token or address.
    """

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [_JSONParser, FormParser, MultiPartParser]
    http_method_names = ["get", "post", "head"]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ParseError):
            # Same shape as the other 400s: the body is the field that is wrong.
            return Response(
                {"errors": {"body": [str(exc.detail)]}}, status=status.HTTP_400_BAD_REQUEST
            )
        return super().handle_exception(exc)

    def get(self, request: Request, token: str) -> Response:
        return self._handle(request, token)

    def head(self, request: Request, token: str) -> Response:
        return self._handle(request, token)

    def post(self, request: Request, token: str) -> Response:
        return self._handle(request, token)

    def _handle(self, request: Request, token: str) -> Response:
        address = client_address(request.META)
        check = check_token(token)
        if not check.valid or not address_allowed(address):
            logger.warning("Delivery report refused from %s", address or "?")
            return Response({"detail": "Forbidden."}, status=status.HTTP_403_FORBIDDEN)
        query = _flat(request.query_params)
        body: dict[str, Any] | None = None
        if request.method == "POST":
            raw = request.data
            if hasattr(raw, "getlist"):
                body = _flat(raw)
            elif isinstance(raw, dict):
                body = raw
            else:
                return Response(
                    {"errors": {"body": ["The body must be a JSON object or a form."]}},
                    status=status.HTTP_400_BAD_REQUEST,
                )
        data = {**query, **(body or {})}
        if request.method == "HEAD" or not REPORT_FIELDS.intersection(str(k).lower() for k in data):
            return Response({"status": "ok", "detail": "Ready for delivery reports."})
        payload = _clean({"query": query} if body is None else {"query": query, "body": body})
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
            batch_pk=check.batch_pk,
        )
        return Response({"status": "ok", "outcome": report.outcome})
