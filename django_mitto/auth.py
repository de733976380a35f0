"""Who may post a delivery report or a reply: the callback token and the caller's address.

The delivery-report and reply views authenticate here before reading a body; the rules that
apply a report (:mod:`django_mitto.callbacks`) only use the token helpers to build the signed
callback URLs sent to Mitto.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core import signing

from .conf import DEFAULT_ACCOUNT, conf
from .models import Batch, Message

__all__ = [
    "TokenCheck",
    "address_allowed",
    "batch_token",
    "check_token",
    "client_address",
    "message_token",
]

# -- tokens ---------------------------------------------------------------------------------------

# Tokens are ``m<pk>.<timestamp>.<signature>`` (or ``b<pk>...`` for a batch): a TimestampSigner
# signature, so they can expire (MITTO_CALLBACK_TOKEN_MAX_AGE). Messages sent before tokens
# carried a timestamp have ``m<pk>.<signature>`` (a plain Signer under another salt): those are
# still accepted, without expiry, so their late reports are not refused.
_SALT = "django_mitto.callback"
_TIMESTAMPED_SALT = "django_mitto.callback.timestamped"


def _signer() -> signing.Signer:
    # Made per use so SECRET_KEY (and its fallbacks) are read at use time, never at import.
    return signing.Signer(salt=_SALT, sep=".")


def _timestamp_signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_TIMESTAMPED_SALT, sep=".")


def message_token(message: Message | int) -> str:
    """The signed token naming one message (``m<pk>.<timestamp>.<signature>``)."""
    pk = message.pk if isinstance(message, Message) else message
    return _timestamp_signer().sign(f"m{pk}")


def batch_token(batch: Batch | int) -> str:
    """The signed token naming one batch (``b<pk>.<timestamp>.<signature>``)."""
    pk = batch.pk if isinstance(batch, Batch) else batch
    return _timestamp_signer().sign(f"b{pk}")


@dataclass(frozen=True)
class TokenCheck:
    """What a callback token proved: ``valid``, and which message or batch it names.

    ``expired`` is set (with ``valid`` False) for a correctly signed token past its max age;
    ``label`` names the token's scope for log lines ("message 17", "batch 3", "account
    secret"), never the token itself. ``account`` is the account whose callback secret the
    token is when several accounts are configured ("" otherwise, and for a signed token: the
    message or batch it names carries its account).
    """

    valid: bool
    message_pk: int | None = None
    batch_pk: int | None = None
    expired: bool = False
    account: str = ""
    label: str = field(default="", compare=False)


def _signed_value(token: str) -> tuple[str, bool]:
    """The value a signed token carries ("" when the signature is wrong) and whether it expired."""
    if token.count(".") == 2:
        try:
            max_age = conf.CALLBACK_TOKEN_MAX_AGE
            return _timestamp_signer().unsign(
                token, max_age=None if max_age is None else timedelta(seconds=max_age)
            ), False
        except signing.SignatureExpired:
            try:  # the signature is right, only the age is wrong: say so in the log
                return _timestamp_signer().unsign(token), True
            except signing.BadSignature:  # pragma: no cover - expired implies well signed
                return "", False
        except signing.BadSignature:
            return "", False
    if token.count(".") == 1:
        try:
            return _signer().unsign(token), False
        except signing.BadSignature:
            return "", False
    return "", False


def check_token(token: str) -> TokenCheck:
    """Authenticate a callback token: a signed message/batch token or a configured secret."""
    token = token or ""
    if "." in token and token[:1] in ("m", "b"):
        value, expired = _signed_value(token)
        if value[:1] == token[:1] and value[1:].isascii() and value[1:].isdigit():
            pk = int(value[1:])
            kind = "message" if value[0] == "m" else "batch"
            label = f"{kind} {pk}"
            if expired:
                return TokenCheck(False, expired=True, label=label)
            if kind == "message":
                return TokenCheck(True, message_pk=pk, label=label)
            return TokenCheck(True, batch_pk=pk, label=label)
    account = ""
    for name in conf.accounts():
        for secret in conf.account(name).CALLBACK_SECRETS:
            # Compare against every secret so the time taken does not tell which one nearly
            # matched. A secret shared by two accounts is a check error (E032): first one wins.
            if hmac.compare_digest(secret.encode(), token.encode()) and not account:
                account = name
    if not account:
        return TokenCheck(False)
    label = "account secret" if account == DEFAULT_ACCOUNT else f"secret of account {account}"
    # With one account there is nothing to tell apart: the report may be about any message.
    return TokenCheck(True, label=label, account=account if conf.SEVERAL_ACCOUNTS else "")


def client_address(meta: dict[str, Any]) -> str:
    """The caller's address: the MITTO_CALLBACK_IP_HEADER header when set, else REMOTE_ADDR.

    When the header holds a list (``X-Forwarded-For``), the last entry is taken: it is the one
    your own proxy appended; entries before it are whatever the caller claimed.
    """
    header = conf.CALLBACK_IP_HEADER
    if header:
        value = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
        if value:
            return value.split(",")[-1].strip()
    return meta.get("REMOTE_ADDR", "") or ""


def address_allowed(address: str) -> bool:
    """True when MITTO_CALLBACK_ALLOWED_IPS is empty or ``address`` is inside one of its ranges."""
    allowed = conf.CALLBACK_ALLOWED_IPS
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in allowed:
        try:
            if ip in ipaddress.ip_network(str(item), strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False
