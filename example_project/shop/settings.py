"""Settings of the django-mitto example project, read from the environment (django-environ).

See .env.example for every variable. The defaults run on SQLite against the local sandbox.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="django-mitto-example-not-secret")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_mitto",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# django-mitto
MITTO_API_KEY = env.str("MITTO_API_KEY", default="sandbox-key")
MITTO_API_URL = env.str("MITTO_API_URL", default="http://127.0.0.1:5800")
MITTO_DEFAULT_SENDER = env.str("MITTO_DEFAULT_SENDER", default="DjangoShop")
MITTO_DEFAULT_REGION = env.str("MITTO_DEFAULT_REGION", default="CH")
MITTO_TEST_MODE = env.bool("MITTO_TEST_MODE", default=False)
MITTO_RESPONSE_FORMAT = env.str("MITTO_RESPONSE_FORMAT", default="json")
MITTO_TIMEOUT = env.float("MITTO_TIMEOUT", default=10.0)
MITTO_CALLBACK_BASE_URL = env.str("MITTO_CALLBACK_BASE_URL", default="http://127.0.0.1:8000")
MITTO_CALLBACK_SECRET = env.list("MITTO_CALLBACK_SECRET", default=["demo-callback-secret"])
MITTO_CALLBACK_ALLOWED_IPS = env.list("MITTO_CALLBACK_ALLOWED_IPS", default=[])
MITTO_CALLBACK_IP_HEADER = env.str("MITTO_CALLBACK_IP_HEADER", default="")
MITTO_TASK_BACKEND = env.str("MITTO_TASK_BACKEND", default="inline")
MITTO_ACCOUNT_NAME = env.str("MITTO_ACCOUNT_NAME", default="Demo Shop")
# Personal data kept 90 days, everything a year: `manage.py mitto_purge` (from cron) applies it.
MITTO_RETENTION = {
    "redact_after_days": env.int("MITTO_REDACT_AFTER_DAYS", default=90),
    "delete_after_days": env.int("MITTO_DELETE_AFTER_DAYS", default=365),
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_mitto": {"handlers": ["console"], "level": "INFO"}},
}
