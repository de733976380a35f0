from __future__ import annotations

import csv
import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from django_mitto import services
from django_mitto.conf import DEFAULT_ACCOUNT
from django_mitto.exceptions import MittoError


def _date(value: str) -> datetime.date:
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(value.strip(), pattern).date()
        except ValueError:
            continue
    raise ValueError(value)


class Command(BaseCommand):
    help = (
        "Mitto's usage and cost per country (POST /usage/bycountry) beside the messages and "
        "parts counted here for the same period (UTC days, both included)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        start, end = services.month_to_date()
        parser.add_argument(
            "--start", default=None, help=f"First day, YYYY-MM-DD (default {start.isoformat()})."
        )
        parser.add_argument(
            "--end", default=None, help=f"Last day, included (default today, {end.isoformat()})."
        )
        parser.add_argument(
            "--account-name",
            default=None,
            help="Mitto's account name for the API key (default MITTO_ACCOUNT_NAME).",
        )
        parser.add_argument(
            "--account",
            default=DEFAULT_ACCOUNT,
            help='The account of MITTO_ACCOUNTS to ask and count (default "default").',
        )
        parser.add_argument("--csv", action="store_true", help="Write CSV instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = services.month_to_date()
        for name in ("start", "end"):
            if options[name] is not None:
                try:
                    value = _date(options[name])
                except ValueError:
                    raise CommandError(
                        _("--%(name)s: %(value)r is not a date (YYYY-MM-DD).")
                        % {"name": name, "value": options[name]}
                    ) from None
                if name == "start":
                    start = value
                else:
                    end = value
        try:
            report = services.usage(
                start, end, account_name=options["account_name"], account=options["account"]
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except (MittoError, ValueError) as exc:
            raise CommandError(_("Mitto could not be asked: %(error)s") % {"error": exc}) from None
        if options["csv"]:
            self._csv(report)
        else:
            self._table(report)

    def _csv(self, report: services.UsageReport) -> None:
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(
            [
                "country",
                "mitto_messages",
                "mitto_cost",
                "local_messages",
                "local_parts",
                "difference",
                "matches",
            ]
        )
        for row in report.rows:
            writer.writerow(
                [
                    row.country,
                    row.mitto_messages,
                    "" if row.mitto_cost is None else row.mitto_cost,
                    row.local_messages,
                    row.local_parts,
                    row.difference,
                    "yes" if row.matches else "no",
                ]
            )

    def _table(self, report: services.UsageReport) -> None:
        currency = f" ({report.currency})" if report.currency else ""
        header = [
            _("Country"),
            _("Mitto messages"),
            _("Mitto cost") + currency,
            _("Local messages"),
            _("Local parts"),
            _("Difference"),
        ]
        lines = [
            [
                row.country,
                str(row.mitto_messages),
                "-" if row.mitto_cost is None else str(row.mitto_cost),
                str(row.local_messages),
                str(row.local_parts),
                _("none") if row.matches else f"{row.difference:+d} " + _("(differs)"),
            ]
            for row in report.rows
        ]
        lines.append(
            [
                _("Total"),
                str(report.mitto_messages),
                str(report.mitto_cost),
                str(report.local_messages),
                str(report.local_parts),
                "",
            ]
        )
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

        def fmt(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
            return "  ".join([first, *rest]).rstrip()

        self.stdout.write(
            _("Usage from %(start)s to %(end)s (UTC days, both included)")
            % {"start": report.start.isoformat(), "end": report.end.isoformat()}
        )
        self.stdout.write(fmt(header))
        self.stdout.write("  ".join("-" * w for w in widths))
        for line in lines[:-1]:
            self.stdout.write(fmt(line))
        self.stdout.write("  ".join("-" * w for w in widths))
        self.stdout.write(fmt(lines[-1]))
        if report.differences:
            self.stdout.write(
                self.style.WARNING(
                    _("Mitto's count differs from the local one for: %(countries)s.")
                    % {"countries": ", ".join(row.country for row in report.differences)}
                )
            )
