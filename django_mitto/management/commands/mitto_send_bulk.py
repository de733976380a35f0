"""``manage.py mitto_send_bulk``: a bulk send (a campaign) from a file of numbers.

The file is read as the admin's bulk form reads an uploaded CSV file
(:func:`~django_mitto.bulk.parse_csv`), previewed with the same code
(:func:`~django_mitto.bulk.preview_bulk`) and sent the same way
(:func:`~django_mitto.bulk.send_preview`, which calls ``send_bulk()``).

Exit status: 0 when the batch was sent or queued (or the dry run found someone to send to);
1 for bad options or input (nothing is created); 3 when the batch was created but some of its
messages failed or may not have been sent.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import transaction
from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from tqdm import tqdm

from django_mitto import encoding as enc
from django_mitto.backends import get_backend
from django_mitto.backends.inline import InlineBackend
from django_mitto.bulk import (
    BulkPreview,
    ColumnError,
    CsvError,
    Entry,
    decode_csv,
    parse_csv,
    preview_bulk,
    send_preview,
)
from django_mitto.conf import DEFAULT_ACCOUNT, Account, conf
from django_mitto.exceptions import MittoConfigurationError, MittoError
from django_mitto.models import STATUS_INFO, Batch, Message, Status
from django_mitto.options import clean_options
from django_mitto.signals import message_failed, message_sent

#: The exit status when the batch was created but not every message of it went out.
EXIT_NOT_ALL_SENT = 3
#: Invalid, opted-out and duplicate entries listed at most (all of them with -v 2), as the admin.
LIST_LIMIT = 500
#: Statuses after which a message of the batch counts as not sent (or maybe not).
NOT_SENT = (Status.FAILED, Status.UNKNOWN, Status.REJECTED)


class _BarStream:
    """Where tqdm draws: the command's stderr, without the line ending and colour that
    Django's ``OutputWrapper`` adds to each write."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, style_func=lambda plain: plain, ending="")

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return bool(self._out.isatty())


def _where(entry: Entry) -> str:
    return _("line %(line)s") % {"line": entry.position}


class Command(BaseCommand):
    help = (
        "Send one text to every number of a file (CSV or one number per line), as the admin's "
        "bulk send does: invalid numbers and numbers that opted out are left out and listed, "
        "duplicates are sent once. --dry-run shows the preview and creates nothing. Exit "
        "status: 0 sent or queued, 1 bad options or input (nothing created), 3 the batch was "
        "created but some messages failed or may not have been sent."
    )
    # call_command(..., stdin=...) reads "--file -" from there (tests).
    stealth_options = ("stdin",)
    #: More keyword arguments of every tqdm bar (how often it redraws, say).
    bar_options: dict[str, Any] = {}

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file",
            required=True,
            metavar="PATH",
            help="The numbers: a CSV file (a column of numbers, optionally a column of "
            "references; a header row is recognised; ';', ',' or tab separated; UTF-8) or a text "
            "file with one number per line. '-' reads standard input.",
        )
        parser.add_argument(
            "--column",
            default=None,
            help="The column of numbers: its name in the header row, or its number (1 is the "
            "first). Default: the column the header names (phone, number, mobile...), else the "
            "first.",
        )
        text = parser.add_mutually_exclusive_group(required=True)
        text.add_argument("--text", default=None, help="The message text.")
        text.add_argument(
            "--text-file",
            default=None,
            metavar="PATH",
            help="Read the message text from this UTF-8 file (trailing line breaks dropped).",
        )
        parser.add_argument(
            "--sender", default=None, help="Sender ID (default: the account's default sender)."
        )
        parser.add_argument(
            "--encoding", default=enc.AUTO, help="GSM, Unicode, Binary or Auto (default: Auto)."
        )
        parser.add_argument(
            "--reference",
            default="",
            help="Reference echoed in delivery reports (a reference column of the file wins).",
        )
        parser.add_argument(
            "--account",
            default=DEFAULT_ACCOUNT,
            help='The account of MITTO_ACCOUNTS to send through (default "default").',
        )
        parser.add_argument("--test", action="store_true", help="A test send: Mitto sends nothing.")
        parser.add_argument(
            "--region",
            default=None,
            help="Region of numbers written without a country code, e.g. CH (default: "
            "MITTO_DEFAULT_REGION).",
        )
        parser.add_argument(
            "--ignore-opt-out",
            action="store_true",
            help="Send to numbers that opted out too (only for a transactional message).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show the preview (valid, invalid, duplicates, opted out, encoding, parts); "
            "create and send nothing.",
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="No progress bars (they are drawn on stderr, and only when it is a terminal).",
        )

    # -- the whole ---------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        self.show_progress = not options["no_progress"]
        self.bar_stream = _BarStream(self.stderr)
        verbosity = int(options["verbosity"])

        account = self._account(options["account"])
        region = self._region(options["region"])
        text, text_option = self._text(options)
        encoding = self._message_options(options, text, text_option, account)
        backend = None
        if not options["dry_run"]:
            try:
                account.require_api_key()
                backend = get_backend()
            except MittoConfigurationError as exc:
                raise CommandError(str(exc)) from None
        entries, source, layout = self._entries(options)

        with self._bar(_("Checking numbers"), len(entries), _("numbers")) as bar:
            preview, problems = preview_bulk(
                self._counted(entries, bar),
                text=text,
                encoding=encoding,
                region=region,
                account=account.name,
                sender=options["sender"] or "",
                reference=options["reference"],
                test=bool(options["test"]),
                ignore_opt_out=options["ignore_opt_out"],
            )
        preview.csv_layout = layout
        preview.csv_name = source
        if verbosity >= 1:
            self._show_preview(preview, source, verbosity)
        if problems:
            self._show_figures(preview, started)
            raise CommandError(self._problems(problems, text_option))
        if options["dry_run"]:
            self._show_figures(preview, started)
            self.stdout.write(_("Dry run: nothing was created."))
            return
        inline = (
            isinstance(backend, InlineBackend) and not transaction.get_connection().in_atomic_block
        )
        batch = self._send(preview, options["ignore_opt_out"], inline)
        if not inline:
            self._show_figures(preview, started, batch)
            self._show_queued(batch)
            return
        counts = self._status_counts(batch)
        self._show_figures(preview, started, batch, counts)
        not_sent = sum(counts.get(status, 0) for status in NOT_SENT)
        if not_sent:
            raise CommandError(self._not_sent(batch, not_sent), returncode=EXIT_NOT_ALL_SENT)

    # -- options -----------------------------------------------------------------------------

    def _account(self, name: str) -> Account:
        known = conf.accounts()
        if name not in known:
            raise CommandError(
                _("--account: no Mitto account named %(name)s; known accounts: %(known)s.")
                % {"name": repr(name), "known": ", ".join(known)}
            )
        return conf.account(name)

    def _region(self, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise CommandError(
                _("--region: %(value)s is not a region code (two letters, such as CH or DE).")
                % {"value": repr(value)}
            )
        return region

    def _text(self, options: dict[str, Any]) -> tuple[str, str]:
        """The message text and the option it came from."""
        if options["text"] is not None:
            return options["text"], "--text"
        path = options["text_file"]
        if path == "-" and options["file"] == "-":
            raise CommandError(
                _("--text-file: standard input already gives the numbers (--file -).")
            )
        data = self._read(path, "--text-file", options)
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise CommandError(
                    _("--text-file: %(name)s is not UTF-8 text.") % {"name": path}
                ) from None
        return data.rstrip("\r\n"), "--text-file"

    def _message_options(
        self, options: dict[str, Any], text: str, text_option: str, account: Account
    ) -> str:
        """The encoding (its canonical name), checked as ``send_bulk()`` checks it, with the
        sender, the text and the reference; every fault named by its option."""
        errors: dict[str, Any] = {}
        _sender, encoding, _info = clean_options(
            sender=options["sender"] or None,
            encoding=options["encoding"],
            text=text,
            udh="",
            validity=None,
            pid=None,
            errors=errors,
            reference=options["reference"],
            default_sender=account.DEFAULT_SENDER,
        )
        if errors:
            names = {"text": text_option}
            raise CommandError(
                "; ".join(
                    f"{names.get(field, '--' + field)}: {' '.join(error.messages)}"
                    for field, error in errors.items()
                )
            )
        return encoding

    # -- the numbers -------------------------------------------------------------------------

    def _read(self, path: str, option: str, options: dict[str, Any]) -> bytes | str:
        """The bytes of a file, or of standard input for ``-`` (text when a test gives text)."""
        if path == "-":
            stream = options.get("stdin") or sys.stdin
            data: bytes | str = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
            return data
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(
                _("%(option)s: %(path)s cannot be read: %(error)s")
                % {"option": option, "path": path, "error": exc.strerror or exc}
            ) from None

    def _entries(self, options: dict[str, Any]) -> tuple[list[Entry], str, Any]:
        """The entries of the file, the name to show for it and how its columns were read."""
        path = options["file"]
        column = options["column"]
        if column is not None and not column.strip():
            raise CommandError(_("--column: give the column's name or number (1 is the first)."))
        source = _("standard input") if path == "-" else path
        data = self._read(path, "--file", options)
        try:
            text = decode_csv(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
            entries, layout = parse_csv(text, column=column)
        except ColumnError as exc:
            raise CommandError(f"--column: {exc}") from None
        except CsvError as exc:
            raise CommandError(f"--file: {exc}") from None
        if not entries:
            raise CommandError(_("--file: %(name)s holds no numbers.") % {"name": source})
        return entries, source, layout

    # -- progress ----------------------------------------------------------------------------

    def _bar(self, description: str, total: int, unit: str) -> Any:
        """A progress bar on stderr; drawn only when stderr is a terminal (tqdm's way)."""
        return tqdm(
            total=total,
            desc=description,
            unit=" " + unit,
            file=self.bar_stream,
            disable=None if self.show_progress else True,
            leave=False,
            dynamic_ncols=True,
            **self.bar_options,
        )

    @staticmethod
    def _counted(entries: list[Entry], bar: Any) -> Iterator[Entry]:
        for entry in entries:
            yield entry
            bar.update(1)

    # -- sending -----------------------------------------------------------------------------

    def _send(self, preview: BulkPreview, ignore_opt_out: bool, inline: bool) -> Batch:
        """Create the batch; with the inline backend, send it here, after the commit."""
        total = len(preview.recipients)
        labels = {"validate": _("Validating"), "insert": _("Inserting")}
        stages: dict[str, Any] = {}
        sending: list[Any] = []
        batch_pk: list[int] = []

        def progress(stage: str, count: int) -> None:
            bar = stages.get(stage)
            if bar is None:
                for done in stages.values():
                    done.close()
                bar = stages[stage] = self._bar(labels.get(stage, stage), total, _("numbers"))
            bar.update(count)

        def one_left(sender: Any, message: Message, **kwargs: Any) -> None:
            # A message of the batch left "queued" for good: accepted by Mitto, or failed.
            if sending and batch_pk and message.batch_id == batch_pk[0]:
                sending[0].update(1)

        uid = f"mitto_send_bulk-{uuid.uuid4()}"
        message_sent.connect(one_left, weak=False, dispatch_uid=uid)
        message_failed.connect(one_left, weak=False, dispatch_uid=uid)
        batch: Batch | None = None
        try:
            # Sending starts when this block commits, so the batch exists even if sending fails.
            with transaction.atomic():
                batch = send_preview(preview, ignore_opt_out=ignore_opt_out, progress=progress)
                for bar in stages.values():
                    bar.close()
                batch_pk.append(batch.pk)
                if inline:
                    sending.append(self._bar(_("Sending"), batch.total, _("messages")))
        except ValidationError as exc:
            if batch is not None:
                raise
            raise CommandError(
                "; ".join(
                    f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()
                )
            ) from None
        except (MittoError, MittoConfigurationError) as exc:
            if batch is None:
                raise CommandError(str(exc)) from None
            raise CommandError(
                _("Batch %(pk)s was created, but sending it failed: %(error)s")
                % {"pk": batch.pk, "error": exc},
                returncode=EXIT_NOT_ALL_SENT,
            ) from None
        finally:
            message_sent.disconnect(dispatch_uid=uid)
            message_failed.disconnect(dispatch_uid=uid)
            for bar in [*stages.values(), *sending]:
                bar.close()
        return batch

    def _status_counts(self, batch: Batch) -> dict[str, int]:
        rows = (
            Message.objects.filter(batch=batch)
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
        )
        return {status: n for status, n in rows}

    # -- what is shown -----------------------------------------------------------------------

    def _show_preview(self, preview: BulkPreview, source: str, verbosity: int) -> None:
        """What the admin's bulk preview shows, as text: how the file was read, the notes, the
        entries left out with the reason (and the valid ones with -v 2)."""
        write = self.stdout.write
        layout = preview.csv_layout
        if layout is not None:
            read = [_("Header row found.") if layout.header else _("No header row.")]
            if layout.number_name:
                read.append(
                    _("Numbers from column %(column)s (“%(name)s”).")
                    % {"column": layout.number_column, "name": layout.number_name}
                )
            else:
                read.append(_("Numbers from column %(column)s.") % {"column": layout.number_column})
            if layout.reference_column and layout.reference_name:
                read.append(
                    _("References from column %(column)s (“%(name)s”).")
                    % {"column": layout.reference_column, "name": layout.reference_name}
                )
            elif layout.reference_column:
                read.append(
                    _("References from column %(column)s.") % {"column": layout.reference_column}
                )
            write(f"{source}: " + " ".join(read))
        if conf.SEVERAL_ACCOUNTS:
            write(_("Sent through the Mitto account %(account)s.") % {"account": preview.account})
        if preview.test:
            write(_("Test: Mitto accepts these messages but sends nothing."))
        for note in preview.notes:
            write(note)
        limit = None if verbosity >= 2 else LIST_LIMIT
        self._list(
            _("Invalid numbers: not sent"),
            [f"{_where(r.entry)}: {r.entry.raw} — {r.reason}" for r in preview.rejected[:limit]],
            len(preview.rejected),
        )
        self._list(
            _("Opted out: not sent"),
            [f"{_where(r.entry)}: {r.entry.raw} → {r.number}" for r in preview.opted_out[:limit]],
            len(preview.opted_out),
        )
        self._list(
            _("Duplicates: sent once"),
            [
                f"{_where(d.entry)}: {d.entry.raw} → {d.number} "
                + _("(first given on %(where)s)") % {"where": _where(d.first)}
                for d in preview.duplicates[:limit]
            ],
            len(preview.duplicates),
        )
        if verbosity >= 2:
            rows = []
            for r in preview.recipients:
                row = f"{_where(r.entry)}: {r.entry.raw} → {r.number}"
                if preview.has_row_references:
                    row += f" [{r.reference or preview.reference}]"
                rows.append(row)
            self._list(
                ngettext("%(counter)s valid number", "%(counter)s valid numbers", len(rows))
                % {"counter": len(rows)},
                rows,
                len(rows),
            )

    def _list(self, title: str, rows: list[str], count: int) -> None:
        if not count:
            return
        self.stdout.write("")
        self.stdout.write(title)
        for row in rows:
            self.stdout.write("  " + row)
        if count > len(rows):
            self.stdout.write(
                _("The first %(shown)s of %(count)s are shown (-v 2 shows all).")
                % {"shown": len(rows), "count": count}
            )

    def _show_figures(
        self,
        preview: BulkPreview,
        started: float,
        batch: Batch | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        """The summary: the preview's figures, the batch and, once sent, where its messages are."""
        rows: list[tuple[str, str]] = []
        if batch is not None:
            rows.append((_("Batch"), str(batch.pk)))
        rows += [
            (_("Valid numbers"), str(len(preview.recipients))),
            (_("Invalid"), str(len(preview.rejected))),
            (_("Duplicates"), f"{len(preview.duplicates)} ({_('sent once')})"),
        ]
        opted_out = len(preview.opted_out)
        if batch is not None:
            opted_out = batch.opted_out  # also those that opted out since the preview
        rows.append((_("Opted out"), f"{opted_out} ({_('left out')})"))
        if preview.opted_out_included:
            rows[-1] = (
                _("Opted out"),
                _("%(count)s (sent to all the same)") % {"count": len(preview.opted_out_included)},
            )
        if preview.info is not None:
            characters = ngettext(
                "%(counter)s character", "%(counter)s characters", preview.info.characters
            ) % {"counter": preview.info.characters}
            size = _("up to %(size)s per part") % {"size": preview.info.part_size}
            rows += [
                (_("Encoding"), f"{preview.encoding_label}, {characters}"),
                (_("Parts per message"), f"{preview.parts_per_message} ({size})"),
                (_("Total parts"), str(preview.total_parts)),
            ]
        if counts is not None:
            rows.append(
                (
                    _("Messages"),
                    ", ".join(
                        f"{STATUS_INFO[status].label}: {counts[status]}"
                        for status in Status
                        if counts.get(status)
                    )
                    or "0",
                )
            )
        rows.append(
            (_("Time taken"), _("%(seconds).1f s") % {"seconds": time.monotonic() - started})
        )
        width = max(len(label) for label, _value in rows) + 1
        self.stdout.write("")
        for label, value in rows:
            self.stdout.write(f"{label + ':':<{width}} {value}")

    def _show_queued(self, batch: Batch) -> None:
        self.stdout.write(
            _("Batch %(pk)s is queued: the task backend (%(backend)s) sends it.")
            % {"pk": batch.pk, "backend": conf.TASK_BACKEND}
        )
        try:
            url = reverse("admin:django_mitto_batch_change", args=[batch.pk])
        except NoReverseMatch:
            self.stdout.write(_("Follow it with manage.py mitto_reports."))
        else:
            self.stdout.write(
                _("Follow it on the batch page, %(url)s, or with manage.py mitto_reports.")
                % {"url": url}
            )

    def _problems(self, problems: dict[str, list[ValidationError]], text_option: str) -> str:
        """Why nothing can be sent, each fault named by its option."""
        faults = []
        for name, errors in problems.items():
            if name == "numbers" and errors[0].code == "no_valid_numbers":
                faults.append(
                    "--file: "
                    + _("no valid number: every number given is invalid (the reasons are above).")
                )
                continue
            option = {"numbers": "--file", "text": text_option}.get(name, "--" + name)
            faults.append(f"{option}: " + " ".join(m for e in errors for m in e.messages))
        return "; ".join(faults)

    def _not_sent(self, batch: Batch, count: int) -> str:
        first = (
            Message.objects.filter(batch=batch, status__in=NOT_SENT)
            .exclude(error="")
            .order_by("pk")
            .values_list("error", flat=True)
            .first()
        )
        text = ngettext(
            "Batch %(pk)s: %(count)s message was not sent, or may not have been.",
            "Batch %(pk)s: %(count)s messages were not sent, or may not have been.",
            count,
        ) % {"pk": batch.pk, "count": count}
        if first:
            text += " " + _("First error: %(error)s") % {"error": first}
        return text
