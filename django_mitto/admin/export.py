"""The CSV export of messages: streamed, with formulas quoted in every column."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

from django.db.models import Field

from ..models import Message

# -- CSV --------------------------------------------------------------------------------------------

#: Columns of "Export as CSV", in order.
CSV_FIELDS = (
    "recipient",
    "status",
    "provider_id",
    "reference",
    "segments",
    "created_at",
    "sent_at",
    "delivery_status",
    "error_code",
)
# A cell starting with one of these is a formula to a spreadsheet (tab and carriage return
# too: some spreadsheets skip them and read the formula behind).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain number (an E.164 recipient, "+41791234567") is no formula: it is left as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_value(name: str, value: Any) -> Any:
    """A cell of the export; any text a spreadsheet could run as a formula is quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def _csv_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [str(cast(Field, Message._meta.get_field(name)).verbose_name) for name in CSV_FIELDS]
    )
    for row in rows:
        yield writer.writerow([_csv_value(name, value) for name, value in zip(CSV_FIELDS, row)])
