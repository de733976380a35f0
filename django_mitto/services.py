"""Sending: the only place where the Mitto client and the models meet.

* :func:`send_sms` validates, creates a :class:`~django_mitto.models.Message` and has it sent
  once the transaction commits.
* :func:`send_bulk` creates a :class:`~django_mitto.models.Batch` and its messages and has them
  sent through ``/smsbulk`` in chunks once the transaction commits.
* :func:`send_message` and :func:`send_batch` do the sending; they are what the task backends
  run. Each claims its rows with one conditional UPDATE (``queued -> sending``), so a message
  is sent at most once however many workers try.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone
from django.utils.translation import gettext

from . import encoding as enc
from . import validators
from .client import MittoClient, SendResult, clean_text
from .conf import DEFAULT_ACCOUNT, Account, conf
from .countries import country_of
from .exceptions import (
    MittoAPIError,
    MittoConfigurationError,
    MittoError,
    MittoTransportError,
    trim,
)
from .models import Batch, Message, Status
from .signals import announce, message_failed, message_sent

logger = logging.getLogger("django_mitto")

__all__ = ["get_client", "send_batch", "send_bulk", "send_message", "send_sms"]

_clients: dict[tuple[Any, ...], MittoClient] = {}
_clients_lock = threading.Lock()

#: Options a message carries to Mitto besides from/to/text/type.
OPTION_FIELDS = ("reference", "udh", "validity", "pid", "flash", "test")


def get_client(account: str = DEFAULT_ACCOUNT) -> MittoClient:
    """The shared :class:`MittoClient` of an account (one pool per account and configuration).

    Raises :class:`MittoConfigurationError` for an unknown account or one without an API key.
    """
    acc = conf.account(account)
    key = (acc.require_api_key(), acc.API_URL, acc.TIMEOUT, acc.RESPONSE_FORMAT, acc.TEST_MODE)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                # Settings keep changing (tests): do not pile up pools beyond one per account.
                if len(_clients) >= 8 + len(conf.accounts()):
                    for old in _clients.values():
                        old.close()
                    _clients.clear()
                client = MittoClient(
                    key[0],
                    api_url=key[1],
                    timeout=key[2],
                    response_format=key[3],
                    test_mode=key[4],
                )
                _clients[key] = client
    return client


# -- creating -------------------------------------------------------------------------------------


def _clean_options(
    *,
    sender: str | None,
    encoding: str,
    text: str,
    udh: str,
    validity: int | None,
    pid: int | None,
    errors: dict[str, Any],
    reference: str = "",
    metadata: Any = None,
    default_sender: str | None = None,
) -> tuple[str, str, enc.SmsInfo | None]:
    if default_sender is None:
        default_sender = conf.DEFAULT_SENDER
    sender = (sender if sender is not None else default_sender) or ""
    # None stands for "not given" for the optional text fields.
    udh = "" if udh is None else udh
    reference = "" if reference is None else reference
    try:
        validators.validate_sender(sender)
    except ValidationError as exc:
        errors["sender"] = exc
    info = None
    try:
        encoding = validators.validate_encoding(encoding)
    except ValidationError as exc:
        errors["encoding"] = exc
        # The text's own faults (type, characters) are still worth naming.
        try:
            validators.validate_text_characters(text)
        except ValidationError as text_exc:
            errors["text"] = text_exc
    else:
        try:
            info = validators.validate_text(text, encoding)
        except ValidationError as exc:
            errors["text"] = exc
    try:
        validators.validate_udh(udh)
    except ValidationError as exc:
        errors["udh"] = exc
    checked = {"reference": reference, "validity": validity, "pid": pid, "metadata": metadata}
    errors.update(validators.check_fields(checked))
    return sender, encoding, info


def _check_account(name: Any, errors: dict[str, Any]) -> Account | None:
    """The named account, or None with an error on ``account`` naming the known ones."""
    known = conf.accounts()
    if isinstance(name, str) and name in known:
        return conf.account(name)
    errors["account"] = ValidationError(
        gettext("Unknown Mitto account %(name)s; known accounts: %(known)s.")
        % {"name": repr(name), "known": ", ".join(known)},
        code="invalid_choice",
    )
    return None


def send_sms(
    recipient: str,
    text: str,
    *,
    sender: str | None = None,
    encoding: str = enc.AUTO,
    reference: str = "",
    udh: str = "",
    validity: int | None = None,
    pid: int | None = None,
    flash: bool = False,
    test: bool | None = None,
    metadata: dict[str, Any] | None = None,
    region: str | None = None,
    ignore_opt_out: bool = False,
    account: str = DEFAULT_ACCOUNT,
) -> Message:
    """Validate, create and send one SMS; return its :class:`Message`.

    The message is sent when the current transaction commits. Outside a transaction, with the
    inline backend, that is at once: the message returned is as the send left it (``sent``,
    ``failed``, ``unknown``...). Inside a transaction (or with a task queue) it is returned
    ``queued``, since the send has not happened yet; call ``message.refresh_from_db()`` later
    to see the outcome. Invalid input raises :class:`~django.core.exceptions.ValidationError`
    keyed by field name; nothing is created. ``account`` names a key of ``MITTO_ACCOUNTS``:
    the message goes through that account (its key, URL, default sender and test mode).
    A number that opted out is refused on ``recipient``, unless ``ignore_opt_out=True`` (for
    a transactional message; logged).
    """
    from . import optouts

    errors: dict[str, Any] = {}
    opted_out = False
    acc = _check_account(account, errors)
    try:
        recipient = validators.normalize_recipient(recipient, region)
    except ValidationError as exc:
        errors["recipient"] = exc
    else:
        opted_out = optouts.is_opted_out(recipient, acc.name if acc else DEFAULT_ACCOUNT)
        if opted_out and not ignore_opt_out:
            errors["recipient"] = ValidationError(
                optouts.opt_out_reason(recipient), code="opted_out"
            )
    sender, encoding, _info = _clean_options(
        reference=reference,
        sender=sender,
        encoding=encoding,
        text=text,
        udh=udh,
        validity=validity,
        pid=pid,
        metadata=metadata,
        errors=errors,
        default_sender=acc.DEFAULT_SENDER if acc else None,
    )
    if errors:
        raise ValidationError(errors)
    assert acc is not None
    message = Message(
        account=acc.name,
        sender=sender,
        recipient=recipient,
        text=text,
        encoding=encoding,
        reference=reference or "",
        udh=udh or "",
        validity=validity,
        pid=pid,
        flash=bool(flash),
        test=acc.TEST_MODE if test is None else bool(test),
        metadata=metadata or {},
    )
    # Checked above (or knowingly skipped): the save hook need not look again.
    message._mitto_opt_out_checked = True  # type: ignore[attr-defined]
    message.save()
    if opted_out:
        logger.warning(
            "SMS %s to %s sent although the number opted out (ignore_opt_out=True)",
            message.pk,
            recipient,
        )
    if not conf.SEND_ON_SAVE:
        # The post_save hook is off: this explicit call still sends.
        from .tasks import enqueue_message

        transaction.on_commit(lambda: enqueue_message(message.pk))
    if not transaction.get_connection(message._state.db).in_atomic_block:
        # No transaction: the on-commit send has already run (inline backend), so the object
        # in hand says "queued" while the row says "sent", "failed"...; return the row.
        message.refresh_from_db()
    return message


def send_bulk(
    recipients: Iterable[str],
    text: str,
    *,
    sender: str | None = None,
    encoding: str = enc.AUTO,
    reference: str = "",
    references: Sequence[str] | None = None,
    udh: str = "",
    validity: int | None = None,
    pid: int | None = None,
    flash: bool = False,
    test: bool | None = None,
    region: str | None = None,
    created_by: Any = None,
    ignore_opt_out: bool = False,
    account: str = DEFAULT_ACCOUNT,
) -> Batch:
    """Create a :class:`Batch` with one message per recipient and send it through ``/smsbulk``.

    Recipients are normalised to E.164; an invalid one raises ``ValidationError`` on
    ``recipients`` naming each bad number, and nothing is created. ``references`` (same length
    as ``recipients``) gives each message its own reference; otherwise all get ``reference``.
    Messages are inserted with ``bulk_create`` and sent in chunks of ``MITTO_BULK_CHUNK_SIZE``
    after the transaction commits. ``account`` names the Mitto account, as for :func:`send_sms`.

    Numbers that opted out are left out (logged); ``batch.opted_out`` counts them and
    ``batch.opted_out_numbers`` lists them on the returned object. ``ignore_opt_out=True``
    sends to them too (a transactional message; logged).
    """
    errors: dict[str, Any] = {}
    acc = _check_account(account, errors)
    numbers: list[str] = []
    bad: list[str] = []
    # One string is one number, not a list of characters; bytes, ints and None are no list.
    if isinstance(recipients, (str, bytes)) or not isinstance(recipients, Iterable):
        errors["recipients"] = ValidationError(
            "recipients must be a list of phone numbers, not %(type)s.",
            code="invalid_type",
            params={"type": type(recipients).__name__},
        )
        recipients = []
    recipients = list(recipients)
    for raw in recipients:
        try:
            numbers.append(validators.normalize_recipient(raw, region))
        except ValidationError as exc:
            shown = raw if isinstance(raw, str) else repr(raw)
            bad.append(f"{shown}: {exc.messages[0]}")
    if not recipients and "recipients" not in errors:
        errors["recipients"] = ValidationError("Give at least one recipient.", code="required")
    elif bad:
        errors["recipients"] = ValidationError(
            "Invalid recipients: " + "; ".join(bad[:20]) + (" …" if len(bad) > 20 else ""),
            code="invalid",
        )
    if references is not None:
        references = list(references)
    if references is not None and len(references) != len(recipients):
        errors["references"] = ValidationError(
            "references must have one item per recipient.", code="invalid"
        )
    elif references is not None:
        problems = []
        for position, ref in enumerate(references, start=1):
            try:
                validators.validate_reference("" if ref is None else ref)
            except ValidationError as exc:
                problems.append(f"#{position}: {' '.join(exc.messages)}")
        if problems:
            errors["references"] = ValidationError(
                "Invalid references: " + "; ".join(problems[:20]), code="invalid"
            )
    sender, encoding, info = _clean_options(
        reference=reference,
        sender=sender,
        encoding=encoding,
        text=text,
        udh=udh,
        validity=validity,
        pid=pid,
        errors=errors,
        default_sender=acc.DEFAULT_SENDER if acc else None,
    )
    if errors:
        raise ValidationError(errors)
    assert info is not None and acc is not None
    is_test = acc.TEST_MODE if test is None else bool(test)
    from . import optouts

    refs = list(references) if references is not None else [reference or ""] * len(numbers)
    blocked = optouts.opted_out_numbers(numbers, acc.name)
    skipped = 0
    if blocked and ignore_opt_out:
        logger.warning(
            "Bulk send to %d number(s) that opted out (ignore_opt_out=True)", len(blocked)
        )
    elif blocked:
        kept = [(number, ref) for number, ref in zip(numbers, refs) if number not in blocked]
        skipped = len(numbers) - len(kept)
        numbers, refs = [n for n, _r in kept], [r for _n, r in kept]
        logger.info("Bulk send: %d recipient(s) left out, they opted out", skipped)
    options = {
        k: v
        for k, v in {"udh": udh, "validity": validity, "pid": pid, "flash": flash}.items()
        if v not in (None, "", False)
    }
    with transaction.atomic():
        batch = Batch.objects.create(
            account=acc.name,
            sender=sender,
            text=text,
            encoding=info.encoding,
            options={**options, "reference": reference} if reference else options,
            test=is_test,
            total=len(numbers),
            opted_out=skipped,
            created_by=created_by,
        )
        Message.objects.bulk_create(
            [
                Message(
                    batch=batch,
                    account=acc.name,
                    sender=sender,
                    recipient=number,
                    country=country_of(number),
                    text=text,
                    encoding=info.encoding,
                    reference=ref or "",
                    udh=udh or "",
                    validity=validity,
                    pid=pid,
                    flash=bool(flash),
                    test=is_test,
                    text_length=info.characters,
                    segments=info.parts,
                )
                for number, ref in zip(numbers, refs)
            ],
            batch_size=conf.BULK_CHUNK_SIZE,
        )
        from .tasks import enqueue_batch

        # bulk_create sends no post_save: this path enqueues itself.
        transaction.on_commit(lambda: enqueue_batch(batch.pk))
    batch.opted_out_numbers = [] if ignore_opt_out else sorted(blocked)  # type: ignore[attr-defined]
    return batch


# -- sending --------------------------------------------------------------------------------------


def _mitto_options(message: Message) -> dict[str, Any]:
    from .callbacks import callback_url_for_message

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
    _clean_options(
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
    to ``queued`` and ``message.retry_after`` says how long to wait; the task backend retries.
    """
    pk = message_or_pk.pk if isinstance(message_or_pk, Message) else int(message_or_pk)
    claimed = Message.objects.filter(pk=pk, status=Status.QUEUED).update(
        status=Status.SENDING, attempts=F("attempts") + 1, status_changed_at=timezone.now()
    )
    message = Message.objects.get(pk=pk)
    message.retry_after = None  # type: ignore[attr-defined]
    if not claimed:
        return message

    problem = _precheck(message)
    if problem:
        return _record_failure(message, problem, None)
    try:
        # Everything that can go wrong before the request: nothing has been sent yet.
        options = _mitto_options(message)
        client = get_client(message.account)
    except MittoConfigurationError as exc:
        return _record_failure(message, str(exc), exc)
    except Exception as exc:
        logger.exception("SMS %s could not be prepared", message.pk)
        return _record_failure(message, f"Not sent: {type(exc).__name__}: {exc}", None)
    try:
        result = client.send(message.recipient, message.text, **options)
    except MittoTransportError as exc:
        if exc.request_sent:
            return _record_unknown(message, str(exc))
        return _record_retry_or_fail(message, str(exc), exc, None)
    except MittoAPIError as exc:
        if exc.retryable:
            return _record_retry_or_fail(message, str(exc), exc, exc.retry_after)
        if not exc.refused:
            return _record_unknown(message, str(exc), exc)
        return _record_failure(message, str(exc), exc)
    except Exception as exc:
        # An unexpected error mid-request: Mitto may have the message.
        logger.exception("SMS %s: unexpected error while sending", message.pk)
        return _record_unknown(message, f"{type(exc).__name__}: {exc}")
    return _record_sent(message, result)


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
        ) % {"answer": result.raw or "-"}
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
    message: Message, result: SendResult, fields: dict[str, Any], now: datetime
) -> bool:
    """Store an accepted answer on one row; True when stored.

    When the row cannot take it (the id is already another message's, or the database refuses
    a value), the message ends ``unknown`` with the answer kept in ``error``: Mitto accepted
    something, so the message must not look unsent, and nothing is raised to the caller.
    """
    try:
        with transaction.atomic():
            # A delivery report on the per-message callback URL may already have moved it on.
            moved = Message.objects.filter(pk=message.pk, status=Status.SENDING).update(
                status=Status.SENT, status_changed_at=now, **fields
            )
            if not moved:
                Message.objects.filter(pk=message.pk).update(**fields)
        return True
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
    return False


def _id_owner(message: Message, provider_id: str) -> int | None:
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


def _record_unstorable(message: Message, result: SendResult, reason: str) -> None:
    error = gettext(
        "%(reason)s Answer: %(answer)s. Mitto accepted the request (responseCode 0): "
        "check before sending it again."
    ) % {"reason": reason, "answer": result.raw or "-"}
    logger.error("SMS %s to %s: outcome unknown: %s", message.pk, message.recipient, reason)
    now = timezone.now()
    try:
        with transaction.atomic():
            changed = Message.objects.filter(pk=message.pk, status=Status.SENDING).update(
                status=Status.UNKNOWN, error=error, status_changed_at=now
            )
            if not changed:
                Message.objects.filter(pk=message.pk).update(error=error)
    except Exception:
        # The database itself is failing: the row stays "sending", which mitto_dispatch flags
        # as unknown later. Never raise once Mitto has the message.
        logger.exception("SMS %s: could not record the unknown outcome", message.pk)


def _record_sent(message: Message, result: SendResult) -> Message:
    now = timezone.now()
    fields, note = _answer_fields(result, now)
    stored = _write_sent(message, result, fields, now)
    if stored and fields["provider_id"]:
        from .callbacks import apply_pending_reports

        # A report that came before the id was known is applied now (one query when none did).
        message.provider_id = fields["provider_id"]
        try:
            apply_pending_reports(message)
        except Exception:
            logger.exception("SMS %s: pending delivery reports could not be applied", message.pk)
    message.refresh_from_db()
    if not stored:
        return message
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
    Message.objects.filter(pk=message.pk, status=Status.SENDING).update(**fields)
    message.refresh_from_db()
    logger.warning("SMS %s to %s failed: %s", message.pk, message.recipient, error)
    announce(message_failed, Message, message=message, error=exc)
    return message


def _record_unknown(message: Message, error: str, exc: MittoError | None = None) -> Message:
    fields: dict[str, Any] = {}
    if isinstance(exc, MittoAPIError):
        fields["response_code"] = _bounded(exc.response_code, -_INT32, _INT32)
        fields["response_text"] = clean_text(exc.response_text, 255)
    Message.objects.filter(pk=message.pk, status=Status.SENDING).update(
        status=Status.UNKNOWN,
        error=clean_text(error, 10_000)
        + " The message may have been sent: check before sending it again.",
        status_changed_at=timezone.now(),
        **fields,
    )
    message.refresh_from_db()
    logger.error("SMS %s to %s: outcome unknown: %s", message.pk, message.recipient, error)
    return message


def _record_retry_or_fail(
    message: Message, error: str, exc: MittoError, retry_after: float | None
) -> Message:
    if message.attempts >= conf.MAX_ATTEMPTS:
        return _record_failure(message, f"{error} Gave up after {message.attempts} attempts.", exc)
    Message.objects.filter(pk=message.pk, status=Status.SENDING).update(
        status=Status.QUEUED, error=error, status_changed_at=timezone.now()
    )
    message.refresh_from_db()
    message.retry_after = retry_after  # type: ignore[attr-defined]
    logger.info("SMS %s not sent (%s); will retry", message.pk, error)
    return message


def send_batch(batch_or_pk: Batch | int) -> Batch:
    """Send the queued messages of a batch through ``/smsbulk``, in chunks.

    Each chunk is claimed with one UPDATE; the ids Mitto returns are written back to each row
    with one ``bulk_update``. A chunk Mitto refuses fails as a whole; one whose answer was lost
    after the request went out is marked ``unknown``.
    """
    pk = batch_or_pk.pk if isinstance(batch_or_pk, Batch) else int(batch_or_pk)
    batch = Batch.objects.get(pk=pk)
    chunk_size = conf.BULK_CHUNK_SIZE
    # One /smsbulk request carries one reference: group the recipients by theirs.
    groups: dict[str, list[int]] = {}
    for message_pk, reference in (
        Message.objects.filter(batch=batch, status=Status.QUEUED)
        .order_by("pk")
        .values_list("pk", "reference")
    ):
        groups.setdefault(reference, []).append(message_pk)
    for ids in groups.values():
        for start in range(0, len(ids), chunk_size):
            _send_chunk(batch, ids[start : start + chunk_size])
    if not Message.objects.filter(batch=batch, status__in=[Status.QUEUED, Status.SENDING]).exists():
        Batch.objects.filter(pk=pk, completed_at__isnull=True).update(completed_at=timezone.now())
    batch.refresh_from_db()
    return batch


def _send_chunk(batch: Batch, ids: list[int]) -> None:
    token = uuid.uuid4()
    now = timezone.now()
    Message.objects.filter(pk__in=ids, status=Status.QUEUED).update(
        status=Status.SENDING, claim=token, attempts=F("attempts") + 1, status_changed_at=now
    )
    messages = list(Message.objects.filter(claim=token).order_by("pk"))
    if not messages:
        return
    first = messages[0]
    from .callbacks import callback_url_for_batch

    try:
        # The account may be unknown (removed from the settings): that fails the chunk unsent.
        options = _mitto_options(first)
        options["callback"] = callback_url_for_batch(batch) or None
        result = get_client(batch.account).send_bulk(
            [m.recipient for m in messages], first.text, **options
        )
    except MittoError as exc:
        retry = (isinstance(exc, MittoTransportError) and not exc.request_sent) or (
            isinstance(exc, MittoAPIError) and exc.retryable
        )
        may_have_been_sent = (isinstance(exc, MittoTransportError) and exc.request_sent) or (
            isinstance(exc, MittoAPIError) and not exc.refused
        )
        if may_have_been_sent:
            status, error = Status.UNKNOWN, f"{exc} The messages may have been sent."
        elif retry and first.attempts < conf.MAX_ATTEMPTS:
            status, error = Status.QUEUED, str(exc)
        else:
            status, error = Status.FAILED, str(exc)
        error = clean_text(error, 10_000)
        fields: dict[str, Any] = {
            "status": status,
            "error": error,
            "status_changed_at": timezone.now(),
        }
        if isinstance(exc, MittoAPIError):
            fields["response_code"] = _bounded(exc.response_code, -_INT32, _INT32)
            fields["response_text"] = clean_text(exc.response_text, 255)
        Message.objects.filter(claim=token, status=Status.SENDING).update(**fields)
        logger.warning("Batch %s: chunk of %d not sent: %s", batch.pk, len(messages), exc)
        if status == Status.FAILED:
            for message in messages:
                message.status = Status.FAILED
                announce(message_failed, Message, message=message, error=exc)
        elif status == Status.UNKNOWN:
            _apply_reports_of_rows_without_id(batch)
        return

    items = _match_bulk_items(messages, result.messages)
    done = timezone.now()
    accepted: list[tuple[Message, SendResult, dict[str, Any]]] = []
    missing: list[Message] = []
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
    from .callbacks import apply_pending_reports_bulk

    try:
        apply_pending_reports_bulk([message for message, _ in stored])
    except Exception:
        logger.exception("Batch %s: pending delivery reports could not be applied", batch.pk)
    for message, item in stored:
        announce(message_sent, Message, message=message, result=item)
    if missing or flagged:
        _apply_reports_of_rows_without_id(batch)


def _apply_reports_of_rows_without_id(batch: Batch) -> None:
    """Reports that came on the batch URL while the chunk was in flight waited ``unmatched``;
    now that some rows have no id (``unknown``, or accepted without one), match them."""
    from .callbacks import apply_pending_batch_reports

    try:
        apply_pending_batch_reports(batch)
    except Exception:
        logger.exception("Batch %s: pending delivery reports could not be applied", batch.pk)


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
    batch: Batch, accepted: list[tuple[Message, SendResult, dict[str, Any]]], done: datetime
) -> list[tuple[Message, SendResult]]:
    """Store the accepted items with one ``bulk_update``; row by row when that is refused (a
    duplicate id, say), so that only the rows that cannot be written end ``unknown``."""
    for message, _item, fields in accepted:
        for name, value in fields.items():
            setattr(message, name, value)
        message.status = Status.SENT
        message.status_changed_at = done
    try:
        with transaction.atomic():
            Message.objects.bulk_update(
                [message for message, _, _ in accepted], _BULK_SENT_FIELDS, batch_size=500
            )
        return [(message, item) for message, item, _ in accepted]
    except Exception as exc:
        logger.warning(
            "Batch %s: Mitto's answer could not be stored at once (%s); storing row by row",
            batch.pk,
            type(exc).__name__,
        )
    stored: list[tuple[Message, SendResult]] = []
    for message, item, fields in accepted:
        if _write_sent(message, item, fields, done):
            stored.append((message, item))
        else:
            message.refresh_from_db()
    return stored


def _match_bulk_items(messages: list[Message], items: list[SendResult]) -> list[SendResult | None]:
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


# -- conversion tracking and usage ---------------------------------------------------------------

__all__ += ["local_usage", "mark_converted", "usage"]


def mark_converted(message_or_pk: Message | int) -> Message:
    """Tell Mitto the recipient of a message converted, and record ``converted_at``.

    Calls ``POST /sms/converted`` with the message's Mitto id, through the message's own
    account (``message.account``). A message already marked is
    returned as it is, without calling Mitto again. A message without a Mitto id raises
    ``ValidationError`` on ``provider_id``; Mitto's refusals raise
    :class:`~django_mitto.exceptions.MittoAPIError` (``status_code`` 400: conversion tracking
    is not enabled for the account; 404: Mitto does not know the id; 429: try again later).
    """
    pk = message_or_pk.pk if isinstance(message_or_pk, Message) else int(message_or_pk)
    message = Message.objects.get(pk=pk)
    if message.converted_at is not None:
        return message
    if not message.provider_id:
        raise ValidationError(
            {
                "provider_id": ValidationError(
                    "This message has no Mitto id (it was never accepted by Mitto), so it "
                    "cannot be marked as converted.",
                    code="required",
                )
            }
        )
    get_client(message.account).mark_converted(message.provider_id)
    Message.objects.filter(pk=pk, converted_at__isnull=True).update(converted_at=timezone.now())
    message.refresh_from_db()
    logger.info("SMS %s marked as converted at Mitto", message.pk)
    return message


@dataclass(frozen=True)
class CountryUsage:
    """One country of a usage report: Mitto's figures beside the ones counted here."""

    country: str
    mitto_messages: int | None = None
    mitto_cost: Decimal | None = None
    local_messages: int = 0
    local_parts: int = 0

    @property
    def difference(self) -> int | None:
        """Mitto's count minus the messages counted here (None without Mitto's figure)."""
        if self.mitto_messages is None:
            return None
        return self.mitto_messages - self.local_messages

    @property
    def matches(self) -> bool:
        """Whether Mitto's count equals the messages or the parts counted here.

        Mitto documents ``messagesCount`` as the number of messages; since it bills parts, a
        count of parts is taken as agreement too.
        """
        return self.mitto_messages in (self.local_messages, self.local_parts)


@dataclass(frozen=True)
class UsageReport:
    """Usage per country between two dates (both included): Mitto's and the local count."""

    start: dt.date
    end: dt.date
    rows: list[CountryUsage]
    currency: str = ""

    @property
    def mitto_messages(self) -> int:
        return sum(row.mitto_messages or 0 for row in self.rows)

    @property
    def mitto_cost(self) -> Decimal:
        return sum((row.mitto_cost or Decimal(0) for row in self.rows), Decimal(0))

    @property
    def local_messages(self) -> int:
        return sum(row.local_messages for row in self.rows)

    @property
    def local_parts(self) -> int:
        return sum(row.local_parts for row in self.rows)

    @property
    def differences(self) -> list[CountryUsage]:
        """The countries where Mitto's count matches neither local count."""
        return [row for row in self.rows if not row.matches]


def _period(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    if end < start:
        raise ValidationError(
            {"end": ValidationError("The end date is before the start date.", code="invalid")}
        )
    utc = dt.timezone.utc
    since = dt.datetime.combine(start, dt.time.min, tzinfo=utc)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=utc)
    return since, until


def local_usage(
    start: dt.date, end: dt.date, *, account: str | None = None
) -> dict[str, tuple[int, int]]:
    """Messages and parts Mitto accepted from here between two UTC dates, per country.

    Counted: messages with a Mitto id whose ``sent_at`` falls in the period, test calls
    excluded (Mitto charges nothing for them). The country is the one stored with the message
    (ISO 3166-1 alpha-3, ``???`` for a number that belongs to no country), or that of the
    recipient for a message saved before countries were stored; a redacted message keeps its
    country. One query, grouped by recipient and country. ``account`` counts only that account's messages (None: every
    account).
    """
    since, until = _period(start, end)
    if not settings.USE_TZ:
        since, until = since.replace(tzinfo=None), until.replace(tzinfo=None)
    rows = (
        Message.objects.filter(test=False, sent_at__gte=since, sent_at__lt=until)
        .filter(**({} if account is None else {"account": account}))
        .exclude(provider_id="")
        .order_by()
        .values("recipient", "country")
        .annotate(n=Count("id"), parts=Sum("segments"))
    )
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        country = row["country"] or country_of(row["recipient"])
        messages, parts = totals.get(country, (0, 0))
        totals[country] = (messages + row["n"], parts + (row["parts"] or 0))
    return totals


def usage(
    start: dt.date,
    end: dt.date,
    *,
    account_name: str | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> UsageReport:
    """Mitto's usage per country (``POST /usage/bycountry``) beside the local count.

    ``account`` picks the configured account asked (its key) and counted here (its messages);
    ``account_name`` defaults to that account's ``ACCOUNT_NAME``. One row per country either side
    knows, sorted by country. Mitto's errors raise :class:`~django_mitto.exceptions.MittoError`
    (call :func:`local_usage` alone to show the local side anyway).
    """
    _period(start, end)
    acc = conf.account(account)
    name = acc.ACCOUNT_NAME if account_name is None else account_name
    mitto = {row.country: row for row in get_client(acc.name).usage(start, end, account_name=name)}
    # With one account every message is its; with several, only the ones sent through it.
    local = local_usage(start, end, account=acc.name if conf.SEVERAL_ACCOUNTS else None)
    rows = []
    for country in sorted(set(mitto) | set(local)):
        theirs = mitto.get(country)
        messages, parts = local.get(country, (0, 0))
        rows.append(
            CountryUsage(
                country=country,
                mitto_messages=theirs.messages_count if theirs else 0,
                mitto_cost=theirs.cost if theirs else None,
                local_messages=messages,
                local_parts=parts,
            )
        )
    currency = next((row.currency for row in mitto.values() if row.currency), "")
    return UsageReport(start=start, end=end, rows=rows, currency=currency)


def month_to_date(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The default usage period: the first day of the current month (UTC) to today."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return today.replace(day=1), today
