"""Creating messages: validate, store, and hand them to the task backend once committed.

* :func:`send_sms` validates and creates one :class:`~django_mitto.models.Message`.
* :func:`send_bulk` creates a :class:`~django_mitto.models.Batch` and its messages.
* :func:`queue_for_sending` and :func:`queue_batch` are the one way a new message or batch is
  handed to the task backend (after the transaction commits, so a rolled-back save sends
  nothing); :func:`requeue_left_behind` hands over again what a crash left ``queued``.

Sending itself is in :mod:`django_mitto.sending`; the task backends run it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.db.models import Count, Min
from django.utils import timezone
from django.utils.translation import gettext

from . import encoding as enc
from . import sql, validators
from .backends import get_backend
from .conf import DEFAULT_ACCOUNT, Account, conf
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
        recipient_ok = False
    else:
        recipient_ok = True
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
    backend = get_backend()
    using = router.db_for_write(Message)
    # Sent here and now: outside a transaction, on a backend that sends in-process.
    at_once = backend.sends_in_process and not transaction.get_connection(using).in_atomic_block
    if recipient_ok and (errors or ignore_opt_out or not at_once):
        # (Sent at once, the INSERT itself checks the opt-out: one query less.)
        opted_out = optouts.is_opted_out(recipient, acc.name if acc else DEFAULT_ACCOUNT)
        if opted_out and not ignore_opt_out:
            errors["recipient"] = _opted_out_error(recipient)
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
    if at_once:
        # The row is created already claimed ("sending", first attempt), so no other worker
        # can take it, and the send needs no claim of its own. Every field was checked above
        # (what save() would check again), so the row is written directly; unless the opt-out
        # was knowingly ignored, the INSERT itself is skipped when the number opted out.
        message.status = Status.SENDING
        message.attempts = 1
        message.status_changed_at = timezone.now()
        if ignore_opt_out:
            sql.insert(message)
        elif not sql.insert(
            message, unless=(optouts.OptOut, {"account": acc.name, "number": recipient})
        ):
            raise ValidationError({"recipient": _opted_out_error(recipient)})
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


def _opted_out_error(number: str) -> ValidationError:
    from . import optouts

    return ValidationError(optouts.opt_out_reason(number), code="opted_out")


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
    references: Iterable[str] | None = None,
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

    ``recipients`` may be any iterable, a generator of a million numbers included: it is read
    once, in chunks of ``MITTO_BULK_CHUNK_SIZE``, each validated, checked against the
    opt-outs and inserted before the next is read, so memory does not grow with the batch.
    Recipients are normalised to E.164; an invalid one raises ``ValidationError`` on
    ``recipients`` naming the first bad numbers, and nothing is created (the rows already
    inserted are rolled back). A number given twice is sent once (the first occurrence is
    kept); ``batch.duplicates`` on the returned object counts the others. ``references``
    (one per recipient, read alongside) gives each message its own reference; otherwise all
    get ``reference``. The batch is sent in chunks after the transaction commits.
    ``account`` names the Mitto account, as for :func:`send_sms`.

    Numbers that opted out are left out (logged); ``batch.opted_out`` counts them and
    ``batch.opted_out_numbers`` lists them on the returned object. ``ignore_opt_out=True``
    sends to them too (a transactional message; logged).

    ``progress``, when given, is called as the work goes: ``progress("validate", n)`` and
    ``progress("insert", n)``, ``n`` being how many more recipients that stage has done.
    """
    errors: dict[str, Any] = {}
    acc = _check_account(account, errors)
    # One string is one number, not a list of characters; bytes, ints and None are no list.
    if isinstance(recipients, (str, bytes)) or not isinstance(recipients, Iterable):
        errors["recipients"] = ValidationError(
            "recipients must be a list of phone numbers, not %(type)s.",
            code="invalid_type",
            params={"type": type(recipients).__name__},
        )
        recipients = ()
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
    is_test = (acc.TEST_MODE if acc else False) if test is None else bool(test)
    options = {
        k: v
        for k, v in {"udh": udh, "validity": validity, "pid": pid, "flash": flash}.items()
        if v not in (None, "", False)
    }
    # The batch and its rows are written where the router puts them, all or nothing.
    with transaction.atomic(using=router.db_for_write(Message)):
        batch: Batch | None = None
        if not errors:
            assert info is not None and acc is not None
            batch = Batch.objects.create(
                account=acc.name,
                sender=sender,
                text=text,
                encoding=info.encoding,
                options={**options, "reference": reference} if reference else options,
                test=is_test,
                total=0,
                created_by=created_by,
            )
        template = (
            None
            if batch is None or info is None
            else Message(
                batch=batch,
                account=batch.account,
                sender=sender,
                text=text,
                encoding=info.encoding,
                udh=udh or "",
                validity=validity,
                pid=pid,
                flash=bool(flash),
                test=is_test,
                text_length=info.characters,
                segments=info.parts,
            )
        )
        stream = _BulkStream(
            template,
            acc.name if acc else DEFAULT_ACCOUNT,
            region,
            reference or "",
            ignore_opt_out,
            progress,
        )
        stream.read(recipients, references)
        stream.add_errors(errors, references is not None)
        if errors:
            raise ValidationError(errors)
        assert batch is not None
        stream.analyze()
        duplicates = stream.drop_duplicates(batch)
        batch.total = stream.inserted - duplicates
        batch.opted_out = stream.skipped
        batch.save(update_fields=["total", "opted_out"])
        queue_batch(batch)
    if stream.blocked and ignore_opt_out:
        logger.warning(
            "Bulk send to %d number(s) that opted out (ignore_opt_out=True)", len(stream.blocked)
        )
    elif stream.blocked:
        logger.info("Bulk send: %d recipient(s) left out, they opted out", stream.skipped)
    batch.opted_out_numbers = [] if ignore_opt_out else sorted(stream.blocked)  # type: ignore[attr-defined]
    batch.duplicates = duplicates  # type: ignore[attr-defined]
    return batch


def _copy_block(
    rows: list[tuple[str, str, str]], shared: list[Any], slots: list[int]
) -> str | None:
    """``rows`` as the text of a ``COPY ... FROM STDIN``: one line per row, the shared
    columns (``shared``) formatted once, the row's own where ``slots`` says. None when a
    shared value has no text form here (the rows are then written one by one)."""
    columns = []
    for value, slot in zip(shared, slots):
        if slot >= 0:
            columns.append(f"{{{slot}}}")
            continue
        try:
            text = sql.copy_text(value)
        except TypeError:
            return None
        columns.append(text.replace("{", "{{").replace("}", "}}"))
    line = "\t".join(columns) + "\n"
    escape = sql.copy_text
    return "".join([line.format(*[escape(value) for value in row]) for row in rows])


#: Invalid recipients (and references) named in the error; the rest are counted.
_SHOWN_PROBLEMS = 20
_END = object()


class _BulkStream:
    """Reads the recipients of :func:`send_bulk` chunk by chunk: validates each, leaves out
    the numbers that opted out, and inserts the chunk (when there is a batch and nothing was
    wrong so far). Keeps only counts, the first problems and the opted-out numbers."""

    def __init__(
        self,
        template: Message | None,
        account: str,
        region: str | None,
        reference: str,
        ignore_opt_out: bool,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        self.template = template
        self.account = account
        # Looked up once, not once per number ("" when there is none).
        self.region = region if region is not None else (conf.DEFAULT_REGION or "")
        self.reference = reference
        self.ignore_opt_out = ignore_opt_out
        self.progress = progress
        self.count = 0
        self.bad: list[str] = []
        self.bad_count = 0
        self.bad_references: list[str] = []
        self.bad_reference_count = 0
        self.references_mismatch = False
        self.blocked: set[str] = set()
        self.skipped = 0
        self.inserted = 0

    def read(self, recipients: Iterable[Any], references: Iterable[Any] | None) -> None:
        pairs: Iterator[tuple[Any, Any]]
        if references is None:
            pairs = ((raw, self.reference) for raw in recipients)
        else:
            pairs = itertools.zip_longest(recipients, references, fillvalue=_END)
        size = max(1, conf.BULK_CHUNK_SIZE)
        while True:
            chunk = list(itertools.islice(pairs, size))
            if not chunk:
                break
            self._take(chunk)

    def _take(self, chunk: list[tuple[Any, Any]]) -> None:
        rows: list[tuple[str, str, str]] = []
        for raw, ref in chunk:
            if raw is _END or ref is _END:
                self.references_mismatch = True
                continue
            self.count += 1
            try:
                number, country = validators.parse_recipient(raw, self.region)
            except ValidationError as exc:
                self.bad_count += 1
                if len(self.bad) < _SHOWN_PROBLEMS:
                    shown = raw if isinstance(raw, str) else repr(raw)
                    self.bad.append(f"{shown}: {exc.messages[0]}")
                continue
            ref = "" if ref is None else ref
            if ref != self.reference:
                try:
                    validators.validate_reference(ref)
                except ValidationError as exc:
                    self.bad_reference_count += 1
                    if len(self.bad_references) < _SHOWN_PROBLEMS:
                        self.bad_references.append(f"#{self.count}: {' '.join(exc.messages)}")
                    continue
            rows.append((number, country, ref))
        if self.progress is not None:
            self.progress("validate", len(chunk))
        if self.template is None or self.bad or self.bad_references or self.references_mismatch:
            return  # nothing is inserted once anything is wrong: only the checks go on
        from . import optouts

        blocked = optouts.opted_out_numbers([number for number, _c, _r in rows], self.account)
        if blocked:
            self.blocked |= blocked
            if not self.ignore_opt_out:
                kept = [row for row in rows if row[0] not in blocked]
                self.skipped += len(rows) - len(kept)
                rows = kept
        if rows:
            self._insert(rows)
        self.inserted += len(rows)
        if self.progress is not None:
            self.progress("insert", len(rows))

    #: The columns that differ from one row of a batch to the next.
    PER_ROW = ("recipient", "country", "reference")

    def _insert(self, rows: list[tuple[str, str, str]]) -> None:
        """Insert one chunk with one ``COPY`` (PostgreSQL with psycopg 3) or one
        ``executemany``: every other column holds the template's value, prepared for the
        database once per chunk (``bulk_create`` would build and prepare a model instance per
        row, which costs more than the insert itself)."""
        assert self.template is not None
        using = router.db_for_write(Message)
        connection = connections[using]
        fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        columns: list[str] = []
        shared: list[Any] = []
        slots: list[int] = []
        for field in fields:
            columns.append(connection.ops.quote_name(cast(str, field.column)))
            if field.attname in self.PER_ROW:
                slots.append(self.PER_ROW.index(field.attname))
                shared.append(None)
            else:
                value = field.pre_save(self.template, add=True)  # created_at: now
                slots.append(-1)
                shared.append(field.get_db_prep_save(value, connection))
        table = connection.ops.quote_name(Message._meta.db_table)
        with connection.cursor() as cursor:
            raw = getattr(cursor, "cursor", None)
            if raw is not None and connection.vendor == "postgresql" and hasattr(raw, "copy"):
                # psycopg 3: COPY, several times faster than INSERTs, on the server too. The
                # rows are written as text: the shared columns formatted once per chunk.
                block = _copy_block(rows, shared, slots)
                with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    if block is not None:
                        copy.write(block)
                    else:
                        for row in rows:
                            copy.write_row(
                                [
                                    value if slot < 0 else row[slot]
                                    for value, slot in zip(shared, slots)
                                ]
                            )
                return
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})",
                [
                    [value if slot < 0 else row[slot] for value, slot in zip(shared, slots)]
                    for row in rows
                ],
            )

    #: From this many rows on, PostgreSQL's statistics are refreshed after the insert.
    ANALYZE_FROM = 10_000

    def analyze(self) -> None:
        """After a large insert, refresh PostgreSQL's statistics of the message table (what
        its documentation advises after a bulk load): until autovacuum does, the planner
        believes the new batch holds one row and its ``queued`` rows are rare, and each
        chunk's claim would scan the whole batch instead of finding its rows by id."""
        connection = connections[router.db_for_write(Message)]
        if self.inserted < self.ANALYZE_FROM or connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Message._meta.db_table)}")

    def add_errors(self, errors: dict[str, Any], with_references: bool) -> None:
        if "recipients" in errors:
            pass
        elif self.bad:
            more = self.bad_count - len(self.bad)
            errors["recipients"] = ValidationError(
                "Invalid recipients: "
                + "; ".join(self.bad)
                + (f" … and {more} more" if more > 0 else ""),
                code="invalid",
            )
        elif not self.count:
            errors["recipients"] = ValidationError("Give at least one recipient.", code="required")
        if with_references and self.references_mismatch:
            errors["references"] = ValidationError(
                "references must have one item per recipient.", code="invalid"
            )
        elif self.bad_references:
            more = self.bad_reference_count - len(self.bad_references)
            errors["references"] = ValidationError(
                "Invalid references: "
                + "; ".join(self.bad_references)
                + (f" … and {more} more" if more > 0 else ""),
                code="invalid",
            )

    def drop_duplicates(self, batch: Batch) -> int:
        """Delete the rows of ``batch`` whose number an earlier row has; how many went. One
        query when there are none (the rows were inserted chunk by chunk: a duplicate may be
        in another chunk, so this asks the database rather than keeping every number)."""
        firsts = (
            Message.objects.filter(batch=batch)
            .values("recipient")
            .annotate(first=Min("pk"), copies=Count("pk"))
            .filter(copies__gt=1)
        )
        numbers = list(firsts.values_list("recipient", "first"))
        if not numbers:
            return 0
        dropped = 0
        for start in range(0, len(numbers), 1000):
            part = numbers[start : start + 1000]
            _total, deleted = (
                Message.objects.filter(batch=batch, recipient__in=[n for n, _ in part])
                .exclude(pk__in=[first for _, first in part])
                .delete()
            )
            dropped += deleted.get(Message._meta.label, 0)
        return dropped
