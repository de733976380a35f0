"""The admin's bulk send form: numbers pasted or uploaded as CSV, checked and previewed.

Nothing here sends anything: :class:`BulkSendForm` turns what a person typed or uploaded into a
:class:`~django_mitto.bulk.BulkPreview` (valid numbers in E.164, invalid ones with the reason,
duplicates, encoding and parts) with :func:`django_mitto.bulk.preview_bulk`, and the view has
the preview sent with :func:`django_mitto.bulk.send_preview`. The preview is recomputed from the
submitted data on every request, the confirming one included. The parsing and checking live in
:mod:`django_mitto.bulk` (``manage.py mitto_send_bulk`` uses them too); they are importable
from here as before.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from .. import validators
from ..bulk import (
    CSV,
    PASTED,
    BulkPreview,
    ColumnError,
    CsvError,
    CsvLayout,
    Duplicate,
    Entry,
    Recipient,
    Rejected,
    analyze_entries,
    decode_csv,
    parse_csv,
    parse_pasted,
    preview_bulk,
    send_preview,
)
from ..conf import DEFAULT_ACCOUNT, conf
from ..models import Encoding, Message
from .forms import account_field

__all__ = [
    # The parsing and checking, from django_mitto.bulk (importable from here as before).
    "CSV",
    "PASTED",
    "BulkPreview",
    "BulkSendForm",
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

#: Largest CSV file accepted. The file travels back in the form on the preview page, and Django
#: refuses a form of more than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default).
MAX_CSV_BYTES = 1024 * 1024
#: Most recipients one bulk send takes (pasted and uploaded together).
MAX_RECIPIENTS = 50_000

_REFERENCE_MAX_LENGTH = Message._meta.get_field("reference").max_length or 255

# -- the form ------------------------------------------------------------------------------------


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
        if not sender:
            return sender  # the account's default sender, checked by clean()
        validators.validate_sender(sender)
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
        preview, problems = preview_bulk(
            entries,
            text=data.get("text"),
            encoding=data.get("encoding"),
            region=self.region,
            account=data.get("account") or DEFAULT_ACCOUNT,
            sender=data.get("sender") or "",
            reference=data.get("reference") or "",
            test=bool(data.get("test")),
        )
        preview.csv_layout = csv_layout
        preview.csv_name = csv_name
        self._carried_csv = csv_text, csv_name
        self.preview = preview
        for name, errors in problems.items():
            if name == "sender" and "sender" in self.errors:
                continue  # the sender typed is wrong: its own error says so
            self.add_error(numbers_field if name == "numbers" else name, ValidationError(errors))
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
