"""The WSGI application gunicorn serves in the delivery-report benchmarks (and tests/test_load.py)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.reports_settings")
application = get_wsgi_application()
