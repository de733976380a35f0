"""Bulk sends from a list of numbers: read them, check them, preview the send, then make it.

The admin's bulk form (:mod:`django_mitto.admin.bulk`) and ``manage.py mitto_send_bulk`` both
use this; nothing here needs the admin.

* :func:`parse_pasted` and :func:`parse_csv` turn what a person typed or uploaded into
  :class:`Entry` items (the number as written, and where).
* :func:`analyze_entries` sorts them into recipients (E.164), rejected entries with the reason
  and duplicates; :func:`preview_bulk` adds the opt-outs, the encoding and the parts: a
  :class:`BulkPreview`. Nothing is written.
* :func:`send_preview` creates the batch a preview shows, through
  :func:`django_mitto.services.send_bulk`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import encoding as enc
from . import validators
from .conf import DEFAULT_ACCOUNT, conf
from .models import Batch, Encoding, Message

__all__ = [
    "CSV",
    "PASTED",
    "BulkPreview",
    "ColumnError",
    "CsvError",
    "CsvLayout",
    "Duplicate",
    "Entry",
    "Recipient",
    "Rejected",
    "analyze_entries",
    "decode_csv",
    "parse_csv",
    "parse_pasted",
    "preview_bulk",
    "send_preview",
]

PASTED = "pasted"
CSV = "csv"

_REFERENCE_MAX_LENGTH = Message._meta.get_field("reference").max_length or 255
_PIECE_SEPARATORS = re.compile(r"[,;\t|]+")
_NUMBER_HEADERS = frozenset(
    {
        "number",
        "numbers",
        "phone",
        "phone number",
        "phonenumber",
        "mobile",
        "mobile number",
        "cell",
        "msisdn",
        "recipient",
        "recipients",
        "receiver",
        "to",
        "tel",
        "telephone",
        "telefon",
        "telefonnummer",
        "handy",
        "handynummer",
        "nummer",
        "numéro",
        "numero",
        "téléphone",
        "telephone number",
        "portable",
        "natel",
    }
)
_REFERENCE_HEADERS = frozenset({"reference", "references", "ref", "referenz", "référence"})


# -- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One number as written, and where: ``source`` is pasted/csv, ``position`` line or row."""

    raw: str
    source: str
    position: int
    reference: str = ""


def _is_valid(raw: str, region: str | None) -> bool:
    try:
        validators.normalize_recipient(raw, region)
    except ValidationError:
        return False
    return True


def _split_piece(piece: str, region: str | None) -> list[str]:
    """Split one comma/semicolon-free piece of text into numbers.

    Spaces are both a common way to write one number (``+41 79 123 45 67``) and a separator
    between numbers. The piece is one number when it reads as one; it is split on whitespace
    when it does not but one of its words does; otherwise it is kept whole, to be reported as
    one invalid entry rather than as a heap of meaningless fragments.
    """
    words = piece.split()
    if len(words) <= 1 or _is_valid(piece, region):
        return [piece]
    if any(_is_valid(word, region) for word in words):
        return words
    return [piece]


def parse_pasted(text: str, region: str | None = None) -> list[Entry]:
    """Read numbers typed or pasted one per line, or separated by commas, semicolons or spaces."""
    entries: list[Entry] = []
    for line_no, line in enumerate((text or "").splitlines(), start=1):
        for piece in _PIECE_SEPARATORS.split(line):
            piece = piece.strip()
            if piece:
                entries.extend(Entry(raw, PASTED, line_no) for raw in _split_piece(piece, region))
    return entries


class CsvError(ValueError):
    """A CSV file cannot be read; the message says why, for the person who uploaded it."""


class ColumnError(CsvError):
    """The column of numbers asked for (``parse_csv(column=...)``) is not in the file."""


def decode_csv(data: bytes) -> str:
    """Decode an uploaded CSV file: UTF-8, with or without a byte order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError(
            gettext(
                "The file is not UTF-8 text. Save it as “CSV UTF-8” (Excel) or with the "
                "UTF-8 encoding, then upload it again."
            )
        ) from None


def _delimiter(text: str) -> tuple[str, str]:
    """The delimiter of a CSV text, and the text without Excel's ``sep=;`` line if it had one."""
    first, _, rest = text.partition("\n")
    hint = first.strip()
    if hint.lower().startswith("sep=") and len(hint) == 5:
        return hint[4], rest
    for line in text.splitlines():
        if line.strip():
            counts = {d: line.count(d) for d in (";", ",", "\t")}
            best = max(counts, key=lambda d: counts[d])
            return (best if counts[best] else ","), text
    return ",", text


def _has_digits(cell: str, at_least: int = 3) -> bool:
    return sum(c.isdigit() for c in cell) >= at_least


def _header_name(cell: str) -> str:
    return " ".join(cell.strip().strip("\"'#*").replace("_", " ").replace("-", " ").lower().split())


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV file was read: header row or not, and which columns were used (1-based)."""

    header: bool = False
    number_column: int = 1
    reference_column: int | None = None
    number_name: str = ""
    reference_name: str = ""


def _chosen_column(column: str, header: list[str], width: int) -> int:
    """The 0-based index of the column a person named: by its number (1 = the first) or, when
    the file has a header row (``header``, its cells), by its name."""
    wanted = column.strip()
    if wanted.isdigit():
        index = int(wanted)
        if not 1 <= index <= width:
            raise ColumnError(
                ngettext(
                    "There is no column %(column)s: the file has %(count)d column.",
                    "There is no column %(column)s: the file has %(count)d columns.",
                    width,
                )
                % {"column": wanted, "count": width}
            )
        return index - 1
    if not header:
        raise ColumnError(
            gettext("The file has no header row: give the column by its number (1 is the first).")
        )
    name = _header_name(wanted)
    for index, cell in enumerate(header):
        if _header_name(cell) == name:
            return index
    raise ColumnError(
        gettext("No column is named “%(name)s”; the header row holds: %(names)s.")
        % {"name": wanted, "names": ", ".join(f"“{cell}”" for cell in header)}
    )


def parse_csv(text: str, column: str | None = None) -> tuple[list[Entry], CsvLayout]:
    """Read a CSV text: a column of numbers and optionally a column of references.

    The delimiter (``;``, ``,`` or tab) is the most frequent one on the first line. The first
    row is a header when none of its cells holds a number. A header's names pick the number
    and the reference column (``phone``, ``number``... and ``reference``, ``ref``); without a
    header, or when no name is known, the first column holds the numbers and the second, if
    any, the references.

    ``column`` picks the column of numbers instead: its number (``"2"``, 1 is the first) or
    its name in the header row. References are then read only from a column the header row
    names as such (``reference``, ``ref``...).
    """
    delimiter, body = _delimiter(text)
    skipped = 1 if body is not text else 0
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    try:
        rows = [(reader.line_num + skipped, row) for row in reader]
    except csv.Error as exc:
        raise CsvError(gettext("The file is not a readable CSV file: %s") % exc) from None
    rows = [(n, [cell.strip() for cell in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        return [], CsvLayout()
    first = rows[0][1]
    width = max(len(row) for _, row in rows)
    number_col: int | None = 0
    reference_col: int | None = 1 if width > 1 else None
    header = not any(_has_digits(cell) for cell in first)
    if column is not None:
        number_col = _chosen_column(column, first if header else [], width)
        names = [_header_name(cell) for cell in first] if header else []
        reference_col = next(
            (i for i, n in enumerate(names) if n in _REFERENCE_HEADERS and i != number_col),
            None,
        )
        if header:
            rows = rows[1:]
    elif header:
        names = [_header_name(cell) for cell in first]
        named_number = next((i for i, n in enumerate(names) if n in _NUMBER_HEADERS), None)
        named_reference = next(
            (i for i, n in enumerate(names) if n in _REFERENCE_HEADERS and i != named_number),
            None,
        )
        if named_number is not None or named_reference is not None:
            # A header that names one column: the other one is only used when named too.
            number_col = named_number
            reference_col = named_reference
            if number_col is None:
                number_col = next((i for i in range(width) if i != reference_col), None)
                if number_col is None:
                    raise CsvError(
                        gettext("The file has no column of numbers, only one of references.")
                    )
        rows = rows[1:]
    assert number_col is not None
    entries = []
    for line_no, row in rows:
        raw = row[number_col] if number_col < len(row) else ""
        ref = row[reference_col] if reference_col is not None and reference_col < len(row) else ""
        entries.append(Entry(raw, CSV, line_no, ref))

    def name(col: int | None) -> str:
        return first[col] if header and col is not None and col < len(first) else ""

    layout = CsvLayout(
        header=header,
        number_column=number_col + 1,
        reference_column=None if reference_col is None else reference_col + 1,
        number_name=name(number_col),
        reference_name=name(reference_col),
    )
    return entries, layout


# -- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A number that will be sent to, in E.164, with its reference (``""``: the form's)."""

    number: str
    reference: str
    entry: Entry


@dataclass(frozen=True)
class Rejected:
    """A number that will not be sent to, and why."""

    entry: Entry
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """A number given again: sent once, to the first entry (``first``)."""

    entry: Entry
    number: str
    first: Entry


@dataclass
class BulkPreview:
    """What a bulk send will do: to whom, with which encoding, at what cost in parts."""

    recipients: list[Recipient]
    rejected: list[Rejected]
    duplicates: list[Duplicate]
    info: enc.SmsInfo | None = None
    account: str = DEFAULT_ACCOUNT
    sender: str = ""
    text: str = ""
    encoding: str = enc.AUTO
    reference: str = ""
    test: bool = False
    chunk_size: int = 500
    csv_layout: CsvLayout | None = None
    csv_name: str = ""
    notes: list[str] = field(default_factory=list)
    #: Valid numbers that opted out: left out of the send.
    opted_out: list[Recipient] = field(default_factory=list)
    #: Valid numbers that opted out but are sent to all the same (``ignore_opt_out``).
    opted_out_included: list[Recipient] = field(default_factory=list)

    @property
    def numbers(self) -> list[str]:
        return [r.number for r in self.recipients]

    @property
    def references(self) -> list[str] | None:
        """One reference per recipient when any row brought its own, else ``None``."""
        if not any(r.reference for r in self.recipients):
            return None
        return [r.reference or self.reference for r in self.recipients]

    @property
    def has_row_references(self) -> bool:
        return any(r.reference for r in self.recipients)

    @property
    def encoding_label(self) -> str:
        """The encoding that will be used, as the admin names it (Auto already resolved)."""
        return str(Encoding(self.info.encoding).label) if self.info else ""

    @property
    def parts_per_message(self) -> int:
        return self.info.parts if self.info else 0

    @property
    def total_parts(self) -> int:
        return self.parts_per_message * len(self.recipients)

    @property
    def requests(self) -> int:
        """How many ``/smsbulk`` calls the send makes: one reference per call, in chunks."""
        size = max(self.chunk_size, 1)
        groups: dict[str, int] = {}
        for ref in self.references or [self.reference] * len(self.recipients):
            groups[ref] = groups.get(ref, 0) + 1
        return sum(math.ceil(n / size) for n in groups.values())

    @property
    def digest(self) -> str:
        """A fingerprint of everything the send would do, to tell that a confirm matches it."""
        payload = json.dumps(
            [
                self.numbers,
                self.references,
                self.account,
                self.sender,
                self.text,
                self.encoding,
                self.reference,
                self.test,
            ],
            ensure_ascii=False,
        )
        return salted_hmac("django_mitto.admin.bulk", payload, algorithm="sha256").hexdigest()


def analyze_entries(entries: Iterable[Entry], region: str | None = None) -> BulkPreview:
    """Normalise every entry; sort them into recipients, rejected entries and duplicates."""
    recipients: list[Recipient] = []
    rejected: list[Rejected] = []
    duplicates: list[Duplicate] = []
    seen: dict[str, Entry] = {}
    for entry in entries:
        if not entry.raw:
            rejected.append(Rejected(entry, gettext("No number in this row.")))
            continue
        try:
            number = validators.normalize_recipient(entry.raw, region)
        except ValidationError as exc:
            rejected.append(Rejected(entry, " ".join(exc.messages)))
            continue
        if len(entry.reference) > _REFERENCE_MAX_LENGTH:
            rejected.append(
                Rejected(
                    entry,
                    gettext("The reference is longer than %(max)d characters.")
                    % {"max": _REFERENCE_MAX_LENGTH},
                )
            )
            continue
        try:
            validators.validate_reference(entry.reference)
        except ValidationError as exc:
            rejected.append(
                Rejected(
                    entry,
                    gettext("The reference cannot be sent: %(error)s")
                    % {"error": " ".join(exc.messages)},
                )
            )
            continue
        first = seen.get(number)
        if first is not None:
            duplicates.append(Duplicate(entry, number, first))
            continue
        seen[number] = entry
        recipients.append(Recipient(number, entry.reference, entry))
    return BulkPreview(recipients=recipients, rejected=rejected, duplicates=duplicates)


# -- the preview and the send, for the admin and mitto_send_bulk ---------------------------------


def _text_error(text: str, encoding: str) -> str:
    """Why ``text`` cannot be sent with ``encoding``, in words a person can act on."""
    if encoding == enc.BINARY:
        return gettext(
            "With the Binary encoding the text is hexadecimal bytes: an even number of the "
            "digits 0-9 and A-F."
        )
    chars = enc.non_gsm_characters(text)
    return gettext(
        "These characters are not in the GSM alphabet: %(chars)s. Remove them, or choose the "
        "Auto or Unicode encoding."
    ) % {"chars": " ".join(chars)}


def preview_bulk(
    entries: Iterable[Entry],
    *,
    text: str | None,
    encoding: str | None,
    region: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    sender: str = "",
    reference: str = "",
    test: bool = False,
    ignore_opt_out: bool = False,
) -> tuple[BulkPreview, dict[str, list[ValidationError]]]:
    """What a bulk send of ``entries`` would do, and what stops it; nothing is written.

    The admin's bulk form and ``manage.py mitto_send_bulk`` both preview with this. Numbers
    that opted out of ``account`` are listed apart and left out (with ``ignore_opt_out`` they
    stay, listed in ``opted_out_included``). The problems found are keyed ``numbers`` (no one
    to send to), ``text`` (it does not fit ``encoding`` or ``MITTO_MAX_PARTS``) and ``sender``
    (none given, and the account's default is unusable). The caller checks the sender, text
    and reference it was given (the form's fields do); ``text`` and ``encoding`` are None
    when they did not pass.
    """
    problems: dict[str, list[ValidationError]] = {}
    from .optouts import opted_out_numbers

    acc = conf.account(account)
    preview = analyze_entries(entries, region)
    blocked = opted_out_numbers(preview.numbers, acc.name)
    if blocked:
        opted_out = [r for r in preview.recipients if r.number in blocked]
        if ignore_opt_out:
            preview.opted_out_included = opted_out
        else:
            preview.opted_out = opted_out
            preview.recipients = [r for r in preview.recipients if r.number not in blocked]
    if not preview.recipients and preview.opted_out:
        problems["numbers"] = [
            ValidationError(
                _("Every valid number opted out: there is no one to send to."),
                code="all_opted_out",
            )
        ]
    elif not preview.recipients:
        problems["numbers"] = [
            ValidationError(
                _("No valid numbers: every number given is invalid (see the reasons below)."),
                code="no_valid_numbers",
            )
        ]
    if text and encoding:
        try:
            preview.info = enc.validate(text, encoding)
        except enc.EncodingError:
            problems["text"] = [ValidationError(_text_error(text, encoding), code="invalid")]
        else:
            try:
                validators.validate_parts(preview.info)
            except ValidationError as exc:
                problems["text"] = [exc]
    preview.account = acc.name
    preview.sender = sender or acc.DEFAULT_SENDER
    if not sender:
        try:
            validators.validate_sender(preview.sender)
        except ValidationError as exc:
            problems["sender"] = [exc]
    preview.text = text or ""
    preview.encoding = encoding or enc.AUTO
    preview.reference = reference
    preview.test = test or acc.TEST_MODE
    preview.chunk_size = conf.BULK_CHUNK_SIZE
    if preview.has_row_references and preview.requests > 1:
        preview.notes.append(
            ngettext(
                "Mitto takes one reference per request: the messages go out in %(count)d request.",
                "Mitto takes one reference per request: the messages go out in %(count)d requests.",
                preview.requests,
            )
            % {"count": preview.requests}
        )
    if preview.opted_out_included:
        preview.notes.append(
            ngettext(
                "%(count)d number opted out but is sent to all the same (opt-outs ignored).",
                "%(count)d numbers opted out but are sent to all the same (opt-outs ignored).",
                len(preview.opted_out_included),
            )
            % {"count": len(preview.opted_out_included)}
        )
    return preview, problems


def send_preview(
    preview: BulkPreview,
    *,
    created_by: Any = None,
    ignore_opt_out: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> Batch:
    """Create the batch ``preview`` shows, through :func:`~django_mitto.services.send_bulk`.

    Call it inside ``transaction.atomic()``: sending starts when that commits, so the batch
    exists even if sending then fails. The numbers the preview left out as opted out are
    counted in ``batch.opted_out`` too.
    """
    from . import services

    batch = services.send_bulk(
        preview.numbers,
        preview.text,
        sender=preview.sender,
        encoding=preview.encoding,
        reference=preview.reference,
        references=preview.references,
        test=preview.test,
        created_by=created_by,
        ignore_opt_out=ignore_opt_out,
        account=preview.account,
        progress=progress,
    )
    if preview.opted_out:
        # The preview left them out already: the batch records them all the same.
        batch.opted_out += len(preview.opted_out)
        Batch.objects.filter(pk=batch.pk).update(opted_out=batch.opted_out)
    return batch
