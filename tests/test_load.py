"""Delivery reports under load: ``bench/bench_reports.py`` with small numbers, posted to a
gunicorn (gthread, persistent connections) serving the test database."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import require_part

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_2000_shuffled_reports_at_concurrency_8_leave_every_message_in_its_final_state(
    settings: Any,
) -> None:
    require_part(importlib.util.find_spec("gunicorn") is not None, "gunicorn is not installed")
    from bench.bench_reports import run_load

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MITTO_API_KEY": settings.MITTO_API_KEY,
        "PYTHONPATH": str(ROOT),
    }
    started = time.monotonic()
    result = run_load(env, messages=500, count=2000, concurrency=8, workers=2, threads=4)
    print(f"{result.summary()} ({time.monotonic() - started:.1f} s in all)")
    assert result.posted.errors == []
    assert sum(result.posted.statuses.values()) == 2000
    # Every message in the state of its final report, each report stored once, exactly one
    # final report applied a message (the others: duplicate or stale).
    assert result.wrong == []
