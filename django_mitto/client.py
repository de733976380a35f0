"""A small client for Mitto's SMS REST API (``/sms`` and ``/smsbulk``).

It knows nothing of Django models: give it the fields, get a typed result or an exception
from :mod:`django_mitto.exceptions`. One ``requests.Session`` keeps connections alive.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from defusedxml import ElementTree
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from . import __version__
from .exceptions import (
    MittoAPIError,
    MittoAuthenticationError,
    MittoConfigurationError,
    MittoTransportError,
    trim,
)

logger = logging.getLogger("django_mitto.client")

USER_AGENT = f"django-mitto/{__version__}"

_TIMESTAMP = re.compile(
    r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", re.IGNORECASE
)
# Characters no database column should receive from an answer: C0/C1 controls (PostgreSQL
# refuses NUL) and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

#: Keys that may carry a message's id in an answer, in the order they are tried (lower case).
ID_KEYS = ("id", "ids", "messageid")
#: Bounds of the numbers read from an answer; a value outside is treated as absent.
MAX_RESPONSE_CODE = 2**31 - 1
MAX_TEXT_LENGTH = 2**31 - 1
#: A concatenated SMS numbers its parts in one byte: more than 255 parts cannot be real.
MAX_PARTS = 255
#: Strings read from an answer are cut to this many characters.
MAX_FIELD_LENGTH = 1000


@dataclass(frozen=True)
class SendResult:
    """What Mitto answered for one message."""

    id: str
    to: str = ""
    timestamp: datetime | None = None
    response_code: int = 0
    response_text: str = ""
    text_length: int | None = None
    parts: int | None = None
    test: bool = False
    #: The answer as received (for a bulk item: the item), cleaned and trimmed, to keep on record.
    raw: str = ""


@dataclass(frozen=True)
class BulkResult:
    """What Mitto answered for a bulk send: one :class:`SendResult` per recipient, in order."""

    response_code: int = 0
    response_text: str = ""
    test: bool = False
    messages: list[SendResult] = field(default_factory=list)
    raw: str = ""


def clean_text(value: Any, limit: int = MAX_FIELD_LENGTH) -> str:
    """A string read from an answer, safe for any database column.

    Control characters and lone surrogates become spaces, surrounding blanks go, and the
    result is cut to ``limit`` characters. ``None`` and containers become ``""``.
    """
    if value is None or isinstance(value, (dict, list, tuple)):
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return _UNSTORABLE.sub(" ", str(value)).strip()[:limit]


def read_id(data: Mapping[str, Any]) -> str:
    """The message id of an answer (or bulk item) with lower-cased keys: ``id``, the first of
    ``ids``, or ``messageId``; ``""`` when there is none.

    Control characters are kept visible (as U+FFFD) so that a damaged id is never mistaken
    for a good one.
    """
    for key in ID_KEYS:
        value = data.get(key)
        if isinstance(value, Mapping):  # XML <ids><id>...</id></ids> read as a dict
            value = next(iter(value.values()), None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None or isinstance(value, (bool, Mapping, list, tuple)):
            continue
        text = str(value).strip()
        if text:
            return _UNSTORABLE.sub("\ufffd", text)[:MAX_FIELD_LENGTH]
    return ""


def parse_timestamp(value: Any) -> datetime | None:
    """Parse Mitto's timestamps (``2019-04-13T17:51:06.3091182Z``: 7 fractional digits).

    Returns an aware datetime in UTC, or ``None`` for anything unreadable: a bad offset
    (``+99:99``), or a year outside 1970-9998 once in UTC.
    """
    if not value or not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime.fromisoformat(base.replace(" ", "T")).replace(microsecond=micro)
        if zone and zone.upper() != "Z":
            parsed = datetime.fromisoformat(parsed.isoformat() + zone[:3] + ":" + zone[-2:])
        else:
            parsed = parsed.replace(tzinfo=timezone.utc)
        parsed = parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    if not 1970 <= parsed.year <= 9998:
        return None
    return parsed


def _int_or_none(
    value: Any, low: int = -MAX_RESPONSE_CODE, high: int = MAX_RESPONSE_CODE
) -> int | None:
    """An integer in ``[low, high]``, or ``None`` (absent, not a number, out of range)."""
    if value is None or isinstance(value, (bool, Mapping, list, tuple)):
        return None
    try:
        number = int(str(value).strip()[:20])
    except ValueError:
        return None
    return number if low <= number <= high else None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def _xml_to_dict(text: str | bytes) -> dict[str, Any]:
    """Read an XML answer whose element names mirror the JSON keys, under any root.

    Element names are compared case-insensitively. A ``messages`` element holds one child
    element per recipient.
    """
    root = ElementTree.fromstring(text)

    def leaf_dict(element: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in element:
            tag = child.tag.split("}")[-1].lower()
            if tag == "messages":
                out["messages"] = [leaf_dict(item) for item in child]
            elif tag == "ids" and len(child):
                out["ids"] = [(item.text or "").strip() for item in child]
            elif len(child):
                out[tag] = leaf_dict(child)
            else:
                out[tag] = (child.text or "").strip()
        return out

    data = leaf_dict(root)
    # An answer wrapped one level deeper (<xml><response>...</response></xml>).
    if "responsecode" not in data and len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict):
            data = only
    return data


class MittoClient:
    """Talks to Mitto's SMS API.

    ``api_key`` is sent as ``X-Mitto-API-Key`` and never appears in a log, repr or exception.
    Every argument left out is read from the ``MITTO_*`` settings when the client is made.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        api_url: str | None = None,
        timeout: float | None = None,
        response_format: str | None = None,
        test_mode: bool | None = None,
        session: requests.Session | None = None,
        pool_size: int = 10,
    ) -> None:
        if (
            api_key is None
            or api_url is None
            or timeout is None
            or response_format is None
            or test_mode is None
        ):
            from .conf import conf

            api_key = conf.require_api_key() if api_key is None else api_key
            api_url = conf.API_URL if api_url is None else api_url
            timeout = conf.TIMEOUT if timeout is None else timeout
            response_format = conf.RESPONSE_FORMAT if response_format is None else response_format
            test_mode = conf.TEST_MODE if test_mode is None else test_mode
        if not api_key:
            raise MittoConfigurationError("MittoClient needs an API key (MITTO_API_KEY).")
        response_format = response_format.lower()
        if response_format not in ("json", "xml"):
            raise MittoConfigurationError('MITTO_RESPONSE_FORMAT must be "json" or "xml".')
        self.api_url = api_url.rstrip("/")
        self.timeout = float(timeout)
        self.response_format = response_format
        self.test_mode = bool(test_mode)
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {
                "X-Mitto-API-Key": api_key,
                "User-Agent": USER_AGENT,
                "Accept": "application/xml" if response_format == "xml" else "application/json",
            }
        )

    def __repr__(self) -> str:
        return f"<MittoClient {self.api_url} format={self.response_format}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> MittoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------------

    def send(
        self,
        to: str,
        text: str,
        *,
        sender: str,
        type: str = "GSM",
        reference: str | None = None,
        udh: str | None = None,
        validity: int | None = None,
        pid: int | None = None,
        flash: bool | None = None,
        test: bool | None = None,
        callback: str | None = None,
    ) -> SendResult:
        """Send one SMS (``POST /sms``) and return Mitto's answer.

        Raises :class:`MittoAPIError` (refused, or an unreadable answer),
        :class:`MittoAuthenticationError` (401) or :class:`MittoTransportError`.
        """
        body = self._body(
            to=self._number(to),
            text=text,
            sender=sender,
            type=type,
            reference=reference,
            udh=udh,
            validity=validity,
            pid=pid,
            flash=flash,
            test=test,
            callback=callback,
        )
        data = self._post("/sms", body)
        return self._result(
            data, default_to=to, test=body.get("test", False), raw=getattr(data, "raw", "")
        )

    def send_bulk(
        self,
        to: Sequence[str],
        text: str,
        *,
        sender: str,
        type: str = "GSM",
        reference: str | None = None,
        udh: str | None = None,
        validity: int | None = None,
        pid: int | None = None,
        flash: bool | None = None,
        test: bool | None = None,
        callback: str | None = None,
    ) -> BulkResult:
        """Send one text to many recipients (``POST /smsbulk``, ``to`` as a JSON array).

        The result has one :class:`SendResult` per recipient, in the order Mitto answered.
        """
        recipients = [self._number(n) for n in to]
        if not recipients:
            raise ValueError("send_bulk() needs at least one recipient.")
        body = self._body(
            to=recipients,
            text=text,
            sender=sender,
            type=type,
            reference=reference,
            udh=udh,
            validity=validity,
            pid=pid,
            flash=flash,
            test=test,
            callback=callback,
        )
        data = self._post("/smsbulk", body)
        items = data.get("messages") or []
        if isinstance(items, Mapping):
            items = [items]
        if not items and isinstance(data.get("ids"), list):
            # No per-recipient items, only the ids, in the order of the recipients.
            items = [{"id": value} for value in data["ids"]]
        is_test = _bool(data.get("test", body.get("test", False)))
        messages = [
            self._result(
                _lower_keys(item), default_to="", test=is_test, envelope=data, raw=_raw_item(item)
            )
            for item in items
            if isinstance(item, Mapping)
        ]
        return BulkResult(
            response_code=_int_or_none(data.get("responsecode")) or 0,
            response_text=clean_text(data.get("responsetext")),
            test=is_test,
            messages=messages,
            raw=getattr(data, "raw", ""),
        )

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _number(value: str) -> str:
        # Mitto documents "E.164 digits"; a leading + is accepted too but digits are the safe form.
        return str(value).strip().lstrip("+")

    def _body(
        self, *, to: str | list[str], text: str, sender: str, type: str, **options: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"from": sender, "to": to, "text": text, "type": type}
        if options.get("test") is None:
            options["test"] = self.test_mode or None
        for name in ("reference", "udh", "validity", "pid", "flash", "test", "callback"):
            value = options.get(name)
            if value is None or value == "" or value is False:
                continue
            body[name] = value
        return body

    def _url(self, path: str) -> str:
        return (
            f"{self.api_url}{path}.xml"
            if self.response_format == "xml"
            else f"{self.api_url}{path}"
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._url(path)
        try:
            response = self.session.post(
                url, json=body, timeout=self.timeout, allow_redirects=False
            )
        except requests.exceptions.RequestException as exc:
            sent = _may_have_been_sent(exc)
            logger.warning(
                "Mitto request to %s failed (%s; request sent: %s)", path, type(exc).__name__, sent
            )
            what = (
                "Mitto may have received the request" if sent else "the request never reached Mitto"
            )
            raise MittoTransportError(
                f"POST {path}: {type(exc).__name__} ({what}).", request_sent=sent
            ) from exc
        return self._read(path, response)

    def _read(self, path: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 401:
            raise MittoAuthenticationError(
                f"Mitto refused the API key (HTTP 401) on POST {path}: check MITTO_API_KEY and "
                "that this server's IP address is whitelisted at Mitto.",
                response_text=trim(response.text),
                status_code=401,
            )
        if 300 <= status < 400:
            # Never followed: the key header would go to whatever host the redirect names.
            raise MittoAPIError(
                f"Mitto answered HTTP {status} (a redirect to "
                f"{response.headers.get('Location', '?')!r}); set MITTO_API_URL to the final address.",
                response_text=trim(response.text),
                status_code=status,
            )
        # Whether an answer without a readable responseCode still proves a refusal: a 4xx does,
        # a 2xx or a server error does not (Mitto may have taken the message).
        refused_anyway = 400 <= status < 500 or status == 503
        body = clean_text(trim(response.text))
        try:
            data = self._parse(response)
        except ValueError:
            raise MittoAPIError(
                f"Mitto answered HTTP {status} with a body that is not valid "
                f"{self.response_format.upper()}: {body!r}",
                response_text=body,
                status_code=status,
                retry_after=retry_after,
                refused=refused_anyway,
            ) from None
        code = _int_or_none(data.get("responsecode"))
        text = clean_text(data.get("responsetext"))
        if code not in (0, None):
            # A server error (other than 503) may come after Mitto queued the message; only a
            # validation code (2-8) proves it was refused. Code 1 ("Internal error") does not.
            server_error = status >= 500 and status != 503
            refused = not server_error or 2 <= code <= 8
            what = "refused the message" if refused else "failed, perhaps after taking the message"
            raise MittoAPIError(
                f"Mitto {what}: responseCode {code} ({text or 'no text'}), HTTP {status}.",
                response_code=code,
                response_text=text,
                status_code=status,
                retry_after=retry_after,
                refused=refused,
            )
        if code is None:
            raise MittoAPIError(
                f"Mitto answered HTTP {status} without a responseCode: {body!r}",
                response_text=body,
                status_code=status,
                retry_after=retry_after,
                refused=refused_anyway,
            )
        if not 200 <= status < 300:
            raise MittoAPIError(
                f"Mitto answered HTTP {status} ({text or 'no text'}).",
                response_code=code,
                response_text=text,
                status_code=status,
                retry_after=retry_after,
                refused=refused_anyway,
            )
        answer = _Answer(data)
        answer.raw = body
        return answer

    def _parse(self, response: requests.Response) -> dict[str, Any]:
        content_type = response.headers.get("Content-Type", "").lower()
        raw = response.content
        if not raw.strip():
            raise ValueError("empty body")
        if "xml" in content_type or (self.response_format == "xml" and "json" not in content_type):
            try:
                return _xml_to_dict(raw)
            except ElementTree.ParseError as exc:
                raise ValueError(str(exc)) from None
            except Exception as exc:  # defusedxml refusals (entities, DTDs)
                raise ValueError(str(exc)) from None
        data = json.loads(raw)
        if not isinstance(data, Mapping):
            raise ValueError("not an object")
        return _lower_keys(data)

    @staticmethod
    def _result(
        data: Mapping[str, Any],
        *,
        default_to: str,
        test: bool,
        envelope: Mapping[str, Any] | None = None,
        raw: str = "",
    ) -> SendResult:
        envelope = envelope or data
        # Every field is cleaned and bounded here, so whatever Mitto answered can be stored.
        return SendResult(
            id=read_id(data),
            to=clean_text(data.get("to"), 32) or default_to,
            timestamp=parse_timestamp(data.get("timestamp")),
            response_code=_int_or_none(envelope.get("responsecode")) or 0,
            response_text=clean_text(envelope.get("responsetext")),
            text_length=_int_or_none(data.get("textlength"), 0, MAX_TEXT_LENGTH),
            parts=_int_or_none(data.get("messageparts"), 0, MAX_PARTS),
            test=_bool(data.get("test", test)),
            raw=raw,
        )


class _Answer(dict):  # type: ignore[type-arg]
    """A parsed answer (keys lower-cased) that also keeps its body, cleaned and trimmed."""

    raw: str = ""


def _raw_item(item: Any) -> str:
    try:
        text = json.dumps(item, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(item)
    return clean_text(trim(text))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _may_have_been_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether the request may have reached Mitto before ``exc`` happened.

    Connect timeouts, refused connections, DNS failures and certificate errors happen before a
    byte of the request is sent. Anything else (read timeout, reset, a TLS error while reading,
    a broken response) may come after Mitto received it.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.SSLError):
        # Only a certificate check proves the handshake failed; other TLS errors can happen
        # after the body went out.
        return not any(
            isinstance(reason, (ssl.SSLCertVerificationError, ssl.CertificateError))
            for reason in _reasons(exc)
        )
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ),
    ):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        for reason in _reasons(exc):
            if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
                return False
    return True


def _reasons(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(getattr(item, "args", ()))
        stack.append(getattr(item, "reason", None))
        stack.append(item.__cause__)
        stack.append(item.__context__)
