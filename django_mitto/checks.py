"""System checks for the ``MITTO_*`` settings.

A wrong type or value is an Error (``django_mitto.E00N``); a missing API key or callback token is
a Warning (``django_mitto.W00N``), so ``check`` and ``migrate`` pass on a machine without secrets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.urls import NoReverseMatch, reverse

from .conf import DEFAULTS


def _setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


#: The port ``python -m django_mitto.sandbox`` and ``manage.py mitto_sandbox`` listen on.
SANDBOX_DEFAULT_PORT = 5800


def _points_at_sandbox(url: str) -> bool:
    """Whether ``url`` is a loopback address or uses the sandbox's default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if host == "localhost" or host.endswith(".localhost") or port == SANDBOX_DEFAULT_PORT:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # 0.0.0.0 and :: reach this very machine too.
    return address.is_loopback or address.is_unspecified


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []

    def error(id_: str, msg: str, hint: str) -> None:
        errors.append(Error(msg, hint=hint, id=f"django_mitto.{id_}"))

    def warning(id_: str, msg: str, hint: str) -> None:
        errors.append(Warning(msg, hint=hint, id=f"django_mitto.{id_}"))

    for name in ("MITTO_API_KEY", "MITTO_DEFAULT_SENDER", "MITTO_DEFAULT_REGION"):
        if not isinstance(_setting(name), str):
            error(
                "E001",
                f"{name} must be a string.",
                f"Set {name} to a str, for example from an environment variable.",
            )

    api_url = _setting("MITTO_API_URL")
    if not isinstance(api_url, str) or not _is_http_url(api_url):
        error(
            "E002",
            "MITTO_API_URL must be an http(s) URL.",
            'For example "https://rest.mittoapi.net", or the sandbox URL "http://127.0.0.1:5800".',
        )

    for name in ("MITTO_TEST_MODE", "MITTO_SEND_ON_SAVE"):
        if not isinstance(_setting(name), bool):
            error("E003", f"{name} must be a bool.", f"Set {name} to True or False.")

    fmt = _setting("MITTO_RESPONSE_FORMAT")
    if not isinstance(fmt, str) or fmt.lower() not in ("json", "xml"):
        error(
            "E004", 'MITTO_RESPONSE_FORMAT must be "json" or "xml".', 'Leave it unset for "json".'
        )

    timeout = _setting("MITTO_TIMEOUT")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        error("E005", "MITTO_TIMEOUT must be a positive number of seconds.", "For example 10.")

    base = _setting("MITTO_CALLBACK_BASE_URL")
    if not isinstance(base, str) or (base and not _is_http_url(base)):
        error(
            "E006",
            "MITTO_CALLBACK_BASE_URL must be empty or an http(s) URL.",
            'The public base URL of this site, for example "https://example.com".',
        )

    secret = _setting("MITTO_CALLBACK_SECRET")
    if not (
        isinstance(secret, str)
        or (isinstance(secret, (list, tuple)) and all(isinstance(s, str) for s in secret))
    ):
        error(
            "E007",
            "MITTO_CALLBACK_SECRET must be a string or a list of strings.",
            "Use a list to rotate secrets: the new one first, the old one until Mitto uses the new URL.",
        )

    ips = _setting("MITTO_CALLBACK_ALLOWED_IPS")
    if isinstance(ips, str) or not isinstance(ips, (list, tuple)):
        error(
            "E008",
            "MITTO_CALLBACK_ALLOWED_IPS must be a list of addresses or CIDR ranges.",
            'For example ["203.0.113.0/24"].',
        )
    else:
        for item in ips:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                error(
                    "E008",
                    f"MITTO_CALLBACK_ALLOWED_IPS has an invalid entry: {item!r}.",
                    'Each entry is an IPv4 or IPv6 address or range, for example "203.0.113.0/24".',
                )

    _check_task_backend(_setting("MITTO_TASK_BACKEND"), error)

    for name in ("MITTO_MAX_ATTEMPTS", "MITTO_BULK_CHUNK_SIZE"):
        value = _setting(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            error(
                "E010",
                f"{name} must be a positive integer.",
                f"Leave it unset for {DEFAULTS[name]}.",
            )

    max_parts = _setting("MITTO_MAX_PARTS")
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or not 1 <= max_parts <= 255:
        error(
            "E010",
            "MITTO_MAX_PARTS must be an integer from 1 to 255.",
            f"A concatenated SMS has at most 255 parts. Leave it unset for "
            f"{DEFAULTS['MITTO_MAX_PARTS']}.",
        )

    if not isinstance(_setting("MITTO_CALLBACK_IP_HEADER"), str):
        error(
            "E011",
            "MITTO_CALLBACK_IP_HEADER must be a string.",
            'For example "X-Real-IP", or "" to use REMOTE_ADDR.',
        )

    max_age = _setting("MITTO_CALLBACK_TOKEN_MAX_AGE")
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0
    ):
        error(
            "E013",
            "MITTO_CALLBACK_TOKEN_MAX_AGE must be a number of seconds, or None for no expiry.",
            f"Leave it unset for {DEFAULTS['MITTO_CALLBACK_TOKEN_MAX_AGE']} (seven days).",
        )

    if isinstance(base, str) and base and _is_http_url(base):
        try:
            reverse("django_mitto:callback", kwargs={"token": "check"})
        except NoReverseMatch:
            error(
                "E012",
                "MITTO_CALLBACK_BASE_URL is set but the URLconf has no django_mitto:callback route.",
                'Add path("mitto/", include("django_mitto.urls")) to your urls.py.',
            )

    if secret and not (isinstance(base, str) and base and _is_http_url(base)):
        # E012 already says it when a base URL is set; the account-wide URL needs the route too.
        try:
            reverse("django_mitto:callback", kwargs={"token": "check"})
        except NoReverseMatch:
            warning(
                "W003",
                "MITTO_CALLBACK_SECRET is set but the URLconf has no django_mitto:callback "
                "route: every delivery report Mitto sends gets a 404 and is lost.",
                'Add path("mitto/", include("django_mitto.urls")) to your urls.py.',
            )

    if isinstance(api_url, str) and _points_at_sandbox(api_url) and not settings.DEBUG:
        warning(
            "W004",
            f"MITTO_API_URL points at a local sandbox ({api_url}) while DEBUG is False: "
            "no message reaches a phone.",
            'In production set MITTO_API_URL to Mitto ("https://rest.mittoapi.net" or a '
            "regional host). If a local proxy really forwards to Mitto, silence this check with "
            'SILENCED_SYSTEM_CHECKS = ["django_mitto.W004"].',
        )

    if isinstance(_setting("MITTO_API_KEY"), str) and not _setting("MITTO_API_KEY"):
        warning(
            "W001",
            "MITTO_API_KEY is not set: no message can be sent.",
            "Set it to your Mitto API key, or to the sandbox key when developing.",
        )

    if not secret and not base:
        warning(
            "W002",
            "No callback token is configured: the delivery-report view refuses every report.",
            "Set MITTO_CALLBACK_SECRET (account-wide callback URL) and/or MITTO_CALLBACK_BASE_URL "
            "(a signed callback URL per message).",
        )
    return errors


_BACKEND_EXTRAS = {"celery": "celery", "tasks": "tasks"}


def _check_task_backend(value: Any, error: Any) -> None:
    """E009: MITTO_TASK_BACKEND names a backend that can be imported and is a TaskBackend."""
    from .backends import load_backend_class

    hint = (
        'Use "inline", "celery", "tasks" or the dotted path of a subclass of '
        'django_mitto.backends.base.TaskBackend; leave it unset for "inline".'
    )
    if not isinstance(value, str) or not value.strip():
        error("E009", f"MITTO_TASK_BACKEND must be a string, not {value!r}.", hint)
        return
    try:
        load_backend_class(value)
    except ImportError as exc:
        extra = _BACKEND_EXTRAS.get(value.lower())
        if extra:
            error(
                "E009",
                f"MITTO_TASK_BACKEND is {value.lower()!r} but it cannot be imported: {exc}",
                f'Install the extra: pip install "django-mitto[{extra}]".',
            )
        else:
            error("E009", f"MITTO_TASK_BACKEND = {value!r} cannot be imported: {exc}", hint)
    except TypeError:
        error(
            "E009",
            f"MITTO_TASK_BACKEND = {value!r} is not a subclass of "
            "django_mitto.backends.base.TaskBackend.",
            hint,
        )
