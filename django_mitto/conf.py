"""Typed access to the ``MITTO_*`` settings.

Each property is named after its setting (``conf.MITTO_TIMEOUT``, with the short alias
``conf.TIMEOUT``). A setting is read from ``django.conf.settings`` at its first use and kept
until the settings change: ``override_settings`` (and pytest-django's ``settings`` fixture,
which uses it) and Django's ``setting_changed`` signal are seen at once; an assignment to
``django.conf.settings`` at run time, which Django advises against, is not. A send reads a
dozen settings, and reading each from Django's settings every time took a twentieth of a
send's own time. Nothing is read at import time. Type errors
are reported by the system checks in :mod:`django_mitto.checks` (which read
:meth:`MittoSettings.raw`, the value as written); properties return the value with the default
applied, and :meth:`MittoSettings.require_api_key` raises at use time.

Several Mitto accounts: ``conf.accounts()`` names them and ``conf.account(name)`` returns an
:class:`Account` with that account's settings (``MITTO_ACCOUNTS``, the flat settings being the
``default`` account). The account properties of ``conf`` itself are the ``default`` account's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from .exceptions import MittoConfigurationError

DEFAULTS: dict[str, Any] = {
    "MITTO_API_KEY": "",
    "MITTO_API_URL": "https://rest.mittoapi.net",
    "MITTO_DEFAULT_SENDER": "",
    "MITTO_DEFAULT_REGION": "",
    "MITTO_TEST_MODE": False,
    "MITTO_RESPONSE_FORMAT": "json",
    "MITTO_TIMEOUT": 10.0,
    "MITTO_CALLBACK_BASE_URL": "",
    "MITTO_CALLBACK_SECRET": "",
    "MITTO_CALLBACK_ALLOWED_IPS": [],
    "MITTO_CALLBACK_IP_HEADER": "",
    # Seven days: Mitto's longest validity (2880 minutes) with five days to spare for late reports.
    "MITTO_CALLBACK_TOKEN_MAX_AGE": 7 * 24 * 3600,
    "MITTO_SEND_ON_SAVE": True,
    "MITTO_TASK_BACKEND": "inline",
    "MITTO_MAX_ATTEMPTS": 3,
    "MITTO_BULK_CHUNK_SIZE": 500,
    "MITTO_MAX_PARTS": 10,
    "MITTO_ACCOUNT_NAME": "",
    # Off: nothing is redacted or deleted until a project chooses how long to keep messages.
    "MITTO_RETENTION": None,
    "MITTO_REPLY_WINDOW": 7 * 24 * 3600,
    "MITTO_OPT_OUT_KEYWORDS": ["STOP", "STOPP", "ARRET", "UNSUBSCRIBE"],
    "MITTO_ACCOUNTS": {},
    # Messages a second, per account, shared by every process through Django's cache; None: off.
    "MITTO_RATE_LIMIT": None,
    "MITTO_RATE_LIMIT_CACHE": "default",
}

#: The keys ``MITTO_RETENTION`` takes; a key left out turns its part off (batch_size: 2000).
RETENTION_KEYS = ("redact_after_days", "delete_after_days", "batch_size")
RETENTION_BATCH_SIZE = 2000


@dataclass(frozen=True)
class Retention:
    """``MITTO_RETENTION`` read: days before redaction and deletion (None: never), batch size."""

    redact_after_days: int | None
    delete_after_days: int | None
    batch_size: int = RETENTION_BATCH_SIZE


#: The account the flat ``MITTO_*`` settings describe, and the one used when none is named.
DEFAULT_ACCOUNT = "default"

#: The keys an entry of ``MITTO_ACCOUNTS`` may hold (each is the flat setting without ``MITTO_``).
ACCOUNT_KEYS = (
    "API_KEY",
    "API_URL",
    "DEFAULT_SENDER",
    "CALLBACK_SECRET",
    "TEST_MODE",
    "RESPONSE_FORMAT",
    "TIMEOUT",
    "ACCOUNT_NAME",
    "CALLBACK_BASE_URL",
    "RATE_LIMIT",
)

#: Keys that never fall back to the flat setting for an account other than ``default``: an
#: account left without its own key must not send or authenticate with another account's.
SECRET_ACCOUNT_KEYS = frozenset({"API_KEY", "CALLBACK_SECRET"})


class Account:
    """One Mitto account's settings, read at use time.

    A key the account's ``MITTO_ACCOUNTS`` entry leaves out falls back to the flat ``MITTO_*``
    setting, except ``API_KEY`` and ``CALLBACK_SECRET`` for an account other than ``default``
    (those stay empty). The ``default`` account is the flat settings, overridden by
    ``MITTO_ACCOUNTS["default"]`` when that entry exists.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Account {self.name!r}>"

    def _entry(self) -> Mapping[str, Any]:
        entry = _accounts_setting().get(self.name)
        return entry if isinstance(entry, Mapping) else {}

    def _get(self, key: str) -> Any:
        entry = self._entry()
        if key in entry:
            return entry[key]
        name = f"MITTO_{key}"
        if self.name != DEFAULT_ACCOUNT and key in SECRET_ACCOUNT_KEYS:
            return DEFAULTS[name]
        return _setting(name, DEFAULTS[name])

    def setting_name(self, key: str) -> str:
        """Where ``key`` of this account is set, for messages (never its value)."""
        if key in self._entry() or self.name != DEFAULT_ACCOUNT:
            return f'MITTO_ACCOUNTS["{self.name}"]["{key}"]'
        return f"MITTO_{key}"

    @property
    def API_KEY(self) -> str:
        return self._get("API_KEY") or ""

    @property
    def API_URL(self) -> str:
        return str(self._get("API_URL")).rstrip("/")

    @property
    def DEFAULT_SENDER(self) -> str:
        return self._get("DEFAULT_SENDER") or ""

    @property
    def TEST_MODE(self) -> bool:
        return bool(self._get("TEST_MODE"))

    @property
    def RESPONSE_FORMAT(self) -> str:
        return str(self._get("RESPONSE_FORMAT")).lower()

    @property
    def TIMEOUT(self) -> float:
        return float(self._get("TIMEOUT"))

    @property
    def CALLBACK_BASE_URL(self) -> str:
        return (self._get("CALLBACK_BASE_URL") or "").rstrip("/")

    @property
    def CALLBACK_SECRETS(self) -> list[str]:
        """The account's ``CALLBACK_SECRET`` as a list (a single string becomes one item)."""
        value = self._get("CALLBACK_SECRET")
        if not value:
            return []
        if isinstance(value, str):
            return [value]
        return [v for v in value if v]

    @property
    def ACCOUNT_NAME(self) -> str:
        """The account name tied to the API key, which Mitto's usage report asks for."""
        return str(self._get("ACCOUNT_NAME") or "")

    @property
    def RATE_LIMIT(self) -> float | None:
        """Messages a second this account may send, all processes together (None: no limit)."""
        value = self._get("RATE_LIMIT")
        return None if value in (None, 0, "") else float(value)

    def require_api_key(self) -> str:
        """Return the API key, or raise :class:`MittoConfigurationError` when it is not set."""
        key = self.API_KEY
        if not key:
            if self.name == DEFAULT_ACCOUNT and "API_KEY" not in self._entry():
                raise MittoConfigurationError(
                    "MITTO_API_KEY is not set: add your Mitto API key to the settings "
                    "(or point MITTO_API_URL at the django-mitto sandbox and use its key)."
                )
            raise MittoConfigurationError(
                f"{self.setting_name('API_KEY')} is not set: add the Mitto API key of the "
                f"account {self.name!r} to MITTO_ACCOUNTS."
            )
        return key


def _accounts_setting() -> Mapping[str, Any]:
    value = _setting("MITTO_ACCOUNTS", None)
    return value if isinstance(value, Mapping) else {}


_MISSING = object()

#: The settings read so far, as given (``_MISSING`` for one that is not set), and the settings
#: object they were read from: ``override_settings`` (which pytest-django's ``settings``
#: fixture uses for every change, deletions included) puts another one in place.
_read: dict[str, Any] = {}
_read_from: list[Any] = [None]


def _setting(name: str, default: Any) -> Any:
    """``getattr(settings, name, default)``, read once while the settings stay the same."""
    if _settings_object() is not _read_from[0]:
        _forget_settings()
    value = _read.get(name)
    if value is None:
        value = _read[name] = getattr(settings, name, _MISSING)
    return default if value is _MISSING else value


def _forget_settings(**kwargs: Any) -> None:
    """The settings changed (another settings object, or ``setting_changed``): read again."""
    _read.clear()
    _read_from[0] = _settings_object()


def _settings_object() -> Any:
    """The object behind ``django.conf.settings`` (``override_settings`` swaps it)."""
    return settings._wrapped  # type: ignore[misc]


setting_changed.connect(_forget_settings, dispatch_uid="django_mitto.conf")


class MittoSettings:
    """One typed property per ``MITTO_*`` setting (see the README for each).

    Each is read under the setting's full name (``conf.MITTO_TIMEOUT``) or its short alias
    (``conf.TIMEOUT``). :meth:`raw` returns a setting exactly as given, for the system checks.
    """

    def raw(self, name: str) -> Any:
        """The setting ``name`` (``"MITTO_TIMEOUT"``) as given, or its default: no coercion.

        Raises :class:`KeyError` for a name that is not a django-mitto setting.
        """
        if name not in DEFAULTS:
            raise KeyError(f"{name} is not a django-mitto setting.")
        return _setting(name, DEFAULTS[name])

    _get = raw

    def accounts(self) -> list[str]:
        """The names of the configured accounts, ``default`` first (it always exists)."""
        names = [str(name) for name in _accounts_setting() if name != DEFAULT_ACCOUNT]
        return [DEFAULT_ACCOUNT, *names]

    @property
    def SEVERAL_ACCOUNTS(self) -> bool:
        """Whether ``MITTO_ACCOUNTS`` names an account besides ``default``."""
        return len(self.accounts()) > 1

    def account(self, name: str | None = None) -> Account:
        """The settings of account ``name`` (``default`` when None).

        Raises :class:`MittoConfigurationError` for a name ``MITTO_ACCOUNTS`` does not know.
        """
        name = DEFAULT_ACCOUNT if name is None or name == "" else name
        if name not in self.accounts():
            raise MittoConfigurationError(
                f"No Mitto account named {name!r} in MITTO_ACCOUNTS; known accounts: "
                f"{', '.join(self.accounts())}."
            )
        return Account(name)

    # The properties below are the ``default`` account's (the flat settings, overridden by
    # MITTO_ACCOUNTS["default"] when it exists).

    @property
    def MITTO_API_KEY(self) -> str:
        return Account(DEFAULT_ACCOUNT).API_KEY

    @property
    def MITTO_API_URL(self) -> str:
        return Account(DEFAULT_ACCOUNT).API_URL

    @property
    def MITTO_DEFAULT_SENDER(self) -> str:
        return Account(DEFAULT_ACCOUNT).DEFAULT_SENDER

    @property
    def MITTO_DEFAULT_REGION(self) -> str:
        return (self._get("MITTO_DEFAULT_REGION") or "").upper()

    @property
    def MITTO_TEST_MODE(self) -> bool:
        return Account(DEFAULT_ACCOUNT).TEST_MODE

    @property
    def MITTO_RESPONSE_FORMAT(self) -> str:
        return Account(DEFAULT_ACCOUNT).RESPONSE_FORMAT

    @property
    def MITTO_TIMEOUT(self) -> float:
        return Account(DEFAULT_ACCOUNT).TIMEOUT

    @property
    def MITTO_CALLBACK_BASE_URL(self) -> str:
        return Account(DEFAULT_ACCOUNT).CALLBACK_BASE_URL

    @property
    def MITTO_CALLBACK_SECRET(self) -> list[str]:
        """The ``default`` account's callback secrets (``MITTO_CALLBACK_SECRET`` as a list)."""
        return Account(DEFAULT_ACCOUNT).CALLBACK_SECRETS

    CALLBACK_SECRETS = MITTO_CALLBACK_SECRET

    @property
    def MITTO_CALLBACK_ALLOWED_IPS(self) -> list[str]:
        return list(self._get("MITTO_CALLBACK_ALLOWED_IPS") or [])

    @property
    def MITTO_CALLBACK_IP_HEADER(self) -> str:
        return self._get("MITTO_CALLBACK_IP_HEADER") or ""

    @property
    def MITTO_CALLBACK_TOKEN_MAX_AGE(self) -> float | None:
        """Seconds a signed callback token stays valid; None when it never expires (None or 0)."""
        value = self._get("MITTO_CALLBACK_TOKEN_MAX_AGE")
        return float(value) if value else None

    @property
    def MITTO_SEND_ON_SAVE(self) -> bool:
        return bool(self._get("MITTO_SEND_ON_SAVE"))

    @property
    def MITTO_TASK_BACKEND(self) -> str:
        """``"inline"``, ``"celery"``, ``"tasks"`` (any case) or a dotted path, kept as given."""
        value = str(self._get("MITTO_TASK_BACKEND"))
        return value.lower() if value.lower() in ("inline", "celery", "tasks") else value

    @property
    def MITTO_MAX_ATTEMPTS(self) -> int:
        return int(self._get("MITTO_MAX_ATTEMPTS"))

    @property
    def MITTO_BULK_CHUNK_SIZE(self) -> int:
        return int(self._get("MITTO_BULK_CHUNK_SIZE"))

    @property
    def MITTO_RATE_LIMIT(self) -> float | None:
        """The ``default`` account's messages a second (None: no limit)."""
        return Account(DEFAULT_ACCOUNT).RATE_LIMIT

    @property
    def MITTO_RATE_LIMIT_CACHE(self) -> str:
        """The alias in ``CACHES`` that the rate limit and the 429 pauses are shared through."""
        return str(self._get("MITTO_RATE_LIMIT_CACHE"))

    @property
    def MITTO_MAX_PARTS(self) -> int:
        """Most SMS parts one message may take (a longer text is refused)."""
        return int(self._get("MITTO_MAX_PARTS"))

    def require_api_key(self) -> str:
        """Return the ``default`` account's API key, or raise :class:`MittoConfigurationError`."""
        return Account(DEFAULT_ACCOUNT).require_api_key()

    @property
    def MITTO_ACCOUNT_NAME(self) -> str:
        """The account name tied to the API key, which Mitto's usage report asks for."""
        return Account(DEFAULT_ACCOUNT).ACCOUNT_NAME

    @property
    def MITTO_REPLY_WINDOW(self) -> timedelta:
        """How long after a message a reply from its recipient is taken as an answer to it."""
        value = self._get("MITTO_REPLY_WINDOW")
        if isinstance(value, timedelta):
            return value
        return timedelta(seconds=float(value or 0))

    @property
    def MITTO_OPT_OUT_KEYWORDS(self) -> list[str]:
        """The first words of a reply that opt its sender out (compared folded)."""
        value = self._get("MITTO_OPT_OUT_KEYWORDS") or []
        if isinstance(value, str):
            value = [value]
        return [str(word) for word in value if word]

    @property
    def MITTO_RETENTION(self) -> Retention | None:
        """``MITTO_RETENTION`` as a :class:`Retention`, or None when it is not set (the default).

        The system check ``django_mitto.E014`` reports a malformed value; used anyway, it
        raises :class:`MittoConfigurationError`.
        """
        value = self._get("MITTO_RETENTION")
        if value is None:
            return None
        problem = retention_problem(value)
        if problem:
            raise MittoConfigurationError(problem)
        return Retention(
            redact_after_days=value.get("redact_after_days"),
            delete_after_days=value.get("delete_after_days"),
            batch_size=value.get("batch_size") or RETENTION_BATCH_SIZE,
        )

    @property
    def MITTO_ACCOUNTS(self) -> Mapping[str, Any]:
        """``MITTO_ACCOUNTS`` when it is a mapping, else empty (check E030 says what is wrong)."""
        return _accounts_setting()

    # The short names, kept as aliases: much code reads conf.API_KEY, conf.TIMEOUT...
    API_KEY = MITTO_API_KEY
    API_URL = MITTO_API_URL
    DEFAULT_SENDER = MITTO_DEFAULT_SENDER
    DEFAULT_REGION = MITTO_DEFAULT_REGION
    TEST_MODE = MITTO_TEST_MODE
    RESPONSE_FORMAT = MITTO_RESPONSE_FORMAT
    TIMEOUT = MITTO_TIMEOUT
    CALLBACK_BASE_URL = MITTO_CALLBACK_BASE_URL
    CALLBACK_ALLOWED_IPS = MITTO_CALLBACK_ALLOWED_IPS
    CALLBACK_IP_HEADER = MITTO_CALLBACK_IP_HEADER
    CALLBACK_TOKEN_MAX_AGE = MITTO_CALLBACK_TOKEN_MAX_AGE
    SEND_ON_SAVE = MITTO_SEND_ON_SAVE
    TASK_BACKEND = MITTO_TASK_BACKEND
    MAX_ATTEMPTS = MITTO_MAX_ATTEMPTS
    BULK_CHUNK_SIZE = MITTO_BULK_CHUNK_SIZE
    MAX_PARTS = MITTO_MAX_PARTS
    RATE_LIMIT = MITTO_RATE_LIMIT
    RATE_LIMIT_CACHE = MITTO_RATE_LIMIT_CACHE
    ACCOUNT_NAME = MITTO_ACCOUNT_NAME
    REPLY_WINDOW = MITTO_REPLY_WINDOW
    OPT_OUT_KEYWORDS = MITTO_OPT_OUT_KEYWORDS
    RETENTION = MITTO_RETENTION


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def retention_problem(value: Any) -> str:
    """What is wrong with a ``MITTO_RETENTION`` value, naming the key; ``""`` when it is fine."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return (
            f"MITTO_RETENTION must be a dict or None, not {type(value).__name__}, "
            'for example {"redact_after_days": 90, "delete_after_days": 365}.'
        )
    for key in value:
        if key not in RETENTION_KEYS:
            return (
                f"MITTO_RETENTION has an unknown key {key!r}; the keys are "
                + ", ".join(RETENTION_KEYS)
                + "."
            )
    for key in RETENTION_KEYS:
        item = value.get(key)
        if item is not None and not _is_count(item):
            return (
                f"MITTO_RETENTION[{key!r}] must be a positive whole number or None, not {item!r}."
            )
    redact, delete = value.get("redact_after_days"), value.get("delete_after_days")
    if redact is not None and delete is not None and delete < redact:
        return (
            f"MITTO_RETENTION['delete_after_days'] ({delete}) is less than "
            f"MITTO_RETENTION['redact_after_days'] ({redact}): messages would be deleted "
            "before they are redacted."
        )
    return ""


conf = MittoSettings()
