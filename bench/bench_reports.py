"""Delivery reports under load: gunicorn on PostgreSQL takes thousands of shuffled reports,
duplicates and intermediate statuses among them, and every message ends in its final state.

Usage::

    python bench/bench_reports.py [--messages 5000] [--count 20000] [--concurrency 32]
        [--workers 2] [--threads 16] [--database postgres://.../mitto_bench_reports]

The messages are created directly in the database, sent, each with its Mitto id. Each gets an
intermediate report (``buffered``, ``ACCEPTD`` or ``ENROUTE``) and one final report
(``DELIVRD``, ``delivered``, ``UNDELIV``, ``EXPIRED`` or ``REJECTD``); the rest of ``--count``
are copies of these picked at random (so some are sent twice or more), and all are posted in
random order, as JSON, to the account-wide callback URL, from ``--concurrency`` threads with a
keep-alive connection each. Prints reports/s, the latency percentiles and the errors (any
answer other than 2xx, or a failed request), then checks that every message holds the status of
its final report, that each report was stored once, and that exactly one final report per
message was applied (the others: duplicate or stale).

``tests/test_load.py`` runs :func:`run_load` with small numbers on the test database.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import GunicornProcess, Posted, post_concurrently

DATABASE = "postgres://postgres@127.0.0.1:5432/mitto_bench_reports"
SECRET = "callback-secret"  # MITTO_CALLBACK_SECRET in tests/settings.py
INTERMEDIATE = ["buffered", "ACCEPTD", "ENROUTE"]
FINAL = ["DELIVRD", "delivered", "UNDELIV", "EXPIRED", "REJECTD"]


@dataclass
class LoadResult:
    posted: Posted
    messages: int
    count: int
    wrong: list[str] = field(default_factory=list)

    def summary(self) -> str:
        posted = self.posted
        return (
            f"{self.count:,} reports for {self.messages:,} messages: "
            f"{posted.rate:,.0f} reports/s; latency p50 {posted.percentile(0.5) * 1000:.1f} ms, "
            f"p95 {posted.percentile(0.95) * 1000:.1f} ms, "
            f"p99 {posted.percentile(0.99) * 1000:.1f} ms; errors {len(posted.errors)}; "
            f"answers {dict(sorted(posted.statuses.items()))}; wrong final states {len(self.wrong)}"
        )


def make_messages(count: int) -> list[tuple[int, str, str]]:
    """``count`` sent messages with their Mitto ids, created directly: (pk, id, number)."""
    from django.db import connection
    from django.utils import timezone

    from django_mitto.models import Message, Status

    now = timezone.now()
    Message.objects.bulk_create(
        (
            Message(
                recipient=f"+4179{1_000_000 + i}",
                text=f"Load {i}",
                sender="Shop",
                status=Status.SENT,
                provider_id=f"load-{i:07d}",
                sent_at=now,
            )
            for i in range(count)
        ),
        batch_size=1000,
    )
    if connection.vendor == "postgresql":
        # What autovacuum does to a table that grew this much: without statistics the planner
        # takes the (status, created_at) index for "id = %s AND status = 'sent'".
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Message._meta.db_table}")
    rows = Message.objects.filter(provider_id__startswith="load-").order_by("pk")
    return [
        (pk, pid, number) for pk, pid, number in rows.values_list("pk", "provider_id", "recipient")
    ]


def plan(
    messages: list[tuple[int, str, str]], count: int, seed: int = 1
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The reports to post, shuffled (path, body), and each Mitto id's expected final status."""
    from django_mitto.callbacks import map_status

    if count < 2 * len(messages):
        raise ValueError("--count must be at least twice --messages (two reports a message)")
    rng = random.Random(seed)
    reports: list[dict[str, str]] = []
    expected: dict[str, str] = {}
    for _pk, pid, number in messages:
        final = rng.choice(FINAL)
        expected[pid] = str(map_status(final))
        for word in (rng.choice(INTERMEDIATE), final):
            reports.append({"id": pid, "status": word, "to": number.lstrip("+")})
    reports += [dict(rng.choice(reports)) for _ in range(count - len(reports))]
    rng.shuffle(reports)
    path = f"/mitto/callback/{SECRET}/"
    return [(path, json.dumps(report).encode()) for report in reports], expected


def check(expected: dict[str, str], count: int) -> list[str]:
    """What is wrong after the load: messages not in their final state, reports not stored once,
    final reports applied more or less than once a message."""
    from django_mitto.models import FINAL_STATUSES, DeliveryReport, Message

    wrong = []
    states = dict(
        Message.objects.filter(provider_id__in=list(expected)).values_list("provider_id", "status")
    )
    for pid, status in expected.items():
        if states.get(pid) != status:
            wrong.append(f"{pid}: {states.get(pid)} (expected {status})")
    stored = DeliveryReport.objects.count()
    if stored != count:
        wrong.append(f"{stored} reports stored (expected {count})")
    applied_finals = DeliveryReport.objects.filter(
        outcome=DeliveryReport.Outcome.APPLIED, mapped_status__in=list(FINAL_STATUSES)
    ).count()
    if applied_finals != len(expected):
        wrong.append(f"{applied_finals} final reports applied (expected {len(expected)})")
    return wrong


def run_load(
    env: dict[str, str],
    *,
    messages: int,
    count: int,
    concurrency: int,
    workers: int = 2,
    threads: int = 16,
    seed: int = 1,
) -> LoadResult:
    """Create the messages (Django set up, on the database ``env`` names), post the reports to
    a gunicorn started with ``env``, and check the final states."""
    rows = make_messages(messages)
    requests, expected = plan(rows, count, seed)
    with GunicornProcess(env, workers=workers, threads=threads) as server:
        posted = post_concurrently(server.url, requests, concurrency)
    return LoadResult(posted, messages, count, check(expected, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args()

    from bench._common import empty_tables, setup_django

    env = setup_django(args.database)
    empty_tables()
    print(
        f"gunicorn gthread, {args.workers} workers x {args.threads} threads, PostgreSQL; "
        f"concurrency {args.concurrency}",
        flush=True,
    )
    result = run_load(
        env,
        messages=args.messages,
        count=args.count,
        concurrency=args.concurrency,
        workers=args.workers,
        threads=args.threads,
        seed=args.seed,
    )
    print(result.summary())
    for line in result.posted.errors[:10] + result.wrong[:10]:
        print("  " + line)
    if result.posted.errors or result.wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
