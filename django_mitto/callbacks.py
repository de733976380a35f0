"""Delivery reports: signed callback URLs, the status table, and the rules that apply a report.

Authenticating the caller (tokens, addresses) lives in :mod:`django_mitto.auth`; its public
names are re-exported here so older imports keep working.

The rules (see the README's "Statuses" section):

* a status only moves forward (``queued < sending < unknown < sent < final``);
* final states (delivered, undelivered, expired, rejected, failed) are never overwritten;
* a duplicate report changes nothing;
* a report whose message is not known yet is stored and applied when the send path records
  that provider id;
* a signed message token reaches its own message only: a report carrying another message's id
  is stored ``mismatched`` and applied to neither;
* a message that never got its Mitto id is found by receiver (and reference) when exactly one
  fits, and the report's id is recorded on it.

Applying a report is one SELECT (of the few columns the rules read, without ORDER BY), then
one INSERT and one conditional UPDATE in one transaction, so concurrent reports for the same
message settle on one state and one status change, with one commit.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from . import sql

# The authentication names are re-exported ("X as X"): they lived here before auth.py.
from .auth import TokenCheck as TokenCheck
from .auth import address_allowed as address_allowed
from .auth import batch_token as batch_token
from .auth import check_token as check_token
from .auth import client_address as client_address
from .auth import message_token as message_token
from .conf import conf
from .models import FINAL_STATUSES, STATUS_RANK, Batch, DeliveryReport, Message, Status
from .signals import announce, delivery_report_received, message_status_changed
from .sql import insert, row_exists

logger = logging.getLogger("django_mitto.callbacks")

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


# -- callback URLs --------------------------------------------------------------------------------


def _base_url(account: str) -> str:
    return conf.account(account).CALLBACK_BASE_URL


def callback_url_for_message(message: Message) -> str:
    """The per-message callback URL sent to Mitto, or "" when its account's
    ``CALLBACK_BASE_URL`` (``MITTO_CALLBACK_BASE_URL``) is unset."""
    base = _base_url(message.account)
    if not base:
        return ""
    return base + reverse("django_mitto:callback", kwargs={"token": message_token(message)})


def callback_url_for_batch(batch: Batch) -> str:
    """The callback URL sent with a bulk request, or "" when its account's base URL is unset."""
    base = _base_url(batch.account)
    if not base:
        return ""
    return base + reverse("django_mitto:callback", kwargs={"token": batch_token(batch)})


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


class MessageGone(LookupError):
    """A signed message token names a message that no longer exists."""


#: How far back the account-wide URL looks for a message accepted without an id.
RECENT_WITHOUT_ID = timedelta(days=7)


def _receiver_numbers(receiver: str) -> list[str]:
    """The E.164 forms a report's receiver may be stored under (Mitto writes no ``+``)."""
    digits = "".join(ch for ch in receiver if ch.isascii() and ch.isdigit())
    if receiver.strip().startswith("00"):
        digits = digits[2:]
    return [f"+{digits}"] if 6 <= len(digits) <= 15 else []


#: The columns of a message the rules read (the rest load on access, see
#: :func:`_after_commit_received`).
MATCH_FIELDS = ("id", "provider_id", "status", "delivery_status", "account", "batch_id")


def _messages() -> Any:
    """Messages, unordered, with only :data:`MATCH_FIELDS` read."""
    return Message.objects.order_by().only(*MATCH_FIELDS)


def _select(conditions: list[tuple[str, str, Any]], limit: int) -> list[Message]:
    """At most ``limit`` messages, unordered, with only :data:`MATCH_FIELDS` read, where every
    ``(column, operator, value)`` holds (``"in"`` takes a list; ``"or"`` takes two lists of
    conditions, either of which holds). Raw SQL: building this query with the ORM takes longer
    than the database takes to answer it."""
    using = router.db_for_read(Message)
    db = connections[using]
    qn = db.ops.quote_name
    params: list[Any] = []

    def where(items: list[tuple[str, str, Any]]) -> str:
        parts = []
        for column, operator, value in items:
            if operator == "or":
                parts.append(f"(({where(value[0])}) OR ({where(value[1])}))")
            elif operator == "in":
                parts.append(f"{qn(column)} IN ({', '.join(['%s'] * len(value))})")
                params.extend(value)
            else:
                parts.append(f"{qn(column)} {operator} %s")
                if isinstance(value, datetime):
                    value = db.ops.adapt_datetimefield_value(value)
                params.append(value)
        return " AND ".join(parts)

    select, names = _select_columns(using)
    sql = f"{select} WHERE {where(conditions)} LIMIT {int(limit)}"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # The columns read are plain ones (no value the database gives in another form).
    return [Message.from_db(using, names, row) for row in rows]


@functools.lru_cache(maxsize=8)
def _select_columns(using: str) -> tuple[str, list[str]]:
    """``SELECT <MATCH_FIELDS> FROM message`` and the attribute names of its columns, in the
    model's field order (as ``Message.from_db()`` takes a subset of the fields)."""
    qn = connections[using].ops.quote_name
    read = [f for f in Message._meta.concrete_fields if f.attname in MATCH_FIELDS]
    columns = ", ".join(qn(str(f.column)) for f in read)
    return f"SELECT {columns} FROM {qn(Message._meta.db_table)}", [f.attname for f in read]


def _by_provider_id(
    provider_id: str, scope: list[tuple[str, str, Any]] | None = None
) -> Message | None:
    """The message holding ``provider_id`` (unique) within ``scope``, without ORDER BY."""
    found = _select([*(scope or []), ("provider_id", "=", provider_id)], 1)
    return found[0] if found else None


def _current_status(pk: int) -> str:
    found = list(Message.objects.filter(pk=pk).order_by().values_list("status", flat=True)[:1])
    return found[0] if found else ""


def _match_message_token(message_pk: int, provider_id: str) -> tuple[Message, str, bool]:
    """The message a message token names, a forced outcome ("" or mismatched), whether to learn
    the report's id. One query: the message, and whichever message holds the report's id."""
    condition = Q(pk=message_pk)
    if provider_id:
        condition |= Q(provider_id=provider_id)
    found = list(_messages().filter(condition)[:2])
    own = next((m for m in found if m.pk == message_pk), None)
    if own is None:
        raise MessageGone(message_pk)
    if not provider_id or own.provider_id == provider_id:
        return own, "", False
    if own.provider_id or len(found) > 1:
        # The report is about another message (or its id is not this message's): never apply it.
        return own, DeliveryReport.Outcome.MISMATCHED, False
    # While the send is in flight its answer brings the id (and records it); learn it only from
    # a message that is past that point without one (the send timed out, or no id came back).
    return own, "", own.status not in (Status.QUEUED, Status.SENDING)


def _match_by_id(
    parsed: ParsedReport, batch_pk: int | None, account: str = ""
) -> tuple[Message | None, bool]:
    """The message with the report's id (within the batch a batch token names, or among the
    messages of the account whose secret authenticated it), else the one message without an id
    that the receiver (and reference) point at. One query (two when three messages without id
    fit besides)."""
    provider_id = parsed.provider_id
    if not provider_id:
        return None, False
    scope: list[tuple[str, str, Any]] = []
    if batch_pk is not None:
        scope.append(("batch_id", "=", batch_pk))
    if account:
        # An account's secret speaks for that account's messages only.
        scope.append(("account", "=", account))
    numbers = _receiver_numbers(parsed.recipient)
    if not numbers:
        return _by_provider_id(provider_id, scope), False
    fallback: list[tuple[str, str, Any]] = [("provider_id", "=", ""), ("recipient", "in", numbers)]
    if parsed.reference:
        fallback.append(("reference", "=", parsed.reference))
    if batch_pk is None:
        # Accepted by Mitto but no id in its answer: only recent ones, only when unambiguous.
        fallback += [
            ("status", "=", Status.SENT),
            ("created_at", ">=", timezone.now() - RECENT_WITHOUT_ID),
        ]
    else:
        # A bulk send that timed out or stopped half-way leaves its rows without ids. Rows still
        # 'sending' are left alone: the bulk answer, when it comes, writes every row, and applies
        # the reports stored meanwhile by their id.
        fallback.append(("status", "in", [Status.UNKNOWN, Status.SENT]))
    exact_or_fallback = ("", "or", ([("provider_id", "=", provider_id)], fallback))
    found = _select([*scope, exact_or_fallback], 3)
    exact = next((m for m in found if m.provider_id == provider_id), None)
    if exact is not None:
        return exact, False
    if len(found) == 3:
        # Unordered, the limit may have left out the message with the id (three messages without
        # id fit besides it): ask for it alone. Ambiguous otherwise, like two.
        return _by_provider_id(provider_id, scope), False
    if len(found) == 1:
        return found[0], True
    return None, False


def _learn_id(message: Message, provider_id: str) -> bool:
    """Record ``provider_id`` on a message that had none; False when another message holds it
    or the message got a different id meanwhile."""
    try:
        with transaction.atomic(using=router.db_for_write(Message)):
            learned = Message.objects.filter(pk=message.pk, provider_id="").update(
                provider_id=provider_id
            )
    except IntegrityError:
        return False
    if not learned:
        current = Message.objects.filter(pk=message.pk).order_by()
        return list(current.values_list("provider_id", flat=True)[:1]) == [provider_id]
    message.provider_id = provider_id
    logger.info(
        "Mitto id %r learned from a delivery report for message %s", provider_id, message.pk
    )
    return True


@functools.lru_cache(maxsize=256)
def _address(remote_addr: str | None) -> str | None:
    """The caller's address as stored (None when it is not an IP address). Mitto calls from a
    few addresses: each is read once."""
    try:
        return str(ipaddress.ip_address(remote_addr)) if remote_addr else None
    except ValueError:
        return None


def record_report(
    parsed: ParsedReport,
    *,
    method: str,
    remote_addr: str | None,
    message_pk: int | None = None,
    batch_pk: int | None = None,
    account: str = "",
) -> DeliveryReport:
    """Store a delivery report and apply it to its message.

    The message is the one a signed message token names (a report whose id belongs to another
    message is stored ``mismatched`` and applied to neither), else the one with the report's
    provider id (within the batch a signed batch token names). A message that never got its
    id (a send that timed out, an answer without id) is found by receiver and reference when
    exactly one matches, and the id is recorded on it.

    ``account`` (the account whose callback secret authenticated the report) limits the match
    to that account's messages: a report about another account's message is stored
    ``unmatched`` and never applied to it.

    Raises :class:`MessageGone` (nothing stored) when a message token names a deleted message.
    """
    forced = ""
    learn = False
    message: Message | None
    if message_pk is not None:
        message, forced, learn = _match_message_token(message_pk, parsed.provider_id)
    else:
        message, learn = _match_by_id(parsed, batch_pk, account)
    if learn and message is not None and not _learn_id(message, parsed.provider_id):
        if message_pk is not None:
            forced = DeliveryReport.Outcome.MISMATCHED
        else:
            message, learn = None, False
    address = _address(remote_addr)
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
    if forced:
        report.outcome = forced
        insert(report)
        logger.warning(
            "Delivery report for Mitto id %r on the callback URL of message %s (id %r) stored "
            "as mismatched: applied to neither",
            report.provider_id,
            message_pk,
            message.provider_id if message else "",
        )
        _after_commit_received(report, message)
        return report
    if message is not None:
        _decide(report, message)
        if _in_one_statement(report, message):
            _apply(report, message, save=True)
        else:
            # The report and the message's new state: one transaction, one commit.
            with transaction.atomic(using=router.db_for_write(Message), savepoint=False):
                _apply(report, message, save=True)
        if learn:
            apply_pending_reports(message)
        return report
    # Unmatched: the INSERT is committed on its own before looking again, so that the send path
    # sees it when it looks for pending reports after recording the id.
    _apply(report, None, save=True)
    if report.provider_id:
        # The send path may have recorded this id between our lookup and our insert, and
        # looked for pending reports before ours existed: look once more.
        found = _by_provider_id(report.provider_id)
        if (
            found is not None
            and (batch_pk is None or found.batch_id == batch_pk)
            and (not account or found.account == account)
        ):
            _apply(report, found, save=False)
            return report
    _after_commit_received(report, None)
    return report


def store_unparsed(
    payload: dict[str, Any],
    *,
    method: str,
    remote_addr: str | None,
    fields: dict[str, Any] | None = None,
) -> DeliveryReport:
    """Store, raw, an authenticated callback that could not be read as a delivery report.

    ``fields`` are whatever report fields could be recognised (for the admin's search), kept
    only when they are short text.
    """
    fields = fields or {}

    def text(name: str, length: int) -> str:
        value = fields.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > length:
            return ""
        return "".join(ch for ch in value if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)

    address = _address(remote_addr)
    report = DeliveryReport.objects.create(
        provider_id=text("id", 64),
        status=text("status", 32),
        reference=text("reference", 255),
        recipient=text("receiver", 32),
        outcome=DeliveryReport.Outcome.UNPARSED,
        method=method[:8],
        remote_addr=address,
        payload=payload,
    )
    _after_commit_received(report, None)
    return report


def _decide(report: DeliveryReport, message: Message | None) -> None:
    """Set ``report.outcome`` from the report and the message's state as read."""
    new = report.mapped_status
    if message is None:
        report.outcome = DeliveryReport.Outcome.UNMATCHED
    elif not new:
        report.outcome = DeliveryReport.Outcome.UNKNOWN_STATUS
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


def _in_one_statement(report: DeliveryReport, message: Message | None) -> bool:
    """Whether :func:`_apply` (with ``save``) stores ``report`` and moves ``message`` on in one
    statement, committed on its own (PostgreSQL, a report that applies): no transaction is
    needed around it then. ``report.outcome`` is decided first (:func:`_decide`)."""
    return (
        message is not None
        and report.outcome == DeliveryReport.Outcome.APPLIED
        and connections[router.db_for_write(DeliveryReport)].vendor == "postgresql"
    )


def _apply(report: DeliveryReport, message: Message | None, *, save: bool) -> None:
    """Decide ``report.outcome``, store the report (when ``save``) and move the message on.

    On PostgreSQL a new report that applies is stored and applied in one statement (see
    :func:`_in_one_statement`); elsewhere, the caller's transaction holds the two together."""
    new = report.mapped_status
    _decide(report, message)
    one_statement = save and _in_one_statement(report, message)
    if message is None:
        logger.info("Delivery report for unknown Mitto id %r stored", report.provider_id)
    elif not new:
        logger.warning(
            "Delivery report with unknown status %r for message %s stored",
            report.status,
            message.pk,
        )
    if one_statement:
        pass  # stored below, with the message's change
    elif save:
        insert(report)
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
    if new != old:
        fields["status_changed_at"] = timezone.now()
    # Conditional on the status read, so old_status in the signal is exactly what changed. (A
    # report with the same status brings raw details only: no status change is announced.)
    values = fields if new == old else {"status": new, **fields}
    if one_statement:
        # Stored "stale" unless the message moved on in the same statement; fixed below if
        # it still moves on.
        changed = sql.insert_applying(
            report,
            _update_message_sql(message.pk, old, values),
            ("outcome", DeliveryReport.Outcome.APPLIED, DeliveryReport.Outcome.STALE),
        )
        if not changed:
            with transaction.atomic(using=router.db_for_write(Message), savepoint=False):
                _apply_again(report, message, old, values)
            return
    else:
        changed = bool(_update_message(message.pk, old, values))
        if not changed and new != old:
            _apply_again(report, message, old, values)
            return
    if not changed:
        _settle_not_applied(report, message)
        return
    for name, value in fields.items():
        setattr(message, name, value)
    if new != old:
        new_status = new
        message.status = new_status
    _after_commit_received(report, message, old_status=old, new_status=new_status)


def _apply_again(
    report: DeliveryReport, message: Message, old: str, values: dict[str, Any]
) -> None:
    """The message was not in the status read (someone moved it meanwhile): re-read, and apply
    ``report`` only while it is still behind; else the report is a duplicate or came late."""
    new = report.mapped_status
    changed = False
    if new != old:
        for _ in range(3):
            # Go on only if still behind.
            old = _current_status(message.pk)
            if STATUS_RANK.get(old, 99) >= STATUS_RANK[new]:
                break
            if _update_message(message.pk, old, {**values, "status": new}):
                changed = True
                break
    if not changed:
        _settle_not_applied(report, message)
        return
    if report.outcome != DeliveryReport.Outcome.APPLIED:
        report.outcome = DeliveryReport.Outcome.APPLIED
        DeliveryReport.objects.filter(pk=report.pk).update(outcome=report.outcome)
    for name, value in values.items():
        setattr(message, name, value)
    _after_commit_received(report, message, old_status=old, new_status=new)


def _settle_not_applied(report: DeliveryReport, message: Message) -> None:
    """Another report got there first: this one is a duplicate or came too late."""
    current = _current_status(message.pk)
    outcome = (
        DeliveryReport.Outcome.DUPLICATE
        if current == report.mapped_status
        else DeliveryReport.Outcome.STALE
    )
    if outcome != report.outcome:
        report.outcome = outcome
        DeliveryReport.objects.filter(pk=report.pk).update(outcome=outcome)
    _after_commit_received(report, message)


def _update_message(pk: int, status: str, values: dict[str, Any]) -> int:
    """``Message.objects.filter(pk=pk, status=status).update(**values)`` in one UPDATE written
    here (see :func:`django_mitto.sql.insert`); how many rows it changed (0 or 1)."""
    statement, params = _update_message_sql(pk, status, values)
    with connections[router.db_for_write(Message)].cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def _update_message_sql(pk: int, status: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """The UPDATE of :func:`_update_message` and its parameters."""
    return sql.update_if(Message, pk, ("status", status), values)


def _after_commit_received(
    report: DeliveryReport,
    message: Message | None,
    *,
    old_status: str | None = None,
    new_status: str | None = None,
) -> None:
    def send() -> None:
        if message is not None and (
            delivery_report_received.has_listeners(DeliveryReport)
            or (new_status and message_status_changed.has_listeners(Message))
        ):
            _load_deferred(message)
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

    transaction.on_commit(send, using=router.db_for_write(DeliveryReport))


def _load_deferred(message: Message) -> None:
    """Read the columns the rules left out (:data:`MATCH_FIELDS`), so that receivers get a
    whole message: one query, and only when someone listens."""
    deferred = message.get_deferred_fields()
    if not deferred:
        return
    with contextlib.suppress(Message.DoesNotExist):  # deleted meanwhile: what was read
        message.refresh_from_db(fields=sorted(deferred))


def apply_pending_reports(message: Message) -> int:
    """Apply the stored reports that arrived for ``message.provider_id`` before it was known
    (one short query when none did, as nearly always)."""
    if not message.provider_id:
        return 0
    if not row_exists(
        DeliveryReport,
        provider_id=message.provider_id,
        outcome=DeliveryReport.Outcome.UNMATCHED,
        null=("message",),
    ):
        return 0
    return _apply_pending(Q(provider_id=message.provider_id), {message.provider_id: message})


def apply_pending_batch_reports(batch: Batch | int) -> int:
    """Apply the reports stored ``unmatched`` on a batch's callback URL while its rows were
    still in flight, once the bulk send has given up on them (rows ``unknown`` without id).

    Each is matched as on arrival: by its id within the batch, else by receiver (and reference)
    when exactly one row without id fits, whose id is then recorded. Returns how many were
    applied.
    """
    pk = batch.pk if isinstance(batch, Batch) else batch
    pending = list(
        DeliveryReport.objects.filter(
            message__isnull=True,
            outcome=DeliveryReport.Outcome.UNMATCHED,
            payload__scope=f"batch {pk}",
        ).order_by("received_at", "pk")
    )
    applied = 0
    for report in pending:
        parsed = ParsedReport(
            provider_id=report.provider_id, reference=report.reference, recipient=report.recipient
        )
        message, learn = _match_by_id(parsed, pk)
        if message is None or (learn and not _learn_id(message, report.provider_id)):
            continue
        _apply(report, message, save=False)
        applied += 1
    return applied


def apply_pending_reports_bulk(messages: Iterable[Any]) -> int:
    """:func:`apply_pending_reports` for many messages at once (one query when none are pending).

    ``messages`` may be messages or any objects with their ``pk`` and ``provider_id`` (the
    rows of a bulk chunk): the messages that reports waited for are loaded then."""
    by_id = {m.provider_id: m for m in messages if m.provider_id}
    if not by_id:
        return 0
    connection = connections[router.db_for_read(DeliveryReport)]
    if connection.vendor == "postgresql":
        # One array parameter rather than hundreds of placeholders (a bulk chunk's ids).
        column = (
            f"{connection.ops.quote_name(DeliveryReport._meta.db_table)}."
            f"{connection.ops.quote_name('provider_id')}"
        )
        condition: Any = RawSQL(
            f"{column} = ANY(%s::varchar[])", (sql.array(by_id),), output_field=BooleanField()
        )
        return _apply_pending(condition, by_id)
    return _apply_pending(Q(provider_id__in=list(by_id)), by_id)


def _apply_pending(condition: Any, by_id: dict[str, Any]) -> int:
    pending = list(
        DeliveryReport.objects.filter(
            condition, message__isnull=True, outcome=DeliveryReport.Outcome.UNMATCHED
        ).order_by("received_at", "pk")
    )
    rows = [by_id[report.provider_id] for report in pending]
    loaded = Message.objects.in_bulk([r.pk for r in rows if not isinstance(r, Message)])
    applied = 0
    for report in pending:
        message = by_id[report.provider_id]
        if not isinstance(message, Message):
            message = by_id[report.provider_id] = loaded[message.pk]
        secret_of = report.payload.get("account") if isinstance(report.payload, dict) else None
        if secret_of and secret_of != message.account:
            # Came on another account's secret URL: it does not speak for this message.
            continue
        applied += 1
        message.refresh_from_db(fields=["status", "delivery_status", "batch"])
        _apply(report, message, save=False)
    return applied
