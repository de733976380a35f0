"""The pooled :class:`~django_mitto.client.MittoClient`: one per distinct configuration."""

from __future__ import annotations

import threading
from typing import Any

from .client import MittoClient
from .conf import conf

__all__ = ["get_client"]

_clients: dict[tuple[Any, ...], MittoClient] = {}
_clients_lock = threading.Lock()


def get_client() -> MittoClient:
    """The shared :class:`MittoClient` for the current settings (one per distinct configuration)."""
    key = (conf.require_api_key(), conf.API_URL, conf.TIMEOUT, conf.RESPONSE_FORMAT, conf.TEST_MODE)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                if len(_clients) >= 8:  # settings keep changing (tests): do not pile up pools
                    for old in _clients.values():
                        old.close()
                    _clients.clear()
                client = MittoClient(
                    key[0],
                    api_url=key[1],
                    timeout=key[2],
                    response_format=key[3],
                    test_mode=key[4],
                )
                _clients[key] = client
    return client
