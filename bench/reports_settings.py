"""Settings for the delivery-report benchmarks: the test settings, persistent database
connections, and a URL conf with a bare view next to django-mitto's callback view."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

ROOT_URLCONF = "bench.bare_urls"
# Persistent connections, one per gunicorn thread, as a production deployment keeps them.
DATABASES["default"]["CONN_MAX_AGE"] = 600
# MITTO_TEST_PREPARED=1 (read by the test settings): PostgreSQL binds the parameters and
# prepares each statement after its second use.
