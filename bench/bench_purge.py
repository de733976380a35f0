"""Time ``mitto_purge`` on a big table: rows per second and the longest single batch.

Usage::

    createdb -h 127.0.0.1 -U postgres mitto_bench_purge
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mitto_bench_purge \\
        python bench/bench_purge.py 1000000 [--batch-size 2000] [--no-country] [--no-writer]

The message and delivery-report tables are emptied, then filled with N messages, every one
older than ``redact_after_days`` (90): their ages run evenly from 91 to 456 days, so about
three quarters are to be redacted and one quarter (older than 365 days) deleted, and each
has one delivery report received a few seconds after it was created. On PostgreSQL both
tables are filled by one ``INSERT ... SELECT generate_series`` each; elsewhere by chunked
``bulk_create`` (slow: use a small N). The tables are then ANALYZEd, as autovacuum would.

Then the purge runs three times with ``{"redact_after_days": 90, "delete_after_days": 365}``:
a dry run, the real run and a second run (which finds nothing left to do). For each, the time,
the rows per second and the longest single batch (the longest any row lock was held) are
printed, step by step. ``--no-country`` leaves ``Message.country`` empty, as for messages
saved before it existed, so the purge also works out each number's country.

While the real run goes on, a writer thread (``--no-writer`` turns it off) keeps doing what a
live site does: it inserts a message and updates the status of a message the purge is about
to redact, a few times a second, and the slowest of these writes is printed: the longest the
purge made anyone wait.

Use a database of its own: its django-mitto tables are emptied. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RETENTION = {"redact_after_days": 90, "delete_after_days": 365}
#: Message ages run from OLDEST - SPAN_DAYS to OLDEST days.
OLDEST_DAYS = 456
SPAN_DAYS = 365


def configure(sqlite_path: str, batch_size: int) -> None:
    import django
    from django.conf import settings

    from tests.settings import postgres_from_url

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        db = postgres_from_url(url)
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-mitto-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
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
        DATABASES={"default": db},
        MITTO_SEND_ON_SAVE=False,
        MITTO_RETENTION={**RETENTION, "batch_size": batch_size},
    )
    django.setup()


# -- data -----------------------------------------------------------------------------------------


def fill(n: int, with_country: bool) -> float:
    """Empty the tables, insert ``n`` old messages and one report each; return the seconds."""
    from django.db import connection, transaction

    from django_mitto.models import Batch, DeliveryReport, Message

    started = time.perf_counter()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"TRUNCATE {DeliveryReport._meta.db_table}, {Message._meta.db_table}, "
                    f"{Batch._meta.db_table} RESTART IDENTITY"
                )
            _fill_postgresql(n, with_country)
        else:
            DeliveryReport.objects.all().delete()
            Message.objects.all().delete()
            _fill_bulk(n, with_country)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
            cursor.execute(f"ANALYZE {DeliveryReport._meta.db_table}")
        else:
            cursor.execute("ANALYZE")
    return time.perf_counter() - started


def _insert_select(model: Any, generated: dict[str, str], params: dict[str, Any], n: int) -> None:
    """One ``INSERT ... SELECT ... FROM generate_series(1, n) AS i`` into ``model``'s table.

    A column not in ``generated`` gets the field's default, so the script survives new fields.
    """
    from django.db import connection

    columns: list[str] = []
    expressions: list[str] = []
    values: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in generated:
            expression = generated[field.column]
            expressions.append(expression)
            values.extend([params["now"]] * expression.count("%(now)s"))
        else:
            expressions.append("%s")
            values.append(field.get_db_prep_save(field.get_default(), connection))
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS i"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("%(now)s", "%s"), [*values, n])


def _fill_postgresql(n: int, with_country: bool) -> None:
    from django.utils import timezone

    from django_mitto.models import DeliveryReport, Message

    # Row i is the older the smaller i is, as on a real table (keys grow with time).
    created = (
        f"%(now)s::timestamptz - interval '{OLDEST_DAYS} days'"
        f" + ((i - 1)::float8 / {n}) * interval '{SPAN_DAYS} days'"
    )
    number = "'+4179' || lpad((mod(i, 10000000))::text, 7, '0')"
    params = {"now": timezone.now()}
    _insert_select(
        Message,
        {
            "sender": "'Bench'",
            "recipient": number,
            "country": "'CHE'" if with_country else "''",
            "text": "'Your code is ' || i || '. It is valid for ten minutes.'",
            "encoding": "'GSM'",
            "reference": "'order-' || i",
            "metadata": "'{}'::jsonb",
            "status": "CASE WHEN mod(i, 10) < 8 THEN 'delivered' ELSE 'undelivered' END",
            "attempts": "1",
            "provider_id": "'mitto-' || i",
            "response_code": "0",
            "response_text": "'SMS sent'",
            "text_length": "48",
            "segments": "1",
            "delivery_status": "CASE WHEN mod(i, 10) < 8 THEN 'DELIVERED' ELSE 'FAILED' END",
            "mcc": "'228'",
            "mnc": "'01'",
            "created_at": created,
            "sent_at": f"{created} + interval '1 second'",
            "status_changed_at": f"{created} + interval '5 seconds'",
        },
        params,
        n,
    )
    # The messages were numbered 1..n by RESTART IDENTITY: report i belongs to message i.
    _insert_select(
        DeliveryReport,
        {
            "message_id": "i",
            "provider_id": "'mitto-' || i",
            "status": "'DELIVERED'",
            "mapped_status": "'delivered'",
            "recipient": number,
            "mcc": "'228'",
            "mnc": "'01'",
            "outcome": "'applied'",
            "method": "'POST'",
            "remote_addr": "'203.0.113.7'",
            "payload": (
                "jsonb_build_object('query', '{}'::jsonb, 'body', jsonb_build_object("
                f"'id', 'mitto-' || i, 'to', {number}, 'status', 'DELIVERED', "
                "'mcc', '228', 'mnc', '01', 'reference', 'order-' || i))"
            ),
            "received_at": f"{created} + interval '5 seconds'",
        },
        params,
        n,
    )


def _fill_bulk(n: int, with_country: bool) -> None:
    import datetime as dt

    from django.utils import timezone

    from django_mitto.models import DeliveryReport, Message

    now = timezone.now()
    chunk = 5000
    fields = [Message._meta.get_field("created_at"), DeliveryReport._meta.get_field("received_at")]
    for field in fields:
        field.auto_now_add = False
    try:
        for start in range(1, n + 1, chunk):
            messages = []
            for i in range(start, min(start + chunk, n + 1)):
                created = (
                    now
                    - dt.timedelta(days=OLDEST_DAYS)
                    + dt.timedelta(days=SPAN_DAYS) * ((i - 1) / n)
                )
                messages.append(
                    Message(
                        sender="Bench",
                        recipient=f"+4179{i % 10_000_000:07d}",
                        country="CHE" if with_country else "",
                        text=f"Your code is {i}. It is valid for ten minutes.",
                        encoding="GSM",
                        status="delivered" if i % 10 < 8 else "undelivered",
                        provider_id=f"mitto-{i}",
                        segments=1,
                        mcc="228",
                        mnc="01",
                        created_at=created,
                        sent_at=created,
                    )
                )
            Message.objects.bulk_create(messages)
            DeliveryReport.objects.bulk_create(
                DeliveryReport(
                    message=m,
                    provider_id=m.provider_id,
                    status="DELIVERED",
                    recipient=m.recipient,
                    method="POST",
                    payload={"body": {"id": m.provider_id, "to": m.recipient}},
                    received_at=m.created_at,
                )
                for m in messages
            )
    finally:
        for field in fields:
            field.auto_now_add = True


# -- a live site meanwhile --------------------------------------------------------------------------


class Writer(threading.Thread):
    """Inserts a message and settles an old one a few times a second; notes each write's time."""

    def __init__(self, n: int) -> None:
        super().__init__(daemon=True)
        self.n = n
        self.stop = threading.Event()
        self.times: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        from django.db import connection, transaction

        from django_mitto.models import Message

        rng = random.Random(1)
        try:
            while not self.stop.is_set():
                # A message the purge has still to reach, or is working on right now.
                pk = rng.randint(1, self.n)
                started = time.perf_counter()
                try:
                    with transaction.atomic():
                        Message.objects.create(recipient="+41791234567", text="New message")
                        Message.objects.filter(pk=pk).update(status_changed_at=None)
                except Exception as exc:
                    self.errors.append(repr(exc))
                self.times.append(time.perf_counter() - started)
                self.stop.wait(0.2)
        finally:
            connection.close()


# -- measuring ------------------------------------------------------------------------------------


def report(title: str, result: Any) -> None:
    print(f"\n{title}: {result.rows:,} rows in {result.seconds:.1f} s", end="")
    if not result.dry_run and result.seconds:
        print(
            f", {result.rows / result.seconds:,.0f} rows/s,"
            f" longest batch {result.longest_batch * 1000:.0f} ms"
        )
    else:
        print()
    print(f"  {'step':<18} {'rows':>10} {'batches':>8} {'seconds':>8} {'rows/s':>9} {'longest':>9}")
    for step in result.steps:
        rate = f"{step.rows / step.seconds:,.0f}" if step.seconds else "-"
        print(
            f"  {step.name:<18} {step.rows:>10,} {step.batches:>8} {step.seconds:>8.1f}"
            f" {rate:>9} {step.longest_batch * 1000:>7.0f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="messages to create")
    parser.add_argument("--batch-size", type=int, default=2000, help="rows per statement")
    parser.add_argument(
        "--no-country",
        action="store_true",
        help="leave Message.country empty (messages saved before it existed)",
    )
    parser.add_argument("--no-writer", action="store_true", help="no concurrent writes")
    parser.add_argument(
        "--sqlite",
        default=str(Path(tempfile.gettempdir()) / "mitto-bench-purge.sqlite3"),
        help="SQLite file to use when DATABASE_URL is not a PostgreSQL URL",
    )
    args = parser.parse_args()
    configure(args.sqlite, args.batch_size)

    from django.core.management import call_command
    from django.db import connection

    from django_mitto import retention

    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}, batch size {args.batch_size}")
    took = fill(args.n, with_country=not args.no_country)
    print(f"filled {args.n:,} messages and {args.n:,} reports in {took:.1f} s")

    report("dry run", retention.purge(dry_run=True))
    writer = None if args.no_writer else Writer(args.n)
    if writer:
        writer.start()
    try:
        result = retention.purge()
    finally:
        if writer:
            writer.stop.set()
            writer.join()
    report("purge", result)
    if writer and writer.times:
        print(
            f"  meanwhile {len(writer.times)} writes (insert + update of an old row):"
            f" median {statistics.median(writer.times) * 1000:.1f} ms,"
            f" slowest {max(writer.times) * 1000:.0f} ms, errors {len(writer.errors)}"
        )
        for error in writer.errors[:3]:
            print(f"    {error}")
    report("second run", retention.purge())


if __name__ == "__main__":
    main()
