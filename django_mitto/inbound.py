"""Replies (MO messages): reading what Mitto pushes, storing it, linking it, opting out.

:func:`record_inbound` stores one reply as an :class:`~django_mitto.models.InboundMessage`,
links it to the message it answers (the latest message sent to the replying number from the
number or sender ID the reply went to, within ``MITTO_REPLY_WINDOW``), adds an
:class:`~django_mitto.models.OptOut` when its first word is an opt-out keyword, and sends
:data:`~django_mitto.signals.message_received`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from . import validators
from .conf import conf
from .models import DEFAULT_ACCOUNT, InboundMessage, Message, OptOut
from .optouts import add_opt_out, is_opt_out_keyword
from .serializers import _Text
from .signals import announce, message_received

logger = logging.getLogger("django_mitto.inbound")

__all__ = ["INBOUND_ALIASES", "InboundSerializer", "record_inbound", "replied_message"]

#: Accepted names for each field of a reply, compared case-insensitively; the first one wins.
INBOUND_ALIASES: dict[str, tuple[str, ...]] = {
    "sender": ("from", "sender", "msisdn", "originator", "source"),
    "recipient": ("to", "recipient", "receiver", "destination", "shortcode"),
    "text": ("text", "message", "body", "content", "msg"),
    "id": ("id", "messageid", "msgid"),
}

#: Names that make a request a reply (a request with none of them is a reachability check).
INBOUND_FIELDS = frozenset(name for names in INBOUND_ALIASES.values() for name in names)

#: The accepted field names, as the 400 answer to a request with none of them lists them.
EXPECTED_INBOUND_FIELDS = (
    "from (or sender, msisdn, originator), to (or recipient, receiver), "
    "text (or message, body, content), id (or messageId)"
)


def resolve_inbound_aliases(data: dict[str, Any]) -> dict[str, Any]:
    """Map the incoming keys (any case, any alias) to the canonical field names."""
    lowered: dict[str, Any] = {}
    for key, value in data.items():
        lowered.setdefault(str(key).lower(), value)
    out: dict[str, Any] = {}
    for canonical, names in INBOUND_ALIASES.items():
        for name in names:
            if name in lowered:
                out[canonical] = lowered[name]
                break
    return out


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _ReplyText(serializers.CharField):
    """A reply's text as the phone sent it, minus what a database cannot store (PostgreSQL
    refuses NUL and lone surrogates): each becomes U+FFFD rather than losing the reply."""

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            data = _UNSTORABLE.sub("\ufffd", data)
        return super().to_internal_value(data)


class InboundSerializer(serializers.Serializer):
    """Validates one reply (already mapped to canonical names)."""

    sender = _Text(32)
    recipient = _Text(32)
    text = _ReplyText(required=False, allow_blank=True, trim_whitespace=False)
    id = _Text(64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("sender"):
            raise serializers.ValidationError(
                {"from": [_("A reply needs the number it came from (from, sender or msisdn).")]}
            )
        return attrs


def _number(value: str) -> str:
    """The number in E.164 when it reads as one, else as given."""
    try:
        return validators.normalize_recipient(
            value if value.startswith(("+", "00")) else "+" + value
        )
    except ValidationError:
        return value


def _same_sender(ours: str, theirs: str) -> bool:
    """Whether the address a reply went to is the sender ID or number a message went from."""

    def key(value: str) -> str:
        value = value.strip().lower()
        return value[2:] if value.startswith("00") else value.lstrip("+")

    return key(ours) == key(theirs)


def replied_message(sender: str, recipient: str) -> Message | None:
    """The message a reply from ``sender`` to ``recipient`` answers, when it can be told.

    The latest message sent (it has a ``sent_at``) to ``sender`` within ``MITTO_REPLY_WINDOW``,
    from ``recipient`` (the message's sender, or ``MITTO_DEFAULT_SENDER`` when it had none).
    A reply that names no recipient answers the latest message sent to ``sender``.
    """
    window = conf.REPLY_WINDOW
    if window.total_seconds() <= 0:
        return None
    candidates = Message.objects.filter(
        recipient=sender, sent_at__gte=timezone.now() - window
    ).order_by("-sent_at", "-pk")
    if not recipient:
        return candidates.first()
    default = conf.DEFAULT_SENDER
    for message in candidates[:200]:
        if _same_sender(message.sender or default, recipient):
            return message
    return None


def record_inbound(
    data: dict[str, Any],
    payload: dict[str, Any],
    *,
    method: str,
    remote_addr: str | None,
    account: str = DEFAULT_ACCOUNT,
) -> InboundMessage:
    """Store a validated reply, link it, apply an opt-out keyword, announce it."""
    sender = _number(data["sender"])
    recipient = data.get("recipient", "")
    text = data.get("text", "")
    inbound = InboundMessage(
        sender=sender,
        recipient=recipient,
        text=text,
        account=account,
        provider_id=data.get("id", ""),
        outcome=InboundMessage.Outcome.STORED,
        in_reply_to=replied_message(sender, recipient),
        method=method,
        remote_addr=_address(remote_addr),
        payload=payload,
    )
    if is_opt_out_keyword(text):
        try:
            add_opt_out(
                sender,
                source=OptOut.Source.KEYWORD,
                account=account,
                note=str(_("Reply: %(text)s") % {"text": text[:200]}),
            )
        except ValidationError:
            logger.warning("Opt-out keyword from %s, which is not a phone number", sender)
        else:
            inbound.opted_out = True
    inbound.save()
    logger.info("Reply %s from %s stored", inbound.pk, sender)
    announce(
        message_received,
        InboundMessage,
        inbound=inbound,
        message=inbound.in_reply_to,
    )
    return inbound


def store_unparsed_inbound(
    payload: dict[str, Any],
    *,
    method: str,
    remote_addr: str | None,
    fields: dict[str, Any] | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> InboundMessage:
    """Store, raw, an authenticated request that could not be read as a reply."""
    fields = fields or {}

    def text(name: str, length: int) -> str:
        value = fields.get(name)
        if not isinstance(value, str) or len(value) > length:
            return ""
        return "".join(ch for ch in value if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)

    return InboundMessage.objects.create(
        sender=text("sender", 32),
        recipient=text("recipient", 32),
        text=text("text", 2000),
        account=account,
        outcome=InboundMessage.Outcome.UNPARSED,
        method=method,
        remote_addr=_address(remote_addr),
        payload=payload,
    )


def _address(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None
