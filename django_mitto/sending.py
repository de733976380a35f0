"""Sending: what the task backends run. The only place where the Mitto client and the models meet.

* :func:`attempt_message` sends one queued message and returns a :class:`SendOutcome`;
  :func:`send_message` is the same, returning the message.
* :func:`plan_batch` cuts the queued messages of a batch into chunks (one ``/smsbulk`` request
  each, grouped by reference); :func:`attempt_chunk` sends one chunk and returns a
  :class:`ChunkOutcome`; :func:`send_batch` sends every chunk in this process.
* Each claims its rows with one conditional UPDATE (``queued -> sending``), so a message is
  sent at most once however many workers try, and a chunk handed to two workers is sent once.
* :func:`classify_failure` is the one reading of an error, for single and bulk sends alike.

Nothing here schedules anything: whether and when to try again is the task backend's decision
(:class:`django_mitto.backends.base.TaskBackend`), made from the outcome returned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, router, transaction
from django.db.models import BooleanField, Case, F, Field, Q, QuerySet, TextField, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from django.utils.translation import gettext

from . import sql, throttle, validators
from .callbacks import (
    apply_pending_batch_reports,
    apply_pending_reports,
    apply_pending_reports_bulk,
    callback_url_for_batch,
    callback_url_for_message,
)
from .client import BulkResult, SendResult, clean_text
from .clients import get_client
from .conf import conf
from .exceptions import (
    MittoAPIError,
    MittoConfigurationError,
    MittoError,
    MittoTransportError,
    trim,
)
from .models import Batch, Message, Status
from .options import clean_options
from .signals import announce, message_failed, message_sent

logger = logging.getLogger("django_mitto")

__all__ = [
    "ChunkOutcome",
    "Failure",
    "SendOutcome",
    "attempt_chunk",
    "attempt_chunks",
    "attempt_claimed",
    "attempt_message",
    "classify_failure",
    "mark_failed",
    "mark_stuck_unknown",
    "plan_batch",
    "send_batch",
    "send_message",
]


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt at sending a message came to.

    ``retry`` is true when Mitto certainly did not get the request and attempts remain: the
    message is ``queued`` again and the task backend should try later, no sooner than
    ``retry_after`` seconds when Mitto said so.
    """

    message: Message
    retry: bool = False
    retry_after: float | None = None

    @property
    def attempts(self) -> int:
        return self.message.attempts


@dataclass(frozen=True)
class ChunkOutcome:
    """What one attempt at sending a chunk of a batch came to.

    ``retry`` is true when Mitto certainly did not get the request and attempts remain: the
    rows ``ids`` are ``queued`` again and make the chunk to try later.
    """

    batch_pk: int
    ids: list[int] = field(default_factory=list)
    retry: bool = False
    retry_after: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Failure:
    """How a failed request is recorded: ``status`` is ``queued`` (Mitto certainly did not get
    it: try again), ``unknown`` (it may have been sent) or ``failed`` (Mitto refused it)."""

    status: str
    error: str
    retry_after: float | None = None
    response_code: int | None = None
    response_text: str | None = None


def classify_failure(exc: BaseException) -> Failure:
    """The one reading of an error raised while sending, for single and bulk sends alike.

    Retry only when the request certainly never reached Mitto (connection refused, DNS, TLS
    before the body) or Mitto answered 429/503; ``unknown`` when Mitto may have it (a timeout
    after the body went out, an answer that is neither a refusal nor a success, an unexpected
    error mid-request); ``failed`` when Mitto refused it.
    """
    if isinstance(exc, MittoTransportError):
        if exc.request_sent:
            return Failure(Status.UNKNOWN, str(exc))
        return Failure(Status.QUEUED, str(exc))
    if isinstance(exc, MittoAPIError):
        code = _bounded(exc.response_code, -_INT32, _INT32)
        text = clean_text(exc.response_text, 255)
        if exc.retryable:
            status = Status.QUEUED
        elif not exc.refused:
            status = Status.UNKNOWN
        else:
            status = Status.FAILED
        return Failure(status, str(exc), exc.retry_after, code, text)
    if isinstance(exc, MittoError):
        return Failure(Status.FAILED, str(exc))
    return Failure(Status.UNKNOWN, f"{type(exc).__name__}: {exc}")


def _mitto_options(message: Message) -> dict[str, Any]:
    acc = conf.account(message.account)
    return {
        "sender": message.sender or acc.DEFAULT_SENDER,
        "type": message.encoding,
        "reference": message.reference or None,
        "udh": message.udh or None,
        "validity": message.validity,
        "pid": message.pid,
        "flash": message.flash or None,
        "test": True if (message.test or acc.TEST_MODE) else None,
        "callback": callback_url_for_message(message) or None,
    }


def _precheck(message: Message) -> str:
    """Why a claimed message cannot be sent as it is ("" when it can)."""
    errors: dict[str, Any] = {}
    try:
        default_sender = conf.account(message.account).DEFAULT_SENDER
    except MittoConfigurationError as exc:
        return str(exc)  # the account was removed from the settings
    clean_options(
        sender=message.sender or default_sender,
        encoding=message.encoding,
        text=message.text,
        udh=message.udh,
        validity=message.validity,
        pid=message.pid,
        reference=message.reference,
        errors=errors,
    )
    try:
        validators.normalize_recipient(message.recipient)
    except ValidationError as exc:
        errors["recipient"] = exc
    return "; ".join(f"{k}: {' '.join(v.messages)}" for k, v in errors.items())


def send_message(message_or_pk: Message | int) -> Message:
    """Send one queued message to Mitto, at most once, and record the outcome.

    Returns the message as saved. If the message is not ``queued`` (already sent, or being
    sent by another worker), nothing is sent. When Mitto certainly did not get the request
    (connection refused, DNS, TLS, HTTP 429/503) and attempts remain, the message is put back
    to ``queued``; :func:`attempt_message` says so, and the task backends retry from it.
    """
    return attempt_message(message_or_pk).message


def attempt_message(
    message_or_pk: Message | int, *, max_attempts: int | None = None
) -> SendOutcome:
    """Send one queued message (see :func:`send_message`) and say whether to try again.

    ``max_attempts`` (default ``MITTO_MAX_ATTEMPTS``) is how many attempts a message gets when
    Mitto certainly did not receive it; after the last it is ``failed``.
    """
    pk = message_or_pk.pk if isinstance(message_or_pk, Message) else int(message_or_pk)
    message = _claim(pk)
    if message is None:  # not queued: sent, or being sent by another worker
        return SendOutcome(Message.objects.get(pk=pk))
    problem = _precheck(message)
    if problem:
        return SendOutcome(_record_failure(message, problem, None))
    return _attempt(message, max_attempts)


def attempt_claimed(message: Message, *, max_attempts: int | None = None) -> SendOutcome:
    """Send a message that its creator stored already claimed: ``sending``, on its first
    attempt, every field validated (what ``send_sms()`` does when it sends in-process).
    Returns as :func:`attempt_message`."""
    return _attempt(message, max_attempts)


def _claim(pk: int) -> Message | None:
    """Move message ``pk`` from ``queued`` to ``sending`` (one more attempt) and return it as
    it now is; None when it was not ``queued``. One query where the database can return the
    updated row (PostgreSQL, SQLite 3.35+), two elsewhere."""
    now = timezone.now()
    using = router.db_for_write(Message)
    connection = connections[using]
    if not _can_return_from_update(connection):
        moved = (
            Message.objects.using(using)
            .filter(pk=pk, status=Status.QUEUED)
            .update(status=Status.SENDING, attempts=F("attempts") + 1, status_changed_at=now)
        )
        return Message.objects.using(using).get(pk=pk) if moved else None
    stamp = cast(Field, Message._meta.get_field("status_changed_at"))
    params = (Status.SENDING, stamp.get_db_prep_save(now, connection), pk, Status.QUEUED)
    claimed = _returning(using, _claim_sql(using), params)
    return claimed[0] if claimed else None


@functools.lru_cache(maxsize=8)
def _claim_sql(using: str) -> str:
    """The UPDATE of :func:`_claim`, written out once per database: it runs for every
    message a worker sends, and compiling it each time cost more than running it. Its
    parameters are, in order: ``sending``, the time, the id, ``queued``."""
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = Message._meta

    def column(name: str) -> str:
        return quote(cast(str, cast(Field, meta.get_field(name)).column))

    return (
        f"UPDATE {quote(meta.db_table)} SET {column('status')} = %s, "
        f"{column('attempts')} = {column('attempts')} + 1, {column('status_changed_at')} = %s "
        f"WHERE {column('id')} = %s AND {column('status')} = %s"
    )


class _Claimed:
    """A row of a chunk as its claim returned it: what sending it and recording Mitto's answer
    need. A whole :class:`Message` costs more to load than the row costs to send, so one is
    loaded only for whoever needs it (signal receivers, reports that waited for its id); the
    answer's columns are set on this as attributes before they are written."""

    def __init__(self, pk: int, recipient: str, attempts: int) -> None:
        self.pk = pk
        self.recipient = recipient
        self.attempts = attempts
        self.provider_id = ""


def _claim_chunk(batch: Batch, ids: list[int], token: uuid.UUID, now: datetime) -> list[_Claimed]:
    """Move the ``queued`` rows of ``batch`` among ``ids`` to ``sending`` under ``token`` (one
    more attempt); the rows claimed, by pk. One statement where the database can return rows
    from an UPDATE (PostgreSQL, SQLite 3.35+), two elsewhere."""
    using = router.db_for_write(Message)
    connection = connections[using]
    claiming = Message.objects.using(using).filter(
        _pks_in(ids, using), batch=batch, status=Status.QUEUED
    )
    change = {
        "status": Status.SENDING,
        "claim": token,
        "attempts": F("attempts") + 1,
        "status_changed_at": now,
    }
    if _can_return_from_update(connection):
        sql, params = _update_sql(claiming, change)
        meta = Message._meta
        returning = ", ".join(
            connection.ops.quote_name(cast(str, cast(Field, meta.get_field(name)).column))
            for name in ("id", "recipient", "attempts")
        )
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {returning}", params)
            rows = cursor.fetchall()
    else:
        claiming.update(**change)
        rows = list(
            Message.objects.using(using)
            .filter(_pks_in(ids, using), claim=token)
            .values_list("pk", "recipient", "attempts")
        )
    rows.sort()
    return [_Claimed(*row) for row in rows]


def _whole(rows: list[_Claimed]) -> dict[int, Message]:
    """The messages of ``rows`` as they now are, by pk (one query)."""
    using = router.db_for_write(Message)
    return Message.objects.using(using).filter(_pks_in([row.pk for row in rows], using)).in_bulk()


def _returning(using: str, sql: str, params: tuple[Any, ...]) -> list[Message]:
    """Run an UPDATE of messages with every column RETURNING; the rows as messages, by pk."""
    return _read(using, f"{sql} RETURNING {_returning_columns(using)[1]}", params)


def _first_claimed(using: str, rows: list[_Claimed], token: uuid.UUID) -> Message | None:
    """The first message of a chunk just claimed under ``token`` (None if none is left)."""
    pks = [row.pk for row in rows]
    connection = connections[using]
    if connection.vendor != "postgresql":
        return Message.objects.using(using).filter(pk__in=pks, claim=token).order_by("pk").first()
    # Written out: the ORM took longer to compile this than PostgreSQL to run it.
    quote = connection.ops.quote_name
    meta = Message._meta
    pk, claim = quote(cast(str, meta.pk.column)), quote(cast(str, meta.get_field("claim").column))
    found = _read(
        using,
        f"SELECT {_returning_columns(using)[1]} FROM {quote(meta.db_table)} "
        f"WHERE {pk} = ANY(%s::bigint[]) AND {claim} = %s ORDER BY {pk} LIMIT 1",
        (sql.array(pks), token),
    )
    return found[0] if found else None


def _read(using: str, sql: str, params: tuple[Any, ...]) -> list[Message]:
    """Run ``sql``, which returns every column of messages (as ``_returning_columns`` lists
    them); the rows as messages, by pk."""
    connection = connections[using]
    names, _columns, converting = _returning_columns(using)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row)
        for position, column, converters in converting:
            for convert in converters:
                values[position] = convert(values[position], column, connection)
        found.append(Message.from_db(using, names, values))
    found.sort(key=lambda message: message.pk)
    return found


@functools.lru_cache(maxsize=8)
def _returning_columns(using: str) -> tuple[list[str], str, list[tuple[int, Any, list[Any]]]]:
    """For :func:`_returning`, once per database: the field names, the RETURNING list, and the
    columns whose value the database gives in another form than the field's (a JSON text, a
    date on SQLite...) with what turns it into the field's."""
    connection = connections[using]
    meta = Message._meta
    fields: list[Field[Any, Any]] = list(meta.concrete_fields)
    quote = connection.ops.quote_name
    converting = []
    for position, model_field in enumerate(fields):
        column = model_field.get_col(meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            converting.append((position, column, converters))
    returning = ", ".join(quote(cast(str, f.column)) for f in fields)
    return [f.attname for f in fields], returning, converting


def _pks_in(ids: list[int], using: str) -> Any:
    """A filter for the messages ``ids`` (a chunk of a batch). On PostgreSQL one array
    parameter, ``id = ANY(...)``: hundreds of placeholders cost more to send and parse than
    the statement, and the planner then takes the primary key's index (for a batch just
    inserted, its statistics know nothing of the batch and would scan all of it)."""
    if connections[using].vendor == "postgresql":
        connection = connections[using]
        column = (
            f"{connection.ops.quote_name(Message._meta.db_table)}."
            f"{connection.ops.quote_name(cast(str, Message._meta.pk.column))}"
        )
        return RawSQL(
            f"{column} = ANY(%s::bigint[])", (sql.array(ids),), output_field=BooleanField()
        )
    return Q(pk__in=ids)


def _update_sql(queryset: QuerySet[Message], values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The SQL and parameters of ``queryset.update(**values)``, to extend with RETURNING."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    sql, params = query.get_compiler(queryset.db).as_sql()
    return sql, tuple(params)


def _can_return_from_update(connection: Any) -> bool:
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return cast(bool, connection.Database.sqlite_version_info >= (3, 35))
    return False


def _attempt(message: Message, max_attempts: int | None) -> SendOutcome:
    try:
        # Everything that can go wrong before the request: nothing has been sent yet.
        options = _mitto_options(message)
        client = get_client(message.account)
    except MittoConfigurationError as exc:
        return SendOutcome(_record_failure(message, str(exc), exc))
    except Exception as exc:
        logger.exception("SMS %s could not be prepared", message.pk)
        return SendOutcome(_record_failure(message, f"Not sent: {type(exc).__name__}: {exc}", None))
    _wait_turn(message.account, 1)
    try:
        result = client.send(message.recipient, message.text, **options)
    except Exception as exc:
        failure = classify_failure(exc)
        _pause_if_asked(message.account, failure)
        if not isinstance(exc, MittoError):
            logger.exception("SMS %s: unexpected error while sending", message.pk)
        if failure.status == Status.UNKNOWN:
            return SendOutcome(_record_unknown(message, failure))
        if failure.status == Status.QUEUED:
            limit = conf.MAX_ATTEMPTS if max_attempts is None else max_attempts
            if message.attempts < limit:
                return SendOutcome(_record_retry(message, failure), True, failure.retry_after)
            failure = _given_up(failure, message.attempts)
        return SendOutcome(
            _record_failure(message, failure.error, exc if isinstance(exc, MittoError) else None)
        )
    # A report for a message sent with a callback URL of its own comes on that URL, which
    # names the message: it is applied on arrival, none can be waiting for the id.
    return SendOutcome(_record_sent(message, result, reports_wait=not options["callback"]))


def _wait_turn(account: str, count: int) -> None:
    """Wait for the account's pause to end and its rate limit to have room (see
    :mod:`django_mitto.throttle`). A cache that fails does not stop the send: it is logged."""
    try:
        throttle.acquire(account, count)
    except Exception:
        logger.exception("The rate limit of account %s could not be checked", account)


def _pause_if_asked(account: str, failure: Failure) -> None:
    """Mitto said when to come back (429 or 503 with ``Retry-After``): every process of the
    account waits until then, not only the one that was told."""
    if failure.retry_after is None or failure.status != Status.QUEUED:
        return
    try:
        throttle.pause(account, failure.retry_after)
    except Exception:
        logger.exception("The pause of account %s could not be shared", account)


def _given_up(failure: Failure, attempts: int) -> Failure:
    return Failure(
        Status.FAILED,
        f"{failure.error} Gave up after {attempts} attempts.",
        None,
        failure.response_code,
        failure.response_text,
    )


#: Mitto's clock may differ from ours, but not by this much: beyond it, ``sent_at`` is ours.
MAX_CLOCK_SKEW = timedelta(days=1)
_PROVIDER_ID_LENGTH: int = Message._meta.get_field("provider_id").max_length or 64
# Mitto's ids are UUIDs or hex strings: printable ASCII without blanks is generous enough.
_STORABLE_ID = re.compile(r"[!-~]+")
_INT32 = 2**31 - 1


def _bounded(value: int | None, low: int, high: int) -> int | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def _answer_fields(
    result: SendResult, now: datetime, *, code: int | None = None, text: str | None = None
) -> tuple[dict[str, Any], str]:
    """The columns an accepted answer (or bulk item) writes, each cleaned and bounded, and a
    note for ``error`` when the answer gives no id that can be stored (``""`` when it does)."""
    provider_id = result.id
    note = ""
    if not provider_id:
        note = gettext(
            "Mitto accepted the message (responseCode 0) but its answer has no message id, so "
            "delivery reports cannot be matched by id. Answer: %(answer)s"
        ) % {"answer": result.answer() or "-"}
    elif len(provider_id) > _PROVIDER_ID_LENGTH or not _STORABLE_ID.fullmatch(provider_id):
        note = gettext(
            "Mitto accepted the message (responseCode 0) but its id cannot be stored (more than "
            "%(limit)d characters, or not printable ASCII): %(id)s. Delivery reports cannot be "
            "matched by id."
        ) % {"limit": _PROVIDER_ID_LENGTH, "id": repr(trim(provider_id, 120))}
        provider_id = ""
    timestamp = result.timestamp
    if timestamp is None or abs(timestamp - now) > MAX_CLOCK_SKEW:
        timestamp = now
    fields: dict[str, Any] = {
        "provider_id": provider_id,
        "response_code": _bounded(result.response_code if code is None else code, -_INT32, _INT32),
        "response_text": clean_text(result.response_text if text is None else text, 255),
        "sent_at": timestamp,
        "error": note,
    }
    # Mitto's counts win when it gives them (a test call answers 0: keep ours then).
    parts = _bounded(result.parts, 1, 255)
    if parts:
        fields["segments"] = parts
    length = _bounded(result.text_length, 1, _INT32)
    if length:
        fields["text_length"] = length
    return fields, note


def _write_sent(
    message: Message | _Claimed,
    result: SendResult,
    fields: dict[str, Any],
    now: datetime,
    *,
    reports_wait: bool = True,
) -> tuple[bool | None, bool]:
    """Store an accepted answer on one row. Returns whether it was stored (True, and the
    message moved to ``sent``; None, stored on a message that a delivery report had already
    moved on; False, not stored) and whether to look for reports waiting for its id
    (``reports_wait``, when stored).

    When the row cannot take it (the id is already another message's, or the database refuses
    a value), the message ends ``unknown`` with the answer kept in ``error``: Mitto accepted
    something, so the message must not look unsent, and nothing is raised to the caller.
    """
    # Outside a transaction each UPDATE commits on its own; inside one, a savepoint keeps a
    # refused write from breaking the caller's transaction.
    using = router.db_for_write(Message)
    in_transaction = transaction.get_connection(using).in_atomic_block
    try:
        with transaction.atomic(using=using) if in_transaction else contextlib.nullcontext():
            # A delivery report on the per-message callback URL may already have moved it on.
            if _mark_sent(message.pk, {"status": Status.SENT, "status_changed_at": now, **fields}):
                return True, reports_wait
            Message.objects.filter(pk=message.pk).update(**fields)
        return None, reports_wait
    except Exception as exc:
        owner = (
            _id_owner(message, fields["provider_id"]) if isinstance(exc, IntegrityError) else None
        )
        if owner is not None:
            reason = gettext(
                "Mitto's answer gives the id %(id)s, which message %(owner)s already has: the "
                "answer may not be about this message, and the id was not stored."
            ) % {"id": fields["provider_id"], "owner": owner}
        else:
            logger.exception("SMS %s: Mitto's answer could not be stored", message.pk)
            reason = gettext("Mitto's answer could not be stored (%(error)s).") % {
                "error": type(exc).__name__
            }
    _record_unstorable(message, result, reason)
    return False, False


def _mark_sent(pk: int, values: dict[str, Any]) -> bool:
    """Write ``values`` on message ``pk`` if it is still ``sending``; whether it was.

    The reports that came before the id was known are looked for by the caller only after
    this has committed: a report stored meanwhile either sees the id here (the view looks for
    the message again after storing the report) or is seen by that look. Asked in this same
    statement, before its commit, a report stored while it ran would be seen by neither.
    """
    statement, params = sql.update_if(Message, pk, ("status", Status.SENDING), values)
    with connections[router.db_for_write(Message)].cursor() as cursor:
        cursor.execute(statement, params)
        return bool(cursor.rowcount)


def _id_owner(message: Message | _Claimed, provider_id: str) -> int | None:
    """The other message that already has ``provider_id``, if any."""
    if not provider_id:
        return None
    try:
        return (
            Message.objects.filter(provider_id=provider_id)
            .exclude(pk=message.pk)
            .values_list("pk", flat=True)
            .first()
        )
    except Exception:
        logger.exception("SMS %s: could not look up Mitto id %s", message.pk, provider_id)
        return None


def _record_unstorable(message: Message | _Claimed, result: SendResult, reason: str) -> None:
    error = gettext(
        "%(reason)s Answer: %(answer)s. Mitto accepted the request (responseCode 0): "
        "check before sending it again."
    ) % {"reason": reason, "answer": result.answer() or "-"}
    logger.error("SMS %s to %s: outcome unknown: %s", message.pk, message.recipient, reason)
    now = timezone.now()
    try:
        with transaction.atomic(using=router.db_for_write(Message)):
            changed = Message.objects.filter(pk=message.pk, status=Status.SENDING).update(
                status=Status.UNKNOWN, error=error, status_changed_at=now
            )
            if not changed:
                Message.objects.filter(pk=message.pk).update(error=error)
    except Exception:
        # The database itself is failing: the row stays "sending", which mitto_dispatch flags
        # as unknown later. Never raise once Mitto has the message.
        logger.exception("SMS %s: could not record the unknown outcome", message.pk)


def _record_sent(message: Message, result: SendResult, *, reports_wait: bool = True) -> Message:
    now = timezone.now()
    fields, note = _answer_fields(result, now)
    stored, waiting = _write_sent(message, result, fields, now, reports_wait=reports_wait)
    if stored is False:
        message.refresh_from_db()
        return message
    applied = 0
    if fields["provider_id"] and waiting:
        # A report that came before the id was known is applied now (one query when none did).
        message.provider_id = fields["provider_id"]
        try:
            applied = apply_pending_reports(message)
        except Exception:
            logger.exception("SMS %s: pending delivery reports could not be applied", message.pk)
            applied = -1  # some may have been: read the row back
    if stored and not applied:
        # The row is as written: no need to read it back.
        for name, value in fields.items():
            setattr(message, name, value)
        message.status = Status.SENT
        message.status_changed_at = now
    else:
        message.refresh_from_db()
    if note:
        logger.warning("SMS %s to %s sent, but %s", message.pk, message.recipient, note)
    else:
        logger.info(
            "SMS %s to %s sent, Mitto id %s", message.pk, message.recipient, message.provider_id
        )
    announce(message_sent, Message, message=message, result=result)
    return message


def _record_failure(message: Message, error: str, exc: MittoError | None) -> Message:
    fields: dict[str, Any] = {
        "status": Status.FAILED,
        "error": clean_text(error, 10_000),
        "status_changed_at": timezone.now(),
    }
    if isinstance(exc, MittoAPIError):
        fields["response_code"] = _bounded(exc.response_code, -_INT32, _INT32)
        fields["response_text"] = clean_text(exc.response_text, 255)
    changed = Message.objects.filter(pk=message.pk, status=Status.SENDING).update(**fields)
    message.refresh_from_db()
    logger.warning("SMS %s to %s failed: %s", message.pk, message.recipient, error)
    if changed:  # (not when someone moved it on while the request was out)
        announce(message_failed, Message, message=message, error=exc)
    return message


#: Appended to the error of a message that may have reached Mitto.
MAY_HAVE_BEEN_SENT = " The message may have been sent: check before sending it again."


def _failure_fields(failure: Failure) -> dict[str, Any]:
    """The columns a failure writes (``status``, ``error``, Mitto's code and text).

    ``response_code`` and ``response_text`` keep Mitto's last answer about the message: an
    attempt Mitto did not answer (a timeout, a refused connection) leaves them as they were.
    """
    error = clean_text(failure.error, 10_000)
    if failure.status == Status.UNKNOWN:
        error += MAY_HAVE_BEEN_SENT
    fields: dict[str, Any] = {
        "status": failure.status,
        "error": error,
        "status_changed_at": timezone.now(),
    }
    if failure.response_code is not None or failure.response_text is not None:
        fields["response_code"] = failure.response_code
        fields["response_text"] = failure.response_text or ""
    return fields


def _record_unknown(message: Message, failure: Failure) -> Message:
    Message.objects.filter(pk=message.pk, status=Status.SENDING).update(**_failure_fields(failure))
    message.refresh_from_db()
    logger.error("SMS %s to %s: outcome unknown: %s", message.pk, message.recipient, failure.error)
    return message


def _record_retry(message: Message, failure: Failure) -> Message:
    Message.objects.filter(pk=message.pk, status=Status.SENDING).update(**_failure_fields(failure))
    message.refresh_from_db()
    logger.info("SMS %s not sent (%s); will retry", message.pk, failure.error)
    return message


def send_batch(batch_or_pk: Batch | int) -> Batch:
    """Send the queued messages of a batch through ``/smsbulk``, chunk after chunk, here.

    Each chunk is claimed with one UPDATE and the ids Mitto returns are written back with one
    more; two requests are under way at once (:func:`attempt_chunks`). A chunk Mitto refuses
    fails as a whole; one whose answer was lost after the request went out is ``unknown``. The task backends do not call this: they
    hand each chunk of :func:`plan_batch` to a task of its own (:func:`attempt_chunk`).
    """
    pk = batch_or_pk.pk if isinstance(batch_or_pk, Batch) else int(batch_or_pk)
    for _outcome in attempt_chunks(pk, plan_batch(pk)):
        pass
    return Batch.objects.get(pk=pk)


def plan_batch(batch_or_pk: Batch | int) -> list[list[int]]:
    """Cut the queued messages of a batch into chunks: lists of message ids, each at most
    ``MITTO_BULK_CHUNK_SIZE`` long, each of one reference (one ``/smsbulk`` request carries
    one reference). A batch with nothing left to send is marked complete."""
    pk = batch_or_pk.pk if isinstance(batch_or_pk, Batch) else int(batch_or_pk)
    chunk_size = conf.BULK_CHUNK_SIZE
    groups: dict[str, list[int]] = {}
    for message_pk, reference in (
        Message.objects.filter(batch_id=pk, status=Status.QUEUED)
        .order_by("pk")
        .values_list("pk", "reference")
    ):
        groups.setdefault(reference, []).append(message_pk)
    chunks = [
        ids[start : start + chunk_size]
        for ids in groups.values()
        for start in range(0, len(ids), chunk_size)
    ]
    if not chunks:
        _complete_if_done(pk)
    return chunks


def _complete_if_done(batch_pk: int) -> None:
    """Mark the batch complete when no message of it is left to send. Run after the current
    transaction commits: inside one, another worker's last chunk could still look unsent to
    both, and neither would mark the batch."""
    transaction.on_commit(
        lambda: _mark_complete_if_done(batch_pk), using=router.db_for_write(Batch)
    )


def _mark_complete_if_done(batch_pk: int) -> None:
    if not Message.objects.filter(
        batch_id=batch_pk, status__in=[Status.QUEUED, Status.SENDING]
    ).exists():
        Batch.objects.filter(pk=batch_pk, completed_at__isnull=True).update(
            completed_at=timezone.now()
        )


def attempt_chunk(
    batch_or_pk: Batch | int, ids: list[int], *, max_attempts: int | None = None
) -> ChunkOutcome:
    """Send one chunk of a batch (message ids from :func:`plan_batch`) in one ``/smsbulk``
    request and say whether to try again.

    The chunk is claimed like a message: one conditional UPDATE moves its ``queued`` rows to
    ``sending`` under a token of its own, so a chunk handed to two workers is sent once (the
    second claims nothing). ``max_attempts`` is as for :func:`attempt_message`.
    """
    pk = batch_or_pk.pk if isinstance(batch_or_pk, Batch) else int(batch_or_pk)
    try:
        flight = _take_off(Batch.objects.get(pk=pk), list(ids))
        if flight is None:
            return ChunkOutcome(pk)
        return _land(flight, functools.partial(_request, flight), max_attempts)
    finally:
        _complete_if_done(pk)


def attempt_chunks(
    batch_or_pk: Batch | int,
    chunks: Iterable[list[int]],
    *,
    max_attempts: int | None = None,
    in_flight: int = 2,
) -> Iterator[ChunkOutcome]:
    """:func:`attempt_chunk` for each of ``chunks`` in turn, with up to ``in_flight`` requests
    to Mitto under way at once: while Mitto answers one chunk, this process records the
    answer to the one before and claims the next. Yields each chunk's outcome, in order.

    Everything but the requests runs in the calling thread, on its database connection: each
    chunk is claimed, and its answer recorded, exactly as :func:`attempt_chunk` does. A
    generator left unfinished waits for the requests already made and records their answers.
    """
    pk = batch_or_pk.pk if isinstance(batch_or_pk, Batch) else int(batch_or_pk)
    batch = Batch.objects.get(pk=pk)
    if in_flight < 2:
        for ids in chunks:
            yield attempt_chunk(batch, ids, max_attempts=max_attempts)
        return
    flying: deque[tuple[_Flight | None, Future[BulkResult] | None]] = deque()
    with ThreadPoolExecutor(in_flight, thread_name_prefix="mitto-bulk") as pool:
        try:
            for ids in chunks:
                flight = _take_off(batch, list(ids))
                flying.append((flight, None if flight is None else pool.submit(_request, flight)))
                if len(flying) >= in_flight:
                    yield _land_next(pk, flying, max_attempts)
            while flying:
                yield _land_next(pk, flying, max_attempts)
        finally:
            try:
                while flying:  # closed early: what went to Mitto is still recorded
                    _land_next(pk, flying, max_attempts)
            finally:
                # Once for all: until the last chunk has landed, the batch cannot be complete.
                _complete_if_done(pk)


def _land_next(
    pk: int,
    flying: deque[tuple[_Flight | None, Future[BulkResult] | None]],
    max_attempts: int | None,
) -> ChunkOutcome:
    flight, future = flying.popleft()
    if flight is None or future is None:
        return ChunkOutcome(pk)
    return _land(flight, future.result, max_attempts)


@dataclass
class _Flight:
    """A claimed chunk on its way: what its request needs, and what recording the answer needs."""

    batch: Batch
    token: uuid.UUID
    rows: list[_Claimed]
    text: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    client: Any = None
    #: Raised before the request could be made (an account removed from the settings...).
    error: Exception | None = None

    @property
    def attempts(self) -> int:
        return self.rows[0].attempts


def _take_off(batch: Batch, ids: list[int]) -> _Flight | None:
    """Claim a chunk and prepare its request (None when nothing was left to claim). Waits for
    the account's turn (pause, rate limit) before returning."""
    token = uuid.uuid4()
    rows = _claim_chunk(batch, ids, token, timezone.now())
    if not rows:
        return None
    flight = _Flight(batch, token, rows)
    # The options are the chunk's first message's (a chunk is of one batch and reference).
    first = _first_claimed(router.db_for_write(Message), rows, token)
    if first is None:
        return None  # deleted meanwhile
    try:
        # The account may be unknown (removed from the settings): that fails the chunk unsent.
        flight.options = _mitto_options(first)
        flight.options["callback"] = callback_url_for_batch(batch) or None
        flight.client = get_client(batch.account)
        flight.text = first.text
    except Exception as exc:
        flight.error = exc
        return flight
    _wait_turn(batch.account, len(rows))
    return flight


def _request(flight: _Flight) -> BulkResult:
    """The chunk's ``POST /smsbulk`` (no database: this may run in another thread)."""
    if flight.error is not None:
        raise flight.error
    return cast(
        BulkResult,
        flight.client.send_bulk(
            [row.recipient for row in flight.rows], flight.text, **flight.options
        ),
    )


def _land(
    flight: _Flight, answer: Callable[[], BulkResult], max_attempts: int | None
) -> ChunkOutcome:
    """Record what became of a chunk's request: ``answer()`` gives Mitto's answer, or raises
    what went wrong."""
    batch, messages, attempts = flight.batch, flight.rows, flight.attempts
    try:
        result = answer()
    except Exception as exc:
        if not isinstance(exc, MittoError):
            logger.exception("Batch %s: unexpected error while sending a chunk", batch.pk)
        failure = classify_failure(exc)
        _pause_if_asked(batch.account, failure)
        limit = conf.MAX_ATTEMPTS if max_attempts is None else max_attempts
        if failure.status == Status.QUEUED and attempts >= limit:
            failure = _given_up(failure, attempts)
        using = router.db_for_write(Message)
        fields = _failure_fields(failure)
        Message.objects.using(using).filter(
            _pks_in([row.pk for row in messages], using), claim=flight.token, status=Status.SENDING
        ).update(**fields)
        logger.warning("Batch %s: chunk of %d not sent: %s", batch.pk, len(messages), exc)
        if failure.status == Status.FAILED:
            failed = _whole(messages) if message_failed.has_listeners(Message) else {}
            for row in messages if failed else ():
                # Only the rows this UPDATE failed: not one deleted, or moved on while the
                # request was out (flagged stuck, then perhaps marked failed by someone).
                current = failed.get(row.pk)
                if (
                    current is not None
                    and current.status == Status.FAILED
                    and current.status_changed_at == fields["status_changed_at"]
                ):
                    announce(
                        message_failed,
                        Message,
                        message=current,
                        error=exc if isinstance(exc, MittoError) else None,
                    )
        elif failure.status == Status.UNKNOWN:
            _apply_reports_of_rows_without_id(batch)
        else:
            return ChunkOutcome(
                batch.pk,
                [m.pk for m in messages],
                retry=True,
                retry_after=failure.retry_after,
                attempts=attempts,
            )
        return ChunkOutcome(batch.pk, attempts=attempts)

    items = _match_bulk_items(messages, result.messages)
    done = timezone.now()
    accepted: list[tuple[_Claimed, SendResult, dict[str, Any]]] = []
    missing: list[_Claimed] = []
    flagged: list[str] = []
    for message, item in zip(messages, items):
        if item is None:
            missing.append(message)
            continue
        fields, note = _answer_fields(
            item, done, code=result.response_code, text=result.response_text
        )
        if note:
            flagged.append(note)
        accepted.append((message, item, fields))
    if flagged:
        # One line per chunk, not one per recipient: a chunk may hold thousands.
        logger.warning(
            "Batch %s: %d of %d SMS sent without a usable Mitto id; first: %s",
            batch.pk,
            len(flagged),
            len(messages),
            flagged[0],
        )
    if missing:
        Message.objects.filter(pk__in=[m.pk for m in missing], status=Status.SENDING).update(
            status=Status.UNKNOWN,
            error=gettext(
                "Mitto's bulk answer has no item for this recipient: it may have been sent. "
                "Answer: %(answer)s"
            )
            % {"answer": result.raw or "-"},
            status_changed_at=done,
        )
    stored = _write_bulk_sent(batch, accepted, done)
    try:
        apply_pending_reports_bulk([message for message, _ in stored])
    except Exception:
        logger.exception("Batch %s: pending delivery reports could not be applied", batch.pk)
    if stored and message_sent.has_listeners(Message):
        sent = _whole([row for row, _ in stored])
        for row, item in stored:
            if row.pk in sent:  # (not deleted meanwhile)
                announce(message_sent, Message, message=sent[row.pk], result=item)
    if missing or flagged:
        _apply_reports_of_rows_without_id(batch)
    return ChunkOutcome(batch.pk, attempts=attempts)


def _apply_reports_of_rows_without_id(batch: Batch) -> None:
    """Reports that came on the batch URL while the chunk was in flight waited ``unmatched``;
    now that some rows have no id (``unknown``, or accepted without one), match them."""
    try:
        apply_pending_batch_reports(batch)
    except Exception:
        logger.exception("Batch %s: pending delivery reports could not be applied", batch.pk)


#: What every accepted bulk item writes on its row: the status and when it changed...
_BULK_STATUS_FIELDS = ("status", "status_changed_at")
#: ...and all the columns an accepted item may write: those of :func:`_answer_fields` as well
#: (``segments`` and ``text_length`` only when Mitto's item gives them).
_BULK_SENT_FIELDS = [
    "status",
    "provider_id",
    "response_code",
    "response_text",
    "sent_at",
    "status_changed_at",
    "segments",
    "text_length",
    "error",
]


def _write_bulk_sent(
    batch: Batch, accepted: list[tuple[_Claimed, SendResult, dict[str, Any]]], done: datetime
) -> list[tuple[_Claimed, SendResult]]:
    """Store the accepted items in one go; row by row when that is refused (a duplicate id,
    say), so that only the rows that cannot be written end ``unknown``."""
    for row, _item, fields in accepted:
        for name, value in fields.items():
            setattr(row, name, value)
        row.status = Status.SENT  # type: ignore[attr-defined]
        row.status_changed_at = done  # type: ignore[attr-defined]
    # Mitto's counts (parts, length) are written only where its item gave them (ours are kept
    # otherwise): the rows are written in groups by the columns their answers fill, nearly
    # always one group.
    groups: dict[tuple[str, ...], list[_Claimed]] = {}
    for row, _item, fields in accepted:
        names = tuple(n for n in _BULK_SENT_FIELDS if n in fields or n in _BULK_STATUS_FIELDS)
        groups.setdefault(names, []).append(row)
    try:
        with transaction.atomic(using=router.db_for_write(Message)):
            for names, rows in groups.items():
                _bulk_write(rows, list(names))
        return [(row, item) for row, item, _ in accepted]
    except Exception as exc:
        logger.warning(
            "Batch %s: Mitto's answer could not be stored at once (%s); storing row by row",
            batch.pk,
            type(exc).__name__,
        )
    stored: list[tuple[_Claimed, SendResult]] = []
    for row, item, fields in accepted:
        # Pending reports are applied for every stored row afterwards, in one query.
        if _write_sent(row, item, fields, done, reports_wait=False)[0] is not False:
            stored.append((row, item))
    return stored


def _bulk_write(rows: list[_Claimed], names: list[str]) -> None:
    """Write the attributes ``names`` of ``rows`` to their messages. A column holding one
    value on every row is set by one plain UPDATE; the others, on PostgreSQL, by one
    ``UPDATE ... FROM unnest(arrays)``, elsewhere by ``bulk_update`` (whose CASE with one WHEN
    per row and column costs far more to compile than the request to Mitto takes)."""
    if not rows:
        return
    same: dict[str, Any] = {}
    varying: list[str] = []
    for name in names:
        distinct = {getattr(row, name) for row in rows}
        if len(distinct) == 1:
            same[name] = distinct.pop()
        else:
            varying.append(name)
    using = router.db_for_write(Message)
    pks = [row.pk for row in rows]
    connection = connections[using]
    if connection.vendor != "postgresql" or not varying:
        if same:
            Message.objects.using(using).filter(_pks_in(pks, using)).update(**same)
        if varying:
            Message.objects.using(using).bulk_update(
                [
                    Message(pk=row.pk, **{name: getattr(row, name) for name in varying})
                    for row in rows
                ],
                varying,
                batch_size=500,
            )
        return
    # PostgreSQL: one UPDATE ... FROM unnest(arrays), one array per varying column and the
    # shared values as constants: each row is rewritten once, and the statement is the same
    # short text whatever the number of rows, with nothing to compile per row.
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    fields = [cast(Field, Message._meta.get_field(name)) for name in varying]
    quoted = [quote(cast(str, f.column)) for f in fields]
    assignments = [f"{q} = v.{q}" for q in quoted]
    params: list[Any] = []
    for name, value in same.items():
        field = cast(Field, Message._meta.get_field(name))
        assignments.append(f"{quote(cast(str, field.column))} = %s")
        params.append(field.get_db_prep_save(value, connection))
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    params.append(sql.array(pks))
    params += [_array_param([getattr(row, f.attname) for row in rows]) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS m SET {', '.join(assignments)} FROM unnest(%s::bigint[], "
            f"{arrays}) AS v(id, {', '.join(quoted)}) WHERE m.id = v.id",
            params,
        )


def _array_param(values: list[Any]) -> Any:
    """``values`` as one array parameter: a literal where :func:`sql.array` can write one."""
    try:
        return sql.array(values)
    except TypeError:
        return values


def _match_bulk_items(messages: list[_Claimed], items: list[SendResult]) -> list[SendResult | None]:
    """Pair each message with its item in Mitto's bulk answer (by order, checked by number)."""

    def digits(value: str) -> str:
        return value.lstrip("+")

    if len(items) == len(messages) and all(
        not item.to or digits(item.to) == digits(m.recipient) for m, item in zip(messages, items)
    ):
        return list(items)
    by_number: dict[str, list[SendResult]] = {}
    for item in items:
        by_number.setdefault(digits(item.to), []).append(item)
    out: list[SendResult | None] = []
    for message in messages:
        bucket = by_number.get(digits(message.recipient))
        out.append(bucket.pop(0) if bucket else None)
    return out


# -- after the send: what a person or mitto_dispatch decides ---------------------------------------


def mark_failed(messages: Iterable[Message | int], *, by: str = "") -> int:
    """Mark the given messages that are ``unknown`` as ``failed`` (someone checked: not sent).

    Messages in any other state are left as they are. A note naming ``by`` (when given) and
    the time is added to ``error``; ``message_failed`` is sent once the transaction commits for
    each message this call changed, and for no other. Returns how many messages changed.
    """
    pks = [m.pk if isinstance(m, Message) else int(m) for m in messages]
    now = timezone.now()
    local = timezone.localtime(now) if timezone.is_aware(now) else now
    when = local.strftime("%Y-%m-%d %H:%M %Z").strip()
    if by:
        note = gettext("Marked as failed by %(user)s on %(when)s.") % {"user": by, "when": when}
    else:
        note = gettext("Marked as failed on %(when)s.") % {"when": when}
    using = router.db_for_write(Message)
    rows = Message.objects.using(using)
    with transaction.atomic(using=using):
        # The rows this call changes, locked so that two calls at once announce each once.
        unknown = list(
            rows.select_for_update()
            .filter(pk__in=pks, status=Status.UNKNOWN)
            .values_list("pk", flat=True)
        )
        changed = rows.filter(pk__in=unknown, status=Status.UNKNOWN).update(
            status=Status.FAILED,
            status_changed_at=now,
            error=Case(
                When(error="", then=Value(note)),
                default=Concat(F("error"), Value("\n" + note)),
                output_field=TextField(),
            ),
        )
        if changed:
            failed = list(rows.filter(pk__in=unknown, status=Status.FAILED))

            def announce_failed() -> None:
                for message in failed:
                    announce(message_failed, Message, message=message, error=None)

            transaction.on_commit(announce_failed, using=using)
    return changed


#: Why mitto_dispatch marked a message ``unknown``.
STUCK_ERROR = (
    "Stuck in 'sending' (the sending process stopped?): it may have been sent. "
    "Check before sending it again."
)


def mark_stuck_unknown(older_than: timedelta) -> int:
    """Mark ``unknown`` the messages in ``sending`` for at least ``older_than``.

    The process that claimed them stopped (or lost its database) mid-send: Mitto may have them,
    so they are never sent again blindly. Reports that came on a batch's URL while those rows
    were in flight are matched now. Returns how many messages were marked.
    """
    now = timezone.now()
    stuck = Message.objects.filter(status=Status.SENDING, status_changed_at__lte=now - older_than)
    stuck_batches = set(
        stuck.filter(batch__isnull=False).order_by().values_list("batch_id", flat=True)
    )
    marked = stuck.update(status=Status.UNKNOWN, status_changed_at=now, error=STUCK_ERROR)
    for batch_pk in stuck_batches:
        apply_pending_batch_reports(batch_pk)
        _complete_if_done(batch_pk)
    return marked
