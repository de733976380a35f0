from __future__ import annotations

import pytest
from django.test import override_settings

from django_mitto.conf import conf
from django_mitto.exceptions import MittoConfigurationError


def test_a_changed_setting_is_seen_at_once(settings) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:5800/"
    assert conf.API_URL == "http://127.0.0.1:5800"
    settings.MITTO_API_URL = "https://rest-fra.mittoapi.net"
    assert conf.API_URL == "https://rest-fra.mittoapi.net"


def test_settings_overridden_and_restored_are_seen_each_time() -> None:
    before = conf.account("default").API_URL
    with override_settings(
        MITTO_API_URL="https://rest-fra.mittoapi.net",
        MITTO_ACCOUNTS={"eu": {"API_KEY": "eu-key", "API_URL": "https://eu.example"}},
    ):
        assert conf.API_URL == "https://rest-fra.mittoapi.net"
        assert conf.accounts() == ["default", "eu"]
        assert conf.account("eu").API_KEY == "eu-key"
        with override_settings(MITTO_ACCOUNTS={}):
            assert conf.accounts() == ["default"]
        assert conf.account("eu").API_URL == "https://eu.example"
    assert before == conf.API_URL
    assert conf.accounts() == ["default"]


def test_defaults_apply_when_a_setting_is_absent(settings) -> None:
    assert settings.MITTO_API_URL.rstrip("/") == conf.API_URL  # read once before the deletion
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


def test_every_setting_is_read_under_its_full_name(settings) -> None:
    from django_mitto.conf import DEFAULTS

    settings.MITTO_API_URL = "https://rest-fra.mittoapi.net/"
    settings.MITTO_TIMEOUT = 3
    settings.MITTO_CALLBACK_SECRET = "one"
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k2"}}
    for name in DEFAULTS:
        getattr(conf, name)  # no setting lacks its full-name property
    assert conf.MITTO_API_URL == "https://rest-fra.mittoapi.net"
    assert conf.MITTO_TIMEOUT == 3.0 and isinstance(conf.MITTO_TIMEOUT, float)
    assert conf.MITTO_CALLBACK_SECRET == ["one"]
    assert conf.MITTO_ACCOUNTS == {"marketing": {"API_KEY": "k2"}}


def test_short_names_stay_aliases_of_the_full_names(settings) -> None:
    from django_mitto.conf import DEFAULTS

    settings.MITTO_DEFAULT_REGION = "de"
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 60
    for name in DEFAULTS:
        short = name.removeprefix("MITTO_")
        if name in ("MITTO_CALLBACK_SECRET", "MITTO_ACCOUNTS"):
            continue  # read as CALLBACK_SECRETS and conf.accounts()/account()
        assert getattr(conf, short) == getattr(conf, name), name
    assert conf.DEFAULT_REGION == conf.MITTO_DEFAULT_REGION == "DE"
    assert conf.CALLBACK_SECRETS == conf.MITTO_CALLBACK_SECRET


def test_raw_gives_the_setting_as_written(settings) -> None:
    settings.MITTO_TIMEOUT = "10"
    settings.MITTO_TEST_MODE = "yes"
    assert conf.raw("MITTO_TIMEOUT") == "10"  # the typed property would make it 10.0
    assert conf.MITTO_TIMEOUT == 10.0
    assert conf.raw("MITTO_TEST_MODE") == "yes"
    del settings.MITTO_MAX_PARTS
    assert conf.raw("MITTO_MAX_PARTS") == 10
    with pytest.raises(KeyError, match="MITTO_NOPE"):
        conf.raw("MITTO_NOPE")
