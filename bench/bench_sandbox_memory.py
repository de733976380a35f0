"""Memory of the django-mitto sandbox after many recipients sent through ``/smsbulk``.

Usage::

    python bench/bench_sandbox_memory.py [--recipients 200000] [--per-request 1000]
        [--keep 10000 ...] [--source PATH]

Starts ``python -m django_mitto.sandbox --quiet --port 0`` as a subprocess (no callback URL,
so no delivery reports: only the message records are measured), sends ``--recipients``
recipients in ``/smsbulk`` requests of ``--per-request`` recipients each over one keep-alive
connection, and prints the sandbox's resident memory (``VmRSS``, and the peak ``VmHWM``, from
``/proc``: Linux only) when idle and after the sends, with the time taken. One run per
``--keep`` value; ``--keep 0`` starts the sandbox without the option, as a sandbox from before
``--keep`` must be started. ``--source`` runs the sandbox from another source tree (for
example an older version, unpacked with ``git archive``).

Prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
HEADERS = {"X-Mitto-API-Key": API_KEY, "Content-Type": "application/json"}
TEXT = "Spring sale: 20% off everything until Sunday. Reply STOP to opt out."


def _memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB (empty where /proc is missing)."""
    figures: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return figures
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) / 1024
    return figures


def _start(source: Path, keep: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "django_mitto.sandbox", "--quiet", "--port", "0"]
    command += ["--api-key", API_KEY]
    if keep:
        command += ["--keep", str(keep)]
    env = dict(os.environ, PYTHONPATH=str(source) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=source, env=env)
    line = process.stdout.readline() if process.stdout is not None else ""
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[-1]


def run(source: Path, keep: int, recipients: int, per_request: int) -> None:
    process, url = _start(source, keep)
    try:
        time.sleep(0.2)
        idle = _memory(process.pid)
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        started = time.monotonic()
        sent = 0
        while sent < recipients:
            count = min(per_request, recipients - sent)
            numbers = [f"4179{sent + n:07d}" for n in range(count)]
            body = json.dumps({"from": "DjangoMitto", "to": numbers, "text": TEXT})
            connection.request("POST", "/smsbulk", body, HEADERS)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"/smsbulk answered {response.status}")
            sent += count
        seconds = time.monotonic() - started
        connection.close()
        after = _memory(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    label = f"--keep {keep}" if keep else "no --keep"
    if not after:
        print(f"  {label:<14} (no /proc: memory not measured), {seconds:.1f} s")
        return
    print(
        f"  {label:<14} RSS idle {idle['VmRSS']:7.1f} MiB, after {after['VmRSS']:7.1f} MiB "
        f"(peak {after['VmHWM']:7.1f} MiB), {seconds:5.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--per-request", type=int, default=1000, help="recipients per request")
    parser.add_argument(
        "--keep",
        type=int,
        action="append",
        help="value of the sandbox's --keep (repeat to compare; 0: leave the option out); "
        "default 10000",
    )
    parser.add_argument("--source", type=Path, default=ROOT, help="source tree of the sandbox")
    args = parser.parse_args()
    source = args.source.resolve()
    print(
        f"{args.recipients} recipients via /smsbulk, {args.per_request} per request, "
        f"sandbox from {source}, Python {sys.version.split()[0]}"
    )
    for keep in args.keep or [10_000]:
        run(source, keep, args.recipients, args.per_request)


if __name__ == "__main__":
    main()
