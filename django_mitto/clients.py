"""The pooled :class:`~django_mitto.client.MittoClient`: one per distinct configuration."""

from __future__ import annotations

import threading
from typing import Any

from .client import MittoClient
from .conf import DEFAULT_ACCOUNT, conf

__all__ = ["get_client"]

_clients: dict[tuple[Any, ...], MittoClient] = {}
_clients_lock = threading.Lock()


def get_client(account: str = DEFAULT_ACCOUNT) -> MittoClient:
    """The shared :class:`MittoClient` of an account (one pool per account and configuration).

    Raises :class:`MittoConfigurationError` for an unknown account or one without an API key.
    """
    acc = conf.account(account)
    key = (acc.require_api_key(), acc.API_URL, acc.TIMEOUT, acc.RESPONSE_FORMAT, acc.TEST_MODE)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                # Settings keep changing (tests): do not pile up pools beyond one per account.
                if len(_clients) >= 8 + len(conf.accounts()):
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
