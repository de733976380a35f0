"""``manage.py mitto_check``: the live account check, against the sandbox over loopback."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_mitto.account_check import run_check
from django_mitto.models import Message
from tests.canned import CannedServer, Reply

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "callback-secret"  # tests/settings.py


def check(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("mitto_check", *args, stdout=out, no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_everything_in_order(mitto_sandbox, live_server, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = live_server.url
    output, error = check("--to", "+41791234567")
    assert error is None, output
    assert f"[ok] Mitto at {mitto_sandbox.url} is reachable (HTTP 200)." in output
    assert "[ok] API key accepted." in output
    assert "Every field of the reply was understood." in output
    assert "responseCode (number)" in output and "id (string)" in output
    per_message = f"{live_server.url}/mitto/callback/<token>/ answers 200"
    assert output.count(per_message) == 2  # the per-message and the account-wide URL
    assert "Everything checked is in order." in output
    # A test call only, and nothing recorded.
    (sent,) = mitto_sandbox.messages
    assert sent["test"] is True and sent["to"] == "41791234567"
    assert Message.objects.count() == 0
    # Neither the key nor a token is printed.
    assert SECRET not in output and "sandbox-key" not in output
    assert not re.search(r"/callback/m\d+\.", output)


def test_refused_key_says_401_whitelist_and_where_the_request_left_from(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_API_KEY = "not-the-key-42"
    output, error = check("--skip-callback")
    assert error is not None and "1 problem found" in str(error)
    assert "[ok] Mitto at" in output and "is reachable (HTTP 401)." in output
    line = next(line for line in output.splitlines() if line.startswith("[PROBLEM]"))
    assert line.startswith("[PROBLEM] API key REFUSED (HTTP 401)")
    assert "whitelist" in line
    assert re.search(r"local address 127\.0\.0\.1:\d+", line)
    assert "not-the-key-42" not in output


def test_server_error_says_nothing_about_the_key(mitto_sandbox) -> None:
    mitto_sandbox.add_fault("500", times=1)
    output, error = check("--skip-callback")
    assert error is not None
    assert "[warning] Whether the API key is accepted is not known: Mitto answered HTTP 500." in (
        output
    )
    assert "API key accepted" not in output
    assert "[PROBLEM] Mitto refused the request" in output


def test_xml_answers_are_checked_too(mitto_sandbox, settings) -> None:
    settings.MITTO_RESPONSE_FORMAT = "xml"
    output, error = check("--skip-callback")
    assert error is None, output
    assert "Every field of the reply was understood." in output
    assert "responsecode (string)" in output
    assert mitto_sandbox.messages[0]["path"] == "/sms.xml"


def test_unreachable_api_is_a_problem(settings, db) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:9"
    output, error = check("--skip-callback")
    assert error is not None
    assert "[PROBLEM] Mitto at http://127.0.0.1:9 is NOT reachable" in output
    assert "API key" not in output


def test_missing_api_key_is_a_problem(settings) -> None:
    settings.MITTO_API_KEY = ""
    output, error = check("--skip-callback")
    assert error is not None
    assert "MITTO_API_KEY is not set" in output


def test_fields_the_client_does_not_read_are_named(settings) -> None:
    with CannedServer() as canned:
        settings.MITTO_API_URL = canned.url
        canned.reply(
            Reply(
                200,
                {
                    "id": "d88ae721-2938-45af-b8a0-b8de4231f702",
                    "responseCode": 0,
                    "responseText": "SMS sent",
                    "test": True,
                    "price": "0.07",
                    "currency": "EUR",
                },
            )
        )
        output, error = check("--skip-callback")
        assert canned.requests[0]["body"]["test"] is True
    assert error is None, output
    assert "[warning] Fields the client does not read (kept nowhere): currency, price." in output
    assert "Every field of the reply was understood." not in output


def test_an_ids_array_is_either_read_or_named(settings) -> None:
    # Mitto's API overview shows {"ids": [...]} where other pages and real traffic show "id".
    with CannedServer() as canned:
        settings.MITTO_API_URL = canned.url
        canned.reply(
            Reply(
                200,
                {
                    "ids": ["715118ef01aa4480bbd67324a0459b0b"],
                    "timestamp": "2019-04-13T12:07:57.8625574Z",
                    "responseCode": 0,
                    "responseText": "SMS sent successfully.",
                },
            )
        )
        output, error = check("--skip-callback")
    assert error is None, output
    understood = "Every field of the reply was understood." in output
    if understood:
        assert "message id 715118ef01aa4480bbd67324a0459b0b" in output
    else:
        assert "[warning] Fields the client does not read (kept nowhere): ids." in output


def test_refused_test_call_names_mittos_code_and_a_hint(mitto_sandbox) -> None:
    output, error = check("--to", "+4100", "--skip-callback")
    assert error is not None
    assert "[PROBLEM] Mitto refused the request" in output
    assert "responseCode 8" in output and "--to" in output


def test_callback_url_that_does_not_answer_200_is_a_problem(
    mitto_sandbox, live_server, settings
) -> None:
    settings.MITTO_CALLBACK_BASE_URL = live_server.url
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8"]  # the check comes from 127.0.0.1
    output, error = check()
    assert error is not None and "2 problems found" in str(error)
    assert output.count("answers HTTP 403, not 200") == 2
    assert "MITTO_CALLBACK_ALLOWED_IPS" in output


def test_callback_base_url_leading_nowhere_is_a_problem(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "http://127.0.0.1:9"
    settings.MITTO_CALLBACK_SECRET = ""
    output, error = check()
    assert error is not None
    assert "http://127.0.0.1:9/mitto/callback/<token>/ does not answer" in output


def test_no_callback_configured_is_a_problem(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = ""
    settings.MITTO_CALLBACK_SECRET = ""
    output, error = check()
    assert error is not None
    assert "[PROBLEM] No callback URL" in output


def test_account_wide_url_without_base_url_is_a_warning(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = ""
    output, error = check()
    assert error is None, output
    assert "[warning] Account-wide callback URL: <this site>/mitto/callback/<token>/" in output
    assert SECRET not in output


def test_real_sends_one_real_sms_and_records_it(mitto_sandbox, settings) -> None:
    # No MITTO_CALLBACK_BASE_URL: no delivery report can move the status on before it is read.
    settings.MITTO_CALLBACK_BASE_URL = ""
    output, error = check("--to", "+41791234567", "--real", "--text", "Check 1 2")
    assert error is None, output
    probe, real = mitto_sandbox.messages
    assert probe["test"] is True
    assert real["test"] is False and real["body"]["text"] == "Check 1 2"
    message = Message.objects.get()
    assert message.provider_id == real["id"] and message.status == Message.Status.SENT
    assert f"Real SMS to +41791234567: message {message.pk} is sent" in output


def test_test_call_text_is_sent_in_the_encoding_it_needs(mitto_sandbox) -> None:
    output, error = check("--text", "Grüezi 😀", "--skip-callback")
    assert error is None, output
    (sent,) = mitto_sandbox.messages
    assert (sent["body"]["type"], sent["body"]["text"]) == ("Unicode", "Grüezi 😀")


def test_real_needs_a_number(mitto_sandbox) -> None:
    output, error = check("--real")
    assert error is not None
    assert "--real needs --to" in output
    assert mitto_sandbox.messages == []


def test_real_is_not_sent_when_something_is_wrong(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = ""
    settings.MITTO_CALLBACK_SECRET = ""
    output, error = check("--to", "+41791234567", "--real")
    assert error is not None
    assert "No real SMS was sent" in output
    assert [m["test"] for m in mitto_sandbox.messages] == [True]
    assert Message.objects.count() == 0


def test_run_check_gives_the_findings_to_python(mitto_sandbox, settings) -> None:
    report = run_check(check_callbacks=False)
    assert report.ok
    assert report.probe is not None and report.probe.key_accepted
    assert report.probe.unknown_fields == []
    assert report.probe.result is not None and report.probe.result.test is True


def test_reply_fields_are_listed_with_their_json_types(settings) -> None:
    with CannedServer() as canned:
        settings.MITTO_API_URL = canned.url
        canned.reply(
            Reply(
                200,
                {
                    "id": "abc",
                    "responseCode": 0,
                    "test": True,
                    "tags": [],
                    "extra": {},
                    "note": None,
                },
            )
        )
        output, error = check("--skip-callback")
    assert error is None, output
    assert (
        "[ok] Reply fields seen: id (string), responseCode (number), test (boolean), "
        "tags (array), extra (object), note (null)." in output
    )
