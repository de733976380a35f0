"""Delivery reports of the sandbox: templates, the status rule and the dispatcher.

Mitto calls a customer-configured URL with a customer-configured template in
which tilde placeholders are replaced. The sandbox supports the placeholders
``~msgid~ ~status~ ~errorcode~ ~reference~ ~receiver~ ~mcc~ ~mnc~ ~sendtime~
~sendtimestamp~``. In a GET template the values are URL-escaped and the result
is appended to the callback URL as its query string; in a POST template they
are JSON-escaped and the result is sent as the body with
``Content-Type: application/json``.

Status rule (a tester steers it with the recipient's last digit):

=========== ============== =========
last digit  status         errorcode
=========== ============== =========
0-6         ``delivered``  0
7           ``undelivered`` 1
8           ``expired``    2
9           ``rejected``   3
=========== ============== =========

The optional intermediate report has status ``buffered`` and errorcode 0. The
status words can be replaced through a dictionary keyed by these names.
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_mitto.sandbox.records import MessageRecord

__all__ = [
    "BUFFERED",
    "DEFAULT_GET_TEMPLATE",
    "DEFAULT_POST_TEMPLATE",
    "DEFAULT_STATUS_WORDS",
    "DELIVERED",
    "EXPIRED",
    "PLACEHOLDERS",
    "REJECTED",
    "STATUS_RULE",
    "UNDELIVERED",
    "ReportDispatcher",
    "ReportJob",
    "append_query",
    "final_status",
    "json_escape",
    "render_template",
    "url_escape",
]

DELIVERED = "delivered"
UNDELIVERED = "undelivered"
EXPIRED = "expired"
REJECTED = "rejected"
BUFFERED = "buffered"

#: Status words sent for each status; replace them through ``status_words``.
DEFAULT_STATUS_WORDS: dict[str, str] = {
    DELIVERED: DELIVERED,
    UNDELIVERED: UNDELIVERED,
    EXPIRED: EXPIRED,
    REJECTED: REJECTED,
    BUFFERED: BUFFERED,
}

#: Final status and errorcode by the last digit of the recipient.
STATUS_RULE: dict[str, tuple[str, int]] = {
    **{digit: (DELIVERED, 0) for digit in "0123456"},
    "7": (UNDELIVERED, 1),
    "8": (EXPIRED, 2),
    "9": (REJECTED, 3),
}

#: Errorcode of the intermediate ``buffered`` report.
BUFFERED_ERRORCODE = 0

PLACEHOLDERS: tuple[str, ...] = (
    "msgid",
    "status",
    "errorcode",
    "reference",
    "receiver",
    "mcc",
    "mnc",
    "sendtime",
    "sendtimestamp",
)

#: Body template of POST reports (JSON).
DEFAULT_POST_TEMPLATE = (
    '{"id":"~msgid~","status":"~status~","errorcode":"~errorcode~",'
    '"reference":"~reference~","receiver":"~receiver~","mccmnc":"~mcc~~mnc~",'
    '"sendtime":"~sendtime~","sendtimestamp":"~sendtimestamp~"}'
)

#: Query-string template of GET reports.
DEFAULT_GET_TEMPLATE = (
    "id=~msgid~&status=~status~&errorcode=~errorcode~&reference=~reference~"
    "&receiver=~receiver~&mccmnc=~mcc~~mnc~&sendtime=~sendtime~"
    "&sendtimestamp=~sendtimestamp~"
)

_PLACEHOLDER = re.compile("~(" + "|".join(PLACEHOLDERS) + ")~")
_USER_AGENT = "django-mitto-sandbox"


def final_status(recipient: str) -> tuple[str, int]:
    """Return the final status name and errorcode for a recipient (see module doc)."""
    digits = [c for c in recipient if c.isdigit()]
    return STATUS_RULE.get(digits[-1] if digits else "0", (DELIVERED, 0))


def url_escape(value: str) -> str:
    """Escape a value for a query string."""
    return urllib.parse.quote(value, safe="")


def json_escape(value: str) -> str:
    """Escape a value for use inside a JSON string literal."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def render_template(template: str, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
    """Replace the ``~placeholder~`` markers of ``template`` with escaped values."""
    return _PLACEHOLDER.sub(lambda match: escape(values.get(match.group(1), "")), template)


def append_query(url: str, query: str) -> str:
    """Append a query string to a URL that may already have one."""
    query = query.lstrip("?&")
    if not query:
        return url
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    return base + joiner + query + ("#" + fragment if fragment else "")


@dataclass
class ReportJob:
    """The reports still to send for one message, sent in order."""

    #: The record the reports are about (kept alive by the job, even once the sandbox has
    #: dropped it from its messages: the reports are still sent and recorded).
    message: MessageRecord
    url: str
    method: str
    template: str
    values: dict[str, str]
    #: Pending (status word, errorcode) pairs, first to send first.
    pending: list[tuple[str, int]]
    generation: int
    attempt: int = 1
    seq: int = field(default=0)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: a 3xx answer counts as a failed report."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def send_report(
    url: str, method: str, template: str, values: Mapping[str, str], timeout: float
) -> dict[str, Any]:
    """Make one callback; return what happened (never raises for network errors)."""
    record: dict[str, Any] = {"method": method}
    if method == "GET":
        query = render_template(template, values, url_escape)
        full_url = append_query(url, query)
        record.update(url=full_url, query=query.lstrip("?&"))
        request = urllib.request.Request(
            full_url, method="GET", headers={"User-Agent": _USER_AGENT}
        )
    else:
        body = render_template(template, values, json_escape)
        record.update(url=url, body=body)
        request = urllib.request.Request(
            url,
            data=body.encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
        )
    http_status: int | None = None
    error: str | None = None
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read()
            http_status = response.status
    except urllib.error.HTTPError as exc:
        http_status = exc.code
        exc.close()
    except (OSError, ValueError) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", exc)
        error = f"{type(exc).__name__}: {reason}"
    except Exception as exc:  # http.client.HTTPException and other protocol errors
        error = f"{type(exc).__name__}: {exc}"
    ok = http_status is not None and 200 <= http_status < 300
    if http_status is not None and not ok:
        error = f"HTTP {http_status}"
    record.update(http_status=http_status, error=error, ok=ok)
    return record


class ReportDispatcher:
    """Sends delivery reports with one scheduler thread and a small worker pool.

    Jobs wait in a heap ordered by due time; the scheduler hands due jobs to
    the workers. A job sends its reports in order; a failed report is retried
    (``max_retries`` times, exponential backoff from ``retry_backoff``) by
    putting the job back in the heap, so no worker sleeps.
    """

    def __init__(
        self,
        deliver: Callable[[ReportJob], float | None],
        workers: int = 4,
    ) -> None:
        #: Called by a worker for a due job. Returns None when the job is done,
        #: or the delay after which to run it again.
        self._deliver = deliver
        self._workers_count = max(1, workers)
        self._heap: list[tuple[float, int, ReportJob]] = []
        self._cond = threading.Condition(threading.Lock())
        self._ready: queue.SimpleQueue[ReportJob | None] = queue.SimpleQueue()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running = False

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._ready = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._schedule_loop, name="mitto-sandbox-dlr", daemon=True)
        ]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"mitto-sandbox-report-{n}", daemon=True)
            for n in range(self._workers_count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._heap.clear()
            self._cond.notify_all()
        for _ in range(self._workers_count):
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def clear(self) -> None:
        """Drop every job waiting in the heap."""
        with self._cond:
            self._heap.clear()

    def submit(self, job: ReportJob, delay: float) -> None:
        if delay <= 0:
            self._ready.put(job)
            return
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()

    def _schedule_loop(self) -> None:
        with self._cond:
            while self._running:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, job = heapq.heappop(self._heap)
                self._ready.put(job)

    def _work_loop(self) -> None:
        while True:
            job = self._ready.get()
            if job is None or not self._running:
                return
            try:
                again = self._deliver(job)
            except Exception:  # pragma: no cover - a bug in delivery must not kill the worker
                import traceback

                traceback.print_exc()
                continue
            if again is not None:
                self.submit(job, again)
