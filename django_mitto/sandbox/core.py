"""The :class:`Sandbox`: configuration, recorded messages, faults and reports."""

from __future__ import annotations

import copy
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from django_mitto.sandbox import faults as _faults
from django_mitto.sandbox import reports as _reports
from django_mitto.sandbox.records import (
    DEFAULT_KEEP,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MessageLog,
    MessageRecord,
    PageError,
    SharedRequest,
)
from django_mitto.sandbox.validation import Accepted

__all__ = ["REPLY_SHAPES", "Sandbox", "mitto_timestamp"]

#: Settings that ``/_sandbox/settings`` may read and change (never the API key).
SETTINGS: tuple[str, ...] = (
    "callback_url",
    "callback_method",
    "callback_template",
    "report_delay",
    "report_test_messages",
    "intermediate",
    "duplicate_reports",
    "reorder_reports",
    "mcc",
    "mnc",
    "status_words",
    "reply_shape",
    "answer_counts",
)

#: How an accepted message's id is given: ``"id": "..."`` (real traffic) or
#: ``"ids": ["..."]`` (the typical answer in Mitto's API overview).
REPLY_SHAPES: tuple[str, ...] = ("id", "ids")


def mitto_timestamp(ns: int | None = None) -> str:
    """Format a UTC time like Mitto: ``2019-04-13T17:51:06.3091182Z`` (7 fractional digits)."""
    if ns is None:
        ns = time.time_ns()
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 100:07d}Z"


class Sandbox:
    """A local Mitto-compatible SMS gateway for development and tests.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Sandbox(callback_url="http://127.0.0.1:8000/mitto/dlr/", report_delay=0) as sb:
            requests.post(sb.url + "/sms", json={...}, headers={"X-Mitto-API-Key": sb.api_key})
            sb.wait_for_reports(1)

    Every setting is a plain attribute that may be changed while the sandbox
    runs (``sb.callback_url = ...``, ``sb.report_delay = 0``); the callback
    settings are read when a message is accepted. ``api_key=None`` turns the
    key check off.

    Keyword-only extras: ``status_words`` (replace status words, keyed by
    ``delivered``/``undelivered``/``expired``/``rejected``/``buffered``),
    ``log_requests`` (one line per request on stderr), ``max_retries`` and
    ``retry_backoff`` (retries of a failed callback, backoff doubling from
    ``retry_backoff`` seconds), ``callback_timeout`` (seconds per callback) and
    ``report_workers`` (threads making callbacks), ``reply_shape`` (``"id"``, the default:
    answers carry ``"id": "..."``; ``"ids"``: they carry ``"ids": ["..."]`` instead, single
    answers and bulk items alike), ``keep`` (how many message records, and how many callback
    attempts, are kept: the oldest beyond that are dropped; default 10,000), ``answer_counts``
    (``True``, the default: answers and bulk items carry ``textLength`` and ``messageParts``;
    ``False``: they leave both out, as an answer of Mitto may: its documentation promises
    neither).

    A request's body and the options its recipients share are stored once per request, however
    many recipients it has; each recipient adds only a small record that refers to them. A
    delivery report due for a record already dropped is still sent, and listed in
    :attr:`reports`; only the record is gone from :attr:`messages`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = "sandbox-key",
        callback_url: str | None = None,
        callback_method: str = "POST",
        callback_template: str | None = None,
        report_delay: float = 1.0,
        report_test_messages: bool = False,
        intermediate: bool = False,
        duplicate_reports: bool = False,
        reorder_reports: bool = False,
        mcc: str = "228",
        mnc: str = "01",
        *,
        status_words: Mapping[str, str] | None = None,
        log_requests: bool = False,
        max_retries: int = 3,
        retry_backoff: float = 0.2,
        callback_timeout: float = 5.0,
        report_workers: int = 4,
        reply_shape: str = "id",
        keep: int = DEFAULT_KEEP,
        answer_counts: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.callback_url = callback_url
        self.callback_method = callback_method
        self.callback_template = callback_template
        self.report_delay = report_delay
        self.report_test_messages = report_test_messages
        self.intermediate = intermediate
        self.duplicate_reports = duplicate_reports
        self.reorder_reports = reorder_reports
        self.mcc = mcc
        self.mnc = mnc
        self.status_words = status_words
        self.log_requests = log_requests
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.callback_timeout = callback_timeout
        self.reply_shape = reply_shape
        self.answer_counts = answer_counts

        self._lock = threading.Lock()
        self._reports_changed = threading.Condition(self._lock)
        self._messages = MessageLog(keep)
        self._reports: deque[dict[str, Any]] = deque(maxlen=keep)
        self._successes = 0
        self._generation = 0
        self.faults = _faults.FaultSet()
        self.stopping = threading.Event()
        self._dispatcher = _reports.ReportDispatcher(self._deliver, workers=report_workers)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- settings ---------------------------------------------------------------------------

    @property
    def callback_method(self) -> str:
        """``GET`` or ``POST``."""
        return self._callback_method

    @callback_method.setter
    def callback_method(self, value: str) -> None:
        method = str(value).strip().upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"callback_method must be GET or POST, not {value!r}")
        self._callback_method = method

    @property
    def keep(self) -> int:
        """How many message records (and callback attempts) are kept; set when created."""
        return self._messages.keep

    @property
    def reply_shape(self) -> str:
        """``id`` or ``ids``: how answers give each message's id."""
        return self._reply_shape

    @reply_shape.setter
    def reply_shape(self, value: str) -> None:
        shape = str(value).strip().lower()
        if shape not in REPLY_SHAPES:
            raise ValueError(f"reply_shape must be one of {', '.join(REPLY_SHAPES)}, not {value!r}")
        self._reply_shape = shape

    @property
    def answer_counts(self) -> bool:
        """Whether answers give ``textLength`` and ``messageParts``."""
        return self._answer_counts

    @answer_counts.setter
    def answer_counts(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"answer_counts must be true or false, not {value!r}")
        self._answer_counts = value

    @property
    def status_words(self) -> dict[str, str]:
        """Status words by status name (a copy; assign a mapping to change them)."""
        return dict(self._status_words)

    @status_words.setter
    def status_words(self, value: Mapping[str, str] | None) -> None:
        if value is not None and not isinstance(value, Mapping):
            raise TypeError("status_words must be a mapping of status name to word")
        words = dict(_reports.DEFAULT_STATUS_WORDS)
        for key, word in (value or {}).items():
            if key not in words:
                allowed = ", ".join(words)
                raise ValueError(f"Unknown status {key!r} in status_words. Known: {allowed}.")
            words[key] = str(word)
        self._status_words = words

    @property
    def report_delay(self) -> float:
        """Seconds between accepting a message and its first delivery report."""
        return self._report_delay

    @report_delay.setter
    def report_delay(self, value: float) -> None:
        delay = float(value)
        if delay < 0:
            raise ValueError("report_delay must not be negative")
        self._report_delay = delay

    def settings(self) -> dict[str, Any]:
        """Return the settings that ``/_sandbox/settings`` exposes."""
        return {name: getattr(self, name) for name in SETTINGS}

    def update_settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change several settings at once (unknown names raise ``ValueError``)."""
        unknown = sorted(set(values) - set(SETTINGS))
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(unknown)}")
        for name, value in values.items():
            setattr(self, name, value)
        return self.settings()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (available once started)."""
        if self._server is None:
            raise RuntimeError("The sandbox is not running: call start() or use a with block.")
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Sandbox:
        """Bind the port and serve in a background thread. Returns the sandbox."""
        from django_mitto.sandbox.server import SandboxHTTPServer

        if self._server is not None:
            raise RuntimeError("The sandbox is already running.")
        self.stopping.clear()
        server = SandboxHTTPServer((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._dispatcher.start()
        self._thread = threading.Thread(
            target=server.serve, name="mitto-sandbox-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and drop pending reports."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self.stopping.set()
        server.stop_serving()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(5)
        self._dispatcher.stop()
        self._server = None
        self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not running"
        return f"<Sandbox {where}>"

    # -- inspection -------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A snapshot of the accepted messages kept (one per recipient), oldest first."""
        with self._lock:
            return copy.deepcopy([record.as_dict() for record in self._messages])

    def messages_page(
        self, since: int | str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> dict[str, Any]:
        """One page of the accepted messages kept, oldest first: those after ``since``.

        ``since`` is a sequence number (a record's ``seq``; 0 or None: from the oldest kept)
        or a message id kept; ``limit`` is 1 to :data:`MAX_PAGE_SIZE` (default
        :data:`DEFAULT_PAGE_SIZE`). Returns ``{"messages": [...], "next": ..., "last": ...,
        "oldest": ..., "dropped": ...}``: ``next`` is the ``since`` of the next page, or None
        when no more records are kept after this page; ``last`` is the ``seq`` of the last
        record on the page (``since`` when the page is empty): the ``since`` that asks later
        for the records accepted after this page; ``oldest`` the ``seq`` of the oldest record
        kept (None when none is); ``dropped`` how many records were dropped to stay within
        ``keep`` (since the start or the last reset).

        Raises :class:`~django_mitto.sandbox.records.PageError` (a ``ValueError``; its
        ``parameter`` is ``"since"`` or ``"limit"``) for a bad ``since`` or ``limit``: not a
        number, out of range, a sequence number not given yet (a cursor from another run of the
        sandbox), or an id not kept (unknown, or dropped already).
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise PageError("limit", "limit must be a whole number")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise PageError("limit", f"limit must be between 1 and {MAX_PAGE_SIZE}")
        with self._lock:
            log = self._messages
            if since is None:
                after = 0
            elif isinstance(since, str):
                found = log.find(since)
                if found is None:
                    raise PageError(
                        "since",
                        f"since: {since!r} is neither a sequence number nor the id of a "
                        "message kept",
                    )
                after = found.seq
            elif isinstance(since, bool) or not isinstance(since, int) or since < 0:
                raise PageError(
                    "since", "since must be a sequence number (0 or more) or a message id"
                )
            elif since > log.last_seq:
                raise PageError(
                    "since",
                    f"since: no message has the sequence number {since} yet "
                    f"(the newest is {log.last_seq})",
                )
            else:
                after = since
            page = log.after(after, limit + 1)
            more = len(page) > limit
            page = page[:limit]
            result = {
                "messages": copy.deepcopy([record.as_dict() for record in page]),
                "next": page[-1].seq if more else None,
                "last": page[-1].seq if page else after,
                "oldest": log.oldest_seq,
                "dropped": log.dropped,
            }
        return result

    @property
    def reports(self) -> list[dict[str, Any]]:
        """A snapshot of the callback attempts kept (the last ``keep``), successful or not,
        oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._reports))

    def wait_for_reports(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least ``n`` callbacks were answered with a 2xx status.

        Returns the successful callbacks. Raises ``TimeoutError`` describing
        what happened instead.
        """
        deadline = time.monotonic() + timeout
        with self._reports_changed:
            while self._successes < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(self._describe_wait(n, timeout))
                self._reports_changed.wait(left)
            return [copy.deepcopy(r) for r in self._reports if r["ok"]]

    def _describe_wait(self, n: int, timeout: float) -> str:
        failed = [r for r in self._reports if not r["ok"]]
        without_url = sum(1 for m in self._messages if m.request.callback_url is None)
        skipped_test = sum(
            1
            for m in self._messages
            if m.request.test and m.request.callback_url and not m.request.reported
        )
        parts = [
            f"expected {n} successful delivery report(s) within {timeout:g}s, "
            f"got {self._successes}",
            f"{len(self._messages)} message(s) accepted (kept)",
            f"{len(self._reports)} callback attempt(s), {len(failed)} failed",
        ]
        if failed:
            last = failed[-1]
            parts.append(f"last failure: {last['method']} {last['url']} -> {last['error']}")
        if without_url:
            parts.append(f"{without_url} message(s) had no callback URL (set callback_url)")
        if skipped_test:
            parts.append(
                f"{skipped_test} test message(s) got no report (set report_test_messages=True)"
            )
        return "; ".join(parts)

    def reset(self) -> None:
        """Forget messages, reports and faults, and drop pending reports."""
        with self._lock:
            self._generation += 1
            self._messages.clear()
            self._reports.clear()
            self._successes = 0
        self._dispatcher.clear()
        self.faults.clear()

    # -- faults -----------------------------------------------------------------------------

    def add_fault(
        self,
        kind: str | int,
        *,
        recipient: str | None = None,
        times: int | None = None,
        seconds: float | None = None,
        retry_after: int | None = None,
    ) -> _faults.Fault:
        """Inject a fault into ``/sms`` and ``/smsbulk`` answers.

        ``kind`` is one of ``latency``, ``error_500``, ``error_503``,
        ``rate_limit``, ``reset``, ``timeout`` (or ``500``, ``503``, ``429``).
        ``recipient=None`` means every request, ``times=None`` forever.
        ``seconds`` is the latency or the timeout wait (defaults 1.0 and
        10.0), ``retry_after`` the ``Retry-After`` value of a 429 (default 1).
        """
        fault = _faults.make_fault(
            kind, recipient=recipient, times=times, seconds=seconds, retry_after=retry_after
        )
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.faults.clear()

    # -- used by the request handler -------------------------------------------------------

    def accept(
        self, path: str, fmt: str, bulk: bool, body: dict[str, Any], ok: Accepted
    ) -> list[dict[str, Any]]:
        """Record an accepted request, schedule its reports, return the response items."""
        callback_url = ok.callback or self.callback_url
        report = callback_url is not None and (not ok.test or self.report_test_messages)
        method = self._callback_method
        template = self.callback_template or (
            _reports.DEFAULT_GET_TEMPLATE if method == "GET" else _reports.DEFAULT_POST_TEMPLATE
        )
        words = self._status_words
        delay = self._report_delay
        shared = SharedRequest(
            path=path,
            format=fmt,
            bulk=bulk,
            body=body,
            test=ok.test,
            encoding=ok.encoding,
            text_length=ok.characters,
            message_parts=ok.parts,
            reference=ok.reference,
            callback_url=callback_url,
            callback_method=method if callback_url else None,
            reported=report,
        )
        items: list[dict[str, Any]] = []
        records: list[MessageRecord] = []
        jobs: list[_reports.ReportJob] = []
        for recipient in ok.recipients:
            now = time.time_ns()
            message_id = str(uuid.uuid4())
            timestamp = mitto_timestamp(now)
            status, errorcode = _reports.final_status(recipient)
            if self._reply_shape == "ids":
                item = {"ids": [message_id], "timestamp": timestamp, "to": recipient}
            else:
                item = {"id": message_id, "timestamp": timestamp, "to": recipient}
            items.append(item)
            record = MessageRecord(
                message_id, recipient, timestamp, words[status], errorcode, shared
            )
            records.append(record)
            if report and callback_url is not None:
                final = (words[status], errorcode)
                buffered = (words[_reports.BUFFERED], _reports.BUFFERED_ERRORCODE)
                pending = [final]
                if self.reorder_reports:
                    pending = [final, buffered]
                elif self.intermediate:
                    pending = [buffered, final]
                if self.duplicate_reports:
                    pending.append(final)
                seconds = now // 1_000_000_000
                values = {
                    "msgid": message_id,
                    "reference": ok.reference,
                    "receiver": recipient,
                    "mcc": self.mcc,
                    "mnc": self.mnc,
                    "sendtime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)),
                    "sendtimestamp": str(seconds),
                }
                jobs.append(
                    _reports.ReportJob(record, callback_url, method, template, values, pending, 0)
                )
        with self._lock:
            self._messages.add(records)
            generation = self._generation
        for job in jobs:
            job.generation = generation
            self._dispatcher.submit(job, delay)
        return items

    def _deliver(self, job: _reports.ReportJob) -> float | None:
        """Send the next report of a job (runs on a report worker)."""
        if job.generation != self._generation or not job.pending:
            return None
        word, errorcode = job.pending[0]
        values = dict(job.values, status=word, errorcode=str(errorcode))
        result = _reports.send_report(
            job.url, job.method, job.template, values, self.callback_timeout
        )
        record = {
            "message_id": job.message.id,
            "status": word,
            "errorcode": errorcode,
            "attempt": job.attempt,
            "at": mitto_timestamp(),
            **result,
        }
        with self._reports_changed:
            if job.generation != self._generation:
                return None
            self._reports.append(record)
            job.message.add_callback(record)
            if record["ok"]:
                self._successes += 1
            self._reports_changed.notify_all()
        if self.log_requests:
            outcome = record["http_status"] if record["ok"] else record["error"]
            _log(f"report {word} {job.message.id} -> {job.method} {job.url} {outcome}")
        if record["ok"] or job.attempt > self.max_retries:
            job.pending.pop(0)
            job.attempt = 1
            return 0.0 if job.pending else None
        job.attempt += 1
        return float(self.retry_backoff) * 2.0 ** (job.attempt - 2)


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
