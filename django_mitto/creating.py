"""Creating messages: validate, store, and hand them to the task backend once committed.

* :func:`send_sms` validates and creates one :class:`~django_mitto.models.Message`.
* :func:`send_bulk` creates a :class:`~django_mitto.models.Batch` and its messages.
* :func:`queue_for_sending` and :func:`queue_batch` are the one way a new message or batch is
  handed to the task backend (after the transaction commits, so a rolled-back save sends
  nothing); :func:`requeue_left_behind` hands over again what a crash left ``queued``.

Sending itself is in :mod:`django_mitto.sending`; the task backends run it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.utils import timezone
from django.utils.translation import gettext

from . import encoding as enc
from . import validators
from .backends import get_backend
from .conf import DEFAULT_ACCOUNT, Account, conf
from .countries import country_of
from .models import Batch, Message, Status
from .options import clean_options

logger = logging.getLogger("django_mitto")

__all__ = [
    "enqueue_on_commit",
    "queue_batch",
    "queue_for_sending",
    "requeue_left_behind",
    "send_bulk",
    "send_sms",
]


def enqueue_on_commit(message_pk: int, *, using: str | None = None) -> None:
    """Hand message ``message_pk`` to the task backend once the current transaction commits."""
    transaction.on_commit(lambda: get_backend().enqueue_message(message_pk), using=using)


def queue_for_sending(message: Message) -> None:
    """Make sure a message just created as ``queued`` is sent after commit.

    With ``MITTO_SEND_ON_SAVE`` (the default) the post_save hook has already done it; with the
    hook off, an explicit send (``send_sms()``, the admin's compose form) still goes out.
    """
    if conf.SEND_ON_SAVE:
        return
    enqueue_on_commit(message.pk, using=message._state.db)


def queue_batch(batch: Batch) -> None:
    """Hand a batch to the task backend once the current transaction commits (``bulk_create``
    fires no post_save: a batch is always queued explicitly)."""
    pk = batch.pk
    transaction.on_commit(lambda: get_backend().enqueue_batch(pk), using=batch._state.db)


def requeue_left_behind(older_than: timedelta, limit: int = 1000) -> tuple[int, int]:
    """Hand to the task backend again the messages ``queued`` for at least ``older_than`` (a
    crash before the after-commit send, a broker outage). Single messages one by one (at most
    ``limit``), batch members through their batch. Still sent at most once: the send claims.
    Returns how many messages and batches were handed over."""
    since = timezone.now() - older_than
    pending = list(
        Message.objects.filter(status=Status.QUEUED, batch__isnull=True, created_at__lte=since)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    batches = list(
        Message.objects.filter(status=Status.QUEUED, batch__isnull=False, created_at__lte=since)
        .order_by()
        .values_list("batch_id", flat=True)
        .distinct()
    )
    backend = get_backend()
    for pk in pending:
        backend.enqueue_message(pk)
    for batch_pk in batches:
        backend.enqueue_batch(batch_pk)
    return len(pending), len(batches)


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
    country = ""
    acc = _check_account(account, errors)
    try:
        recipient, country = validators.parse_recipient(recipient, region)
    except ValidationError as exc:
        errors["recipient"] = exc
    else:
        opted_out = optouts.is_opted_out(recipient, acc.name if acc else DEFAULT_ACCOUNT)
        if opted_out and not ignore_opt_out:
            errors["recipient"] = ValidationError(
                optouts.opt_out_reason(recipient), code="opted_out"
            )
    sender, encoding, info = clean_options(
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
    assert acc is not None and info is not None
    message = Message(
        account=acc.name,
        sender=sender,
        recipient=recipient,
        country=country,
        text=text,
        encoding=info.encoding,
        text_length=info.characters,
        segments=info.parts,
        reference=reference or "",
        udh=udh or "",
        validity=validity,
        pid=pid,
        flash=bool(flash),
        test=acc.TEST_MODE if test is None else bool(test),
        metadata=metadata or {},
    )
    # Checked and measured above (the opt-out knowingly skipped, maybe): the save hook and
    # save() need not look again.
    message._mitto_opt_out_checked = True  # type: ignore[attr-defined]
    message._mitto_measured = True  # type: ignore[attr-defined]
    backend = get_backend()
    using = router.db_for_write(Message)
    if backend.sends_in_process and not transaction.get_connection(using).in_atomic_block:
        # Sent here and now: the row is created already claimed ("sending", first attempt),
        # so no other worker can take it, and the send needs no claim of its own.
        message.status = Status.SENDING
        message.attempts = 1
        message.status_changed_at = timezone.now()
        message.save(using=using)
        _log_ignored_opt_out(message, opted_out)
        return backend.send_created(message)
    message.save(using=using)
    _log_ignored_opt_out(message, opted_out)
    queue_for_sending(message)
    if not transaction.get_connection(using).in_atomic_block:
        # Committed already: a backend that ran the task at once (Celery's eager mode) may
        # have sent it; return the row as it is.
        message.refresh_from_db()
    return message


def _log_ignored_opt_out(message: Message, opted_out: bool) -> None:
    if opted_out:
        logger.warning(
            "SMS %s to %s sent although the number opted out (ignore_opt_out=True)",
            message.pk,
            message.recipient,
        )


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
    progress: Callable[[str, int], None] | None = None,
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

    ``progress``, when given, is called as the work goes: ``progress("validate", n)`` and
    ``progress("insert", n)``, ``n`` being how many more recipients that stage has done.
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
        if progress is not None:
            progress("validate", 1)
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
    sender, encoding, info = clean_options(
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
        if progress is not None:
            progress("insert", len(numbers))
        queue_batch(batch)
    batch.opted_out_numbers = [] if ignore_opt_out else sorted(blocked)  # type: ignore[attr-defined]
    return batch
