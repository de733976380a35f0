"""HTTP side of the django-mitto sandbox: a threaded HTTP/1.1 server with keep-alive.

Endpoints (paths are case-insensitive; a ``/v2`` prefix and a trailing slash
are tolerated):

``POST /sms``, ``/sms.json``, ``/sms.xml``
    Send one SMS.
``POST /smsbulk``, ``/smsbulk.json``, ``/smsbulk.xml``
    Send one SMS to many recipients (``to`` as a JSON array or a
    comma-separated string); one message, with its own id, per recipient.
``GET /_sandbox/messages``, ``GET /_sandbox/reports``
    Accepted messages and the callbacks made, as JSON lists: the last ``keep`` of each
    (``--keep``, default 10,000; the oldest are dropped).
``GET /_sandbox/messages?since=<seq or id>&limit=<n>``
    One page of the messages kept, oldest first: those after the record with that ``seq``
    (0: from the oldest) or id, at most ``limit`` (default 100, at most 1000). Answers
    ``{"messages": [...], "next": N or null, "last": N, "oldest": N or null, "dropped": N}``:
    ask ``?since=<next>`` for the next page; ``next`` is null on the last page, and
    ``?since=<last>`` later gives what came in since. A bad ``since`` or ``limit`` gets 400
    with ``{"error": "...", "parameter": "since"}`` (or ``"limit"``).
``POST /_sandbox/reset``
    Forget messages, reports, faults and pending reports.
``GET|POST|DELETE /_sandbox/faults``
    List, add (JSON ``{"kind": ..., "recipient": ..., "times": ..., "seconds": ...,
    "retry_after": ...}``, answers 201) or clear faults.
``GET|POST|PATCH /_sandbox/settings``
    Read or change the report settings, ``reply_shape`` and ``answer_counts`` (never the API
    key).

An accepted message's id is ``"id": "..."``, or ``"ids": ["..."]`` when the
sandbox's ``reply_shape`` is ``ids`` (in single answers and in bulk items alike).
Answers and bulk items also give ``textLength`` and ``messageParts``, unless
``answer_counts`` is false (Mitto's documentation promises neither).
Answers use JSON unless the path ends in ``.xml`` or the query string has
``format=xml``; the XML root is ``<response>`` with one child per JSON key,
and a bulk answer's items are ``<messages><message>...</message></messages>``.

HTTP statuses:

* 200 only for ``responseCode`` 0.
* 400 for Mitto's validation codes 2-8, with ``{"responseCode": N,
  "responseText": "..."}`` (see :mod:`django_mitto.sandbox.validation`). A
  body that is not a JSON object also gets 400, with ``responseCode`` 400.
* 401 for a missing or wrong ``X-Mitto-API-Key``, with ``{"responseCode": 401,
  "responseText": "Invalid or no API Key specified"}`` (Mitto documents the
  401 status and this text, not the body; the sandbox reuses the HTTP status
  as ``responseCode`` so that it cannot be mistaken for a Mitto code).
* 404 and 405 (with ``Allow``) likewise carry the HTTP status as
  ``responseCode``; 413 for a body over 1 MiB.
* 500, 503 and 429 only when a fault asks for them (see
  :mod:`django_mitto.sandbox.faults`), and 500 with ``responseCode`` 1
  ("Internal error") if the sandbox itself fails.

Faults are applied before the API key is checked. ``/_sandbox/*`` needs no
API key: never expose the sandbox publicly (it binds 127.0.0.1 by default).

The request parser is deliberately small (request line, headers into a dict,
``Content-Length`` or chunked body, ``Expect: 100-continue``) to keep the hot
path fast; every answer has a ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as _xml_escape

from django_mitto import __version__
from django_mitto.sandbox import extras as _extras
from django_mitto.sandbox import faults as _faults
from django_mitto.sandbox import inbound as _inbound
from django_mitto.sandbox.records import DEFAULT_PAGE_SIZE, PageError
from django_mitto.sandbox.validation import (
    RESPONSE_TEXTS,
    ValidationFailure,
    recipients_for_faults,
    validate,
)

if TYPE_CHECKING:
    from django_mitto.sandbox.core import Sandbox

__all__ = ["SandboxHTTPServer", "SandboxRequestHandler", "to_xml"]

MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 1 << 20

INVALID_KEY_TEXT = "Invalid or no API Key specified"

#: API paths: (bulk, format fixed by the suffix or None).
API_ROUTES: dict[str, tuple[bool, str | None]] = {
    "/sms": (False, None),
    "/sms.json": (False, "json"),
    "/sms.xml": (False, "xml"),
    "/smsbulk": (True, None),
    "/smsbulk.json": (True, "json"),
    "/smsbulk.xml": (True, "xml"),
}

_STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("ascii")
    for status in HTTPStatus
}
_SERVER_HEADER = f"Server: django-mitto-sandbox/{__version__}\r\n".encode("ascii")
_JSON_TYPE = b"application/json; charset=utf-8"
_XML_TYPE = b"application/xml; charset=utf-8"
_TEXT_TYPE = b"text/plain; charset=utf-8"
_LINGER_RESET = struct.pack("ii", 1, 0)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    global _date
    now = int(time.time())
    cached = _date
    if cached[0] != now:
        cached = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
        _date = cached
    return cached[1]


def _xml_scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return _xml_escape(str(value))


def _xml_fields(obj: dict[str, Any], out: list[str]) -> None:
    for key, value in obj.items():
        if isinstance(value, list):
            child = key[:-1] if key.endswith("s") and len(key) > 1 else "item"
            out.append(f"<{key}>")
            for item in value:
                out.append(f"<{child}>")
                if isinstance(item, dict):
                    _xml_fields(item, out)
                else:
                    out.append(_xml_scalar(item))
                out.append(f"</{child}>")
            out.append(f"</{key}>")
        elif isinstance(value, dict):
            out.append(f"<{key}>")
            _xml_fields(value, out)
            out.append(f"</{key}>")
        else:
            out.append(f"<{key}>{_xml_scalar(value)}</{key}>")


def to_xml(payload: dict[str, Any]) -> bytes:
    """Render an answer as XML: ``<response>`` with one child per key."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<response>']
    _xml_fields(payload, out)
    out.append("</response>")
    return "".join(out).encode("utf-8")


def _query_format(query: str) -> str:
    if not query:
        return "json"
    values = urllib.parse.parse_qs(query).get("format")
    if values and values[-1].strip().lower() == "xml":
        return "xml"
    return "json"


def _is_number(text: str) -> bool:
    """Whether a query-string value is a whole number written with ASCII digits."""
    return text.isascii() and text.isdigit()


class _Problem(Exception):
    """A request that cannot be handled; answered as plain text, then the connection closes."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server: one daemon thread per connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stop_requested = False
        self._stopped = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, SandboxRequestHandler)
        except BaseException:
            self._wake_reader.close()
            self._wake_writer.close()
            raise

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving` (which returns at once, unlike
        ``shutdown()`` with its polling interval)."""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                while not self._stop_requested:
                    ready = selector.select()
                    if self._stop_requested:
                        break
                    if any(key.fileobj is self.socket for key, _ in ready):
                        self._accept_one()
        finally:
            self._stopped.set()

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

    def stop_serving(self, timeout: float = 5.0) -> None:
        """Make :meth:`serve` return and wait for it."""
        self._stop_requested = True
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its socket.getfqdn() may do a slow DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection (used when the sandbox stops)."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class SandboxRequestHandler(socketserver.StreamRequestHandler):
    """Parses HTTP/1.1 requests on one connection and answers them."""

    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    _method = ""
    _path = ""
    _http10 = False
    _code: int | None = None

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.untrack(self.connection)

    def handle(self) -> None:
        try:
            while self.handle_one_request():
                pass
        except (OSError, ValueError):
            # Client went away, or stop() shut the socket down.
            pass

    # -- parsing ---------------------------------------------------------------------------

    def handle_one_request(self) -> bool:
        """Handle one request; return True to keep the connection open."""
        rfile = self.rfile
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):  # a stray empty line between requests is allowed
            line = rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        self._method = self._path = ""
        self._http10 = False
        self._code = None
        if len(line) > MAX_LINE:
            return self._send_text(414, "Request line too long", False)
        words = line.split()
        if len(words) != 3:
            return self._send_text(400, "Bad request line", False)
        method_b, target_b, version = words
        if version == b"HTTP/1.1":
            keep_alive = True
        elif version == b"HTTP/1.0":
            keep_alive = False
            self._http10 = True
        else:
            return self._send_text(505, "HTTP version not supported", False)

        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            raw = rfile.readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                return False
            if len(raw) > MAX_LINE:
                return self._send_text(431, "Header line too long", False)
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                return self._send_text(400, "Bad header line", False)
            headers[name.strip().lower()] = value.strip()
        else:
            return self._send_text(431, "Too many headers", False)

        connection = headers.get("connection")
        if connection is not None:
            tokens = connection.lower()
            if "close" in tokens:
                keep_alive = False
            elif "keep-alive" in tokens:
                keep_alive = True

        method = self._method = method_b.decode("latin-1")
        target = target_b.decode("latin-1")
        if target.startswith(("http://", "https://")):  # absolute form
            split = urllib.parse.urlsplit(target)
            target = split.path + ("?" + split.query if split.query else "")
        path, _, query = target.partition("?")
        self._path = path
        key = path.lower().rstrip("/") or "/"
        if key.startswith("/v2/"):
            key = key[3:]

        try:
            route = API_ROUTES.get(key)
            if route is not None:
                keep = self._api(method, key, query, headers, keep_alive, *route)
                _inbound.after_send(self.server.sandbox)
                return keep
            body = self._read_body(headers)
            if key in _inbound.ROUTES:
                return _inbound.handle(self, method, key, body, headers, keep_alive)
            if key in _extras.ROUTES:
                return _extras.handle(self, method, key, body, headers, keep_alive)
            if key == "/_sandbox" or key.startswith("/_sandbox/"):
                return self._control(method, key[len("/_sandbox") :], query, body, keep_alive)
            payload = {"responseCode": 404, "responseText": "Not found"}
            return self._reply(404, payload, "json", keep_alive)
        except _Problem as problem:
            return self._send_text(problem.status, problem.text, False)
        except OSError:
            raise
        except Exception:
            traceback.print_exc()
            payload = {"responseCode": 1, "responseText": RESPONSE_TEXTS[1]}
            return self._reply(500, payload, "json", False)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        encoding = headers.get("transfer-encoding")
        if encoding is not None and encoding.lower() != "identity":
            if "chunked" not in encoding.lower():
                raise _Problem(501, "Transfer-Encoding not supported")
            self._continue(headers)
            return self._read_chunked()
        length = headers.get("content-length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _Problem(400, "Invalid Content-Length") from None
        if size < 0:
            raise _Problem(400, "Invalid Content-Length")
        if size > MAX_BODY:
            raise _Problem(413, "Request body too large")
        if size == 0:
            return b""
        self._continue(headers)
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionAbortedError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        rfile = self.rfile
        chunks: list[bytes] = []
        total = 0
        while True:
            line = rfile.readline(MAX_LINE + 1)
            if not line:
                raise ConnectionAbortedError("client closed the connection mid-body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Problem(400, "Invalid chunk size") from None
            if size == 0:
                while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _Problem(413, "Request body too large")
            chunks.append(rfile.read(size))
            rfile.readline(MAX_LINE + 1)

    def _continue(self, headers: dict[str, str]) -> None:
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and not self._http10:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- the Mitto API ---------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        keep_alive: bool,
        bulk: bool,
        fmt: str | None,
    ) -> bool:
        sandbox = self.server.sandbox
        if fmt is None:
            fmt = _query_format(query)
        faults = sandbox.faults
        if faults.active and faults.take_early_reset() is not None:
            return self._reset()
        body = self._read_body(headers)
        if method != "POST":
            payload = {"responseCode": 405, "responseText": "Method not allowed"}
            return self._reply(405, payload, fmt, keep_alive, b"Allow: POST\r\n")
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        lost: _faults.Fault | None = None
        if faults.active:
            latency, fault = faults.take(recipients_for_faults(data))
            if latency:
                sandbox.stopping.wait(latency)
            if fault is not None and fault.kind == _faults.TIMEOUT:
                # Mitto got the request and acted on it; only the answer is lost.
                lost = fault
            elif fault is not None:
                return self._apply_fault(fault, fmt, keep_alive)
        status, payload = self._process(path, fmt, data, headers, bulk)
        if lost is not None:
            sandbox.stopping.wait(lost.seconds)
            return False
        return self._reply(status, payload, fmt, keep_alive)

    def _process(
        self, path: str, fmt: str, data: Any, headers: dict[str, str], bulk: bool
    ) -> tuple[int, dict[str, Any]]:
        """Check, validate and accept one API request; return the HTTP status and the answer."""
        sandbox = self.server.sandbox
        api_key = sandbox.api_key
        if api_key is not None and headers.get("x-mitto-api-key") != api_key:
            return 401, {"responseCode": 401, "responseText": INVALID_KEY_TEXT}
        if not isinstance(data, dict):
            return 400, {"responseCode": 400, "responseText": "The body must be a JSON object"}
        try:
            ok = validate(data, bulk)
        except ValidationFailure as failure:
            return 400, {"responseCode": failure.code, "responseText": failure.text}
        items = sandbox.accept(path, fmt, bulk, data, ok)
        counts = sandbox.answer_counts
        if bulk:
            if counts:
                for item in items:
                    item["textLength"] = ok.characters
                    item["messageParts"] = ok.parts
            payload = {"responseCode": 0, "responseText": "SMS sent", "messages": items}
        else:
            payload = items[0]
            payload["responseCode"] = 0
            payload["responseText"] = "SMS sent"
            if counts:
                payload["textLength"] = ok.characters
                payload["messageParts"] = ok.parts
        if ok.test:
            payload["test"] = True
        return 200, payload

    def _apply_fault(self, fault: _faults.Fault, fmt: str, keep_alive: bool) -> bool:
        kind = fault.kind
        if kind == _faults.RESET:
            return self._reset()
        if kind == _faults.TIMEOUT:
            self.server.sandbox.stopping.wait(fault.seconds)
            return False
        if kind == _faults.ERROR_500:
            payload = {"responseCode": 1, "responseText": RESPONSE_TEXTS[1]}
            return self._reply(500, payload, fmt, keep_alive)
        if kind == _faults.ERROR_503:
            return self._send_text(503, "Service Unavailable", keep_alive)
        retry = f"Retry-After: {fault.retry_after}\r\n".encode("ascii")
        return self._send_text(429, "Too Many Requests", keep_alive, retry)

    def _reset(self) -> bool:
        """Abort the connection with an RST, without answering."""
        connection = self.connection
        try:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.rfile.close()
            connection.close()
        except OSError:
            pass
        return False

    # -- control endpoints -----------------------------------------------------------------

    def _control(self, method: str, name: str, query: str, body: bytes, keep_alive: bool) -> bool:
        sandbox = self.server.sandbox
        allowed: str
        if name == "/messages":
            allowed = "GET"
            if method == "GET":
                return self._messages(query, keep_alive)
        elif name == "/reports":
            allowed = "GET"
            if method == "GET":
                return self._send_json(200, sandbox.reports, keep_alive)
        elif name == "/reset":
            allowed = "POST"
            if method == "POST":
                sandbox.reset()
                return self._send_json(200, {"reset": True}, keep_alive)
        elif name == "/faults":
            allowed = "GET, POST, DELETE"
            if method == "GET":
                return self._send_json(200, sandbox.faults.snapshot(), keep_alive)
            if method == "DELETE":
                return self._send_json(200, {"cleared": sandbox.faults.clear()}, keep_alive)
            if method == "POST":
                return self._add_fault(body, keep_alive)
        elif name == "/settings":
            allowed = "GET, POST, PATCH"
            if method == "GET":
                return self._send_json(200, sandbox.settings(), keep_alive)
            if method in ("POST", "PATCH"):
                try:
                    values = self._json_object(body)
                    settings = sandbox.update_settings(values)
                except (TypeError, ValueError) as exc:
                    return self._send_json(400, {"error": str(exc)}, keep_alive)
                return self._send_json(200, settings, keep_alive)
        else:
            return self._send_json(404, {"error": f"Unknown sandbox endpoint {name!r}"}, keep_alive)
        extra = f"Allow: {allowed}\r\n".encode("ascii")
        return self._send_json(405, {"error": f"Use {allowed}"}, keep_alive, extra)

    def _messages(self, query: str, keep_alive: bool) -> bool:
        """``GET /_sandbox/messages``: every record kept as a list, or, with ``since`` or
        ``limit`` in the query string, one page of them (see :meth:`Sandbox.messages_page`)."""
        sandbox = self.server.sandbox
        params = urllib.parse.parse_qs(query, keep_blank_values=True) if query else {}
        if "since" not in params and "limit" not in params:
            return self._send_json(200, sandbox.messages, keep_alive)
        since: int | str | None = None
        limit = DEFAULT_PAGE_SIZE
        try:
            if "limit" in params:
                text = params["limit"][-1].strip()
                if not _is_number(text):
                    raise PageError("limit", f"limit must be a whole number, not {text!r}")
                limit = int(text)
            if "since" in params:
                text = params["since"][-1].strip()
                if not text:
                    raise PageError(
                        "since", "since must be a sequence number (0 or more) or a message id"
                    )
                since = int(text) if _is_number(text) else text
            page = sandbox.messages_page(since, limit)
        except PageError as exc:
            return self._send_json(400, {"error": str(exc), "parameter": exc.parameter}, keep_alive)
        return self._send_json(200, page, keep_alive)

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            raise ValueError("The body must be a JSON object") from None
        if not isinstance(data, dict):
            raise ValueError("The body must be a JSON object")
        return data

    def _add_fault(self, body: bytes, keep_alive: bool) -> bool:
        try:
            data = self._json_object(body)
            unknown = sorted(set(data) - {"kind", "recipient", "times", "seconds", "retry_after"})
            if unknown:
                raise ValueError(f"Unknown field(s): {', '.join(unknown)}")
            if "kind" not in data:
                raise ValueError("'kind' is required")
            fault = self.server.sandbox.add_fault(
                data["kind"],
                recipient=data.get("recipient"),
                times=data.get("times"),
                seconds=data.get("seconds"),
                retry_after=data.get("retry_after"),
            )
        except (TypeError, ValueError) as exc:
            return self._send_json(400, {"error": str(exc)}, keep_alive)
        return self._send_json(201, fault.as_dict(), keep_alive)

    # -- writing ---------------------------------------------------------------------------

    def _reply(
        self, status: int, payload: dict[str, Any], fmt: str, keep_alive: bool, extra: bytes = b""
    ) -> bool:
        """Answer an API request in JSON or XML."""
        self._code = payload.get("responseCode")
        if fmt == "xml":
            return self._send(status, to_xml(payload), _XML_TYPE, keep_alive, extra)
        return self._send(status, _dumps(payload).encode("utf-8"), _JSON_TYPE, keep_alive, extra)

    def _send_json(self, status: int, data: Any, keep_alive: bool, extra: bytes = b"") -> bool:
        return self._send(status, _dumps(data).encode("utf-8"), _JSON_TYPE, keep_alive, extra)

    def _send_text(self, status: int, text: str, keep_alive: bool, extra: bytes = b"") -> bool:
        return self._send(status, text.encode("utf-8"), _TEXT_TYPE, keep_alive, extra)

    def _send(
        self, status: int, body: bytes, content_type: bytes, keep_alive: bool, extra: bytes = b""
    ) -> bool:
        if not keep_alive:
            extra += b"Connection: close\r\n"
        elif self._http10:
            extra += b"Connection: keep-alive\r\n"
        if self.server.sandbox.log_requests:
            # Logged before answering, so that the line is there once the client has its answer.
            code = "" if self._code is None else f" responseCode={self._code}"
            sys.stderr.write(
                f'{self.client_address[0]} "{self._method} {self._path}" {status}{code}\n'
            )
        self.wfile.write(
            b"%s%sDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
            % (
                _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status,
                _SERVER_HEADER,
                _http_date(),
                content_type,
                len(body),
                extra,
                body,
            )
        )
        return keep_alive
