from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_mitto.account_check import OK, PROBLEM, WARNING, run_check
from django_mitto.conf import DEFAULT_ACCOUNT


class Command(BaseCommand):
    help = (
        "Check the configured Mitto account with a test request (nothing is sent): reachable, "
        "key accepted, reply understood, callback URL answering. Exits non-zero on a problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--to",
            default=None,
            help="Number for the test call (Mitto wants a real one); required with --real.",
        )
        parser.add_argument(
            "--sender", default=None, help="Sender ID (default: MITTO_DEFAULT_SENDER)."
        )
        parser.add_argument("--text", default=None, help="Text of the test call or real SMS.")
        parser.add_argument(
            "--real",
            action="store_true",
            help="Also send one real SMS to --to (it is charged and recorded).",
        )
        parser.add_argument(
            "--skip-callback", action="store_true", help="Do not check the callback URL."
        )
        parser.add_argument(
            "--account",
            default=DEFAULT_ACCOUNT,
            help='The account of MITTO_ACCOUNTS to check (default "default").',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = run_check(
            to=options["to"],
            sender=options["sender"],
            real=options["real"],
            text=options["text"],
            check_callbacks=not options["skip_callback"],
            account=options["account"],
        )
        labels = {OK: _("ok"), WARNING: _("warning"), PROBLEM: _("PROBLEM")}
        styles = {OK: self.style.SUCCESS, WARNING: self.style.WARNING, PROBLEM: self.style.ERROR}
        for finding in report.findings:
            self.stdout.write(
                styles[finding.level](f"[{labels[finding.level]}]") + " " + finding.text
            )
        problems = len(report.problems)
        if problems:
            raise CommandError(
                ngettext("%(count)d problem found.", "%(count)d problems found.", problems)
                % {"count": problems}
            )
        self.stdout.write(self.style.SUCCESS(_("Everything checked is in order.")))
