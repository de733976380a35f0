"""The admin's compose form for one SMS, and the text widget with its live counter."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from .. import encoding as enc
from .. import validators
from ..conf import DEFAULT_ACCOUNT, conf
from ..models import Message

__all__ = ["MessageComposeForm", "SmsTextWidget", "counter_tables"]


def counter_tables() -> dict[str, Any]:
    """What ``counter.js`` needs to count exactly like :mod:`django_mitto.encoding`.

    The GSM 03.38 tables and the part sizes come from the encoding module itself, so the
    browser and the server can never disagree about which characters are GSM.
    """
    return {
        "basic": "".join(sorted(enc.GSM_BASIC_CHARACTERS)),
        "extension": "".join(sorted(enc.GSM_EXTENSION_CHARACTERS)),
        "single": dict(enc.SINGLE_PART_SIZE),
        "multi": dict(enc.MULTI_PART_SIZE),
    }


class SmsTextWidget(forms.Textarea):
    """A textarea with a live SMS counter beside it (encoding, characters, parts, room left).

    ``encoding_field`` names the form field holding the encoding; the counter follows it.
    """

    template_name = "django_mitto/widgets/sms_text.html"

    class Media:
        js = ("django_mitto/counter.js",)
        css = {"all": ("django_mitto/admin.css",)}

    def __init__(self, attrs: dict[str, Any] | None = None, encoding_field: str = "encoding"):
        super().__init__({"rows": 6, "cols": 60, **(attrs or {})})
        self.encoding_field = encoding_field

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        widget_id = context["widget"]["attrs"].get("id") or f"id_{name}"
        # A prefixed form ("form-0-text") has a prefixed encoding field as well.
        prefix = name[: -len(name.split("-")[-1])]
        context["widget"]["counter"] = {
            "id": f"{widget_id}_counter",
            "tables_id": f"{widget_id}_gsm_tables",
            "tables": counter_tables(),
            "encoding_name": prefix + self.encoding_field,
        }
        return context


def account_field() -> forms.ChoiceField:
    """A choice of the configured Mitto accounts, ``default`` first."""
    return forms.ChoiceField(
        label=_("Account"),
        choices=[(name, name) for name in conf.accounts()],
        initial=DEFAULT_ACCOUNT,
        help_text=_("The Mitto account the message is sent through (MITTO_ACCOUNTS)."),
    )


class MessageComposeForm(forms.ModelForm):
    """Compose one SMS. Every check is one of :mod:`django_mitto.validators`, on its field."""

    pid = forms.IntegerField(
        label=capfirst(Message._meta.get_field("pid").verbose_name),
        required=False,
        min_value=0,
        max_value=255,
        help_text=_("0 to 255. Empty: Mitto's default."),
    )
    validity = forms.IntegerField(
        label=capfirst(Message._meta.get_field("validity").verbose_name),
        required=False,
        min_value=1,
        max_value=validators.MAX_VALIDITY,
        help_text=_("1 to 2880 minutes (48 hours). Empty: Mitto's default (2880)."),
    )

    class Meta:
        model = Message
        fields = [
            "account",
            "recipient",
            "sender",
            "text",
            "encoding",
            "reference",
            "test",
            "flash",
            "validity",
            "udh",
            "pid",
        ]
        widgets = {"text": SmsTextWidget()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "account" in self.fields:
            # Only there with several accounts (MessageAdmin.get_fieldsets).
            self.fields["account"] = account_field()
            self.fields["sender"].help_text = _(
                "3-11 letters and digits, or a number. Empty: the account's default sender."
            )
        elif not self.initial.get("sender"):
            self.initial["sender"] = conf.DEFAULT_SENDER
        # What is typed is what is sent: keep leading and trailing spaces and line breaks.
        text_field = self.fields["text"]
        if isinstance(text_field, forms.CharField):  # as made from the model's TextField
            text_field.strip = False
        self.fields["recipient"].widget.attrs.setdefault("placeholder", "+41791234567")
        self.fields["udh"].widget.attrs.setdefault("spellcheck", "false")

    def clean_recipient(self) -> str:
        return validators.normalize_recipient(self.cleaned_data["recipient"])

    def clean_sender(self) -> str:
        sender = (self.cleaned_data.get("sender") or "").strip()
        if not sender and "account" in self.fields:
            return ""  # the chosen account's default sender, filled in by clean()
        sender = sender or conf.DEFAULT_SENDER
        validators.validate_sender(sender)
        return sender

    def clean_text(self) -> str:
        # Browsers submit line breaks as CRLF; the counter (and the person typing) saw one
        # character per line break.
        text = (self.cleaned_data.get("text") or "").replace("\r\n", "\n")
        if not text.strip():
            raise ValidationError(self.fields["text"].error_messages["required"], code="required")
        validators.validate_text_characters(text)
        return text

    def clean_reference(self) -> str:
        reference = self.cleaned_data.get("reference") or ""
        validators.validate_reference(reference)
        return reference

    def clean_encoding(self) -> str:
        return validators.validate_encoding(self.cleaned_data.get("encoding") or enc.AUTO)

    def clean_udh(self) -> str:
        udh = (self.cleaned_data.get("udh") or "").strip()
        validators.validate_udh(udh)
        return udh

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        account = cleaned.get("account")
        if account and "sender" in cleaned and not cleaned["sender"]:
            sender = conf.account(account).DEFAULT_SENDER
            try:
                validators.validate_sender(sender)
            except ValidationError as exc:
                self.add_error("sender", exc)
            else:
                cleaned["sender"] = sender
        text = cleaned.get("text")
        encoding = cleaned.get("encoding")
        if text and encoding:
            try:
                validators.validate_text(text, encoding)
            except ValidationError as exc:
                self.add_error("text", exc)
        return cleaned

    def _post_clean(self) -> None:
        # Message.clean() runs the same validators again. On a field this form refused it would
        # add a second, misleading error about the value left out, so the model's checks run
        # only once the form itself has found nothing wrong.
        # _errors and _post_clean() are Django's private form hooks, absent from the type stubs.
        if not self._errors:  # type: ignore[attr-defined]
            super()._post_clean()  # type: ignore[misc]
