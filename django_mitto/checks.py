"""System checks for the ``MITTO_*`` settings.

A wrong type or value is an Error (``django_mitto.E00N``); a missing API key or callback token is
a Warning (``django_mitto.W00N``), so ``check`` and ``migrate`` pass on a machine without secrets.
The settings are read through ``conf.raw()``: a check must see a malformed value as it was given,
not the typed property's coercion of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.urls import NoReverseMatch, reverse

from .conf import ACCOUNT_KEYS, DEFAULT_ACCOUNT, DEFAULTS, Account, conf, retention_problem


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
        if not isinstance(conf.raw(name), str):
            error(
                "E001",
                f"{name} must be a string.",
                f"Set {name} to a str, for example from an environment variable.",
            )

    api_url = conf.raw("MITTO_API_URL")
    if not isinstance(api_url, str) or not _is_http_url(api_url):
        error(
            "E002",
            "MITTO_API_URL must be an http(s) URL.",
            'For example "https://rest.mittoapi.net", or the sandbox URL "http://127.0.0.1:5800".',
        )

    for name in ("MITTO_TEST_MODE", "MITTO_SEND_ON_SAVE"):
        if not isinstance(conf.raw(name), bool):
            error("E003", f"{name} must be a bool.", f"Set {name} to True or False.")

    fmt = conf.raw("MITTO_RESPONSE_FORMAT")
    if not isinstance(fmt, str) or fmt.lower() not in ("json", "xml"):
        error(
            "E004", 'MITTO_RESPONSE_FORMAT must be "json" or "xml".', 'Leave it unset for "json".'
        )

    timeout = conf.raw("MITTO_TIMEOUT")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        error("E005", "MITTO_TIMEOUT must be a positive number of seconds.", "For example 10.")

    base = conf.raw("MITTO_CALLBACK_BASE_URL")
    if not isinstance(base, str) or (base and not _is_http_url(base)):
        error(
            "E006",
            "MITTO_CALLBACK_BASE_URL must be empty or an http(s) URL.",
            'The public base URL of this site, for example "https://example.com".',
        )

    secret = conf.raw("MITTO_CALLBACK_SECRET")
    if not (
        isinstance(secret, str)
        or (isinstance(secret, (list, tuple)) and all(isinstance(s, str) for s in secret))
    ):
        error(
            "E007",
            "MITTO_CALLBACK_SECRET must be a string or a list of strings.",
            "Use a list to rotate secrets: the new one first, the old one until Mitto uses the new URL.",
        )

    ips = conf.raw("MITTO_CALLBACK_ALLOWED_IPS")
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

    _check_task_backend(conf.raw("MITTO_TASK_BACKEND"), error)

    for name in ("MITTO_MAX_ATTEMPTS", "MITTO_BULK_CHUNK_SIZE"):
        value = conf.raw(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            error(
                "E010",
                f"{name} must be a positive integer.",
                f"Leave it unset for {DEFAULTS[name]}.",
            )

    max_parts = conf.raw("MITTO_MAX_PARTS")
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or not 1 <= max_parts <= 255:
        error(
            "E010",
            "MITTO_MAX_PARTS must be an integer from 1 to 255.",
            f"A concatenated SMS has at most 255 parts. Leave it unset for "
            f"{DEFAULTS['MITTO_MAX_PARTS']}.",
        )

    if not isinstance(conf.raw("MITTO_CALLBACK_IP_HEADER"), str):
        error(
            "E011",
            "MITTO_CALLBACK_IP_HEADER must be a string.",
            'For example "X-Real-IP", or "" to use REMOTE_ADDR.',
        )

    max_age = conf.raw("MITTO_CALLBACK_TOKEN_MAX_AGE")
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0
    ):
        error(
            "E013",
            "MITTO_CALLBACK_TOKEN_MAX_AGE must be a number of seconds, or None for no expiry.",
            f"Leave it unset for {DEFAULTS['MITTO_CALLBACK_TOKEN_MAX_AGE']} (seven days).",
        )

    problem = retention_problem(conf.raw("MITTO_RETENTION"))
    if problem:
        error(
            "E014",
            problem,
            'For example {"redact_after_days": 90, "delete_after_days": 365}, or None (the '
            "default) to keep every message.",
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

    if isinstance(conf.raw("MITTO_API_KEY"), str) and not conf.raw("MITTO_API_KEY"):
        warning(
            "W001",
            "MITTO_API_KEY is not set: no message can be sent.",
            "Set it to your Mitto API key, or to the sandbox key when developing.",
        )

    errors.extend(check_accounts())

    if not secret and not base:
        warning(
            "W002",
            "No callback token is configured: the delivery-report view refuses every report.",
            "Set MITTO_CALLBACK_SECRET (account-wide callback URL) and/or MITTO_CALLBACK_BASE_URL "
            "(a signed callback URL per message).",
        )
    return errors


def check_reply_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``MITTO_REPLY_WINDOW`` and ``MITTO_OPT_OUT_KEYWORDS`` (opt-outs and replies)."""
    from datetime import timedelta

    errors: list[CheckMessage] = []
    window = conf.raw("MITTO_REPLY_WINDOW")
    if isinstance(window, timedelta):
        seconds: float | None = window.total_seconds()
    elif isinstance(window, (int, float)) and not isinstance(window, bool):
        seconds = float(window)
    else:
        seconds = None
    if seconds is None or seconds < 0 or seconds != seconds:
        errors.append(
            Error(
                "MITTO_REPLY_WINDOW must be a number of seconds or a timedelta, not negative.",
                hint="For example timedelta(days=7) (the default), or 0 to link no reply.",
                id="django_mitto.E020",
            )
        )
    keywords = conf.raw("MITTO_OPT_OUT_KEYWORDS")
    if (
        isinstance(keywords, str)
        or not isinstance(keywords, (list, tuple))
        or not all(
            isinstance(word, str) and word.strip() and len(word.split()) == 1 for word in keywords
        )
    ):
        errors.append(
            Error(
                "MITTO_OPT_OUT_KEYWORDS must be a list of single words.",
                hint='For example ["STOP", "STOPP", "ARRET", "UNSUBSCRIBE"] (the default), '
                "or [] to add no opt-out from replies.",
                id="django_mitto.E021",
            )
        )
    return errors


def _account_value_problem(key: str, value: Any) -> str:
    """What is wrong with ``value`` for account key ``key`` ("" when nothing)."""
    if key in ("API_KEY", "DEFAULT_SENDER", "ACCOUNT_NAME"):
        return "" if isinstance(value, str) else "must be a string"
    if key == "API_URL":
        return "" if isinstance(value, str) and _is_http_url(value) else "must be an http(s) URL"
    if key == "CALLBACK_BASE_URL":
        ok = isinstance(value, str) and (not value or _is_http_url(value))
        return "" if ok else "must be empty or an http(s) URL"
    if key == "CALLBACK_SECRET":
        ok = isinstance(value, str) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        )
        return "" if ok else "must be a string or a list of strings"
    if key == "TEST_MODE":
        return "" if isinstance(value, bool) else "must be True or False"
    if key == "RESPONSE_FORMAT":
        ok = isinstance(value, str) and value.lower() in ("json", "xml")
        return "" if ok else 'must be "json" or "xml"'
    if key == "TIMEOUT":
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0
        return "" if ok else "must be a positive number of seconds"
    if key == "RATE_LIMIT":
        return _rate_limit_problem(value)
    return ""


def _rate_limit_problem(value: Any) -> str:
    ok = value is None or (
        not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < 1e6
    )
    return "" if ok else "must be None or a positive number of messages a second"


def check_throttle(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``MITTO_RATE_LIMIT`` and the cache that shares it between processes."""
    from django.conf import settings

    out: list[CheckMessage] = []
    problem = _rate_limit_problem(conf.raw("MITTO_RATE_LIMIT"))
    if problem:
        out.append(
            Error(
                f"MITTO_RATE_LIMIT {problem}.",
                hint="For example 20 (messages a second, every process together), or None.",
                id="django_mitto.E034",
            )
        )
    alias = conf.RATE_LIMIT_CACHE
    caches = getattr(settings, "CACHES", {"default": {}})
    if alias not in caches:
        out.append(
            Error(
                f"MITTO_RATE_LIMIT_CACHE names the cache {alias!r}, which CACHES does not have.",
                hint=f"Known caches: {', '.join(caches) or 'none'}.",
                id="django_mitto.E035",
            )
        )
        return out
    limited = [name for name in conf.accounts() if _account_limit(name)]
    backend = str(caches[alias].get("BACKEND", "django.core.cache.backends.locmem.LocMemCache"))
    shared = not backend.endswith(("LocMemCache", "DummyCache"))
    if limited and not shared:
        out.append(
            Warning(
                f"The rate limit of {', '.join(limited)} goes through the cache {alias!r} "
                f"({backend.rsplit('.', 1)[-1]}), which each process keeps to itself: every "
                "worker may then send at the full rate.",
                hint="Point MITTO_RATE_LIMIT_CACHE at a cache shared by the processes (Redis "
                "or Memcached).",
                id="django_mitto.W005",
            )
        )
    return out


def _account_limit(name: str) -> float | None:
    try:
        return conf.account(name).RATE_LIMIT
    except (TypeError, ValueError):
        return None  # reported by E032/E034


def check_accounts() -> list[CheckMessage]:
    """Checks of ``MITTO_ACCOUNTS``: each message names the account and the key."""
    out: list[CheckMessage] = []
    accounts = conf.raw("MITTO_ACCOUNTS")
    if not isinstance(accounts, dict):
        return [
            Error(
                "MITTO_ACCOUNTS must be a dict of account name to settings.",
                hint='For example {"marketing": {"API_KEY": "...", "CALLBACK_SECRET": "..."}}.',
                id="django_mitto.E030",
            )
        ]
    valid: list[str] = []
    for name, entry in accounts.items():
        if not isinstance(name, str) or not name or len(name) > 64:
            out.append(
                Error(
                    f"MITTO_ACCOUNTS has an invalid account name: {name!r}.",
                    hint="An account name is a non-empty string of at most 64 characters.",
                    id="django_mitto.E030",
                )
            )
            continue
        if not isinstance(entry, dict):
            out.append(
                Error(
                    f'MITTO_ACCOUNTS["{name}"] must be a dict of settings.',
                    hint=f"Keys: {', '.join(ACCOUNT_KEYS)}.",
                    id="django_mitto.E030",
                )
            )
            continue
        valid.append(name)
        for key, value in entry.items():
            if key not in ACCOUNT_KEYS:
                out.append(
                    Error(
                        f'MITTO_ACCOUNTS["{name}"] has an unknown key {key!r}.',
                        hint=f"An account takes: {', '.join(ACCOUNT_KEYS)}.",
                        id="django_mitto.E031",
                    )
                )
                continue
            problem = _account_value_problem(key, value)
            if problem:
                out.append(
                    Error(
                        f'MITTO_ACCOUNTS["{name}"]["{key}"] {problem}.',
                        hint=f"See MITTO_{key} in the settings reference.",
                        id="django_mitto.E032",
                    )
                )
        if name != DEFAULT_ACCOUNT and not entry.get("API_KEY"):
            out.append(
                Warning(
                    f'MITTO_ACCOUNTS["{name}"] has no API_KEY: no message of the account '
                    f"{name!r} can be sent.",
                    hint="Each account needs its own key; it never falls back to MITTO_API_KEY.",
                    id="django_mitto.W001",
                )
            )
        url = entry.get("API_URL")
        if isinstance(url, str) and _points_at_sandbox(url) and not settings.DEBUG:
            out.append(
                Warning(
                    f'MITTO_ACCOUNTS["{name}"]["API_URL"] points at a local sandbox ({url}) '
                    "while DEBUG is False: no message of this account reaches a phone.",
                    hint='In production set it to Mitto ("https://rest.mittoapi.net" or a '
                    "regional host).",
                    id="django_mitto.W004",
                )
            )
    # A secret names the account a report is applied to: two accounts must not share one.
    owners: dict[str, list[str]] = {}
    names = [DEFAULT_ACCOUNT] + [n for n in valid if n != DEFAULT_ACCOUNT]
    for name in names:
        entry = accounts.get(name, {})
        if _account_value_problem("CALLBACK_SECRET", entry.get("CALLBACK_SECRET", "")):
            continue
        flat = conf.raw("MITTO_CALLBACK_SECRET")
        if (
            name == DEFAULT_ACCOUNT
            and "CALLBACK_SECRET" not in entry
            and not isinstance(flat, (str, list, tuple))
        ):
            continue  # E007 says it
        for secret in set(Account(name).CALLBACK_SECRETS):
            owners.setdefault(secret, []).append(name)
    for shared in owners.values():
        if len(shared) > 1:
            out.append(
                Error(
                    "The accounts "
                    + ", ".join(repr(n) for n in shared)
                    + " have the same callback secret.",
                    hint="Give each account its own CALLBACK_SECRET: the secret in the callback "
                    "URL tells which account's messages a report may change.",
                    id="django_mitto.E033",
                )
            )
    return out


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
