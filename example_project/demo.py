"""The django-mitto demo: the example project on SQLite with the local Mitto sandbox.

Run from the repository root with ``make demo`` (which makes the virtualenv first). It
migrates, creates an admin user and prints its password, starts the sandbox and the
development server, prints the admin URL, and stops both on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def manage(
    *args: str, env: dict[str, str], **kwargs
) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, str(HERE / "manage.py"), *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=HERE, env=env, **kwargs)
    return subprocess.run(command, cwd=HERE, env=env, check=True, **kwargs)


def wait_for(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="port of the Django server")
    parser.add_argument("--sandbox-port", type=int, default=5800, help="port of the sandbox")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--auto-reply",
        metavar="TEXT",
        default="",
        help="the sandbox answers every delivered message with this reply (two-way SMS)",
    )
    parser.add_argument("--no-wait", action="store_true", help="start, check, and stop (for tests)")
    args = parser.parse_args(argv)

    site = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "MITTO_API_URL": f"http://127.0.0.1:{args.sandbox_port}",
        "MITTO_API_KEY": os.environ.get("MITTO_API_KEY", "sandbox-key"),
        "MITTO_CALLBACK_BASE_URL": site,
        "PYTHONUNBUFFERED": "1",
    }
    manage("migrate", "--noinput", "-v", "0", env=env)
    password = secrets.token_urlsafe(9)
    manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model as g; U = g(); "
        f"u = U.objects.filter(username={args.username!r}).first() or U(username={args.username!r}); "
        "u.is_staff = u.is_superuser = True; "
        f"u.set_password({password!r}); u.save()",
        env=env,
    )
    reply = ["--auto-reply", args.auto_reply] if args.auto_reply else []
    sandbox = manage(
        "mitto_sandbox",
        "--port",
        str(args.sandbox_port),
        "--quiet",
        *reply,
        env=env,
        background=True,
    )
    server = manage("runserver", f"127.0.0.1:{args.port}", "--noreload", env=env, background=True)
    processes = [sandbox, server]

    def stop(*_: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        # Ten seconds for all of them together, then whatever still runs is killed.
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (from a script run in
    # the background, whose children inherit that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        wait_for(f"http://127.0.0.1:{args.sandbox_port}/_sandbox/messages")
        wait_for(f"{site}/admin/login/")
        print(
            "\n"
            f"  django-mitto demo is running: {site}/admin/\n"
            f"  user: {args.username}   password: {password}\n"
            f"  sandbox: http://127.0.0.1:{args.sandbox_port}/_sandbox/messages\n"
            "  Add a Message (or an Order) in the admin; it turns 'delivered' a few seconds later.\n"
            "  Recipients ending in 7, 8, 9 end undelivered, expired, rejected.\n"
            "  A reply from a phone (STOP opts it out):\n"
            f'    curl -d \'{{"from": "+41791234567", "text": "STOP"}}\' '
            f"http://127.0.0.1:{args.sandbox_port}/_sandbox/inbound\n"
            "  Press Ctrl-C to stop.\n",
            flush=True,
        )
        if args.no_wait:
            return 0
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
