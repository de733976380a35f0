from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_mitto.services import mark_stuck_unknown, requeue_left_behind


class Command(BaseCommand):
    help = (
        "Hand queued messages left behind (a crash before the after-commit send, a broker "
        "outage) to the task backend again, and mark messages stuck in 'sending' as 'unknown'. "
        "Safe to run from cron: a message is still sent at most once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queued-for",
            type=float,
            default=300,
            help="dispatch messages queued for at least this many seconds (default 300)",
        )
        parser.add_argument(
            "--sending-for",
            type=float,
            default=900,
            help="mark 'unknown' messages in 'sending' for at least this many seconds (default 900)",
        )
        parser.add_argument(
            "--limit", type=int, default=1000, help="at most this many messages (default 1000)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        marked = mark_stuck_unknown(timedelta(seconds=options["sending_for"]))
        messages, batches = requeue_left_behind(
            timedelta(seconds=options["queued_for"]), limit=options["limit"]
        )
        self.stdout.write(
            f"{messages} queued message(s) and {batches} batch(es) dispatched, "
            f"{marked} stuck message(s) marked unknown."
        )
