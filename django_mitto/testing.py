"""Test helpers for projects that use django-mitto.

Add ``pytest_plugins = ["django_mitto.testing"]`` to your ``conftest.py`` and use the
``mitto_sandbox`` fixture: it runs a :class:`~django_mitto.sandbox.Sandbox` on loopback for the
test and points ``MITTO_API_URL`` and ``MITTO_API_KEY`` at it (needs pytest-django).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .sandbox import Sandbox

SANDBOX_API_KEY = "sandbox-key"


@pytest.fixture
def mitto_sandbox(settings: Any) -> Iterator[Sandbox]:
    """A running Mitto sandbox; ``MITTO_API_URL``/``MITTO_API_KEY`` point at it.

    Delivery reports are sent at once (``report_delay=0``) to the callback URL you set:
    ``mitto_sandbox.callback_url = live_server.url + "/mitto/callback/<secret>/"``, or to the
    per-message URL when ``MITTO_CALLBACK_BASE_URL`` is set.
    """
    with Sandbox(api_key=SANDBOX_API_KEY, report_delay=0) as sandbox:
        settings.MITTO_API_URL = sandbox.url
        settings.MITTO_API_KEY = SANDBOX_API_KEY
        yield sandbox
