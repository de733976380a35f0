"""A small client for Mitto's SMS REST API (``/sms`` and ``/smsbulk``).

It knows nothing of Django models: give it the fields, get a typed result or an exception
from :mod:`django_mitto.exceptions`. One ``requests.Session`` keeps connections alive.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from defusedxml import ElementTree
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from . import __version__
from .exceptions import (
    MittoAPIError,
    MittoAuthenticationError,
    MittoConfigurationError,
    MittoError,
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
    #: The answer as received, cleaned and trimmed, to keep on record ("" for a bulk item,
    #: whose text is made only when asked for: see :meth:`answer`).
    raw: str = ""
    #: A bulk item as parsed, for :meth:`answer`.
    item: Any = field(default=None, repr=False, compare=False)

    def answer(self) -> str:
        """The answer as received (for a bulk item: the item), cleaned and trimmed."""
        if self.raw or self.item is None:
            return self.raw
        return _raw_item(self.item)


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
        value = value.decode(errors="replace")  # UTF-8
    value = str(value)
    if value.isprintable():  # no control character nor surrogate: nothing to replace
        return value.strip()[:limit]
    return _UNSTORABLE.sub(" ", value).strip()[:limit]


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
        # Any one character may part the date from the time: "T" or " ", as the pattern allows.
        parsed = datetime.fromisoformat(base).replace(microsecond=micro)
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
    if type(value) is not int:  # JSON gives most as int; a bool is no number ("True")
        if value is None:
            return None
        try:  # XML gives text; a list or an object is no number either ("[1]")
            value = int(str(value).strip()[:20])
        except ValueError:
            return None
    return value if low <= value <= high else None


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
        # The client's own session has no auth, no hooks and no cookie to keep, and reads the
        # environment once, here: its requests go to the adapter directly (see _send_direct).
        self._direct = session is None
        self._prepared_urls: dict[str, str] = {}
        if session is None:
            session = requests.Session()
            # What requests would read from the environment on every request (the proxy
            # variables, a CA bundle), read once here: the API host does not change.
            session.proxies.update(requests.utils.get_environ_proxies(self.api_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            session.trust_env = False
        self.session = session
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
        return self._result(data, default_to=to, test="test" in body, raw=data.raw)

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
        is_test = _bool(data.get("test", "test" in body))  # the body holds test only if true
        code = _int_or_none(data.get("responsecode")) or 0
        text = clean_text(data.get("responsetext"))
        # The items of one answer often share their timestamp: each distinct one is read once.
        timestamps: dict[str, datetime | None] = {}
        messages = [
            self._result(
                _lower_keys(item),
                default_to="",
                test=is_test,
                item=item,
                code=code,
                text=text,
                timestamps=timestamps,
            )
            for item in items
            if isinstance(item, Mapping)
        ]
        return BulkResult(
            response_code=code,
            response_text=text,
            test=is_test,
            messages=messages,
            raw=data.raw,
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

    def _post(self, path: str, body: dict[str, Any]) -> _Answer:
        return self._read(path, self._request(self._url(path), path, body))

    def _request(self, url: str, path: str, body: dict[str, Any]) -> requests.Response:
        """POST ``body`` as JSON; a failed request raises :class:`MittoTransportError`, saying
        whether Mitto may have received it. Redirects are never followed (the key would go
        along)."""
        try:
            if self._direct:
                response = self._send_direct(url, body)
            else:
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
        except ValueError as exc:  # after RequestException: InvalidURL is both
            if self._direct:  # a body that is no JSON (NaN): the caller's error, nothing sent
                raise
            raise _bad_redirect(path, exc) from None
        return response

    def _send_direct(self, url: str, body: dict[str, Any]) -> requests.Response:
        """``self.session.post(url, json=body, allow_redirects=False)`` for the client's own
        session, without what requests does on each call for a session that might have auth,
        hooks, cookies or an environment to read: the request is prepared here and handed to
        the session's adapter, which raises the same exceptions. That per-call work was a third
        of the client's CPU on a send. A session given to the client goes through ``post()``.
        """
        prepared_url = self._prepared_urls.get(url)
        if prepared_url is None:
            check = requests.PreparedRequest()
            check.prepare_url(url, None)  # InvalidURL, MissingSchema...: as post() raises them
            prepared_url = self._prepared_urls[url] = str(check.url)
        data = json.dumps(body, allow_nan=False).encode()
        headers = CaseInsensitiveDict(self.session.headers)
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(data))
        prepared = requests.PreparedRequest()
        prepared.method = "POST"
        prepared.url = prepared_url
        # A session's header values may be bytes, which requests sends as they are; its type
        # stubs give a prepared request's headers as str only.
        prepared.headers = headers  # type: ignore[assignment]
        prepared.body = data
        # The adapter mounted for the URL (the client's own, unless one was mounted since).
        response = self.session.get_adapter(prepared_url).send(
            prepared,
            timeout=self.timeout,
            verify=True if self.session.verify is None else self.session.verify,
            cert=self.session.cert,
            proxies=self.session.proxies,
        )
        # Read the body now, as post() does: a connection cut while it comes is a transport
        # error, and the connection goes back to the pool.
        response.content  # noqa: B018
        return response

    def _read(self, path: str, response: requests.Response) -> _Answer:
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
        data = self._parse(response)
        if data is None:
            raise MittoAPIError(
                f"Mitto answered HTTP {status} with a body that is not valid "
                f"{self.response_format.upper()}: {body!r}",
                response_text=body,
                status_code=status,
                retry_after=retry_after,
                refused=refused_anyway,
            )
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

    def _parse(self, response: requests.Response) -> dict[str, Any] | None:
        """The fields of an answer, keys lower-cased; None for a body that is empty, not valid
        JSON or XML, or not an object."""
        content_type = response.headers.get("Content-Type", "").lower()
        raw = response.content
        if "xml" in content_type or (self.response_format == "xml" and "json" not in content_type):
            try:
                return _xml_to_dict(raw)
            except Exception:  # not well-formed (ParseError), or refused by defusedxml (DTDs)
                return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return _lower_keys(data) if isinstance(data, Mapping) else None

    @staticmethod
    def _result(
        data: Mapping[str, Any],
        *,
        default_to: str,
        test: bool,
        envelope: Mapping[str, Any] | None = None,
        raw: str = "",
        item: Any = None,
        code: int | None = None,
        text: str | None = None,
        timestamps: dict[str, datetime | None] | None = None,
    ) -> SendResult:
        """One answer (or bulk item) as a :class:`SendResult`. ``code`` and ``text``, when
        given, are the envelope's, read once for every item; ``timestamps`` keeps the
        timestamps read so far."""
        envelope = envelope or data
        stamp = data.get("timestamp")
        if timestamps is None or not isinstance(stamp, str):
            timestamp = parse_timestamp(stamp)
        elif stamp in timestamps:
            timestamp = timestamps[stamp]
        else:
            timestamp = timestamps[stamp] = parse_timestamp(stamp)
        # Every field is cleaned and bounded here, so whatever Mitto answered can be stored.
        return SendResult(
            id=read_id(data),
            to=clean_text(data.get("to"), 32) or default_to,
            timestamp=timestamp,
            response_code=(
                code if code is not None else _int_or_none(envelope.get("responsecode")) or 0
            ),
            response_text=text if text is not None else clean_text(envelope.get("responsetext")),
            text_length=_int_or_none(data.get("textlength"), 0, MAX_TEXT_LENGTH),
            parts=_int_or_none(data.get("messageparts"), 0, MAX_PARTS),
            test=_bool(data.get("test", test)),
            raw=raw,
            item=item,
        )

    # -- Mitto's other endpoints (conversion tracking, usage, the account check) ----------------

    def mark_converted(self, message_id: str) -> None:
        """Tell Mitto that the recipient of a message converted (``POST /sms/converted``).

        Mitto answers 200; 400 when conversion tracking is not enabled for the account, 404
        for an id it does not know, 429 when asked too often. Each refusal raises
        :class:`MittoAPIError` (``status_code`` says which; 429 is ``retryable``).
        """
        message_id = str(message_id or "").strip()
        if not message_id:
            raise ValueError("mark_converted() needs Mitto's message id (messageId).")
        path = "/sms/converted"
        response = self._post_plain(path, {"messageId": message_id})
        status = response.status_code
        if 200 <= status < 300:
            return
        text = _answer_text(response)
        if status == 400:
            what = (
                f"Mitto refused to mark message {message_id} as converted (HTTP 400: "
                f"{text or 'no text'}). Mitto answers 400 when conversion tracking is not "
                "enabled for the account: ask your Mitto account manager to enable it."
            )
        elif status == 404:
            what = (
                f"Mitto knows no message with id {message_id} to mark as converted "
                f"(HTTP 404: {text or 'no text'})."
            )
        elif status == 429:
            what = "Mitto answered HTTP 429 (too many requests): try again later."
        else:
            what = f"Mitto answered HTTP {status} on POST {path}: {text or 'no text'}."
        raise MittoAPIError(
            what,
            response_text=text,
            status_code=status,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    def usage(self, start: date | str, end: date | str, *, account_name: str) -> list[UsageRow]:
        """Mitto's usage per country between two dates (``POST /usage/bycountry``).

        ``account_name`` is the account name tied to the API key (Mitto requires it). Mitto's
        answer is read whether it is a list of ``{country, messagesCount, cost}`` items, an
        object keyed by country, or a single item; rows come back sorted by country, one per
        country. An item that cannot be read raises :class:`MittoAPIError` naming it.
        """
        if not str(account_name or "").strip():
            raise MittoConfigurationError(
                "Mitto's usage report needs the account name tied to the API key "
                "(MITTO_ACCOUNT_NAME); ask your Mitto account manager if you do not know it."
            )
        body = {
            "startDate": _iso_date(start, "start"),
            "endDate": _iso_date(end, "end"),
            "accountName": str(account_name).strip(),
        }
        path = "/usage/bycountry"
        response = self._post_plain(path, body)
        status = response.status_code
        if not 200 <= status < 300:
            text = _answer_text(response)
            raise MittoAPIError(
                f"Mitto answered HTTP {status} on POST {path}: {text or 'no text'}.",
                response_text=text,
                status_code=status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        try:
            data = json.loads(response.content)
        except ValueError:
            raise MittoAPIError(
                f"Mitto's usage answer is not JSON: {trim(response.text)!r}",
                response_text=trim(response.text),
                status_code=status,
            ) from None
        return parse_usage(data)

    def probe(
        self, to: str, text: str, *, sender: str, type: str = "GSM", test: bool = True
    ) -> ProbeResult:
        """Send one request to ``/sms`` (a test call unless ``test=False``) and describe it.

        Never raises for an answer: the :class:`ProbeResult` says whether Mitto was reached,
        what it answered, which fields of the answer the client understood, and the local
        address the request left from. Used by ``manage.py mitto_check``.
        """
        # test=False is left out of the body, whatever the client's test mode.
        body = self._body(to=self._number(to), text=text, sender=sender, type=type, test=bool(test))
        path = "/sms"
        url = self._url(path)
        try:
            response = self.session.post(
                url, json=body, timeout=self.timeout, allow_redirects=False, stream=True
            )
        except requests.exceptions.RequestException as exc:
            return ProbeResult(
                reached=False,
                error=MittoTransportError(
                    f"POST {path}: {exc.__class__.__name__}: {_cause(exc)}{trim(str(exc), 200)}",
                    request_sent=_may_have_been_sent(exc),
                ),
                test=test,
            )
        except ValueError as exc:  # after RequestException: InvalidURL is both
            return ProbeResult(reached=True, error=_bad_redirect(path, exc), test=test)
        local_address = _local_address(response)
        try:
            raw = response.content  # reads the body; the connection goes back to the pool
        except requests.exceptions.RequestException as exc:
            return ProbeResult(
                reached=True,
                status_code=response.status_code,
                local_address=local_address,
                error=MittoTransportError(
                    f"POST {path}: the answer was cut off ({exc.__class__.__name__}).",
                    request_sent=True,
                ),
                test=test,
            )
        fields: dict[str, str] = {}
        try:
            decoded = json.loads(raw)
        except ValueError:  # not JSON, including an empty body
            decoded = None
        if isinstance(decoded, Mapping):
            fields = {str(k): _json_type(v) for k, v in decoded.items()}
        try:
            data = self._read(path, response)
        except MittoError as exc:
            return ProbeResult(
                reached=True,
                status_code=response.status_code,
                local_address=local_address,
                fields=fields,
                error=exc,
                test=test,
            )
        if not fields:
            fields = {str(k): _json_type(v) for k, v in data.items()}
        result = self._result(data, default_to=str(to), test=bool(test))
        return ProbeResult(
            reached=True,
            status_code=response.status_code,
            local_address=local_address,
            fields=fields,
            result=result,
            test=test,
        )

    def _post_plain(self, path: str, body: dict[str, Any]) -> requests.Response:
        """POST JSON to ``path`` (no format suffix) and return the response, whatever its status.

        401 raises :class:`MittoAuthenticationError`, a failed connection
        :class:`MittoTransportError`; every other status is for the caller to read.
        """
        response = self._request(f"{self.api_url}{path}", path, body)
        if response.status_code == 401:
            raise MittoAuthenticationError(
                f"Mitto refused the API key (HTTP 401) on POST {path}: check MITTO_API_KEY and "
                "that this server's IP address is whitelisted at Mitto.",
                response_text=trim(response.text),
                status_code=401,
            )
        if 300 <= response.status_code < 400:
            raise MittoAPIError(
                f"Mitto answered HTTP {response.status_code} (a redirect) on POST {path}; set "
                "MITTO_API_URL to the final address.",
                response_text=trim(response.text),
                status_code=response.status_code,
            )
        return response


class _Answer(dict[str, Any]):
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


def _bad_redirect(path: str, exc: ValueError) -> MittoAPIError:
    """The error for an answer that redirects to an address requests cannot read: even when
    it does not follow a redirect, ``Session.send`` reads where it leads (``Response.next``),
    and a ``ValueError`` (not a ``RequestException``) escapes it."""
    return MittoAPIError(
        f"Mitto answered a redirect to an address that is not valid ({trim(str(exc), 100)}) on "
        f"POST {path}; set MITTO_API_URL to the final address.",
    )


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


def _cause(exc: BaseException) -> str:
    """The system's own words for a failed connection, such as "[Errno 111] Connection refused"
    or a DNS or certificate error, followed by ": "; ``""`` when there are none.

    requests' message puts them at the end of a long one, where a shortened message loses them.
    """
    for reason in _reasons(exc):
        if (
            isinstance(reason, OSError)
            and not isinstance(reason, requests.exceptions.RequestException)
            and reason.errno is not None
        ):
            return trim(str(reason), 120) + ": "
    return ""


def _reasons(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(item.args)
        stack.append(getattr(item, "reason", None))
        stack.append(item.__cause__)
        stack.append(item.__context__)


# -- Mitto's other endpoints: conversion tracking, usage by country, the account check ----------

#: The fields of a ``/sms`` answer the client reads (compared case-insensitively).
KNOWN_SEND_FIELDS = frozenset(
    {
        "id",
        "ids",
        "timestamp",
        "to",
        "responsecode",
        "responsetext",
        "textlength",
        "messageparts",
        "test",
    }
)


@dataclass(frozen=True)
class UsageRow:
    """Mitto's usage for one country: ISO 3166-1 alpha-3 code, messages counted and cost."""

    country: str
    messages_count: int
    cost: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class ProbeResult:
    """What one request to ``/sms`` showed (see :meth:`MittoClient.probe`)."""

    reached: bool
    status_code: int | None = None
    local_address: str = ""
    #: The answer's top-level fields as Mitto spelled them, with the JSON type of each.
    fields: dict[str, str] = field(default_factory=dict)
    result: SendResult | None = None
    error: MittoError | None = None
    test: bool = True

    @property
    def key_accepted(self) -> bool | None:
        """False on a 401, True on any other answer; None when Mitto was not reached or
        answered with a server error (which says nothing about the key)."""
        if not self.reached or self.status_code is None or self.status_code >= 500:
            return None
        return self.status_code != 401

    @property
    def unknown_fields(self) -> list[str]:
        """Fields of the answer the client does not read (an id field it could not use too)."""
        unread = [k for k in self.fields if k.lower() not in KNOWN_SEND_FIELDS]
        if self.result is not None and not self.result.id:
            unread += [k for k in self.fields if k.lower() in ("id", "ids")]
        return sorted(unread)


def _iso_date(value: date | str, name: str) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value or "").strip()
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"{name}: {value!r} is not a date (YYYY-MM-DD).")


def _answer_text(response: requests.Response) -> str:
    """The words of an answer that may be a JSON string, a JSON object or plain text."""
    raw = response.content or b""
    try:
        data = json.loads(raw) if raw.strip() else ""
    except ValueError:
        return trim(response.text)
    if isinstance(data, str):
        return trim(data)
    if isinstance(data, Mapping):
        lowered = _lower_keys(data)
        for key in ("responsetext", "message", "error", "detail"):
            if lowered.get(key):
                return trim(str(lowered[key]))
    return trim(response.text)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"cost {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"cost {value!r} is not a number")
    return number


def _usage_row(country: Any, item: Any) -> UsageRow:
    if isinstance(item, Mapping):
        data = _lower_keys(item)
        country = data.get("country", country)
        count = data.get("messagescount", data.get("messages", data.get("count")))
        cost = data.get("cost")
        currency = str(data.get("currency") or "")
    else:  # {"CHE": 12}: a bare count
        count, cost, currency = item, None, ""
    code = str(country or "").strip().upper()
    if not code:
        raise ValueError("an item has no country")
    number = _int_or_none(count)
    if number is None:
        raise ValueError(f"{code}: messagesCount {count!r} is not a whole number")
    return UsageRow(country=code, messages_count=number, cost=_decimal(cost), currency=currency)


#: Top-level keys of a usage answer that are not countries.
_USAGE_META_KEYS = frozenset({"responsecode", "responsetext", "test", "currency", "timestamp"})


def parse_usage(data: Any) -> list[UsageRow]:
    """Read Mitto's ``/usage/bycountry`` answer into one :class:`UsageRow` per country.

    Accepted shapes: a list of ``{"country", "messagesCount", "cost"}`` items; an object keyed
    by country (``{"CHE": {"messagesCount": "3", "cost": "0.21"}}``); a single item; and any of
    these under one wrapping key (``{"usage": [...]}``). Keys are case-insensitive, numbers may
    be strings. A country listed twice is summed, with the currency either item names (two
    different currencies are refused). Raises :class:`MittoAPIError` for an answer
    that fits none of these, naming what could not be read.
    """
    items: list[tuple[Any, Any]]
    if isinstance(data, Mapping):
        lowered = _lower_keys(data)
        code = _int_or_none(lowered.get("responsecode"))
        if code not in (None, 0):
            raise MittoAPIError(
                f"Mitto refused the usage request: responseCode {code} "
                f"({lowered.get('responsetext') or 'no text'}).",
                response_code=code,
                response_text=str(lowered.get("responsetext") or ""),
            )
        if "country" in lowered:
            return parse_usage([data])
        entries = {
            key: value for key, value in data.items() if str(key).lower() not in _USAGE_META_KEYS
        }
        if len(entries) == 1:
            ((key, value),) = entries.items()
            # A wrapper ({"usage": [...]}): country keys have two or three letters.
            if len(str(key)) > 3 and isinstance(value, (list, Mapping)):
                return parse_usage(value)
        items = list(entries.items())
    elif isinstance(data, list):
        items = [(None, item) for item in data]
    else:
        raise MittoAPIError(
            f"Mitto's usage answer is neither a list nor an object: {trim(repr(data))}"
        )
    rows: dict[str, UsageRow] = {}
    for key, item in items:
        try:
            row = _usage_row(key, item)
        except ValueError as exc:
            raise MittoAPIError(
                f"Mitto's usage answer has an item that cannot be read ({exc}): {trim(repr(item))}"
            ) from None
        if row.country in rows:
            old = rows[row.country]
            if old.currency and row.currency and old.currency != row.currency:
                raise MittoAPIError(
                    f"Mitto's usage answer lists {row.country} twice with costs in two "
                    f"currencies ({old.currency} and {row.currency}): they cannot be added."
                )
            cost = (
                None
                if old.cost is None and row.cost is None
                else (old.cost or Decimal(0)) + (row.cost or Decimal(0))
            )
            row = UsageRow(
                row.country,
                old.messages_count + row.messages_count,
                cost,
                old.currency or row.currency,
            )
        rows[row.country] = row
    return [rows[c] for c in sorted(rows)]


def _json_type(value: Any) -> str:
    """The JSON type of a decoded value, as the account check names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _local_address(response: requests.Response) -> str:
    """The local ``address:port`` the request left from, when urllib3 still holds the socket."""
    # urllib3's (1.26 and 2.x) response keeps its connection there; any other has none.
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return ""
    try:
        host, port = sock.getsockname()[:2]
    except (OSError, ValueError, TypeError):
        return ""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
