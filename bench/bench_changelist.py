"""Time the Message changelist of the django-mitto admin on a big table, next to Django's defaults.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mitto_bench \\
        python bench/bench_changelist.py 1000 1000000 [--repeat 7]
    python bench/bench_changelist.py 1000 100000 --sqlite /tmp/mitto-bench.sqlite3

For each N the table is emptied and filled with N messages spread over the last year (one
``INSERT ... SELECT generate_series`` on PostgreSQL, chunked ``bulk_create`` elsewhere),
then ANALYZEd, as autovacuum would. A superuser logged in through Django's test client
requests a few changelist pages ``--repeat`` times each; the query count (from
``CaptureQueriesContext``) and the median time per page are printed for django-mitto's
``MessageAdmin`` and, side by side, for a baseline ``ModelAdmin`` with the same columns,
filters, search and date hierarchy but Django's defaults otherwise (plain paginator, exact
counts, facets allowed, related-field batch filter listing every batch).

The database is DATABASE_URL (PostgreSQL) or an SQLite file (``--sqlite``, default
``mitto-bench.sqlite3`` in the temporary directory). Use a database of its own: the message table is emptied.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCHES = 50
#: Messages spread evenly over this many days before now.
SPAN_DAYS = 365


def database(sqlite_path: str) -> dict[str, Any]:
    from tests.settings import postgres_from_url

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        return postgres_from_url(url)
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}


def configure(sqlite_path: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-mitto-bench",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "rest_framework",
            "django_mitto",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
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
        ],
        STATIC_URL="/static/",
        DATABASES={"default": database(sqlite_path)},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MITTO_SEND_ON_SAVE=False,
        MITTO_DEFAULT_SENDER="Bench",
    )
    django.setup()


urlpatterns: list[Any] = []


def install_urls() -> None:
    """The django-mitto admin at /admin/, the baseline admin at /baseline/."""
    from django.contrib import admin
    from django.urls import path

    from django_mitto.models import Message

    class BaselineMessageAdmin(admin.ModelAdmin):
        list_display = [
            "recipient",
            "text",
            "status",
            "segments",
            "test",
            "created_at",
            "status_changed_at",
        ]
        list_filter = ["status", "encoding", "test", "batch", "created_at"]
        search_fields = ["recipient", "provider_id", "reference", "text"]
        date_hierarchy = "created_at"

    baseline = admin.AdminSite(name="baseline")
    baseline.register(Message, BaselineMessageAdmin)
    urlpatterns[:] = [path("admin/", admin.site.urls), path("baseline/", baseline.urls)]


# -- data -----------------------------------------------------------------------------------------

_STATUS_SQL = """CASE
    WHEN mod(i, 100) < 80 THEN 'delivered' WHEN mod(i, 100) < 88 THEN 'sent'
    WHEN mod(i, 100) < 93 THEN 'undelivered' WHEN mod(i, 100) < 96 THEN 'failed'
    WHEN mod(i, 100) < 97 THEN 'unknown' WHEN mod(i, 100) < 98 THEN 'expired'
    WHEN mod(i, 100) < 99 THEN 'rejected' ELSE 'queued' END"""


def _status(i: int) -> str:
    slot = i % 100
    for top, status in (
        (80, "delivered"),
        (88, "sent"),
        (93, "undelivered"),
        (96, "failed"),
        (97, "unknown"),
        (98, "expired"),
        (99, "rejected"),
    ):
        if slot < top:
            return status
    return "queued"


def fill(n: int) -> float:
    """Empty the tables and insert ``n`` messages; return the seconds it took."""
    import datetime as dt

    from django.db import connection, transaction
    from django.utils import timezone

    from django_mitto.models import Batch, DeliveryReport, Message

    started = time.perf_counter()
    now = timezone.now()
    table = Message._meta.db_table
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"TRUNCATE {DeliveryReport._meta.db_table}, {table}, "
                    f"{Batch._meta.db_table} RESTART IDENTITY"
                )
        else:
            DeliveryReport.objects.all().delete()
            Message.objects.all().delete()
            Batch.objects.all().delete()
        batches = Batch.objects.bulk_create(
            [
                Batch(sender="Bench", text="Your code is 1234", total=n // 5 // BATCHES)
                for _ in range(BATCHES)
            ]
        )
        first_batch = min(b.pk for b in batches)
        if connection.vendor == "postgresql":
            _fill_postgresql(n, now, first_batch)
        else:
            _fill_bulk(n, now, [b.pk for b in batches], dt)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
            cursor.execute(f"ANALYZE {Batch._meta.db_table}")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return time.perf_counter() - started


def _fill_postgresql(n: int, now: Any, first_batch: int) -> None:
    from django.db import connection

    from django_mitto.models import Message

    # created_at runs from now back over SPAN_DAYS: row i is (i / n) of the span old.
    age = f"(i::float8 / {n}) * interval '{SPAN_DAYS} days'"
    generated = {
        "sender": "'Bench'",
        "recipient": "'+4179' || lpad((mod(i, 10000000))::text, 7, '0')",
        "text": "'Your code is ' || i",
        "encoding": "'GSM'",
        "reference": "'order-' || i",
        "flash": "false",
        "test": "(mod(i, 50) = 0)",
        "metadata": "'{}'::jsonb",
        "batch_id": f"CASE WHEN mod(i, 5) = 0 THEN {first_batch} + (mod(i, {BATCHES})) END",
        "status": _STATUS_SQL,
        "attempts": "1",
        "provider_id": "'mitto-' || i",
        "response_code": "0",
        "response_text": "'SMS sent'",
        "text_length": "length('Your code is ' || i)",
        "segments": "1",
        "delivery_status": "CASE WHEN mod(i, 100) < 80 THEN 'DELIVRD' ELSE '' END",
        "error_code": "'0'",
        "mcc": "'228'",
        "mnc": "'01'",
        "created_at": f"%s::timestamptz - {age}",
        "sent_at": f"%s::timestamptz - {age} + interval '1 second'",
        "status_changed_at": f"%s::timestamptz - {age} + interval '5 seconds'",
    }
    columns: list[str] = []
    expressions: list[str] = []
    params: list[Any] = []
    for field in Message._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in generated:
            expressions.append(generated[field.column])
            params.extend([now] * generated[field.column].count("%s"))
        else:
            # Any other column gets the field's default, so the script survives new fields.
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    sql = (
        f"INSERT INTO {connection.ops.quote_name(Message._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS i"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, n])


def _fill_bulk(n: int, now: Any, batch_ids: list[int], dt: Any) -> None:
    from django_mitto.models import Message

    chunk = 5000
    span = dt.timedelta(days=SPAN_DAYS)
    created_at = Message._meta.get_field("created_at")
    # Spread the rows over the year as on PostgreSQL, rather than stamping them all "now".
    created_at.auto_now_add = False
    try:
        for start in range(1, n + 1, chunk):
            rows = []
            for i in range(start, min(start + chunk, n + 1)):
                created = now - span * (i / n)
                rows.append(
                    Message(
                        sender="Bench",
                        recipient=f"+4179{i % 10_000_000:07d}",
                        text=f"Your code is {i}",
                        encoding="GSM",
                        reference=f"order-{i}",
                        test=i % 50 == 0,
                        batch_id=batch_ids[i % BATCHES] if i % 5 == 0 else None,
                        status=_status(i),
                        attempts=1,
                        provider_id=f"mitto-{i}",
                        response_code=0,
                        response_text="SMS sent",
                        text_length=len(f"Your code is {i}"),
                        segments=1,
                        delivery_status="DELIVRD" if i % 100 < 80 else "",
                        error_code="0",
                        mcc="228",
                        mnc="01",
                        created_at=created,
                        sent_at=created + dt.timedelta(seconds=1),
                        status_changed_at=created + dt.timedelta(seconds=5),
                    )
                )
            Message.objects.bulk_create(rows)
    finally:
        created_at.auto_now_add = True


# -- measuring ------------------------------------------------------------------------------------


class Sample:
    """Timings of one page: query count, median total and database milliseconds."""

    def __init__(self) -> None:
        self.queries = 0
        self.totals: list[float] = []
        self.db: list[float] = []
        self.status = 0

    @property
    def total_ms(self) -> float:
        return statistics.median(self.totals)

    @property
    def db_ms(self) -> float:
        return statistics.median(self.db)

    def row(self) -> str:
        return f"{self.queries:>7} {self.total_ms:>10.1f} {self.db_ms:>10.1f}"


COLUMNS = f"{'queries':>7} {'total ms':>10} {'db ms':>10}"


def measure(client: Any, urls: list[str], repeat: int) -> list[Sample]:
    """Request each of ``urls`` ``repeat`` times, taking turns so that load spikes hit all."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    samples = [Sample() for _ in urls]
    for url in urls:
        client.get(url)  # warm-up: templates, caches, the session
    for _ in range(repeat):
        for url, sample in zip(urls, samples):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                sample.totals.append((time.perf_counter() - started) * 1000)
            sample.db.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
            sample.queries = len(captured)
            sample.status = response.status_code
    return samples


def pages(n: int, now_year: int, now_month: int) -> list[tuple[str, str]]:
    deep = max(1, min(50, n // 100 // 2))
    return [
        ("list, page 1", ""),
        (f"list, page {deep}", f"p={deep}"),
        ("status filter + search", "status__exact=delivered&q=order-12"),
        ("date drill-down (month)", f"created_at__year={now_year}&created_at__month={now_month}"),
        ("batch filter", "batch__id__exact=3"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 100_000])
    parser.add_argument("--repeat", type=int, default=7, help="requests per page (median shown)")
    parser.add_argument(
        "--sqlite",
        default=str(Path(tempfile.gettempdir()) / "mitto-bench.sqlite3"),
        help="SQLite file to use when DATABASE_URL is not a PostgreSQL URL",
    )
    args = parser.parse_args()

    configure(args.sqlite)
    install_urls()

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    user = user_model.objects.filter(
        username="bench"
    ).first() or user_model.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    now = timezone.localtime()

    print(
        f"django-mitto changelist benchmark on {connection.vendor} ({connection.settings_dict['NAME']})"
    )
    print(
        f"{args.repeat} requests per page, taking turns; median milliseconds per request, in"
        " total and in the database; speed-up = total time, Django defaults / django-mitto\n"
    )
    for n in args.sizes:
        seconds = fill(n)
        print(f"N = {n:,} messages (inserted in {seconds:.1f} s)")
        print(f"  {'':<26} {'django-mitto':^30}   {'Django defaults':^30}")
        header = f"  {'page':<26} {COLUMNS}   {COLUMNS}   speed-up"
        print(header)
        print("  " + "-" * (len(header) - 2))
        for name, query in pages(n, now.year, now.month):
            suffix = f"?{query}" if query else ""
            # The baseline's batch filter is the related-field filter: its parameter differs.
            ours_url = "/admin/django_mitto/message/" + suffix.replace("batch__id__exact", "batch")
            base_url = "/baseline/django_mitto/message/" + suffix
            ours, base = measure(client, [ours_url, base_url], args.repeat)
            flags = (
                "" if ours.status == base.status == 200 else f"  (HTTP {ours.status}/{base.status})"
            )
            print(
                f"  {name:<26} {ours.row()}   {base.row()}"
                f"   {base.total_ms / ours.total_ms:>7.1f}x{flags}"
            )
        print()


if __name__ == "__main__":
    main()
