from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from django_mitto import retention
from django_mitto.exceptions import MittoConfigurationError


class Command(BaseCommand):
    help = (
        "Redact the recipient and text of old messages and delete old messages and delivery "
        "reports, as MITTO_RETENTION says, in short batches."
    )

    #: Seconds between two progress lines of one step.
    progress_every = 2.0

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be redacted and deleted; change nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help='Rows per statement (default MITTO_RETENTION["batch_size"], or 2000).',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError(_("--batch-size must be at least 1."))
        last_line = {"at": time.monotonic()}

        def progress(step: retention.StepResult) -> None:
            now = time.monotonic()
            if now - last_line["at"] >= self.progress_every:
                last_line["at"] = now
                self.stdout.write(
                    _("  %(label)s: %(rows)s so far (%(batches)s batches, %(seconds).1f s)")
                    % {
                        "label": step.label,
                        "rows": step.rows,
                        "batches": step.batches,
                        "seconds": step.seconds,
                    }
                )

        try:
            result = retention.purge(
                dry_run=options["dry_run"], batch_size=batch_size, progress=progress
            )
        except MittoConfigurationError as exc:
            raise CommandError(str(exc)) from None
        if result.dry_run:
            self.stdout.write(_("Dry run: nothing was changed."))
        if not result.steps:
            self.stdout.write(_("MITTO_RETENTION turns every step off: nothing to do."))
        for step in result.steps:
            values = {
                "label": step.label,
                "rows": step.rows,
                "before": step.before.isoformat(timespec="seconds"),
            }
            if result.dry_run:
                self.stdout.write(_("%(label)s (older than %(before)s): %(rows)s") % values)
            else:
                self.stdout.write(
                    _(
                        "%(label)s (older than %(before)s): %(rows)s in %(batches)s batches, "
                        "%(seconds).1f s, longest batch %(longest).3f s"
                    )
                    % {
                        **values,
                        "batches": step.batches,
                        "seconds": step.seconds,
                        "longest": step.longest_batch,
                    }
                )
        if not result.dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    _(
                        "Purge done: %(rows)s rows in %(seconds).1f s, longest batch "
                        "%(longest).3f s."
                    )
                    % {
                        "rows": result.rows,
                        "seconds": result.seconds,
                        "longest": result.longest_batch,
                    }
                )
            )
