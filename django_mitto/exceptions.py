"""Exceptions raised by django-mitto.

::

    MittoError
     +-- MittoAPIError            Mitto answered, and said no (or something unreadable)
     |    +-- MittoAuthenticationError   HTTP 401: missing or wrong API key
     +-- MittoTransportError      no usable answer: connection, TLS, timeout, reset
    MittoConfigurationError       a setting is missing or wrong (an ImproperlyConfigured)

No exception carries the API key or the request headers.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "MittoAPIError",
    "MittoAuthenticationError",
    "MittoConfigurationError",
    "MittoError",
    "MittoTransportError",
]

#: Response bodies quoted in exception messages are cut to this many characters.
BODY_PREVIEW_LENGTH = 300


def trim(text: str | bytes | None, limit: int = BODY_PREVIEW_LENGTH) -> str:
    """Shorten a response body for an error message."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class MittoError(Exception):
    """Base class of every error raised while talking to Mitto."""


class MittoAPIError(MittoError):
    """Mitto answered but refused the request, or answered something unreadable.

    ``response_code`` is Mitto's ``responseCode`` (``None`` when the body had none),
    ``response_text`` its ``responseText`` (or a trimmed body), ``status_code`` the HTTP status,
    ``refused`` whether the answer proves Mitto did not take the message.
    """

    def __init__(
        self,
        message: str,
        *,
        response_code: int | None = None,
        response_text: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        refused: bool = True,
    ) -> None:
        super().__init__(message)
        self.response_code = response_code
        self.response_text = response_text
        self.status_code = status_code
        #: Seconds Mitto asked to wait (``Retry-After``), when it said.
        self.retry_after = retry_after
        #: True when the answer says Mitto did not take the message (a non-zero responseCode,
        #: a 4xx, 429 or 503). False when the answer cannot tell (an unreadable body, a 2xx or
        #: server error without a responseCode): Mitto may have taken it.
        self.refused = refused

    @property
    def retryable(self) -> bool:
        """True when Mitto asked to come back later (HTTP 429 or 503): it did not take the message."""
        return self.status_code in (429, 503)


class MittoAuthenticationError(MittoAPIError):
    """HTTP 401: the API key is missing or wrong, or this server's IP is not whitelisted."""


class MittoTransportError(MittoError):
    """No usable answer came back.

    ``request_sent`` tells whether the request may have reached Mitto: ``False`` when the
    connection was never made (refused, DNS, TLS handshake, connect timeout), so sending again
    is safe; ``True`` when the body went out and the answer was lost (read timeout, reset), so
    the message may have been sent and must not be resent blindly.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class MittoConfigurationError(MittoError, ImproperlyConfigured):
    """A django-mitto setting is missing or has the wrong type."""
