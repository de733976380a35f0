"""Command line: ``python -m django_mitto.sandbox``.

Prints ``Mitto sandbox serving on http://HOST:PORT`` as its first line, then
serves until Ctrl-C or SIGTERM and exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from django_mitto.sandbox import REPLY_SHAPES, Sandbox, extras, inbound
from django_mitto.sandbox.records import DEFAULT_KEEP

DEFAULT_PORT = 5800


DESCRIPTION = (
    "Run a local Mitto-compatible SMS gateway (POST /sms, /smsbulk) that answers like "
    "Mitto and sends delivery reports. The final status depends on the recipient's last "
    "digit: 0-6 delivered, 7 undelivered, 8 expired, 9 rejected. Inspect it at "
    "GET /_sandbox/messages (the last --keep records; ?since=SEQ&limit=N pages them); steer "
    "faults with POST/DELETE /_sandbox/faults. The "
    "/_sandbox endpoints need no API key: never expose the sandbox publicly."
)


def add_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> list[argparse.Action]:
    """Add the sandbox's options to ``parser``.

    The one definition shared by ``python -m django_mitto.sandbox`` and ``manage.py
    mitto_sandbox``; ``defaults`` replaces the default of an option, by its ``dest``
    (``port=None`` for "read it from the settings"), and ``<dest>_help`` its help text.
    Returns the options added.
    """
    actions: list[argparse.Action] = []

    def option(*flags: str, dest: str, default: Any = None, help: str, **kwargs: Any) -> None:
        actions.append(
            parser.add_argument(
                *flags,
                dest=dest,
                default=defaults.get(dest, default),
                help=defaults.get(f"{dest}_help", help),
                **kwargs,
            )
        )

    option("--host", dest="host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    option(
        "--port",
        dest="port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind, 0 for any free port (default {DEFAULT_PORT})",
    )
    option(
        "--api-key",
        dest="api_key",
        default="sandbox-key",
        help="value expected in X-Mitto-API-Key (default 'sandbox-key'; '' disables the check)",
    )
    option("--callback-url", dest="callback_url", help="account callback URL for delivery reports")
    option(
        "--callback-method",
        dest="callback_method",
        default="POST",
        type=str.upper,
        choices=("GET", "POST"),
        help="POST a JSON body (default) or GET with a query string",
    )
    option(
        "--callback-template",
        dest="callback_template",
        help="report template with ~msgid~ ~status~ ~errorcode~ ~reference~ ~receiver~ ~mcc~ "
        "~mnc~ ~sendtime~ ~sendtimestamp~ (default depends on the method)",
    )
    option(
        "--report-delay",
        dest="report_delay",
        type=float,
        default=1.0,
        help="seconds before the first delivery report (default 1.0)",
    )
    option(
        "--reply-shape",
        dest="reply_shape",
        default="id",
        type=str.lower,
        choices=REPLY_SHAPES,
        help='how answers give the message id: "id": "..." (default) or "ids": ["..."]',
    )
    option(
        "--no-counts",
        dest="answer_counts",
        action="store_false",
        default=True,
        help="leave textLength and messageParts out of answers (Mitto does not promise them)",
    )
    option(
        "--intermediate",
        dest="intermediate",
        action="store_true",
        default=False,
        help="send a 'buffered' report before the final one",
    )
    option(
        "--duplicate-reports",
        dest="duplicate_reports",
        action="store_true",
        default=False,
        help="send every final report twice",
    )
    option(
        "--reorder-reports",
        dest="reorder_reports",
        action="store_true",
        default=False,
        help="send the final report before the 'buffered' one",
    )
    option(
        "--report-test-messages",
        dest="report_test_messages",
        action="store_true",
        default=False,
        help="also send delivery reports for test messages",
    )
    option(
        "--keep",
        dest="keep",
        type=int,
        default=DEFAULT_KEEP,
        metavar="N",
        help=f"keep the last N message records and callback attempts, dropping the oldest "
        f"(default {DEFAULT_KEEP})",
    )
    option("--mcc", dest="mcc", default="228", help="MCC in reports (default 228)")
    option("--mnc", dest="mnc", default="01", help="MNC in reports (default 01)")
    option(
        "--quiet",
        "-q",
        dest="quiet",
        action="store_true",
        default=False,
        help="do not log requests and reports to stderr",
    )
    # The conversion and usage endpoints (django_mitto.sandbox.extras).
    option(
        "--conversion-disabled",
        dest="conversion_disabled",
        action="store_true",
        default=False,
        help="answer /sms/converted with 400, as Mitto does for an account without the feature",
    )
    option(
        "--usage-shape",
        dest="usage_shape",
        default="list",
        choices=("list", "object"),
        help="/usage/bycountry answers a list of items (default) or an object keyed by country",
    )
    option(
        "--usage-price",
        dest="usage_price",
        default=extras.DEFAULTS["usage_price"],
        help=f"cost of one part in /usage/bycountry (default {extras.DEFAULTS['usage_price']})",
    )
    # Replies (MO messages) pushed to the project (django_mitto.sandbox.inbound).
    option(
        "--inbound-url",
        dest="inbound_url",
        default=None,
        help="URL the replies (MO messages) are pushed to",
    )
    option(
        "--auto-reply",
        dest="auto_reply",
        default=None,
        metavar="TEXT",
        help="answer every delivered message with this reply (needs --inbound-url)",
    )
    return actions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m django_mitto.sandbox", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def to_argv(options: Mapping[str, Any]) -> list[str]:
    """The command line that gives ``options`` (values by ``dest``) to :func:`main`.

    Options that are absent or ``None`` are left out, so :func:`main` uses its defaults.
    """
    argv: list[str] = []
    for action in add_arguments(argparse.ArgumentParser(add_help=False)):
        value = options.get(action.dest)
        if value is None:
            continue
        flag = next(f for f in action.option_strings if f.startswith("--"))
        if action.nargs == 0:  # an on/off switch: given when it changes the default
            if bool(value) != bool(action.default):
                argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report_delay < 0:
        print("error: --report-delay must not be negative", file=sys.stderr)
        return 2
    if args.keep < 1:
        print("error: --keep must be 1 or more", file=sys.stderr)
        return 2
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        callback_url=args.callback_url or None,
        callback_method=args.callback_method,
        callback_template=args.callback_template,
        report_delay=args.report_delay,
        report_test_messages=args.report_test_messages,
        intermediate=args.intermediate,
        duplicate_reports=args.duplicate_reports,
        reorder_reports=args.reorder_reports,
        mcc=args.mcc,
        mnc=args.mnc,
        log_requests=not args.quiet,
        reply_shape=args.reply_shape,
        keep=args.keep,
        answer_counts=args.answer_counts,
    )
    try:
        extras.configure(sandbox, args)
        inbound.configure(sandbox, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sandbox.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        print(f"Mitto sandbox serving on {sandbox.url}", flush=True)
        if not args.quiet:
            print("Press Ctrl-C to stop.", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
