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
def mitto_sandbox_options() -> dict[str, Any]:
    """Extra keyword arguments of the :class:`Sandbox` that ``mitto_sandbox`` starts.

    Override this fixture, or parametrize it, to start the sandbox another way::

        @pytest.mark.parametrize("mitto_sandbox_options", [{"reply_shape": "ids"}])
        def test_ids_answers(mitto_sandbox): ...

    ``{"keep": N}`` keeps the last N message records (default 10,000), for a test that sends
    more than that, or one that checks what is dropped.
    """
    return {}


@pytest.fixture
def mitto_sandbox(settings: Any, mitto_sandbox_options: dict[str, Any]) -> Iterator[Sandbox]:
    """A running Mitto sandbox; ``MITTO_API_URL``/``MITTO_API_KEY`` point at it.

    Delivery reports are sent at once (``report_delay=0``) to the callback URL you set:
    ``mitto_sandbox.callback_url = live_server.url + "/mitto/callback/<secret>/"``, or to the
    per-message URL when ``MITTO_CALLBACK_BASE_URL`` is set. ``mitto_sandbox_options`` gives
    further :class:`Sandbox` arguments (``reply_shape="ids"``, ``intermediate=True``,
    ``keep=100``...).
    """
    options = {"api_key": SANDBOX_API_KEY, "report_delay": 0, **mitto_sandbox_options}
    with Sandbox(**options) as sandbox:
        settings.MITTO_API_URL = sandbox.url
        settings.MITTO_API_KEY = sandbox.api_key or SANDBOX_API_KEY
        yield sandbox
