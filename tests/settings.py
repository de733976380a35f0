"""Settings for the test suite. DATABASE_URL picks the database (SQLite when unset)."""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlsplit

SECRET_KEY = "django-mitto-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_mitto",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

STATIC_URL = "/static/"


def postgres_from_url(url: str) -> dict:
    """Django's DATABASES entry for a postgres://user:password@host:port/name URL."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "postgres",
        "USER": parts.username or "postgres",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        # Two test runs at once on one server each need a database of their own.
        "TEST": {"NAME": os.environ.get("MITTO_TEST_DB_NAME") or None},
        # MITTO_TEST_PREPARED=1: parameters bound by PostgreSQL and statements prepared after
        # their second use, as README's "Performance" section advises for report-heavy sites.
        "OPTIONS": (
            {"server_side_binding": True, "prepare_threshold": 2}
            if os.environ.get("MITTO_TEST_PREPARED")
            else {}
        ),
    }


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        return postgres_from_url(url)
    # A file, not :memory:, so the live server's threads get connections of their own.
    test_db = os.path.join(tempfile.gettempdir(), f"django-mitto-tests-{os.getpid()}.sqlite3")
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": test_db,
        "TEST": {"NAME": test_db},
        "OPTIONS": {"timeout": 20},
    }


def _routed(default: dict) -> dict:
    """A second database on the same server (or a second SQLite file): tests/test_databases.py
    routes django_mitto's models there, as a project that keeps them apart would."""
    second = {**default, "TEST": dict(default["TEST"])}
    if default["ENGINE"].endswith("sqlite3"):
        second["NAME"] = second["TEST"]["NAME"] = default["NAME"].replace(
            ".sqlite3", "-sms.sqlite3"
        )
    else:
        second["TEST"]["NAME"] = f"{default['TEST']['NAME'] or 'test_' + default['NAME']}_sms"
    return second


DATABASES = {"default": _database()}
DATABASES["sms"] = _routed(DATABASES["default"])
# Worker processes started by the benchmarks keep their connection, as the README advises.
if os.environ.get("MITTO_TEST_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["MITTO_TEST_CONN_MAX_AGE"])

# Django's Tasks framework (the "tasks" task backend): django.tasks on Django 6+, else the
# django-tasks backport; its database backend comes from django-tasks-db. Tests run tasks at
# once unless told otherwise; the worker tests use the database backend.
try:
    import django_tasks_db  # noqa: F401
except ImportError:  # the tasks extra is not installed
    pass
else:
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        INSTALLED_APPS += ["django_tasks"]
        _IMMEDIATE = "django_tasks.backends.immediate.ImmediateBackend"
    else:
        _IMMEDIATE = "django.tasks.backends.immediate.ImmediateBackend"
    INSTALLED_APPS += ["django_tasks_db"]
    TASKS = {"default": {"BACKEND": os.environ.get("MITTO_TEST_TASKS_BACKEND", _IMMEDIATE)}}

# A Celery worker started by the Celery tests gets these from its environment.
MITTO_API_KEY = os.environ.get("MITTO_API_KEY", "test-key")
MITTO_API_URL = os.environ.get("MITTO_API_URL", "http://127.0.0.1:9")
MITTO_TASK_BACKEND = os.environ.get("MITTO_TASK_BACKEND", "inline")
MITTO_BULK_CHUNK_SIZE = int(os.environ.get("MITTO_BULK_CHUNK_SIZE", "500"))
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = bool(os.environ.get("MITTO_TEST_CELERY_ACKS_LATE"))
if os.environ.get("MITTO_TEST_CELERY_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["MITTO_TEST_CELERY_DB_REUSE_MAX"])
# A queue of this test run's own, so that two runs sharing a Redis never take each other's tasks
# (the worker the tests start is given the name).
CELERY_TASK_DEFAULT_QUEUE = (
    os.environ.get("MITTO_TEST_CELERY_QUEUE") or f"mitto-tests-{os.getpid()}"
)
MITTO_DEFAULT_SENDER = "DjangoMitto"
MITTO_CALLBACK_SECRET = "callback-secret"
MITTO_TIMEOUT = float(os.environ.get("MITTO_TIMEOUT", "5.0"))
# The throttling tests start processes that share a rate limit through Redis.
if os.environ.get("MITTO_RATE_LIMIT"):
    MITTO_RATE_LIMIT = float(os.environ["MITTO_RATE_LIMIT"])
if os.environ.get("MITTO_TEST_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["MITTO_TEST_CACHE_URL"],
            "KEY_PREFIX": os.environ.get("MITTO_TEST_CACHE_PREFIX", ""),
        }
    }

# The admin tests log a user in for nearly every test: a deliberately slow hash would dominate.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "WARNING"},
}
