"""Opt-outs: numbers that asked to receive no more messages.

* :func:`opted_out_numbers` tells which of many numbers opted out, in chunks of
  ``number IN (...)`` lookups: the number of queries depends on how many numbers are checked,
  never on how many opt-outs are stored.
* :func:`add_opt_out` records one (idempotent), :func:`add_opt_outs` many; :func:`export_csv`
  writes them as CSV.
* :func:`is_opt_out_keyword` tells whether a reply's first word asks to opt out.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, router, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext as _

from . import sql, validators
from .conf import conf
from .models import DEFAULT_ACCOUNT, Message, OptOut, Status
from .sql import row_exists

logger = logging.getLogger("django_mitto")

__all__ = [
    "add_opt_out",
    "add_opt_outs",
    "export_csv",
    "is_opt_out_keyword",
    "opted_out_numbers",
    "reject_if_opted_out",
]

#: Most numbers one ``number IN (...)`` query carries (fewer where the database allows fewer).
CHUNK_SIZE = 5000


def chunk_size() -> int:
    """Numbers per lookup query: :data:`CHUNK_SIZE`, or below the database's parameter limit."""
    limit = connections[router.db_for_read(OptOut)].features.max_query_params
    # One parameter is the account; keep a margin for whatever else the query carries.
    return CHUNK_SIZE if not limit else max(1, min(CHUNK_SIZE, limit - 10))


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def opted_out_numbers(numbers: Iterable[str], account: str = DEFAULT_ACCOUNT) -> set[str]:
    """Which of ``numbers`` (E.164) opted out of ``account``: one query per chunk of numbers."""
    wanted = sorted(set(numbers))
    found: set[str] = set()
    postgres = connections[router.db_for_read(OptOut)].vendor == "postgresql"
    for chunk in _chunks(wanted, chunk_size()):
        # On PostgreSQL the chunk travels as one array: the planner then probes the unique
        # index per number (a long IN list of literals tempts it into a sequential scan).
        values: Any = (
            RawSQL("SELECT unnest(%s::varchar[])", (sql.array(chunk),)) if postgres else chunk
        )
        found.update(
            OptOut.objects.filter(account=account, number__in=values).values_list(
                "number", flat=True
            )
        )
    return found


def is_opted_out(number: str, account: str = DEFAULT_ACCOUNT) -> bool:
    """Whether one number (E.164) opted out of ``account``."""
    return row_exists(OptOut, account=account, number=number)


def add_opt_out(
    number: str,
    *,
    source: str = OptOut.Source.API,
    account: str = DEFAULT_ACCOUNT,
    note: str = "",
) -> tuple[OptOut, bool]:
    """Record that ``number`` opted out; return the opt-out and whether it is new.

    The number is normalised to E.164 (``ValidationError`` on ``number`` when it is not a
    phone number). A number already opted out is left as it was (its first source and date).
    """
    try:
        number = validators.normalize_recipient(number)
    except ValidationError as exc:
        raise ValidationError({"number": exc}) from None
    try:
        with transaction.atomic(using=router.db_for_write(OptOut)):
            opt_out, created = OptOut.objects.get_or_create(
                number=number, account=account, defaults={"source": source, "note": note}
            )
    except IntegrityError:  # the same number, added at the same moment elsewhere
        opt_out, created = OptOut.objects.get(number=number, account=account), False
    if created:
        logger.info("Opt-out added for %s (%s, account %s)", number, source, account)
    return opt_out, created


def opt_out_reason(number: str) -> str:
    """Why a message to ``number`` is not sent, in words for a person."""
    return _(
        "%(number)s opted out: it receives no more messages. Send with ignore_opt_out=True "
        "only for a transactional message."
    ) % {"number": number}


def reject_if_opted_out(message: Message) -> bool:
    """End a new ``queued`` message ``rejected`` when its recipient opted out; say whether it did.

    The message is never handed to Mitto: its status becomes ``rejected`` and ``error`` says
    why, in one UPDATE that only moves a message still ``queued``.
    """
    if not is_opted_out(message.recipient, message.account or DEFAULT_ACCOUNT):
        return False
    error = opt_out_reason(message.recipient)
    now = timezone.now()
    Message.objects.filter(pk=message.pk, status=Status.QUEUED).update(
        status=Status.REJECTED, error=error, status_changed_at=now
    )
    message.status, message.error, message.status_changed_at = Status.REJECTED, error, now
    logger.warning("SMS %s to %s rejected: the number opted out", message.pk, message.recipient)
    return True


# -- keywords ------------------------------------------------------------------------------------


def fold(word: str) -> str:
    """A word compared without case or accents ("Arrêt" and "ARRET" fold alike)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_WORD = re.compile(r"[\W_]*([^\W_]+)")


def first_word(text: str) -> str:
    """The reply's first word, without the punctuation around it ("Stop!" gives "Stop")."""
    words = (text or "").split()
    if not words:
        return ""
    match = _WORD.match(words[0])
    return match.group(1) if match else ""


def is_opt_out_keyword(text: str) -> bool:
    """Whether the first word of ``text`` is one of ``MITTO_OPT_OUT_KEYWORDS`` (folded)."""
    word = fold(first_word(text))
    return bool(word) and word in {fold(keyword) for keyword in conf.OPT_OUT_KEYWORDS}


# -- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = ["number", "account", "source", "created_at", "note"]


def export_csv(queryset: QuerySet[OptOut]) -> Iterator[str]:
    """The opt-outs as CSV lines (header first), streamed in primary-key chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    for opt_out in queryset.order_by("pk").iterator(chunk_size=2000):
        writer.writerow(
            [
                opt_out.number,
                opt_out.account,
                opt_out.source,
                opt_out.created_at.isoformat(),
                # A cell starting with = + - @ is a formula to a spreadsheet: quote it out.
                ("'" + opt_out.note) if opt_out.note[:1] in ("=", "+", "-", "@") else opt_out.note,
            ]
        )
        yield flush()


@dataclass
class ImportResult:
    """What an import did: numbers added, already there, and rows refused with the reason."""

    added: int = 0
    existing: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)


def add_opt_outs(
    numbers: Sequence[str],
    *,
    source: str = OptOut.Source.IMPORT,
    account: str = DEFAULT_ACCOUNT,
    note: str = "",
    region: str | None = None,
) -> ImportResult:
    """Add many numbers at once (an import): chunked lookups and ``bulk_create``.

    An invalid number is reported (its 1-based position, as written, why) and left out; a
    number already opted out is counted, not changed.
    """
    result = ImportResult()
    valid: list[str] = []
    for position, raw in enumerate(numbers, start=1):
        try:
            valid.append(validators.normalize_recipient(raw, region))
        except ValidationError as exc:
            result.invalid.append((position, raw, " ".join(exc.messages)))
    unique = sorted(set(valid))
    already = opted_out_numbers(unique, account)
    new = [number for number in unique if number not in already]
    size = chunk_size()
    for chunk in _chunks(new, size):
        OptOut.objects.bulk_create(
            [OptOut(number=n, account=account, source=source, note=note) for n in chunk],
            ignore_conflicts=True,
        )
    result.added = len(new)
    result.existing = len(unique) - len(new)
    logger.info("Opt-outs imported: %d added, %d already there", result.added, result.existing)
    return result
