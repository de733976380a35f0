from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_mitto import encoding as enc
from django_mitto.conf import DEFAULT_ACCOUNT
from django_mitto.models import Message
from django_mitto.services import send_sms


class Command(BaseCommand):
    help = "Send one SMS through Mitto and print its id, status, encoding and parts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", required=True, help="Recipient, in E.164 (+41791234567).")
        parser.add_argument("--text", required=True, help="The message text.")
        parser.add_argument(
            "--sender", default=None, help="Sender ID (default: MITTO_DEFAULT_SENDER)."
        )
        parser.add_argument(
            "--encoding", default=enc.AUTO, help="GSM, Unicode, Binary or Auto (default: Auto)."
        )
        parser.add_argument("--reference", default="", help="Reference echoed in delivery reports.")
        parser.add_argument("--test", action="store_true", help="A test call: Mitto sends nothing.")
        parser.add_argument(
            "--account",
            default=DEFAULT_ACCOUNT,
            help='The account of MITTO_ACCOUNTS to send through (default "default").',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            message = send_sms(
                options["to"],
                options["text"],
                sender=options["sender"],
                encoding=options["encoding"],
                reference=options["reference"],
                test=True if options["test"] else None,
                account=options["account"],
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()
            )
            raise CommandError(f"Not sent: {problems}") from None
        message.refresh_from_db()
        self.stdout.write(
            f"Message {message.pk}: {message.status}, Mitto id {message.provider_id or '-'}, "
            f"{message.encoding}, {message.segments} part(s)"
        )
        if message.status in (Message.Status.FAILED, Message.Status.UNKNOWN):
            raise CommandError(message.error or f"Message {message.pk} is {message.status}.")
