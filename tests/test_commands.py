from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_mitto.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def test_mitto_send_prints_id_status_encoding_and_parts(mitto_sandbox) -> None:
    out = StringIO()
    call_command("mitto_send", "--to", "+41791234567", "--text", "Grüezi 😀", stdout=out)
    message = Message.objects.get()
    assert message.status == "sent"
    assert out.getvalue().strip() == (
        f"Message {message.pk}: sent, Mitto id {message.provider_id}, Unicode, 1 part(s)"
    )
    assert mitto_sandbox.messages[0]["body"]["type"] == "Unicode"


def test_mitto_send_passes_options(mitto_sandbox) -> None:
    call_command(
        "mitto_send",
        "--to",
        "+41791234567",
        "--text",
        "Hi",
        "--sender",
        "Shop",
        "--encoding",
        "gsm",
        "--reference",
        "r-1",
        "--test",
        stdout=StringIO(),
    )
    body = mitto_sandbox.messages[0]["body"]
    assert (body["from"], body["type"], body["reference"], body["test"]) == (
        "Shop",
        "GSM",
        "r-1",
        True,
    )


def test_mitto_send_sends_even_when_send_on_save_is_off(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    call_command("mitto_send", "--to", "+41791234567", "--text", "Hi", stdout=StringIO())
    assert Message.objects.get().status == "sent"
    assert len(mitto_sandbox.messages) == 1


def test_mitto_send_invalid_input_exits_with_the_field_named(mitto_sandbox) -> None:
    with pytest.raises(CommandError, match="recipient"):
        call_command("mitto_send", "--to", "12", "--text", "Hi", stdout=StringIO())
    assert Message.objects.count() == 0


def test_mitto_send_failure_exits_non_zero_with_the_reason(mitto_sandbox, settings) -> None:
    settings.MITTO_API_KEY = "wrong"
    with pytest.raises(CommandError, match="HTTP 401"):
        call_command("mitto_send", "--to", "+41791234567", "--text", "Hi", stdout=StringIO())


@pytest.fixture
def sandbox_argv(monkeypatch):
    """The options mitto_sandbox hands to the sandbox, parsed by the sandbox's own parser."""
    from django_mitto.sandbox import __main__ as sandbox_main

    seen: list = []
    monkeypatch.setattr(sandbox_main, "main", lambda argv: seen.append(argv) or 0)

    def run(*args: str) -> tuple:
        out, err = StringIO(), StringIO()
        call_command("mitto_sandbox", *args, stdout=out, stderr=err)
        (argv,) = seen[-1:]
        return sandbox_main.build_parser().parse_args(argv), out.getvalue(), err.getvalue()

    return run


def test_mitto_sandbox_command_serves_where_the_settings_point(settings, sandbox_argv) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:5811"
    settings.MITTO_API_KEY = "local-key"
    settings.MITTO_CALLBACK_BASE_URL = "http://127.0.0.1:8000"
    settings.MITTO_CALLBACK_SECRET = ["new-secret", "old-secret"]
    args, _out, err = sandbox_argv("--intermediate", "--quiet")
    assert args.port == 5811
    assert args.api_key == "local-key"
    assert args.callback_url == "http://127.0.0.1:8000/mitto/callback/new-secret/"
    assert args.intermediate and args.quiet
    assert err == ""


def test_mitto_sandbox_command_defaults_without_a_local_api_url(settings, sandbox_argv) -> None:
    settings.MITTO_API_URL = "https://rest.mittoapi.net"
    settings.MITTO_CALLBACK_BASE_URL = ""
    settings.MITTO_CALLBACK_SECRET = ""
    args, _out, err = sandbox_argv()
    assert args.port == 5800
    assert args.callback_url is None
    assert "MITTO_API_URL is https://rest.mittoapi.net" in err
    assert "http://127.0.0.1:5800" in err


def test_mitto_sandbox_command_reports_a_failed_start(monkeypatch) -> None:
    from django_mitto.sandbox import __main__ as sandbox_main

    monkeypatch.setattr(sandbox_main, "main", lambda argv: 1)
    with pytest.raises(CommandError, match="status 1"):
        call_command("mitto_sandbox", stdout=StringIO(), stderr=StringIO())


def test_mitto_sandbox_command_takes_every_option_of_the_sandbox_cli() -> None:
    from django_mitto.management.commands.mitto_sandbox import Command
    from django_mitto.sandbox.__main__ import build_parser

    def flags(parser) -> set[str]:
        return {flag for action in parser._actions for flag in action.option_strings}

    command_parser = Command().create_parser("manage.py", "mitto_sandbox")
    assert flags(build_parser()) - flags(command_parser) == set()


def test_mitto_sandbox_command_passes_every_option_through(settings, sandbox_argv) -> None:
    args, _out, _err = sandbox_argv(
        "--host", "::1", "--port", "0", "--api-key", "k-1", "--callback-url", "http://x.test/cb/",
        "--callback-method", "get", "--callback-template", "id=~msgid~", "--report-delay", "0.5",
        "--reply-shape", "ids", "--no-counts", "--intermediate", "--duplicate-reports", "--reorder-reports",
        "--report-test-messages", "--keep", "500", "--mcc", "310", "--mnc", "260", "--quiet",
        "--conversion-disabled", "--usage-shape", "object", "--usage-price", "0.07",
        "--inbound-url", "http://x.test/in/", "--auto-reply", "Thanks",
    )  # fmt: skip
    assert vars(args) == {
        "host": "::1",
        "port": 0,
        "api_key": "k-1",
        "callback_url": "http://x.test/cb/",
        "callback_method": "GET",
        "callback_template": "id=~msgid~",
        "report_delay": 0.5,
        "reply_shape": "ids",
        "answer_counts": False,
        "intermediate": True,
        "duplicate_reports": True,
        "reorder_reports": True,
        "report_test_messages": True,
        "keep": 500,
        "mcc": "310",
        "mnc": "260",
        "quiet": True,
        "conversion_disabled": True,
        "usage_shape": "object",
        "usage_price": "0.07",
        "inbound_url": "http://x.test/in/",
        "auto_reply": "Thanks",
    }


def test_mitto_sandbox_derives_the_callback_from_the_secret_and_the_site(
    settings, sandbox_argv
) -> None:
    settings.MITTO_API_URL = "http://localhost:5800"
    settings.MITTO_API_KEY = "sandbox-key"
    settings.MITTO_CALLBACK_BASE_URL = ""
    settings.MITTO_CALLBACK_SECRET = "dev-secret-123"
    args, out, err = sandbox_argv()
    assert args.callback_url == "http://127.0.0.1:8000/mitto/callback/dev-secret-123/"
    assert "API URL:      http://127.0.0.1:5800" in out
    assert "API key:      sand" in out
    assert "Callback URL: http://127.0.0.1:8000/mitto/callback/<MITTO_CALLBACK_SECRET[0]>/" in out
    assert "dev-secret-123" not in out + err and "sandbox-key" not in out
    assert err == ""  # localhost is 127.0.0.1: no warning

    args, out, err = sandbox_argv("--site", "http://192.168.1.5:8080/")
    assert args.callback_url == "http://192.168.1.5:8080/mitto/callback/dev-secret-123/"


@pytest.mark.parametrize(
    ("secret", "urlconf", "why"),
    [
        ("", "tests.urls", "MITTO_CALLBACK_SECRET is not set"),
        ("s3cret", "tests.urls_without_mitto", "django_mitto.urls is not included"),
    ],
)
def test_mitto_sandbox_warns_when_no_callback_can_be_configured(
    settings, sandbox_argv, secret, urlconf, why
) -> None:
    settings.MITTO_CALLBACK_SECRET = secret
    settings.ROOT_URLCONF = urlconf
    args, out, err = sandbox_argv()
    assert args.callback_url is None
    assert "no callback URL" in err and why in err
    assert "Callback URL: -" in out


def test_mitto_sandbox_command_runs_the_sandbox_that_the_settings_use(tmp_path) -> None:
    """For real: the command serves with the settings' key, and a send reaches it."""
    import os
    import select
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import requests

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "mitto_sandbox", "--port", "0", "--api-key", "cmd-key",
         "--reply-shape", "ids", "--quiet"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        while not any("serving on" in line for line in lines):
            ready, _, _ = select.select([process.stdout], [], [], 30)
            line = process.stdout.readline() if ready else ""
            assert line, (lines, process.poll() is None or process.communicate()[1])
            lines.append(line)
        url = lines[-1].rsplit(" ", 1)[-1].strip()
        answer = requests.post(
            url + "/sms",
            json={"from": "Shop", "to": "41791234567", "text": "Hi"},
            headers={"X-Mitto-API-Key": "cmd-key"},
            timeout=5,
        ).json()
        assert answer["responseCode"] == 0 and len(answer["ids"]) == 1
        assert any(line.startswith("Callback URL: http://127.0.0.1:8000/mitto/") for line in lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        process.communicate()


def test_mitto_dispatch_sends_what_was_left_queued_and_flags_stuck_sends(
    mitto_sandbox, settings
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from django_mitto.models import Batch

    settings.MITTO_SEND_ON_SAVE = False  # as if the process died before its after-commit send
    old = timezone.now() - timedelta(hours=1)
    left = Message.objects.create(recipient="+41791234561", text="Left behind", sender="Shop")
    fresh = Message.objects.create(recipient="+41791234562", text="Just queued", sender="Shop")
    stuck = Message.objects.create(recipient="+41791234563", text="Stuck", sender="Shop")
    batch = Batch.objects.create(text="Bulk", sender="Shop", total=2)
    members = [
        Message.objects.create(recipient=f"+4179123457{i}", text="Bulk", sender="Shop", batch=batch)
        for i in range(2)
    ]
    Message.objects.filter(pk__in=[left.pk, *[m.pk for m in members]]).update(created_at=old)
    Message.objects.filter(pk=stuck.pk).update(
        status="sending", status_changed_at=old, created_at=old
    )

    out = StringIO()
    call_command("mitto_dispatch", stdout=out)
    assert out.getvalue().strip() == (
        "1 queued message(s) and 1 batch(es) dispatched, 1 stuck message(s) marked unknown."
    )
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[left.pk], status[fresh.pk], status[stuck.pk]) == ("sent", "queued", "unknown")
    assert [status[m.pk] for m in members] == ["sent", "sent"]
    assert sorted(m["to"] for m in mitto_sandbox.messages) == [
        "41791234561",
        "41791234570",
        "41791234571",
    ]

    call_command("mitto_dispatch", stdout=StringIO())  # running it again sends nothing twice
    assert len(mitto_sandbox.messages) == 3
