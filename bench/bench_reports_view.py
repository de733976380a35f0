"""The delivery-report view next to a bare Django view, on the same gunicorn and database.

Usage::

    python bench/bench_reports_view.py [--count 3000] [--concurrency 16] [--rounds 3]
        [--workers 2] [--threads 16] [--database postgres://.../mitto_bench_reports]

One gunicorn (gthread workers, persistent database connections: ``CONN_MAX_AGE``) on
PostgreSQL serves both ``bench/bare_urls.py`` views: django-mitto's callback view, and a bare
Django view (no DRF, no token, no rules) that reads the JSON body and does one UPDATE of a
message by its primary key, setting what an applied report sets (status, raw status, when it
changed). Each round posts ``--count`` reports ("delivered", each for
another sent message: every one applied) to each, from ``--concurrency`` threads with one
keep-alive connection each, the messages put back in the sent state in between; rounds
alternate and the medians are compared (the ratio: callback / bare).

Also prints what one report costs on the database, counted in this process
(:class:`bench._common.Counted`): applied, duplicate, unmatched; and the applied report's SQL;
and the CPU time one report took in the gunicorn workers and in PostgreSQL's backends (Linux).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Counted,
    GunicornProcess,
    alternate,
    empty_tables,
    post_concurrently,
    process_cpu,
    setup_django,
)
from bench.bench_reports import DATABASE, SECRET, make_messages

CALLBACK = f"/mitto/callback/{SECRET}/"


def reset() -> None:
    """Every message back to sent, no report stored: each round starts from the same state."""
    from django.db import connection

    from django_mitto.models import DeliveryReport, Message, Status

    Message.objects.update(status=Status.SENT, delivery_status="", error_code="")
    DeliveryReport.objects.all().delete()
    # The rows the last round left dead cleaned up and written out now, not by autovacuum or a
    # checkpoint in the middle of the next round.
    tables = [model._meta.db_table for model in (Message, DeliveryReport)]
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(tables)}")
        cursor.execute("CHECKPOINT")


def costs(message: tuple[int, str, str]) -> None:
    """Queries and commits of one report through the view, in this process."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    _pk, pid, number = message

    def post(data: dict[str, str]) -> tuple[str, Counted, list[str]]:
        with CaptureQueriesContext(connection) as captured, Counted().active() as counted:
            answer = client.post(CALLBACK, json.dumps(data), content_type="application/json")
        return answer.json()["outcome"], counted, [q["sql"] for q in captured.captured_queries]

    report = {"id": pid, "status": "delivered", "to": number.lstrip("+")}
    cases = [
        ("applied", report),
        ("duplicate", report),
        ("unmatched", {**report, "id": "nobody-has-this-id"}),
    ]
    applied_sql: list[str] = []
    for name, data in cases:
        outcome, counted, sql = post(data)
        assert outcome == name, (name, outcome)
        print(f"  {name}: {counted.queries} queries, {counted.commits} commit(s)")
        if name == "applied":
            applied_sql = sql
    print("  the applied report's SQL:")
    for statement in applied_sql:
        print(f"    {statement[:300]}{'...' if len(statement) > 300 else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args()

    env = setup_django(args.database)
    empty_tables()
    messages = make_messages(args.count)
    print("One report, in this process:")
    costs(messages[0])
    callback_requests = [
        (
            CALLBACK,
            json.dumps({"id": pid, "status": "delivered", "to": number.lstrip("+")}).encode(),
        )
        for _pk, pid, number in messages
    ]
    bare_requests = [(f"/bare/{pk}/", b'{"status": "delivered"}') for pk, _pid, _n in messages]

    database = args.database.rsplit("/", 1)[-1]
    cpu: dict[str, list[float]] = {}

    def run(requests: list[tuple[str, bytes]], url: str, name: str = "") -> float:
        reset()
        before = (process_cpu(parent=server.process.pid), process_cpu(cmdline=f" {database} "))
        posted = post_concurrently(url, requests, args.concurrency)
        after = (process_cpu(parent=server.process.pid), process_cpu(cmdline=f" {database} "))
        if posted.errors:
            raise SystemExit(f"{len(posted.errors)} errors, first: {posted.errors[0]}")
        if name:
            used = cpu.setdefault(name, [0.0, 0.0, 0])
            used[0] += after[0] - before[0]
            used[1] += after[1] - before[1]
            used[2] += len(requests)
        return posted.rate

    print(
        f"gunicorn gthread, {args.workers} workers x {args.threads} threads, PostgreSQL, "
        f"CONN_MAX_AGE; {args.count:,} reports a run, concurrency {args.concurrency}",
        flush=True,
    )
    with GunicornProcess(env, workers=args.workers, threads=args.threads) as server:
        # Warm up: every thread's connection opened, the code paths taken once.
        warm = min(200, args.count)
        run(bare_requests[:warm], server.url)
        run(callback_requests[:warm], server.url)
        medians = alternate(
            args.rounds,
            {
                "bare view": lambda: run(bare_requests, server.url, "bare view"),
                "callback view": lambda: run(callback_requests, server.url, "callback view"),
            },
            unit="reports/s",
        )
    from django_mitto.models import DeliveryReport

    applied = DeliveryReport.objects.filter(outcome=DeliveryReport.Outcome.APPLIED).count()
    assert applied == args.count, f"{applied} of {args.count} reports applied in the last round"
    for name, (workers, postgres, count) in cpu.items():
        print(
            f"  {name}: CPU per report {workers / count * 1000:.2f} ms in the gunicorn workers, "
            f"{postgres / count * 1000:.2f} ms in PostgreSQL"
        )
    bare, callback = medians["bare view"], medians["callback view"]
    print(
        f"medians of {args.rounds}: bare view {bare:,.0f} reports/s, callback view "
        f"{callback:,.0f} reports/s; ratio {callback / bare:.2f}"
    )


if __name__ == "__main__":
    main()
