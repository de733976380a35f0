"""Typed access to the ``MITTO_*`` settings.

Each property reads ``django.conf.settings`` on every access, so ``override_settings`` and
settings changed at run time are always seen. Nothing is read at import time. Type errors are
reported by the system checks in :mod:`django_mitto.checks`; properties return the raw value
with the default applied, and :meth:`MittoSettings.require_api_key` raises at use time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

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
}


class MittoSettings:
    """One typed property per ``MITTO_*`` setting (see the README for each)."""

    def _get(self, name: str) -> Any:
        return getattr(settings, name, DEFAULTS[name])

    @property
    def API_KEY(self) -> str:
        return self._get("MITTO_API_KEY") or ""

    @property
    def API_URL(self) -> str:
        return str(self._get("MITTO_API_URL")).rstrip("/")

    @property
    def DEFAULT_SENDER(self) -> str:
        return self._get("MITTO_DEFAULT_SENDER") or ""

    @property
    def DEFAULT_REGION(self) -> str:
        return (self._get("MITTO_DEFAULT_REGION") or "").upper()

    @property
    def TEST_MODE(self) -> bool:
        return bool(self._get("MITTO_TEST_MODE"))

    @property
    def RESPONSE_FORMAT(self) -> str:
        return str(self._get("MITTO_RESPONSE_FORMAT")).lower()

    @property
    def TIMEOUT(self) -> float:
        return float(self._get("MITTO_TIMEOUT"))

    @property
    def CALLBACK_BASE_URL(self) -> str:
        return (self._get("MITTO_CALLBACK_BASE_URL") or "").rstrip("/")

    @property
    def CALLBACK_SECRETS(self) -> list[str]:
        """``MITTO_CALLBACK_SECRET`` as a list (a single string becomes a one-item list)."""
        value = self._get("MITTO_CALLBACK_SECRET")
        if not value:
            return []
        if isinstance(value, str):
            return [value]
        return [v for v in value if v]

    @property
    def CALLBACK_ALLOWED_IPS(self) -> list[str]:
        return list(self._get("MITTO_CALLBACK_ALLOWED_IPS") or [])

    @property
    def CALLBACK_IP_HEADER(self) -> str:
        return self._get("MITTO_CALLBACK_IP_HEADER") or ""

    @property
    def CALLBACK_TOKEN_MAX_AGE(self) -> float | None:
        """Seconds a signed callback token stays valid; None when it never expires (None or 0)."""
        value = self._get("MITTO_CALLBACK_TOKEN_MAX_AGE")
        return float(value) if value else None

    @property
    def SEND_ON_SAVE(self) -> bool:
        return bool(self._get("MITTO_SEND_ON_SAVE"))

    @property
    def TASK_BACKEND(self) -> str:
        """``"inline"``, ``"celery"``, ``"tasks"`` (any case) or a dotted path, kept as given."""
        value = str(self._get("MITTO_TASK_BACKEND"))
        return value.lower() if value.lower() in ("inline", "celery", "tasks") else value

    @property
    def MAX_ATTEMPTS(self) -> int:
        return int(self._get("MITTO_MAX_ATTEMPTS"))

    @property
    def BULK_CHUNK_SIZE(self) -> int:
        return int(self._get("MITTO_BULK_CHUNK_SIZE"))

    @property
    def MAX_PARTS(self) -> int:
        """Most SMS parts one message may take (a longer text is refused)."""
        return int(self._get("MITTO_MAX_PARTS"))

    def require_api_key(self) -> str:
        """Return the API key, or raise :class:`MittoConfigurationError` when it is not set."""
        key = self.API_KEY
        if not key:
            raise MittoConfigurationError(
                "MITTO_API_KEY is not set: add your Mitto API key to the settings "
                "(or point MITTO_API_URL at the django-mitto sandbox and use its key)."
            )
        return key

    @property
    def ACCOUNT_NAME(self) -> str:
        """The account name tied to the API key, which Mitto's usage report asks for."""
        return str(self._get("MITTO_ACCOUNT_NAME") or "")


conf = MittoSettings()
