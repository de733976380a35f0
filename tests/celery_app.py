"""The Celery app the Celery tests start a real worker with (``celery -A tests.celery_app``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("django_mitto_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_mitto"], related_name="tasks")
