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


def test_mitto_sandbox_command_serves_where_the_settings_point(settings, monkeypatch) -> None:
    from django_mitto.sandbox import __main__ as sandbox_main

    seen: list[list[str]] = []
    monkeypatch.setattr(sandbox_main, "main", lambda argv: seen.append(argv) or 0)
    settings.MITTO_API_URL = "http://127.0.0.1:5811"
    settings.MITTO_API_KEY = "local-key"
    settings.MITTO_CALLBACK_BASE_URL = "http://127.0.0.1:8000"
    settings.MITTO_CALLBACK_SECRET = ["new-secret", "old-secret"]
    call_command("mitto_sandbox", "--intermediate", "--quiet")
    (argv,) = seen
    options = dict(zip(argv[::2], argv[1::2]))
    assert options["--port"] == "5811"
    assert options["--api-key"] == "local-key"
    assert options["--callback-url"] == "http://127.0.0.1:8000/mitto/callback/new-secret/"
    assert "--intermediate" in argv and "--quiet" in argv


def test_mitto_sandbox_command_defaults_without_a_local_api_url(settings, monkeypatch) -> None:
    from django_mitto.sandbox import __main__ as sandbox_main

    seen: list[list[str]] = []
    monkeypatch.setattr(sandbox_main, "main", lambda argv: seen.append(argv) or 0)
    settings.MITTO_API_URL = "https://rest.mittoapi.net"
    settings.MITTO_CALLBACK_BASE_URL = ""
    call_command("mitto_sandbox")
    (argv,) = seen
    assert argv[argv.index("--port") + 1] == "5800"
    assert "--callback-url" not in argv


def test_mitto_sandbox_command_reports_a_failed_start(monkeypatch) -> None:
    from django_mitto.sandbox import __main__ as sandbox_main

    monkeypatch.setattr(sandbox_main, "main", lambda argv: 1)
    with pytest.raises(CommandError, match="status 1"):
        call_command("mitto_sandbox")


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
