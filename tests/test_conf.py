from __future__ import annotations

import pytest

from django_mitto.conf import conf
from django_mitto.exceptions import MittoConfigurationError


def test_settings_are_read_on_every_access(settings) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:5800/"
    assert conf.API_URL == "http://127.0.0.1:5800"
    settings.MITTO_API_URL = "https://rest-fra.mittoapi.net"
    assert conf.API_URL == "https://rest-fra.mittoapi.net"


def test_defaults_apply_when_a_setting_is_absent(settings) -> None:
    for name in ("MITTO_API_URL", "MITTO_TIMEOUT", "MITTO_RESPONSE_FORMAT", "MITTO_TASK_BACKEND"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert conf.API_URL == "https://rest.mittoapi.net"
    assert conf.TIMEOUT == 10.0
    assert conf.RESPONSE_FORMAT == "json"
    assert conf.TASK_BACKEND == "inline"
    assert conf.SEND_ON_SAVE is True
    assert conf.TEST_MODE is False


def test_single_callback_secret_becomes_a_list(settings) -> None:
    settings.MITTO_CALLBACK_SECRET = "one"
    assert conf.CALLBACK_SECRETS == ["one"]
    settings.MITTO_CALLBACK_SECRET = ["new", "", "old"]
    assert conf.CALLBACK_SECRETS == ["new", "old"]
    settings.MITTO_CALLBACK_SECRET = ""
    assert conf.CALLBACK_SECRETS == []


def test_missing_api_key_raises_a_configuration_error_at_use_time(settings) -> None:
    settings.MITTO_API_KEY = ""
    with pytest.raises(MittoConfigurationError, match="MITTO_API_KEY"):
        conf.require_api_key()
