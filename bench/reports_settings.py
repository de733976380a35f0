"""Settings for the delivery-report benchmarks: the test settings, persistent database
connections, and a URL conf with a bare view next to django-mitto's callback view."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

ROOT_URLCONF = "bench.bare_urls"
# Persistent connections, one per gunicorn thread, as a production deployment keeps them.
DATABASES["default"]["CONN_MAX_AGE"] = 600
# MITTO_BENCH_SERVER_SIDE_BINDING=1: psycopg binds parameters on the server and prepares a
# statement after a few uses (Django's "server_side_binding" option).
if os.environ.get("MITTO_BENCH_SERVER_SIDE_BINDING"):
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
if os.environ.get("MITTO_BENCH_PREPARE_THRESHOLD"):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(
        os.environ["MITTO_BENCH_PREPARE_THRESHOLD"]
    )
