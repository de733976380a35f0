"""Check many numbers against a large opt-out table, and count the queries it costs.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mitto_bench_optouts \\
        python bench/bench_optouts.py [--opt-outs 1000000] [--numbers 100000]

The opt-out table is emptied and filled with ``--opt-outs`` numbers (one
``INSERT ... SELECT generate_series`` on PostgreSQL, ``bulk_create`` in batches of 5,000
elsewhere), then ANALYZEd. ``--numbers`` numbers are then checked with
:func:`django_mitto.optouts.opted_out_numbers`, one in ten of them opted out. Prints the fill
time, the check time, the query count and how many numbers were found. Use a database of its
own: the opt-out table is emptied. Without DATABASE_URL an SQLite file in the temporary
directory is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Opted-out numbers are +4176<7 digits>; every tenth checked number is one of them.
PREFIX = "+4176"


def configure(sqlite_path: str) -> None:
    import django
    from django.conf import settings

    from tests.settings import postgres_from_url

    url = os.environ.get("DATABASE_URL", "")
    database: dict[str, Any] = (
        postgres_from_url(url)
        if url.startswith("postgres")
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}
    )
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-mitto-bench",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "rest_framework",
            "django_mitto",
        ],
        DATABASES={"default": database},
    )
    django.setup()


def fill(count: int) -> float:
    """Empty the opt-out table and insert ``count`` opt-outs; return the seconds it took."""
    from django.db import connection

    from django_mitto.models import OptOut

    started = time.perf_counter()
    OptOut.objects.all().delete()
    table = OptOut._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (number, account, source, note, created_at) "
                "SELECT %s || lpad(i::text, 7, '0'), 'default', 'import', '', now() "
                "FROM generate_series(0, %s - 1) AS i",
                [PREFIX, count],
            )
            cursor.execute(f"ANALYZE {table}")
    else:
        for start in range(0, count, 5000):
            OptOut.objects.bulk_create(
                [
                    OptOut(number=f"{PREFIX}{i:07d}", source="import")
                    for i in range(start, min(start + 5000, count))
                ],
                batch_size=5000,
            )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opt-outs", type=int, default=1_000_000)
    parser.add_argument("--numbers", type=int, default=100_000)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="numbers per query (default: the library's)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="reuse the opt-outs already in the database"
    )
    parser.add_argument(
        "--sqlite", default=os.path.join(tempfile.gettempdir(), "mitto-bench-optouts.sqlite3")
    )
    args = parser.parse_args()
    configure(args.sqlite)

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_mitto import optouts

    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}")
    if args.chunk_size:
        optouts.CHUNK_SIZE = args.chunk_size
    if not args.keep:
        seconds = fill(args.opt_outs)
        print(f"{args.opt_outs:,} opt-outs inserted in {seconds:.1f} s")

    # Every tenth number is an opted-out one (spread over the table), the others are not.
    checked = [
        f"{PREFIX}{(i * 7919) % args.opt_outs:07d}" if i % 10 == 0 else f"+4179{i:07d}"
        for i in range(args.numbers)
    ]
    expected = {number for i, number in enumerate(checked) if i % 10 == 0}
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        found = optouts.opted_out_numbers(checked)
        seconds = time.perf_counter() - started
    assert found == expected, "the check found other numbers than expected"
    print(
        f"{args.numbers:,} numbers checked in {seconds:.2f} s: {len(queries)} queries "
        f"(chunks of {optouts.chunk_size():,}), {len(found):,} opted out"
    )


if __name__ == "__main__":
    main()
