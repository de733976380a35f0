"""A local Mitto-compatible SMS gateway for development, tests and demos.

The sandbox speaks the Mitto SMS REST API (``POST /sms`` and ``/smsbulk``,
with ``.json``/``.xml`` suffixes and an optional ``/v2`` prefix), checks the
``X-Mitto-API-Key`` header, validates requests with Mitto's response codes,
answers like the real gateway and then sends delivery reports to a callback
URL. It needs only the standard library and :mod:`django_mitto.encoding`; it
never imports Django, so it runs anywhere the package is installed.

From Python::

    from django_mitto.sandbox import Sandbox

    with Sandbox(callback_url="http://127.0.0.1:8000/mitto/dlr/", report_delay=0) as sandbox:
        ...  # point the client at sandbox.url with api key sandbox.api_key
        sandbox.wait_for_reports(1)

From a shell: ``python -m django_mitto.sandbox --help``.

HTTP statuses: 200 only for ``responseCode`` 0; 400 with the JSON (or XML)
body ``{"responseCode": N, "responseText": "..."}`` for Mitto's validation
codes 2 (Invalid type), 3 (Empty message), 4 (Message text is invalid),
5 (Empty sender), 6 (Invalid sender), 7 (Empty receiver) and 8 (Invalid
receiver); 400 with ``responseCode`` 400 for a body that is not a JSON object;
401 with ``{"responseCode": 401, "responseText": "Invalid or no API Key
specified"}`` for a missing or wrong key. Details in
:mod:`django_mitto.sandbox.server` and :mod:`django_mitto.sandbox.validation`.

Accepted answers give each message's id as ``"id": "..."``, or, with
``reply_shape="ids"`` (``--reply-shape ids``), as ``"ids": ["..."]``: the typical
answer of Mitto's API overview.

Delivery status rule, by the last digit of the recipient: 0-6 ``delivered``
(errorcode 0), 7 ``undelivered`` (1), 8 ``expired`` (2), 9 ``rejected`` (3).
Test messages (``"test": true``) get no report unless
``report_test_messages=True``. See :mod:`django_mitto.sandbox.reports`.

Faults (latency, 500, 503, 429, connection reset, timeout) can be injected
for every request or per recipient: :meth:`Sandbox.add_fault` or
``POST /_sandbox/faults``. See :mod:`django_mitto.sandbox.faults`.

The sandbox keeps the last ``keep`` message records and callback attempts (``--keep``,
default 10,000) and drops the oldest; a bulk request's body is stored once for all its
recipients. ``GET /_sandbox/messages?since=<seq or id>&limit=<n>`` pages through the records
kept. See :mod:`django_mitto.sandbox.records`.

The ``/_sandbox/*`` inspection and control endpoints need no API key. Never
expose the sandbox publicly; it binds 127.0.0.1 by default.
"""

from __future__ import annotations

from django_mitto.sandbox.core import REPLY_SHAPES, Sandbox, mitto_timestamp
from django_mitto.sandbox.faults import FAULT_KINDS, Fault
from django_mitto.sandbox.reports import (
    DEFAULT_GET_TEMPLATE,
    DEFAULT_POST_TEMPLATE,
    DEFAULT_STATUS_WORDS,
    STATUS_RULE,
    final_status,
)
from django_mitto.sandbox.validation import RESPONSE_TEXTS

__all__ = [
    "DEFAULT_GET_TEMPLATE",
    "DEFAULT_POST_TEMPLATE",
    "DEFAULT_STATUS_WORDS",
    "FAULT_KINDS",
    "REPLY_SHAPES",
    "RESPONSE_TEXTS",
    "STATUS_RULE",
    "Fault",
    "Sandbox",
    "final_status",
    "mitto_timestamp",
]
