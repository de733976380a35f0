"""Command line: ``python -m django_mitto.sandbox``.

Prints ``Mitto sandbox serving on http://HOST:PORT`` as its first line, then
serves until Ctrl-C or SIGTERM and exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django_mitto.sandbox import Sandbox, extras, inbound

DEFAULT_PORT = 5800


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_mitto.sandbox",
        description=(
            "Run a local Mitto-compatible SMS gateway (POST /sms, /smsbulk) that answers like "
            "Mitto and sends delivery reports. The final status depends on the recipient's last "
            "digit: 0-6 delivered, 7 undelivered, 8 expired, 9 rejected. Inspect it at "
            "GET /_sandbox/messages; steer faults with POST/DELETE /_sandbox/faults. The "
            "/_sandbox endpoints need no API key: never expose the sandbox publicly."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind, 0 for any free port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--api-key",
        default="sandbox-key",
        help="value expected in X-Mitto-API-Key (default 'sandbox-key'; '' disables the check)",
    )
    parser.add_argument(
        "--callback-url", default=None, help="account callback URL for delivery reports"
    )
    parser.add_argument(
        "--callback-method",
        default="POST",
        type=str.upper,
        choices=("GET", "POST"),
        help="POST a JSON body (default) or GET with a query string",
    )
    parser.add_argument(
        "--callback-template",
        default=None,
        help="report template with ~msgid~ ~status~ ~errorcode~ ~reference~ ~receiver~ ~mcc~ "
        "~mnc~ ~sendtime~ ~sendtimestamp~ (default depends on the method)",
    )
    parser.add_argument(
        "--report-delay",
        type=float,
        default=1.0,
        help="seconds before the first delivery report (default 1.0)",
    )
    parser.add_argument(
        "--intermediate", action="store_true", help="send a 'buffered' report before the final one"
    )
    parser.add_argument(
        "--duplicate-reports", action="store_true", help="send every final report twice"
    )
    parser.add_argument(
        "--reorder-reports",
        action="store_true",
        help="send the final report before the 'buffered' one",
    )
    parser.add_argument(
        "--report-test-messages",
        action="store_true",
        help="also send delivery reports for test messages",
    )
    parser.add_argument("--mcc", default="228", help="MCC in reports (default 228)")
    parser.add_argument("--mnc", default="01", help="MNC in reports (default 01)")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="do not log requests and reports to stderr"
    )
    extras.add_arguments(parser)
    inbound.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report_delay < 0:
        print("error: --report-delay must not be negative", file=sys.stderr)
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
