"""``send_sms()`` on the inline backend next to a hand-written floor, on PostgreSQL.

Usage::

    python bench/bench_send.py [--count 1000] [--rounds 3] [--database postgres://...]

The sandbox runs in a process of its own, without latency. Each round times ``--count`` calls
of ``send_sms()`` (validation, opt-out check, insert, claim, POST, record: everything a caller
gets), then the same with a per-message callback URL (``MITTO_CALLBACK_BASE_URL`` set: reports
then come to the message's own URL, so the send does not look for reports that came before the
id), then ``--count`` sends of the floor: one raw ``INSERT``, the same ``POST /sms`` through a
kept-alive ``requests`` session, one raw ``UPDATE`` of the answer. Then a bare ``POST`` alone.
Prints each round, the medians, the ratios to the floor, and the queries and commits of one
``send_sms()`` in each configuration.
"""

from __future__ import annotations

import argparse
import time
import uuid

import _common

#: Where the per-message callback URLs point (nothing is posted there in this benchmark).
CALLBACK_BASE_URL = "https://example.com"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="sends per round and subject")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default=_common.DEFAULT_DATABASE)
    args = parser.parse_args()

    # Reports are due a day later: the sandbox makes no callback while the rounds run (the
    # per-message URLs point nowhere), so both subjects get the same sandbox.
    with _common.SandboxProcess("--report-delay", "86400") as sandbox:
        _common.setup_django(args.database, MITTO_API_URL=sandbox.url, MITTO_TASK_BACKEND="inline")
        import requests
        from django.db import connection
        from django.test import override_settings

        from django_mitto import services
        from django_mitto.models import Message

        _common.empty_tables()
        table = Message._meta.db_table
        session = requests.Session()
        headers = {"X-Mitto-API-Key": _common.API_KEY}
        numbers = iter(range(10**9))

        def subject() -> float:
            start = time.perf_counter()
            for _ in range(args.count):
                message = services.send_sms(f"+4179{1_000_000 + next(numbers)}", "Your code: 1234")
                assert message.status == "sent", message.error
            return args.count / (time.perf_counter() - start)

        def subject_with_callback() -> float:
            with override_settings(MITTO_CALLBACK_BASE_URL=CALLBACK_BASE_URL):
                return subject()

        def floor() -> float:
            start = time.perf_counter()
            with connection.cursor() as cursor:
                for _ in range(args.count):
                    number = f"+4179{1_000_000 + next(numbers)}"
                    cursor.execute(
                        f"INSERT INTO {table} (account, sender, recipient, country, text, "
                        "encoding, reference, udh, flash, test, metadata, status, error, "
                        "response_text, attempts, segments, text_length, provider_id, "
                        "delivery_status, error_code, mcc, mnc, created_at, status_changed_at) "
                        "VALUES ('default', 'DjangoMitto', %s, 'CHE', %s, 'GSM', '', '', false, "
                        "false, '{}', 'sending', '', '', 1, 1, 15, %s, '', '', '', '', now(), "
                        "now()) RETURNING id",
                        [number, "Your code: 1234", f"pending-{uuid.uuid4().hex}"],
                    )
                    pk = cursor.fetchone()[0]
                    answer = session.post(
                        sandbox.url + "/sms",
                        json={"from": "DjangoMitto", "to": number, "text": "Your code: 1234"},
                        headers=headers,
                        timeout=10,
                    ).json()
                    cursor.execute(
                        f"UPDATE {table} SET status = 'sent', provider_id = %s, sent_at = now(), "
                        "response_code = %s WHERE id = %s",
                        [answer["id"], answer["responseCode"], pk],
                    )
            return args.count / (time.perf_counter() - start)

        def bare_post() -> float:
            start = time.perf_counter()
            for _ in range(args.count):
                session.post(
                    sandbox.url + "/sms",
                    json={"from": "DjangoMitto", "to": "+41791234567", "text": "Your code: 1234"},
                    headers=headers,
                    timeout=10,
                ).json()
            return args.count / (time.perf_counter() - start)

        # Warm up: connections, caches, the first request of each kind.
        services.send_sms("+41791234567", "warm up")
        bare_post()
        counted = _common.Counted()
        with counted.active():
            services.send_sms("+41791234568", "Your code: 1234")
        counted_callback = _common.Counted()
        with override_settings(MITTO_CALLBACK_BASE_URL=CALLBACK_BASE_URL):
            message = services.send_sms("+41791234569", "Your code: 1234")
            with counted_callback.active():
                services.send_sms("+41791234569", "Your code: 1234")
        assert message.status == "sent", message.error
        print(
            f"send_sms() vs the hand-written floor: {args.count} sends per round, PostgreSQL, "
            f"sandbox without latency in its own process"
        )
        medians = _common.alternate(
            args.rounds,
            {
                "send_sms": subject,
                "send_sms, callback URL": subject_with_callback,
                "floor": floor,
                "bare POST": bare_post,
            },
        )
        print(
            f"medians: send_sms {medians['send_sms']:,.0f} msg/s; with a callback URL "
            f"{medians['send_sms, callback URL']:,.0f} msg/s; floor "
            f"{medians['floor']:,.0f} msg/s; bare POST {medians['bare POST']:,.0f}/s"
        )
        floor_rate = medians["floor"]
        print(f"ratio send_sms / floor: {medians['send_sms'] / floor_rate:.2f}")
        print(
            "ratio send_sms with a callback URL / floor: "
            f"{medians['send_sms, callback URL'] / floor_rate:.2f}"
        )
        print(f"one send_sms(): {counted.queries} queries, {counted.commits} commits")
        print(
            f"one send_sms() with a callback URL: {counted_callback.queries} queries, "
            f"{counted_callback.commits} commits"
        )


if __name__ == "__main__":
    main()
