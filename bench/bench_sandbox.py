"""Throughput of the django-mitto sandbox over keep-alive, next to a trivial stdlib server.

Usage::

    python bench/bench_sandbox.py [--requests 10000] [--clients 4] [--client http.client|requests]

Both servers run as subprocesses on 127.0.0.1 so that they do not share a GIL
with the load generator; each client is a separate process holding one
keep-alive connection and sending ``POST /sms`` requests. The baseline is a
``http.server.ThreadingHTTPServer`` answering a constant JSON body, so the
ratio shows what the sandbox's parsing, validation and recording cost.

Prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
WARMUP = 50
BODY = json.dumps(
    {"from": "MITTO SMS", "to": "491725551234", "text": "Your code is 123456", "type": "GSM"}
).encode()
HEADERS = {"X-Mitto-API-Key": API_KEY, "Content-Type": "application/json"}
CONSTANT_ANSWER = json.dumps(
    {
        "id": "d88ae721-2938-45af-b8a0-b8de4231f702",
        "timestamp": "2022-04-19T07:46:45.7381135Z",
        "to": "491725551234",
        "responseCode": 0,
        "responseText": "SMS sent",
        "textLength": 19,
        "messageParts": 1,
    }
).encode()


class _BaselineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and delayed
    # ACKs stall every answer by tens of milliseconds.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(CONSTANT_ANSWER)))
        self.end_headers()
        self.wfile.write(CONSTANT_ANSWER)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_baseline() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BaselineHandler)
    server.daemon_threads = True
    print(f"Baseline serving on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()  # until the benchmark terminates it


def _start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    line = process.stdout.readline() if process.stdout is not None else ""
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[-1]


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by a process, on Linux; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(url: str, count: int, kind: str, barrier: Any, results: Any) -> None:
    if kind == "requests":
        import requests

        session = requests.Session()
        full = url + "/sms"

        def send() -> int:
            return session.post(full, data=BODY, headers=HEADERS).status_code

    else:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)

        def send() -> int:
            connection.request("POST", "/sms", BODY, HEADERS)
            response = connection.getresponse()
            response.read()
            return response.status

    for _ in range(WARMUP):
        send()
    barrier.wait()
    started = time.monotonic()
    errors = sum(1 for _ in range(count) if send() != 200)
    results.put((started, time.monotonic(), errors))


def measure(url: str, total: int, clients: int, kind: str) -> tuple[float, float, int]:
    """Return (requests per second, seconds, errors) for ``total`` requests."""
    context = multiprocessing.get_context()
    barrier = context.Barrier(clients)
    results = context.Queue()
    share, extra = divmod(total, clients)
    workers = [
        context.Process(
            target=_client, args=(url, share + (1 if n < extra else 0), kind, barrier, results)
        )
        for n in range(clients)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    seconds = max(end for _, end, _ in outcomes) - min(start for start, _, _ in outcomes)
    return total / seconds, seconds, sum(errors for _, _, errors in outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per server")
    parser.add_argument("--clients", type=int, default=4, help="client processes (connections)")
    parser.add_argument("--client", choices=("http.client", "requests"), default="http.client")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return

    servers = {
        "sandbox": [
            sys.executable,
            "-m",
            "django_mitto.sandbox",
            "--quiet",
            "--port",
            "0",
            "--api-key",
            API_KEY,
        ],
        "baseline http.server": [sys.executable, str(Path(__file__).resolve()), "--serve-baseline"],
    }
    print(
        f"{args.requests} POST /sms over keep-alive, {args.clients} client processes "
        f"({args.client}), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    rates: dict[str, float] = {}
    for name, command in servers.items():
        process, url = _start(command)
        try:
            cpu_before = _cpu_seconds(process.pid)
            rate, seconds, errors = measure(url, args.requests, args.clients, args.client)
            cpu_after = _cpu_seconds(process.pid)
        finally:
            process.terminate()
            process.wait(10)
        rates[name] = rate
        cpu = ""
        if cpu_before is not None and cpu_after is not None:
            # Includes the warm-up requests; a rough figure.
            total = args.requests + WARMUP * args.clients
            cpu = f", server CPU {(cpu_after - cpu_before) / total * 1e6:.0f} us/request"
        print(f"  {name:<22} {rate:8.0f} req/s  ({seconds:.2f} s, {errors} non-200{cpu})")
    ratio = rates["sandbox"] / rates["baseline http.server"]
    print(f"  sandbox / baseline     {ratio:8.2f}")


if __name__ == "__main__":
    main()
