from __future__ import annotations

import pytest
from django.core.management import call_command

from django_mitto.checks import check_settings
from tests.conftest import skip_without_tasks_support


def ids(**overrides: object) -> list[str]:
    return [message.id for message in check_settings()]


@pytest.fixture
def configured(settings):
    settings.MITTO_API_KEY = "key"
    settings.MITTO_CALLBACK_SECRET = "secret"
    # The test settings point at a loopback address with DEBUG off, which W004 is about.
    settings.MITTO_API_URL = "https://rest.mittoapi.net"
    return settings


def test_default_test_settings_pass_every_check(configured) -> None:
    assert check_settings() == []


@pytest.mark.django_db  # Django 6.1+ checks the database too (JSONField support)
def test_check_command_runs_clean(configured) -> None:
    call_command("check", "--fail-level", "WARNING")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MITTO_API_KEY", 123, "django_mitto.E001"),
        ("MITTO_DEFAULT_SENDER", ["x"], "django_mitto.E001"),
        ("MITTO_API_URL", "rest.mittoapi.net", "django_mitto.E002"),
        ("MITTO_API_URL", None, "django_mitto.E002"),
        ("MITTO_TEST_MODE", "yes", "django_mitto.E003"),
        ("MITTO_SEND_ON_SAVE", 1, "django_mitto.E003"),
        ("MITTO_RESPONSE_FORMAT", "yaml", "django_mitto.E004"),
        ("MITTO_TIMEOUT", 0, "django_mitto.E005"),
        ("MITTO_TIMEOUT", "10", "django_mitto.E005"),
        ("MITTO_TIMEOUT", True, "django_mitto.E005"),
        ("MITTO_CALLBACK_BASE_URL", "example.com", "django_mitto.E006"),
        ("MITTO_CALLBACK_SECRET", 42, "django_mitto.E007"),
        ("MITTO_CALLBACK_SECRET", ["ok", 3], "django_mitto.E007"),
        ("MITTO_CALLBACK_ALLOWED_IPS", "10.0.0.0/8", "django_mitto.E008"),
        ("MITTO_CALLBACK_ALLOWED_IPS", ["10.0.0.0/8", "not-an-ip"], "django_mitto.E008"),
        ("MITTO_TASK_BACKEND", "rq", "django_mitto.E009"),
        ("MITTO_MAX_ATTEMPTS", 0, "django_mitto.E010"),
        ("MITTO_BULK_CHUNK_SIZE", "500", "django_mitto.E010"),
        ("MITTO_MAX_PARTS", "10", "django_mitto.E010"),
        ("MITTO_MAX_PARTS", 0, "django_mitto.E010"),
        ("MITTO_MAX_PARTS", 256, "django_mitto.E010"),
        ("MITTO_MAX_PARTS", 2.5, "django_mitto.E010"),
        ("MITTO_CALLBACK_IP_HEADER", None, "django_mitto.E011"),
    ],
)
def test_wrong_setting_is_an_error_with_a_hint(configured, name, value, expected) -> None:
    setattr(configured, name, value)
    messages = check_settings()
    assert [m.id for m in messages] == [expected]
    assert messages[0].hint
    assert name in messages[0].msg


def _without(monkeypatch, package: str, backend_module: str) -> None:
    """Make ``package`` unimportable and forget the backend module that imported it."""
    import sys

    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, backend_module, raising=False)


def test_celery_backend_needs_celery_installed(configured, monkeypatch) -> None:
    configured.MITTO_TASK_BACKEND = "celery"
    assert check_settings() == []
    _without(monkeypatch, "celery", "django_mitto.backends.celery")
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.E009"]
    assert "MITTO_TASK_BACKEND" in messages[0].msg
    assert "django-mitto[celery]" in messages[0].hint


def test_tasks_backend_needs_django_tasks_installed(configured, monkeypatch) -> None:
    skip_without_tasks_support()
    configured.MITTO_TASK_BACKEND = "tasks"
    assert check_settings() == []
    _without(monkeypatch, "django.tasks", "django_mitto.backends.tasks")
    _without(monkeypatch, "django_tasks", "django_mitto.backends.tasks")
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.E009"]
    assert "django-mitto[tasks]" in messages[0].hint


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("redis", "cannot be imported"),
        ("myproject.nowhere.Backend", "cannot be imported"),
        ("tests.custom_backend.NotABackend", "is not a subclass"),
        ("django_mitto.backends.base", "is not a subclass"),
        (42, "must be a string"),
    ],
)
def test_task_backend_that_cannot_be_used_is_an_error(configured, value, says) -> None:
    configured.MITTO_TASK_BACKEND = value
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.E009"]
    assert "MITTO_TASK_BACKEND" in messages[0].msg and says in messages[0].msg
    assert "TaskBackend" in messages[0].hint


@pytest.mark.parametrize(
    "value", ["inline", "INLINE", "celery", "tasks", "tests.custom_backend.ListBackend"]
)
def test_task_backend_names_and_a_dotted_subclass_pass(configured, value) -> None:
    if value == "tasks":
        skip_without_tasks_support()
    configured.MITTO_TASK_BACKEND = value
    assert check_settings() == []


def test_missing_api_key_is_only_a_warning(configured) -> None:
    configured.MITTO_API_KEY = ""
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.W001"]
    assert not messages[0].is_serious()


def test_no_callback_token_is_a_warning(configured) -> None:
    configured.MITTO_CALLBACK_SECRET = ""
    assert [m.id for m in check_settings()] == ["django_mitto.W002"]


def test_callback_base_url_alone_is_enough_for_callbacks(configured) -> None:
    configured.MITTO_CALLBACK_SECRET = ""
    configured.MITTO_CALLBACK_BASE_URL = "https://example.com"
    assert check_settings() == []


def test_valid_ip_ranges_pass(configured) -> None:
    configured.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8", "2a06:b080:a001:8641::/64", "192.0.2.7"]
    assert check_settings() == []


def test_secret_rotation_list_passes(configured) -> None:
    configured.MITTO_CALLBACK_SECRET = ["new", "old"]
    assert check_settings() == []


def test_callback_base_url_needs_the_callback_route(configured) -> None:
    configured.MITTO_CALLBACK_BASE_URL = "https://example.com"
    configured.ROOT_URLCONF = "tests.urls_without_mitto"
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.E012"]
    assert 'include("django_mitto.urls")' in messages[0].hint


def test_max_parts_up_to_255_passes(configured) -> None:
    for value in (1, 10, 255):
        configured.MITTO_MAX_PARTS = value
        assert check_settings() == []


def test_callback_secret_without_the_callback_route_is_a_warning(configured) -> None:
    configured.ROOT_URLCONF = "tests.urls_without_mitto"
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.W003"]
    assert "MITTO_CALLBACK_SECRET" in messages[0].msg
    assert 'include("django_mitto.urls")' in messages[0].hint
    assert not messages[0].is_serious()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5800",
        "http://localhost:8080/",
        "http://[::1]:9000",
        "http://127.0.0.2",
        "http://sandbox.internal:5800",
        "http://0.0.0.0:8000",
    ],
)
def test_sandbox_api_url_without_debug_is_a_warning(configured, url) -> None:
    configured.MITTO_API_URL = url
    configured.DEBUG = False
    messages = check_settings()
    assert [m.id for m in messages] == ["django_mitto.W004"]
    assert "MITTO_API_URL" in messages[0].msg
    assert "rest.mittoapi.net" in messages[0].hint


def test_sandbox_api_url_with_debug_is_fine(configured) -> None:
    configured.MITTO_API_URL = "http://127.0.0.1:5800"
    configured.DEBUG = True
    assert check_settings() == []


@pytest.mark.parametrize("url", ["https://rest.mittoapi.net", "https://rest-fra.mittoapi.net:443"])
def test_mitto_api_url_without_debug_is_fine(configured, url) -> None:
    configured.MITTO_API_URL = url
    configured.DEBUG = False
    assert check_settings() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ROOT_URLCONF": "tests.urls_without_mitto"}, "django_mitto.W003"),
        ({"MITTO_API_URL": "http://127.0.0.1:5800", "DEBUG": False}, "django_mitto.W004"),
    ],
)
@pytest.mark.django_db  # Django 6.1+ checks the database too (JSONField support)
def test_check_command_reports_the_new_warnings(configured, changes, expected) -> None:
    from django.core.management.base import SystemCheckError

    for name, value in changes.items():
        setattr(configured, name, value)
    call_command("check")  # a warning alone does not fail the default level
    with pytest.raises(SystemCheckError, match=expected):
        call_command("check", "--fail-level", "WARNING")


def test_the_check_knows_the_sandbox_default_port() -> None:
    from django_mitto.checks import SANDBOX_DEFAULT_PORT
    from django_mitto.sandbox.__main__ import DEFAULT_PORT

    assert SANDBOX_DEFAULT_PORT == DEFAULT_PORT
