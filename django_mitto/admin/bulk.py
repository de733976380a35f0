"""The admin's bulk send form: read numbers pasted or uploaded as CSV, check them, preview.

Nothing here sends anything: :class:`BulkSendForm` turns what a person typed or uploaded into a
:class:`BulkPreview` (valid numbers in E.164, invalid ones with the reason, duplicates, encoding
and parts), and the view hands the preview's numbers to :func:`django_mitto.services.send_bulk`.
The preview is recomputed from the submitted data on every request, the confirming one included.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import encoding as enc
from .. import validators
from ..conf import DEFAULT_ACCOUNT, conf
from ..models import Encoding, Message
from .forms import account_field

__all__ = [
    "BulkPreview",
    "BulkSendForm",
    "Duplicate",
    "Entry",
    "Recipient",
    "Rejected",
    "analyze_entries",
    "parse_csv",
    "parse_pasted",
]

#: Largest CSV file accepted. The file travels back in the form on the preview page, and Django
#: refuses a form of more than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default).
MAX_CSV_BYTES = 1024 * 1024
#: Most recipients one bulk send takes (pasted and uploaded together).
MAX_RECIPIENTS = 50_000

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


def parse_csv(text: str) -> tuple[list[Entry], CsvLayout]:
    """Read a CSV text: a column of numbers and optionally a column of references.

    The delimiter (``;``, ``,`` or tab) is the most frequent one on the first line. The first
    row is a header when none of its cells holds a number. A header's names pick the number
    and the reference column (``phone``, ``number``... and ``reference``, ``ref``); without a
    header, or when no name is known, the first column holds the numbers and the second, if
    any, the references.
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
    if header:
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


# -- the form ------------------------------------------------------------------------------------


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


class BulkSendForm(forms.Form):
    """Numbers (pasted and/or a CSV file), sender, text, encoding, test flag and reference.

    A valid form has a :attr:`preview`. On the preview page the form is shown again with the
    CSV file's text in ``csv_data`` and the preview's :attr:`BulkPreview.digest` in ``digest``,
    so the confirming request carries everything again and the send can check that it does
    exactly what was previewed.
    """

    max_csv_bytes = MAX_CSV_BYTES
    max_recipients = MAX_RECIPIENTS

    numbers = forms.CharField(
        label=_("Numbers"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text=_(
            "One per line, or separated by commas, semicolons or spaces. In international "
            "format (+41 79 123 45 67 or 0041791234567); local numbers need MITTO_DEFAULT_REGION."
        ),
    )
    csv_file = forms.FileField(
        label=_("CSV file"),
        required=False,
        widget=forms.FileInput(attrs={"accept": ".csv,.txt,text/csv,text/plain"}),
        help_text=_(
            "A column of numbers, optionally a column of references (one per message). "
            "A header row is recognised; “;” or “,” separated; UTF-8."
        ),
    )
    csv_data = forms.CharField(required=False, strip=False, widget=forms.HiddenInput)
    csv_name = forms.CharField(required=False, widget=forms.HiddenInput)
    csv_clear = forms.BooleanField(
        label=_("Leave out the numbers of the uploaded file"), required=False
    )
    sender = forms.CharField(
        label=_("Sender"),
        required=False,
        max_length=16,
        help_text=_("3-11 letters and digits, or a number. Empty: MITTO_DEFAULT_SENDER."),
    )
    text = forms.CharField(
        label=_("Text"),
        strip=False,
        widget=forms.Textarea(attrs={"rows": 5, "class": "vLargeTextField"}),
    )
    encoding = forms.ChoiceField(
        label=_("Encoding"),
        choices=Encoding.choices,
        initial=Encoding.AUTO,
        help_text=_("Auto sends GSM when every character fits it, else Unicode."),
    )
    test = forms.BooleanField(
        label=_("Test"),
        required=False,
        help_text=_("Mitto accepts the messages but sends nothing."),
    )
    reference = forms.CharField(
        label=_("Reference"),
        required=False,
        max_length=_REFERENCE_MAX_LENGTH,
        help_text=_(
            "Sent to Mitto and echoed in its delivery reports; a reference column in the CSV "
            "file wins for its rows."
        ),
    )
    digest = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, region: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if conf.SEVERAL_ACCOUNTS:
            self.fields["account"] = account_field()
        self.region = region if region is not None else conf.DEFAULT_REGION
        self.preview: BulkPreview | None = None
        self._uploaded_name = ""
        # The CSV text and file name the numbers were read from, once clean() got that far.
        self._carried_csv: tuple[str, str] | None = None
        if "account" in self.fields:
            # The default sender and test mode depend on the account chosen.
            self.fields["sender"].help_text = _(
                "3-11 letters and digits, or a number. Empty: the account's default sender."
            )
            self.fields["test"].help_text = _(
                "Mitto accepts the messages but sends nothing (always so for an account in "
                "test mode)."
            )
        else:
            if not self.is_bound:
                self.fields["sender"].initial = conf.DEFAULT_SENDER
                self.fields["test"].initial = conf.TEST_MODE
            if not conf.DEFAULT_SENDER:
                self.fields["sender"].help_text = _("3-11 letters and digits, or a number.")

    # -- field by field

    def clean_csv_file(self) -> str | None:
        """Read the uploaded file into text; ``None`` when no file was uploaded."""
        upload = self.cleaned_data.get("csv_file")
        if not upload:
            return None
        if upload.size > self.max_csv_bytes:
            raise ValidationError(
                _("The file is %(size)s; the largest file accepted is %(max)s."),
                code="too_large",
                params={
                    "size": filesizeformat(upload.size),
                    "max": filesizeformat(self.max_csv_bytes),
                },
            )
        data = b"".join(upload.chunks())
        try:
            text = decode_csv(data)
        except CsvError as exc:
            raise ValidationError(str(exc), code="encoding") from None
        self._uploaded_name = upload.name
        return text

    def clean_csv_data(self) -> str:
        # The file's text comes back from the preview page: it obeys the same cap as the file.
        text = self.cleaned_data.get("csv_data") or ""
        if len(text.encode("utf-8")) > self.max_csv_bytes:
            raise ValidationError(
                _("The numbers carried from the uploaded file are over %(max)s."),
                code="too_large",
                params={"max": filesizeformat(self.max_csv_bytes)},
            )
        return text

    def clean_sender(self) -> str:
        sender = self.cleaned_data.get("sender", "").strip()
        if not sender and "account" in self.fields:
            return sender  # the chosen account's default sender, checked by clean()
        validators.validate_sender(sender or conf.DEFAULT_SENDER)
        return sender

    def clean_text(self) -> str:
        text = self.cleaned_data.get("text") or ""
        validators.validate_text_characters(text)
        return text

    def clean_reference(self) -> str:
        reference = self.cleaned_data.get("reference") or ""
        validators.validate_reference(reference)
        return reference

    # -- the whole

    def csv_text(self) -> tuple[str, str]:
        """The CSV text in play and its file name: a new upload, else the carried one."""
        uploaded = self.cleaned_data.get("csv_file")
        if uploaded is not None:
            return uploaded, self._uploaded_name
        if self.cleaned_data.get("csv_clear"):
            return "", ""
        return self.cleaned_data.get("csv_data") or "", self.cleaned_data.get("csv_name") or ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if "csv_file" in self.errors or "csv_data" in self.errors:
            return data
        entries = parse_pasted(data.get("numbers") or "", self.region)
        csv_text, csv_name = self.csv_text()
        csv_layout = None
        if csv_text:
            try:
                csv_entries, csv_layout = parse_csv(csv_text)
            except CsvError as exc:
                self.add_error("csv_file", ValidationError(str(exc), code="invalid"))
                return data
            entries.extend(csv_entries)
        numbers_field = "numbers" if data.get("numbers") or not csv_text else "csv_file"
        if not entries:
            self.add_error(
                "numbers",
                ValidationError(_("Enter numbers, or upload a CSV file."), code="required"),
            )
            return data
        if len(entries) > self.max_recipients:
            self.add_error(
                numbers_field,
                ValidationError(
                    _("%(count)d numbers are more than one bulk send takes (%(max)d)."),
                    code="too_many",
                    params={"count": len(entries), "max": self.max_recipients},
                ),
            )
            return data
        preview = analyze_entries(entries, self.region)
        from ..optouts import opted_out_numbers

        blocked = opted_out_numbers(preview.numbers)
        if blocked:
            preview.opted_out = [r for r in preview.recipients if r.number in blocked]
            preview.recipients = [r for r in preview.recipients if r.number not in blocked]
        if not preview.recipients and preview.opted_out:
            self.add_error(
                numbers_field,
                ValidationError(
                    _("Every valid number opted out: there is no one to send to."),
                    code="all_opted_out",
                ),
            )
        elif not preview.recipients:
            self.add_error(
                numbers_field,
                ValidationError(
                    _("No valid numbers: every number given is invalid (see the reasons below)."),
                    code="no_valid_numbers",
                ),
            )
        preview.csv_layout = csv_layout
        preview.csv_name = csv_name
        self._carried_csv = csv_text, csv_name
        self.preview = preview

        text = data.get("text")
        encoding = data.get("encoding")
        if text and encoding:
            try:
                preview.info = enc.validate(text, encoding)
            except enc.EncodingError:
                self.add_error("text", ValidationError(_text_error(text, encoding), code="invalid"))
            else:
                try:
                    validators.validate_parts(preview.info)
                except ValidationError as exc:
                    self.add_error("text", exc)
        account = conf.account(data.get("account") or DEFAULT_ACCOUNT)
        preview.account = account.name
        preview.sender = data.get("sender") or account.DEFAULT_SENDER
        if "account" in self.fields and not data.get("sender") and "sender" not in self.errors:
            try:
                validators.validate_sender(preview.sender)
            except ValidationError as exc:
                self.add_error("sender", exc)
        preview.text = text or ""
        preview.encoding = encoding or enc.AUTO
        preview.reference = data.get("reference") or ""
        preview.test = bool(data.get("test")) or account.TEST_MODE
        preview.chunk_size = conf.BULK_CHUNK_SIZE
        if preview.has_row_references and preview.requests > 1:
            preview.notes.append(
                ngettext(
                    "Mitto takes one reference per request: the messages go out in %(count)d "
                    "request.",
                    "Mitto takes one reference per request: the messages go out in %(count)d "
                    "requests.",
                    preview.requests,
                )
                % {"count": preview.requests}
            )
        return data

    def is_confirmed(self) -> bool:
        """Whether the submitted digest is the one of the preview just recomputed."""
        return bool(
            self.preview is not None
            and not self.errors
            and self.cleaned_data.get("digest") == self.preview.digest
        )

    def carry(self) -> None:
        """Put the CSV text and the preview's digest into the data the form is shown with."""
        data = self.data.copy()  # type: ignore[attr-defined]  # a QueryDict: the form is bound
        # When the form stopped before reading the numbers (a bad new file), keep the old ones.
        csv_text, csv_name = self._carried_csv or (
            data.get("csv_data", ""),
            data.get("csv_name", ""),
        )
        data["csv_data"] = csv_text
        data["csv_name"] = csv_name
        data["csv_clear"] = ""
        data["digest"] = self.preview.digest if self.preview and not self.errors else ""
        self.data = data
