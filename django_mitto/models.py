"""SMS models: every message, each bulk send, and every delivery report received."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from . import encoding as enc
from . import validators
from .countries import country_of


class Encoding(models.TextChoices):
    GSM = enc.GSM, "GSM 03.38"
    UNICODE = enc.UNICODE, "Unicode (UCS-2)"
    BINARY = enc.BINARY, _("Binary (hex)")
    AUTO = enc.AUTO, _("Auto (GSM when possible)")


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    UNDELIVERED = "undelivered", _("Undelivered")
    EXPIRED = "expired", _("Expired")
    REJECTED = "rejected", _("Rejected")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown (may have been sent)")


#: The dashboard's groups of statuses, bottom to top in a stacked bar.
DELIVERED_GROUP = "delivered"
IN_FLIGHT_GROUP = "in_flight"
FAILED_GROUP = "failed"

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _check_colour(value: str, name: str) -> None:
    # Colours are written into the admin's style sheet: only plain hex gets there.
    if not _COLOUR.match(value):
        raise ValueError(f"{name} must be a colour like #12ab34, not {value!r}")


@dataclass(frozen=True)
class StatusGroup:
    """One of the dashboard's groups of statuses: its name and its colour on every chart."""

    key: str
    label: str | Promise
    colour: str

    def __post_init__(self) -> None:
        _check_colour(self.colour, f"the colour of group {self.key!r}")

    @property
    def statuses(self) -> tuple[str, ...]:
        """The statuses in this group, in the order ``Status`` declares them."""
        return tuple(s for s in Status if STATUS_INFO[s].group == self.key)


@dataclass(frozen=True)
class StatusInfo:
    """What a status means, for the delivery-report rules, the dashboard and the admin."""

    #: The name shown for it (``Status``'s label).
    label: str | Promise
    #: How far along a message is: a status only ever moves to a higher rank.
    rank: int
    #: Final: no later report may change it.
    final: bool
    #: The key of its group in ``STATUS_GROUPS``.
    group: str
    #: Mitto accepted the message (or may have), so its parts count as used.
    parts_used: bool
    #: The message is on its way by itself: pages showing it keep refreshing.
    on_its_way: bool
    #: The background of its badge in lists and timelines.
    colour: str
    #: Its segment on the dashboard's and batch page's bars (a shade of its group's colour).
    chart_colour: str

    def __post_init__(self) -> None:
        _check_colour(self.colour, f"the colour of status {self.label!s}")
        _check_colour(self.chart_colour, f"the chart colour of status {self.label!s}")


#: The groups, in the order the charts stack them (Okabe-Ito colours: told apart with any
#: colour vision).
STATUS_GROUPS: tuple[StatusGroup, ...] = (
    StatusGroup(DELIVERED_GROUP, _("Delivered"), "#009e73"),
    StatusGroup(IN_FLIGHT_GROUP, _("In flight"), "#56b4e9"),
    StatusGroup(FAILED_GROUP, _("Failed"), "#d55e00"),
)

#: Every status and what it means: the one place to change when a status is added or changed.
STATUS_INFO: dict[str, StatusInfo] = {
    Status.QUEUED: StatusInfo(
        label=Status.QUEUED.label,
        rank=0,
        final=False,
        group=IN_FLIGHT_GROUP,
        parts_used=False,
        on_its_way=True,
        colour="#79838c",
        chart_colour="#56b4e9",
    ),
    Status.SENDING: StatusInfo(
        label=Status.SENDING.label,
        rank=1,
        final=False,
        group=IN_FLIGHT_GROUP,
        parts_used=False,
        on_its_way=True,
        colour="#417690",
        chart_colour="#56b4e9",
    ),
    Status.SENT: StatusInfo(
        label=Status.SENT.label,
        rank=3,
        final=False,
        group=IN_FLIGHT_GROUP,
        parts_used=True,
        on_its_way=True,
        colour="#2a7ab0",
        chart_colour="#56b4e9",
    ),
    Status.DELIVERED: StatusInfo(
        label=Status.DELIVERED.label,
        rank=4,
        final=True,
        group=DELIVERED_GROUP,
        parts_used=True,
        on_its_way=False,
        colour="#2e7d32",
        chart_colour="#009e73",
    ),
    Status.UNDELIVERED: StatusInfo(
        label=Status.UNDELIVERED.label,
        rank=4,
        final=True,
        group=FAILED_GROUP,
        parts_used=True,
        on_its_way=False,
        colour="#c05621",
        chart_colour="#d55e00",
    ),
    Status.EXPIRED: StatusInfo(
        label=Status.EXPIRED.label,
        rank=4,
        final=True,
        group=FAILED_GROUP,
        parts_used=True,
        on_its_way=False,
        colour="#8d6e63",
        chart_colour="#e69f00",
    ),
    Status.REJECTED: StatusInfo(
        label=Status.REJECTED.label,
        rank=4,
        final=True,
        group=FAILED_GROUP,
        parts_used=True,
        on_its_way=False,
        colour="#ba2121",
        chart_colour="#cc79a7",
    ),
    # Mitto refused the request: nothing was sent, nothing is billed.
    Status.FAILED: StatusInfo(
        label=Status.FAILED.label,
        rank=4,
        final=True,
        group=FAILED_GROUP,
        parts_used=False,
        on_its_way=False,
        colour="#ba2121",
        chart_colour="#a03c00",
    ),
    # The request may or may not have reached Mitto: waits for a person, counted as billed.
    Status.UNKNOWN: StatusInfo(
        label=Status.UNKNOWN.label,
        rank=2,
        final=False,
        group=IN_FLIGHT_GROUP,
        parts_used=True,
        on_its_way=False,
        colour="#b7791f",
        chart_colour="#56b4e9",
    ),
}

# A status without its entry would break the admin pages far from the cause: say so here.
if set(STATUS_INFO) != set(Status):  # pragma: no cover - a mistake in this file
    raise ImproperlyConfigured(
        "django_mitto.models.STATUS_INFO must describe every Status and nothing else; "
        f"missing: {sorted(set(Status) - set(STATUS_INFO))}, "
        f"unknown: {sorted(set(STATUS_INFO) - set(Status))}"
    )

#: States no later report may change.
FINAL_STATUSES = frozenset(s for s, info in STATUS_INFO.items() if info.final)

#: How far along a message is; a status only ever moves to a higher rank.
STATUS_RANK: dict[str, int] = {s: info.rank for s, info in STATUS_INFO.items()}


class Batch(models.Model):
    """One bulk send: the same text to many recipients (``batch.messages``)."""

    sender = models.CharField(_("sender"), max_length=16, blank=True)
    text = models.TextField(_("text"))
    encoding = models.CharField(
        _("encoding"), max_length=8, choices=Encoding.choices, default=Encoding.AUTO
    )
    options = models.JSONField(
        _("options"),
        default=dict,
        blank=True,
        help_text=_("The Mitto options every message of the batch was sent with."),
    )
    account = models.CharField(
        _("account"),
        max_length=64,
        default="default",
        help_text=_("The Mitto account (a key of MITTO_ACCOUNTS) it is sent through."),
    )
    test = models.BooleanField(_("test"), default=False)
    total = models.PositiveIntegerField(_("recipients"), default=0)
    opted_out = models.PositiveIntegerField(
        _("opted out"),
        default=0,
        help_text=_("Recipients left out because they opted out."),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The changelist's account filter, in its date order.
            models.Index(fields=["account", "created_at"], name="mitto_batch_account_created"),
        ]

    def __str__(self) -> str:
        return _("Batch %(pk)s (%(total)s recipients)") % {"pk": self.pk, "total": self.total}


class Message(models.Model):
    """One SMS to one recipient, from creation to its last delivery report."""

    Encoding = Encoding
    Status = Status

    sender = models.CharField(
        _("sender"),
        max_length=16,
        blank=True,
        help_text=_("3-11 letters and digits, or a number. Empty: MITTO_DEFAULT_SENDER."),
    )
    recipient = models.CharField(
        _("recipient"), max_length=20, help_text=_("In E.164, for example +41791234567.")
    )
    text = models.TextField(_("text"))
    encoding = models.CharField(
        _("encoding"),
        max_length=8,
        choices=Encoding.choices,
        default=Encoding.AUTO,
        help_text=_("Auto is resolved to GSM or Unicode when the message is saved."),
    )
    reference = models.CharField(
        _("reference"),
        max_length=255,
        blank=True,
        help_text=_("Sent to Mitto and echoed in its delivery reports."),
    )
    udh = models.CharField(
        _("UDH"),
        max_length=280,
        blank=True,
        validators=[validators.validate_udh],
        help_text=_("Custom user data header, hexadecimal."),
    )
    validity = models.PositiveIntegerField(
        _("validity (minutes)"),
        null=True,
        blank=True,
        help_text=_("How long the network keeps trying. Empty: Mitto's default (2880)."),
    )
    pid = models.PositiveSmallIntegerField(
        _("protocol id"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(255)],
    )
    flash = models.BooleanField(_("flash"), default=False)
    test = models.BooleanField(
        _("test"), default=False, help_text=_("Mitto accepts the call but sends nothing.")
    )
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, help_text=_("Kept here, never sent to Mitto.")
    )
    batch = models.ForeignKey(
        Batch,
        verbose_name=_("batch"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        # The (batch, status) index below serves every lookup by batch: a second index on
        # the column alone would only slow down each insert.
        db_index=False,
    )

    account = models.CharField(
        _("account"),
        max_length=64,
        default="default",
        help_text=_("The Mitto account (a key of MITTO_ACCOUNTS) it is sent through."),
    )
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # Set by the bulk send when it claims rows, so it can tell the rows it claimed among those
    # it asked for. Not indexed: it is always looked up with the rows' ids.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    provider_id = models.CharField(_("Mitto id"), max_length=64, blank=True)
    response_code = models.IntegerField(_("response code"), null=True, blank=True)
    response_text = models.CharField(_("response text"), max_length=255, blank=True)
    text_length = models.PositiveIntegerField(_("characters"), default=0)
    segments = models.PositiveSmallIntegerField(_("parts"), default=0)
    error = models.TextField(_("error"), blank=True)

    delivery_status = models.CharField(_("delivery status (raw)"), max_length=32, blank=True)
    error_code = models.CharField(_("error code"), max_length=32, blank=True)
    mcc = models.CharField(_("MCC"), max_length=3, blank=True)
    mnc = models.CharField(_("MNC"), max_length=3, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)
    converted_at = models.DateTimeField(
        _("converted at"),
        null=True,
        blank=True,
        help_text=_("When the recipient acted on the message, as reported to Mitto."),
    )
    # Kept when the recipient is redacted, so usage per country still adds up.
    country = models.CharField(
        _("country"),
        max_length=3,
        blank=True,
        help_text=_("ISO 3166-1 alpha-3 country of the recipient, ??? when it has none."),
    )
    redacted_at = models.DateTimeField(
        _("redacted at"),
        null=True,
        blank=True,
        help_text=_("When the recipient and text were removed (MITTO_RETENTION)."),
    )

    #: What a redacted message's ``recipient`` holds: never a number the validators produce
    #: (they always give ``+`` and digits), so it cannot be sent to or mistaken for one.
    REDACTED_RECIPIENT = "[redacted]"

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="mitto_msg_status_created"),
            models.Index(fields=["created_at"], name="mitto_msg_created"),
            models.Index(fields=["recipient"], name="mitto_msg_recipient"),
            models.Index(fields=["reference"], name="mitto_msg_reference"),
            models.Index(fields=["batch", "status"], name="mitto_msg_batch_status"),
            # The changelist's account filter, in its date order.
            models.Index(fields=["account", "created_at"], name="mitto_msg_account_created"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_id"],
                condition=~Q(provider_id=""),
                name="mitto_msg_provider_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.short_text}"

    #: Fields whose type, characters and range save() checks on a new message.
    CHECKED_ON_SAVE = (
        "recipient",
        "sender",
        "text",
        "reference",
        "udh",
        "validity",
        "pid",
        "metadata",
    )

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; a new message with a malformed value is refused (``ValidationError``).

        Malformed means wrong whatever the settings: a value of the wrong type, a control
        character or lone surrogate, ``validity``/``pid`` out of range, metadata that is not
        JSON. Such a value could not be sent, and some could not even be stored alike on
        every database (PostgreSQL refuses NUL). What depends on the settings or on the
        number (sender, recipient, encoding, ``MITTO_MAX_PARTS``) is checked when the
        message is sent: one that fails ends ``failed`` with the reason.
        """
        if self._state.adding:
            errors = validators.check_fields(
                {name: getattr(self, name) for name in self.CHECKED_ON_SAVE}
            )
            if errors:
                raise ValidationError(errors)
            if not getattr(self, "_mitto_measured", False):  # send_sms() measured it already
                self.measure()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        try:
            self.recipient = validators.normalize_recipient(self.recipient)
        except ValidationError as exc:
            errors["recipient"] = exc
        if self.sender:
            try:
                validators.validate_sender(self.sender)
            except ValidationError as exc:
                errors["sender"] = exc
        try:
            self.encoding = validators.validate_encoding(self.encoding)
        except ValidationError as exc:
            errors["encoding"] = exc
        else:
            try:
                validators.validate_text(self.text, self.encoding)
            except ValidationError as exc:
                errors["text"] = exc
        checked = {"reference": self.reference, "validity": self.validity, "pid": self.pid}
        for name, problem in validators.check_fields(checked).items():
            errors.setdefault(name, problem)
        if errors:
            raise ValidationError(errors)

    @property
    def short_text(self) -> str:
        return self.text if len(self.text) <= 40 else self.text[:39] + "…"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_redacted(self) -> bool:
        return self.redacted_at is not None

    def measure(self) -> None:
        """Normalise the recipient, note its country, resolve ``Auto``, count characters and parts.

        A value that does not parse is left as it is: the send refuses it and records why,
        so nothing is dropped silently.
        """
        with contextlib.suppress(ValidationError):
            self.recipient = validators.normalize_recipient(self.recipient)
        if not self.country and isinstance(self.recipient, str):
            self.country = country_of(self.recipient)
        try:
            info = enc.analyze(self.text, self.encoding)
        except (enc.EncodingError, TypeError):
            return
        self.encoding = info.encoding
        self.text_length = info.characters
        self.segments = info.parts


class DeliveryReport(models.Model):
    """One delivery report as Mitto sent it, kept raw, with the fields read from it."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Applied")
        DUPLICATE = "duplicate", _("Duplicate")
        STALE = "stale", _("Older than the current status")
        UNMATCHED = "unmatched", _("No message yet")
        UNKNOWN_STATUS = "unknown_status", _("Unknown status word")
        # Kept raw, applied to nothing: no field we read, a field we could not read, a body too
        # large or with too many fields.
        UNPARSED = "unparsed", _("Unparsed")
        # The callback URL named one message and the report's id another: applied to neither.
        MISMATCHED = "mismatched", _("Id of another message")

    message = models.ForeignKey(
        Message,
        verbose_name=_("message"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="delivery_reports",
    )
    provider_id = models.CharField(_("Mitto id"), max_length=64, blank=True)
    status = models.CharField(_("status (raw)"), max_length=32, blank=True)
    mapped_status = models.CharField(_("status"), max_length=12, choices=Status.choices, blank=True)
    error_code = models.CharField(_("error code"), max_length=32, blank=True)
    reference = models.CharField(_("reference"), max_length=255, blank=True)
    recipient = models.CharField(_("recipient"), max_length=32, blank=True)
    mcc = models.CharField(_("MCC"), max_length=3, blank=True)
    mnc = models.CharField(_("MNC"), max_length=3, blank=True)
    provider_sent_at = models.DateTimeField(_("sent at (Mitto)"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices, blank=True)
    method = models.CharField(_("method"), max_length=8)
    remote_addr = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("delivery report")
        verbose_name_plural = _("delivery reports")
        ordering = ["-received_at", "-pk"]
        # Every report is one INSERT into each index: only the lookups that need one get one.
        # Reports waiting for their message are found by Mitto id or among the few unmatched
        # ones: both indexes hold only those (a report applied on arrival writes neither). No
        # query compares with LIKE, so no pattern index (PostgreSQL's "_like").
        indexes = [
            models.Index(
                fields=["provider_id"],
                name="mitto_report_waiting_id",
                condition=models.Q(outcome="unmatched"),
            ),
            models.Index(
                fields=["received_at"],
                name="mitto_report_unmatched",
                condition=models.Q(outcome="unmatched"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id or '?'}: {self.status or '?'}"

    def field_names(self) -> list[str]:
        """The names of the fields the report carried (query string and body), sorted.

        For a request that could not be parsed whole (too large, too many fields) the names are
        read from the raw text kept, as far as it goes.
        """
        payload = self.payload if isinstance(self.payload, dict) else {}
        names: set[str] = set()
        for part in ("query", "body"):
            if isinstance(payload.get(part), dict):
                names.update(str(key) for key in payload[part])
        raw_texts = [payload.get("query_string")]
        if "body" not in payload:
            raw_texts.append(payload.get("raw_body"))
        for raw in raw_texts:
            if not isinstance(raw, str) or not raw:
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if isinstance(data, dict):
                names.update(str(key) for key in data)
            elif "=" in raw and "\n" not in raw:
                names.update(key for key, _value in parse_qsl(raw, keep_blank_values=True))
        return sorted(names)[:100]


#: The account name stored on opt-outs and replies until accounts are configurable.
DEFAULT_ACCOUNT = "default"


class OptOut(models.Model):
    """A number that asked to receive no more messages (from one account)."""

    class Source(models.TextChoices):
        ADMIN = "admin", _("Admin")
        IMPORT = "import", _("Import")
        KEYWORD = "keyword", _("Inbound keyword")
        API = "api", _("API")

    number = models.CharField(
        _("number"), max_length=20, help_text=_("In E.164, for example +41791234567.")
    )
    account = models.CharField(_("account"), max_length=64, default=DEFAULT_ACCOUNT)
    source = models.CharField(
        _("source"), max_length=8, choices=Source.choices, default=Source.ADMIN
    )
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("opt-out")
        verbose_name_plural = _("opt-outs")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["number", "account"], name="mitto_optout_unique"),
        ]

    def __str__(self) -> str:
        return self.number

    def clean(self) -> None:
        try:
            self.number = validators.normalize_recipient(self.number)
        except ValidationError as exc:
            raise ValidationError({"number": exc}) from None


class InboundMessage(models.Model):
    """One reply (MO message) Mitto pushed to this site, kept with its raw payload."""

    class Outcome(models.TextChoices):
        STORED = "stored", _("Stored")
        # Kept raw: no sender, or a field that could not be read.
        UNPARSED = "unparsed", _("Unparsed")

    sender = models.CharField(_("from"), max_length=32, blank=True, db_index=True)
    recipient = models.CharField(
        _("to"), max_length=32, blank=True, help_text=_("Our number or sender ID.")
    )
    text = models.TextField(_("text"), blank=True)
    account = models.CharField(_("account"), max_length=64, default=DEFAULT_ACCOUNT)
    provider_id = models.CharField(_("Mitto id"), max_length=64, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=12, choices=Outcome.choices, default=Outcome.STORED
    )
    in_reply_to = models.ForeignKey(
        Message,
        verbose_name=_("in reply to"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replies",
    )
    opted_out = models.BooleanField(
        _("opt-out keyword"), default=False, help_text=_("The text asked to receive no more.")
    )
    method = models.CharField(_("method"), max_length=8, blank=True)
    remote_addr = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("reply")
        verbose_name_plural = _("replies")
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:39] + "…"
        return f"{self.sender or '?'}: {text}"
