from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse

from django_mitto.conf import conf


def default_port() -> int:
    parts = urlsplit(conf.API_URL)
    if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port:
        return parts.port
    return 5800


def default_callback_url(name: str = "callback") -> str:
    """The account-wide callback URL of this project (MITTO_CALLBACK_BASE_URL + first secret).

    ``name="inbound"`` gives the URL replies go to.
    """
    secrets = conf.CALLBACK_SECRETS
    if not conf.CALLBACK_BASE_URL or not secrets:
        return ""
    try:
        path = reverse(f"django_mitto:{name}", kwargs={"token": secrets[0]})
    except NoReverseMatch:
        return ""
    return conf.CALLBACK_BASE_URL + path


class Command(BaseCommand):
    help = (
        "Run the local Mitto sandbox for this project: it listens where MITTO_API_URL points, "
        "expects MITTO_API_KEY, and sends delivery reports to this project's callback URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=None, help="default: the port of MITTO_API_URL, else 5800"
        )
        parser.add_argument("--api-key", default=None, help="default: MITTO_API_KEY")
        parser.add_argument(
            "--callback-url",
            default=None,
            help="account callback URL; default: MITTO_CALLBACK_BASE_URL + the callback path with "
            "the first MITTO_CALLBACK_SECRET (messages sent with a per-message URL use that one)",
        )
        parser.add_argument(
            "--callback-method", default="POST", choices=["GET", "POST"], type=str.upper
        )
        parser.add_argument("--report-delay", type=float, default=2.0, help="seconds (default 2)")
        parser.add_argument("--intermediate", action="store_true")
        parser.add_argument("--duplicate-reports", action="store_true")
        parser.add_argument("--reorder-reports", action="store_true")
        parser.add_argument("--report-test-messages", action="store_true")
        parser.add_argument(
            "--inbound-url",
            default=None,
            help="where replies are pushed; default: MITTO_CALLBACK_BASE_URL + the inbound path "
            "with the first MITTO_CALLBACK_SECRET",
        )
        parser.add_argument(
            "--auto-reply", default=None, metavar="TEXT", help="answer every delivered message"
        )
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_mitto.sandbox.__main__ import main

        argv = [
            "--host", options["host"],
            "--port", str(options["port"] if options["port"] is not None else default_port()),
            "--api-key", options["api_key"] if options["api_key"] is not None else conf.API_KEY,
            "--callback-method", options["callback_method"],
            "--report-delay", str(options["report_delay"]),
        ]  # fmt: skip
        callback = (
            options["callback_url"]
            if options["callback_url"] is not None
            else default_callback_url()
        )
        if callback:
            argv += ["--callback-url", callback]
        inbound = (
            options["inbound_url"]
            if options["inbound_url"] is not None
            else default_callback_url("inbound")
        )
        if inbound:
            argv += ["--inbound-url", inbound]
        if options["auto_reply"]:
            argv += ["--auto-reply", options["auto_reply"]]
        for flag in (
            "intermediate",
            "duplicate_reports",
            "reorder_reports",
            "report_test_messages",
            "quiet",
        ):
            if options[flag]:
                argv.append("--" + flag.replace("_", "-"))
        code = main(argv)
        if code:
            raise CommandError(f"The sandbox stopped with status {code}.")
