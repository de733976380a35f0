"""Delivery reports: signed callback URLs, the status table, and the rules that apply a report.

The rules (see the README's "Statuses" section):

* a status only moves forward (``queued < sending < unknown < sent < final``);
* final states (delivered, undelivered, expired, rejected, failed) are never overwritten;
* a duplicate report changes nothing;
* a report whose message is not known yet is stored and applied when the send path records
  that provider id.

Applying a report is one SELECT, one INSERT and one conditional UPDATE, so concurrent reports
for the same message settle on one state and one status change.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from .conf import conf
from .models import FINAL_STATUSES, STATUS_RANK, Batch, DeliveryReport, Message, Status
from .signals import announce, delivery_report_received, message_status_changed

logger = logging.getLogger("django_mitto.callbacks")

_SALT = "django_mitto.callback"

#: Raw delivery-status words (compared case-insensitively) and the status each one means.
STATUS_WORDS: dict[str, str] = {
    # SMPP message states, as carried in delivery receipts
    "delivrd": Status.DELIVERED,
    "undeliv": Status.UNDELIVERED,
    "expired": Status.EXPIRED,
    "rejectd": Status.REJECTED,
    "deleted": Status.FAILED,
    "acceptd": Status.SENT,
    "enroute": Status.SENT,
    "unknown": Status.SENT,
    # plain words
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "undeliverable": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "rejected": Status.REJECTED,
    "sent": Status.SENT,
    "buffered": Status.SENT,
    "accepted": Status.SENT,
    "submitted": Status.SENT,
}


def map_status(word: str) -> str | None:
    """The :class:`Message.Status` a raw delivery-status word means, or None if unknown."""
    return STATUS_WORDS.get((word or "").strip().lower())


# -- tokens ---------------------------------------------------------------------------------------


def _signer() -> signing.Signer:
    # Made per use so SECRET_KEY (and its fallbacks) are read at use time, never at import.
    return signing.Signer(salt=_SALT, sep=".")


def message_token(message: Message | int) -> str:
    """The signed token naming one message (``m<pk>.<signature>``)."""
    pk = message.pk if isinstance(message, Message) else message
    return _signer().sign(f"m{pk}")


def batch_token(batch: Batch | int) -> str:
    """The signed token naming one batch (``b<pk>.<signature>``)."""
    pk = batch.pk if isinstance(batch, Batch) else batch
    return _signer().sign(f"b{pk}")


def _url_for_token(token: str) -> str:
    base = conf.CALLBACK_BASE_URL
    if not base:
        return ""
    return base + reverse("django_mitto:callback", kwargs={"token": token})


def callback_url_for_message(message: Message) -> str:
    """The per-message callback URL sent to Mitto, or "" when MITTO_CALLBACK_BASE_URL is unset."""
    return _url_for_token(message_token(message)) if conf.CALLBACK_BASE_URL else ""


def callback_url_for_batch(batch: Batch) -> str:
    """The callback URL sent with a bulk request, or "" when MITTO_CALLBACK_BASE_URL is unset."""
    return _url_for_token(batch_token(batch)) if conf.CALLBACK_BASE_URL else ""


@dataclass(frozen=True)
class TokenCheck:
    """What a callback token proved: ``valid``, and which message or batch it names."""

    valid: bool
    message_pk: int | None = None
    batch_pk: int | None = None


def check_token(token: str) -> TokenCheck:
    """Authenticate a callback token: a signed message/batch token or a configured secret."""
    token = token or ""
    if "." in token and token[:1] in ("m", "b"):
        try:
            value = _signer().unsign(token)
        except signing.BadSignature:
            value = ""
        if value[1:].isdigit():
            pk = int(value[1:])
            return (
                TokenCheck(True, message_pk=pk)
                if value[0] == "m"
                else TokenCheck(True, batch_pk=pk)
            )
    matched = False
    for secret in conf.CALLBACK_SECRETS:
        # Compare against every secret so the time taken does not tell which one nearly matched.
        matched |= hmac.compare_digest(secret.encode(), token.encode())
    return TokenCheck(matched)


def client_address(meta: dict[str, Any]) -> str:
    """The caller's address: the MITTO_CALLBACK_IP_HEADER header when set, else REMOTE_ADDR.

    When the header holds a list (``X-Forwarded-For``), the last entry is taken: it is the one
    your own proxy appended; entries before it are whatever the caller claimed.
    """
    header = conf.CALLBACK_IP_HEADER
    if header:
        value = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
        if value:
            return value.split(",")[-1].strip()
    return meta.get("REMOTE_ADDR", "") or ""


def address_allowed(address: str) -> bool:
    """True when MITTO_CALLBACK_ALLOWED_IPS is empty or ``address`` is inside one of its ranges."""
    allowed = conf.CALLBACK_ALLOWED_IPS
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in allowed:
        try:
            if ip in ipaddress.ip_network(str(item), strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


# -- applying reports -----------------------------------------------------------------------------


@dataclass
class ParsedReport:
    """The fields read from one delivery report."""

    provider_id: str = ""
    status: str = ""
    error_code: str = ""
    reference: str = ""
    recipient: str = ""
    mcc: str = ""
    mnc: str = ""
    sent_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def _lower_rank_statuses(status: str) -> list[str]:
    rank = STATUS_RANK[status]
    return [s for s, r in STATUS_RANK.items() if r < rank]


def record_report(
    parsed: ParsedReport,
    *,
    method: str,
    remote_addr: str | None,
    message_pk: int | None = None,
    batch_pk: int | None = None,
) -> DeliveryReport:
    """Store a delivery report and apply it to its message.

    The message is the one a signed message token names, else the one with the report's
    provider id (within the batch a signed batch token names).
    """
    message: Message | None = None
    if message_pk is not None:
        message = Message.objects.filter(pk=message_pk).first()
    elif parsed.provider_id:
        candidates = Message.objects.filter(provider_id=parsed.provider_id)
        if batch_pk is not None:
            candidates = candidates.filter(batch_id=batch_pk)
        message = candidates.first()
    try:
        address = str(ipaddress.ip_address(remote_addr)) if remote_addr else None
    except ValueError:
        address = None
    report = DeliveryReport(
        message=message,
        provider_id=parsed.provider_id[:64],
        status=parsed.status[:32],
        mapped_status=map_status(parsed.status) or "",
        error_code=parsed.error_code[:32],
        reference=parsed.reference[:255],
        recipient=parsed.recipient[:32],
        mcc=parsed.mcc[:3],
        mnc=parsed.mnc[:3],
        provider_sent_at=parsed.sent_at,
        method=method[:8],
        remote_addr=address,
        payload=parsed.payload,
    )
    _apply(report, message, save=True)
    if message is None and report.provider_id:
        # The send path may have recorded this id between our lookup and our insert, and
        # looked for pending reports before ours existed: look once more.
        message = Message.objects.filter(provider_id=report.provider_id).first()
        if message is not None and (batch_pk is None or message.batch_id == batch_pk):
            _apply(report, message, save=False)
            return report
    if message is None:
        _after_commit_received(report, None)
    return report


def _apply(report: DeliveryReport, message: Message | None, *, save: bool) -> None:
    """Decide ``report.outcome``, store the report (when ``save``) and move the message on."""
    new = report.mapped_status
    if message is None:
        report.outcome = DeliveryReport.Outcome.UNMATCHED
        logger.info("Delivery report for unknown Mitto id %r stored", report.provider_id)
    elif not new:
        report.outcome = DeliveryReport.Outcome.UNKNOWN_STATUS
        logger.warning(
            "Delivery report with unknown status %r for message %s stored",
            report.status,
            message.pk,
        )
    elif STATUS_RANK[new] > STATUS_RANK.get(message.status, 0):
        report.outcome = DeliveryReport.Outcome.APPLIED
    elif new == message.status and (
        message.status in FINAL_STATUSES or message.delivery_status.lower() == report.status.lower()
    ):
        report.outcome = DeliveryReport.Outcome.DUPLICATE
    elif new == message.status:
        # Same status, new information (for example "buffered" after "sent").
        report.outcome = DeliveryReport.Outcome.APPLIED
    else:
        report.outcome = DeliveryReport.Outcome.STALE
    if save:
        report.save()
    else:
        # A stored unmatched report: whoever links it to its message applies it, once.
        claimed = DeliveryReport.objects.filter(
            pk=report.pk, message__isnull=True, outcome=DeliveryReport.Outcome.UNMATCHED
        ).update(message=message, outcome=report.outcome)
        if not claimed:
            return
        report.message = message

    if message is None:
        return  # announced by record_report once it is sure nothing matches
    if report.outcome != DeliveryReport.Outcome.APPLIED:
        _after_commit_received(report, message)
        return

    fields: dict[str, Any] = {"delivery_status": report.status, "error_code": report.error_code}
    if report.mcc:
        fields["mcc"] = report.mcc
        fields["mnc"] = report.mnc
    old = message.status
    new_status: str | None = None
    if new == old:
        # Raw details only; the status stays, so no status change is announced.
        changed = Message.objects.filter(pk=message.pk, status=old).update(**fields)
    else:
        fields["status_changed_at"] = timezone.now()
        # Conditional on the status read, so old_status in the signal is exactly what changed.
        changed = Message.objects.filter(pk=message.pk, status=old).update(status=new, **fields)
        for _ in range(3):
            if changed:
                new_status = new
                break
            # Someone moved the message meanwhile: re-read, and go on only if still behind.
            old = (
                Message.objects.filter(pk=message.pk).values_list("status", flat=True).first() or ""
            )
            if STATUS_RANK.get(old, 99) >= STATUS_RANK[new]:
                break
            changed = Message.objects.filter(pk=message.pk, status=old).update(status=new, **fields)
    if not changed:
        # Another report got there first: this one is a duplicate or came too late.
        current = Message.objects.filter(pk=message.pk).values_list("status", flat=True).first()
        report.outcome = (
            DeliveryReport.Outcome.DUPLICATE if current == new else DeliveryReport.Outcome.STALE
        )
        DeliveryReport.objects.filter(pk=report.pk).update(outcome=report.outcome)
        _after_commit_received(report, message)
        return
    for name, value in fields.items():
        setattr(message, name, value)
    if new_status:
        message.status = new_status
    _after_commit_received(report, message, old_status=old, new_status=new_status)


def _after_commit_received(
    report: DeliveryReport,
    message: Message | None,
    *,
    old_status: str | None = None,
    new_status: str | None = None,
) -> None:
    def send() -> None:
        announce(delivery_report_received, DeliveryReport, report=report, message=message)
        if new_status and message is not None:
            announce(
                message_status_changed,
                Message,
                message=message,
                old_status=old_status,
                new_status=new_status,
                report=report,
            )

    transaction.on_commit(send)


def apply_pending_reports(message: Message) -> int:
    """Apply the stored reports that arrived for ``message.provider_id`` before it was known."""
    if not message.provider_id:
        return 0
    return _apply_pending(Q(provider_id=message.provider_id), {message.provider_id: message})


def apply_pending_reports_bulk(messages: Iterable[Message]) -> int:
    """:func:`apply_pending_reports` for many messages at once (one query when none are pending)."""
    by_id = {m.provider_id: m for m in messages if m.provider_id}
    if not by_id:
        return 0
    return _apply_pending(Q(provider_id__in=list(by_id)), by_id)


def _apply_pending(condition: Q, by_id: dict[str, Message]) -> int:
    pending = list(
        DeliveryReport.objects.filter(
            condition, message__isnull=True, outcome=DeliveryReport.Outcome.UNMATCHED
        ).order_by("received_at", "pk")
    )
    for report in pending:
        message = by_id[report.provider_id]
        message.refresh_from_db(fields=["status", "delivery_status", "batch"])
        _apply(report, message, save=False)
    return len(pending)
