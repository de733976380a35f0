"""The delivery-report endpoint Mitto calls (GET or POST).

One way through: :mod:`django_mitto.auth` checks the token and the address, the serializers
read the fields, :mod:`django_mitto.callbacks` applies the report.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
)
from django.db import transaction
from django.http import Http404, HttpResponse, QueryDict
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .auth import TokenCheck, address_allowed, check_token, client_address
from .callbacks import MessageGone, record_report, store_unparsed
from .conf import DEFAULT_ACCOUNT
from .serializers import (
    EXPECTED_FIELDS,
    REPORT_FIELDS,
    DeliveryReportSerializer,
    field_list,
    flatten,
    json_safe,
    report_fields,
)

logger = logging.getLogger("django_mitto.callbacks")
inbound_logger = logging.getLogger("django_mitto.inbound")

try:  # Django 5.1+
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - older Django
    # A looser signature than Django's decorator, which mypy (reading 5.1+ stubs) compares.
    def login_not_required(view: Any) -> Any:  # type: ignore[misc]
        return view


class _JSONParser(JSONParser):
    """JSON parser that answers 400, not 500, to absurdly deep nesting."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


#: How much of a body that could not be parsed is kept in the stored report.
RAW_BODY_LIMIT = 16 * 1024


class _Unparsed(Exception):
    """A callback that is authenticated but cannot be read: stored raw, answered 400."""

    def __init__(self, errors: dict[str, list[str]], **payload: Any) -> None:
        super().__init__("unparsed callback")
        self.errors = errors
        self.payload = payload


def _raw_text(raw: bytes) -> dict[str, Any]:
    text = raw[:RAW_BODY_LIMIT].decode("utf-8", "replace")
    return {"raw_body": text, **({"truncated": True} if len(raw) > RAW_BODY_LIMIT else {})}


def _content_length(meta: dict[str, Any]) -> int:
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _non_atomic_everywhere(view: Any) -> Any:
    """``non_atomic_requests`` for every database: a router may keep the reports on any."""
    for alias in settings.DATABASES:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


# Autocommit even under ATOMIC_REQUESTS: a stored report must be visible to the send path at
# once (see callbacks.record_report), and a failing receiver must not roll it back.
@method_decorator([csrf_exempt, login_not_required, _non_atomic_everywhere], name="dispatch")
class DeliveryReportView(APIView):
    """Takes Mitto's delivery reports at ``callback/<token>/`` (the trailing slash is optional).

    The token (and the caller's address) is checked before the body is read. Answers 200 for
    stored reports (applied, duplicate, mismatched, or not matched yet) and for reachability
    checks (HEAD, a GET without query string, a POST with an empty body); 400 naming what is
    wrong, after storing the request raw as an ``unparsed`` report; 403 for a wrong or expired
    token or address. Django's request log never sees the path, which holds the token.
    """

    #: What the view takes, as its log lines name it.
    what = "Delivery report"
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [_JSONParser, FormParser, MultiPartParser]
    renderer_classes = [JSONRenderer]
    http_method_names = ["get", "post", "head"]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Always JSON. DRF's negotiation would read the query string (?format=) before the token
        # is checked, and a query with too many fields would escape as Django's HTML 400.
        return (JSONRenderer(), JSONRenderer.media_type)

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # django.request would log "<reason>: <path>" for every 4xx/5xx, and the path holds the
        # token. This view logs what matters itself, with the token left out.
        response._has_been_logged = True
        return response

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, (APIException, Http404, PermissionDenied)):
            return super().handle_exception(exc)
        # Anything unforeseen (the database down...): logged here without the path, and answered
        # 503 so that Mitto tries again later rather than dropping the report.
        logger.error("%s could not be handled", self.what, exc_info=exc)
        return Response(
            {"detail": "Temporarily unavailable."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "60"},
        )

    def get(self, request: Request, token: str) -> HttpResponse:
        return self._handle(request, token)

    def head(self, request: Request, token: str) -> HttpResponse:
        return self._handle(request, token)

    def post(self, request: Request, token: str) -> HttpResponse:
        return self._handle(request, token)

    def _handle(self, request: Request, token: str) -> HttpResponse:
        address = client_address(request.META)
        check = check_token(token)
        if not check.valid or not address_allowed(address):
            if check.expired:
                logger.warning(
                    "Delivery report refused from %s: the callback token of %s has expired",
                    address or "?",
                    check.label,
                )
            else:
                logger.warning("Delivery report refused from %s", address or "?")
            return _forbidden()
        if request.method == "HEAD":
            return _ready()
        method = request.method or ""
        try:
            query, body = self._read(request)
            if body is None and not query:
                return _ready()
            fields = report_fields(query, body)
            payload: dict[str, Any] = (
                {"query": query} if body is None else {"query": query, "body": body}
            )
            if check.message_pk is not None or check.batch_pk is not None:
                # Which URL it came to ("batch 3"), never the token: a report stored unmatched
                # on a batch URL is matched within that batch later.
                payload["scope"] = check.label
            if check.account:
                # Whose secret it came on: a report stored unmatched is applied later only to
                # a message of that account.
                payload["account"] = check.account
            received = {**query, **(body or {})}
            if not REPORT_FIELDS.intersection(str(key).lower() for key in received):
                message = _(
                    "No delivery-report field found (received: %(received)s). "
                    "Expected: %(expected)s."
                ) % {"received": field_list(received), "expected": EXPECTED_FIELDS}
                raise _Unparsed({"fields": [message]}, **payload)
            serializer = DeliveryReportSerializer(data=fields, id_required=check.message_pk is None)
            if not serializer.is_valid():
                raise _Unparsed(serializer.errors, _fields=fields, **payload)
        except _Unparsed as unparsed:
            return self._store_unparsed(unparsed, check, method, address)
        try:
            report = record_report(
                serializer.to_report(json_safe(payload)),
                method=method,
                remote_addr=address,
                message_pk=check.message_pk,
                batch_pk=check.batch_pk,
                account=check.account,
            )
        except MessageGone:
            logger.warning(
                "Delivery report refused from %s: %s no longer exists", address or "?", check.label
            )
            return _forbidden()
        return _stored(report.outcome)

    def _read(self, request: Request) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The query string and the body (None when empty), or raise :class:`_Unparsed`."""
        django_request = request._request
        try:
            query = flatten(django_request.GET)
        except TooManyFieldsSent:
            raise _Unparsed(
                {"query": [_("The query string has too many fields.")]},
                query_string=django_request.META.get("QUERY_STRING", "")[:RAW_BODY_LIMIT],
            ) from None
        if request.method != "POST":
            return query, None
        content_type = django_request.META.get("CONTENT_TYPE", "")
        try:
            raw = django_request.body
        except RequestDataTooBig:
            try:
                start = django_request.read(RAW_BODY_LIMIT)
            except OSError:  # pragma: no cover - the client went away
                start = b""
            raise _Unparsed(
                {"body": [_("The body is larger than the server accepts.")]},
                query=query,
                content_type=content_type,
                content_length=_content_length(django_request.META),
                raw_body=start.decode("utf-8", "replace"),
                truncated=True,
            ) from None
        if not raw:
            return query, None
        unreadable = {"query": query, "content_type": content_type, **_raw_text(raw)}
        try:
            data = request.data if content_type.strip() else _unlabelled(raw)
        except UnsupportedMediaType:
            raise _Unparsed(
                {"body": [_("Send the report as JSON, a form or a query string.")]}, **unreadable
            ) from None
        except ParseError as exc:
            raise _Unparsed({"body": [str(exc.detail)]}, **unreadable) from None
        except (TooManyFieldsSent, SuspiciousOperation):
            raise _Unparsed({"body": [_("The body has too many fields.")]}, **unreadable) from None
        if hasattr(data, "getlist"):
            data = flatten(data)
        if data == {}:
            # A form or object without a single field (what a bare POST sends) says nothing
            # that could be lost: a reachability check like an empty body.
            return query, None
        if not isinstance(data, dict):
            raise _Unparsed(
                {"body": [_("The body must be a JSON object or a form.")]}, **unreadable
            )
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        if limit is not None and len(data) > limit:
            # Django counts form fields only; a JSON object gets the same limit.
            raise _Unparsed({"body": [_("The body has too many fields.")]}, **unreadable)
        return query, data

    def _store_unparsed(
        self, unparsed: _Unparsed, check: TokenCheck, method: str, address: str
    ) -> Response:
        payload = dict(unparsed.payload)
        fields = payload.pop("_fields", None)
        if check.message_pk is not None or check.batch_pk is not None:
            payload["scope"] = check.label
        if check.account:
            payload["account"] = check.account
        report = store_unparsed(
            json_safe(payload), method=method, remote_addr=address, fields=fields
        )
        logger.warning(
            "Delivery report %s from %s could not be read (%s); stored as unparsed",
            report.pk,
            address or "?",
            ", ".join(sorted(unparsed.errors)),
        )
        return Response(
            {"errors": unparsed.errors, "outcome": report.outcome},
            status=status.HTTP_400_BAD_REQUEST,
        )


def _unlabelled(raw: bytes) -> Any:
    """A body sent without Content-Type: a JSON object or a form when it reads as one (DRF would
    see no body at all, and the report would pass for a reachability check)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaType("") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise ParseError(_("The body has no Content-Type and is not valid JSON.")) from None
    if "=" in text:
        return QueryDict(text)
    raise UnsupportedMediaType("")


def _stored(outcome: str) -> HttpResponse:
    """The 200 answer to a stored report: the same JSON DRF would render, without its
    rendering machinery (a tenth of the view's own time)."""
    return HttpResponse(
        json.dumps({"status": "ok", "outcome": outcome}, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def _forbidden() -> Response:
    return Response({"detail": "Forbidden."}, status=status.HTTP_403_FORBIDDEN)


def _ready() -> Response:
    return Response({"status": "ok", "detail": "Ready for delivery reports."})


# -- replies ---------------------------------------------------------------------------------------


class InboundMessageView(DeliveryReportView):
    """Takes the replies (MO messages) Mitto pushes, at ``inbound/<token>/``.

    The same rules as :class:`DeliveryReportView`: the token is one of
    ``MITTO_CALLBACK_SECRET`` (a per-message token is refused), GET or POST, JSON or a form,
    field names in any case and with their aliases, the body winning over the query string.
    A request that is not a reply is stored ``unparsed`` and answered 400; a reply 200.
    """

    what = "Reply"

    def _handle(self, request: Request, token: str) -> HttpResponse:
        from .inbound import (
            EXPECTED_INBOUND_FIELDS,
            INBOUND_FIELDS,
            InboundSerializer,
            record_inbound,
            resolve_inbound_aliases,
        )

        address = client_address(request.META)
        check = check_token(token)
        # Only the account-wide secret: a signed token belongs to one message's reports.
        signed = check.message_pk is not None or check.batch_pk is not None
        if not check.valid or signed or not address_allowed(address):
            inbound_logger.warning("Reply refused from %s", address or "?")
            return _forbidden()
        if request.method == "HEAD":
            return Response({"status": "ok", "detail": "Ready for replies."})
        method = request.method or ""
        try:
            query, body = self._read(request)
            if body is None and not query:
                return Response({"status": "ok", "detail": "Ready for replies."})
            fields = {**resolve_inbound_aliases(query), **resolve_inbound_aliases(body or {})}
            payload = {"query": query} if body is None else {"query": query, "body": body}
            received = {**query, **(body or {})}
            if not INBOUND_FIELDS.intersection(str(key).lower() for key in received):
                message = _(
                    "No reply field found (received: %(received)s). Expected: %(expected)s."
                ) % {"received": field_list(received), "expected": EXPECTED_INBOUND_FIELDS}
                raise _Unparsed({"fields": [message]}, **payload)
            serializer = InboundSerializer(data=fields)
            if not serializer.is_valid():
                raise _Unparsed(serializer.errors, _fields=fields, **payload)
        except _Unparsed as unparsed:
            return self._store_unparsed(unparsed, check, method, address)
        inbound = record_inbound(
            dict(serializer.validated_data),
            json_safe(payload),
            method=method,
            remote_addr=address,
            account=check.account or DEFAULT_ACCOUNT,
        )
        return Response({"status": "ok", "outcome": inbound.outcome, "id": inbound.pk})

    def _store_unparsed(
        self, unparsed: _Unparsed, check: TokenCheck, method: str, address: str
    ) -> Response:
        from .inbound import store_unparsed_inbound

        payload = dict(unparsed.payload)
        fields = payload.pop("_fields", None)
        inbound = store_unparsed_inbound(
            json_safe(payload),
            method=method,
            remote_addr=address,
            fields=fields,
            account=check.account or DEFAULT_ACCOUNT,
        )
        inbound_logger.warning(
            "Reply %s from %s could not be read (%s); stored as unparsed",
            inbound.pk,
            address or "?",
            ", ".join(sorted(unparsed.errors)),
        )
        return Response(
            {"errors": unparsed.errors, "outcome": inbound.outcome},
            status=status.HTTP_400_BAD_REQUEST,
        )
