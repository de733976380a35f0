"""``manage.py mitto_reports``: the delivery reports received, newest first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_mitto.models import DeliveryReport


class Command(BaseCommand):
    help = (
        "List the delivery reports received, newest first, with the field names each one "
        "carried. --unparsed shows the ones that could not be read (a callback template with "
        "other field names, a body too large...): they are stored raw and applied to nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--unparsed",
            action="store_true",
            help="only the reports that could not be read (outcome 'unparsed')",
        )
        parser.add_argument(
            "--outcome",
            choices=DeliveryReport.Outcome.values,
            help="only the reports with this outcome",
        )
        parser.add_argument(
            "--limit", type=int, default=50, help="at most this many reports (default 50)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        outcome = options["outcome"]
        if options["unparsed"]:
            if outcome and outcome != DeliveryReport.Outcome.UNPARSED:
                raise CommandError("--unparsed and --outcome name different outcomes.")
            outcome = DeliveryReport.Outcome.UNPARSED
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        reports = DeliveryReport.objects.order_by("-received_at", "-pk")
        if outcome:
            reports = reports.filter(outcome=outcome)
        shown = list(reports[: options["limit"]])
        for report in shown:
            self.stdout.write(self._line(report))
        count = len(shown)
        noun = "report" if count == 1 else "reports"
        self.stdout.write(f"{count} {noun}" + (f" ({outcome})" if outcome else ""))

    def _line(self, report: DeliveryReport) -> str:
        payload = report.payload if isinstance(report.payload, dict) else {}
        received = timezone.localtime(report.received_at).strftime("%Y-%m-%d %H:%M:%S")
        parts = [
            f"#{report.pk}",
            received,
            report.method or "?",
            report.remote_addr or "?",
            report.outcome or "-",
        ]
        # The scope of the callback URL ("message 17", "batch 3"), never its token.
        if payload.get("scope"):
            parts.append(str(payload["scope"]))
        if report.message_id:
            parts.append(f"message {report.message_id}")
        if report.provider_id:
            parts.append(f"id {report.provider_id}")
        if report.status:
            parts.append(f"status {report.status}")
        names = report.field_names()
        parts.append("fields: " + (", ".join(names) if names else "(none)"))
        if payload.get("content_type"):
            parts.append(f"content type {payload['content_type']}")
        if payload.get("content_length"):
            parts.append(f"{payload['content_length']} bytes")
        return "  ".join(parts)
