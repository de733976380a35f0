from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_mitto.callbacks import apply_pending_batch_reports
from django_mitto.models import Message, Status
from django_mitto.tasks import enqueue_message


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
        now = timezone.now()
        stuck = Message.objects.filter(
            status=Status.SENDING,
            status_changed_at__lte=now - timedelta(seconds=options["sending_for"]),
        )
        stuck_batches = set(
            stuck.filter(batch__isnull=False).order_by().values_list("batch_id", flat=True)
        )
        marked = stuck.update(
            status=Status.UNKNOWN,
            status_changed_at=now,
            error="Stuck in 'sending' (the sending process stopped?): it may have been sent. "
            "Check before sending it again.",
        )
        # Reports that came on a batch URL while its rows were in flight can be matched now.
        for batch_pk in stuck_batches:
            apply_pending_batch_reports(batch_pk)
        # Batch members go with their batch's bulk send; single messages one by one.
        pending = list(
            Message.objects.filter(
                status=Status.QUEUED,
                batch__isnull=True,
                created_at__lte=now - timedelta(seconds=options["queued_for"]),
            )
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)[: options["limit"]]
        )
        batches = list(
            Message.objects.filter(
                status=Status.QUEUED,
                batch__isnull=False,
                created_at__lte=now - timedelta(seconds=options["queued_for"]),
            )
            .order_by()
            .values_list("batch_id", flat=True)
            .distinct()
        )
        for pk in pending:
            enqueue_message(pk)
        if batches:
            from django_mitto.tasks import enqueue_batch

            for batch_pk in batches:
                enqueue_batch(batch_pk)
        self.stdout.write(
            f"{len(pending)} queued message(s) and {len(batches)} batch(es) dispatched, "
            f"{marked} stuck message(s) marked unknown."
        )
