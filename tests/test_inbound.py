"""Replies: the inbound view, linking to the message answered, keywords, signal, admin, sandbox."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_mitto import services
from django_mitto.checks import check_reply_settings
from django_mitto.models import InboundMessage, Message, OptOut, Status
from django_mitto.signals import message_received

SECRET = "inbound-secret"
Outcome = InboundMessage.Outcome


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.MITTO_CALLBACK_SECRET = ["old-secret", SECRET]
    settings.MITTO_DEFAULT_SENDER = "DjangoMitto"


@pytest.fixture
def api() -> APIClient:
    return APIClient(enforce_csrf_checks=True)


def inbound_url(token: str = SECRET) -> str:
    return reverse("django_mitto:inbound", kwargs={"token": token})


def sent_message(recipient: str = "+41791234567", sender: str = "", ago: float = 60) -> Message:
    """A message that was sent ``ago`` seconds ago (created without sending)."""
    message = Message.objects.create(recipient=recipient, text="Your order shipped", sender=sender)
    Message.objects.filter(pk=message.pk).update(
        status=Status.DELIVERED, sent_at=timezone.now() - timedelta(seconds=ago)
    )
    return message


@pytest.fixture
def no_send(settings: Any) -> None:
    settings.MITTO_SEND_ON_SAVE = False


# -- the view ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_json_reply_is_stored_and_linked_to_the_message_it_answers(
    api: APIClient, no_send: None
) -> None:
    older = sent_message(ago=3600)
    latest = sent_message(ago=60)
    sent_message(recipient="+41791234568")  # to someone else
    sent_message(sender="Other")  # from another sender ID
    response = api.post(
        inbound_url(),
        {"From": "41791234567", "TO": "DjangoMitto", "Text": "Yes, thanks", "id": "mo-1"},
        format="json",
    )
    assert response.status_code == 200, response.content
    inbound = InboundMessage.objects.get()
    assert response.json() == {"status": "ok", "outcome": "stored", "id": inbound.pk}
    assert (inbound.sender, inbound.recipient, inbound.text) == (
        "+41791234567",
        "DjangoMitto",
        "Yes, thanks",
    )
    assert inbound.provider_id == "mo-1"
    assert inbound.in_reply_to == latest != older
    assert inbound.account == "default"
    assert inbound.payload["body"]["Text"] == "Yes, thanks"


@pytest.mark.django_db
def test_a_form_post_and_a_get_query_are_read_alike_and_the_body_wins(
    api: APIClient, no_send: None
) -> None:
    response = api.post(
        inbound_url() + "?msisdn=41790000000&text=from+query",
        {"sender": "+41791234567", "message": "from body"},
    )
    assert response.status_code == 200
    response = api.get(inbound_url().rstrip("/"), {"originator": "41791234568", "content": "hi"})
    assert response.status_code == 200
    assert list(InboundMessage.objects.order_by("pk").values_list("sender", "text")) == [
        ("+41791234567", "from body"),
        ("+41791234568", "hi"),
    ]


@pytest.mark.django_db
def test_no_reply_is_linked_outside_the_reply_window(
    api: APIClient, no_send: None, settings: Any
) -> None:
    settings.MITTO_REPLY_WINDOW = timedelta(minutes=30)
    sent_message(ago=3600)
    api.post(inbound_url(), {"from": "+41791234567", "to": "DjangoMitto", "text": "?"})
    assert InboundMessage.objects.get().in_reply_to is None
    settings.MITTO_REPLY_WINDOW = 7200
    api.post(inbound_url(), {"from": "+41791234567", "to": "DjangoMitto", "text": "?"})
    assert InboundMessage.objects.order_by("pk").last().in_reply_to is not None


@pytest.mark.django_db
def test_an_unknown_shape_is_stored_unparsed_and_answered_400(api: APIClient) -> None:
    response = api.post(inbound_url(), {"foo": "bar"}, format="json")
    assert response.status_code == 400
    assert "No reply field found (received: foo)" in response.json()["errors"]["fields"][0]
    stored = InboundMessage.objects.get()
    assert stored.outcome == Outcome.UNPARSED
    assert stored.payload["body"] == {"foo": "bar"}


@pytest.mark.django_db
def test_a_reply_without_sender_is_stored_unparsed_naming_the_field(api: APIClient) -> None:
    response = api.post(inbound_url(), {"text": "STOP"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["from"]
    stored = InboundMessage.objects.get()
    assert (stored.outcome, stored.text) == (Outcome.UNPARSED, "STOP")
    assert OptOut.objects.count() == 0


@pytest.mark.django_db
def test_a_body_that_is_not_json_is_stored_raw_and_answered_400(api: APIClient) -> None:
    response = api.generic("POST", inbound_url(), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert InboundMessage.objects.get().payload["raw_body"] == "{not json"


@pytest.mark.django_db
def test_a_wrong_or_per_message_token_is_refused_and_never_logged(
    api: APIClient, caplog: Any, no_send: None
) -> None:
    from django_mitto.callbacks import message_token

    # A per-message signed token proves a delivery report for that message, not a reply.
    signed = message_token(sent_message())
    with caplog.at_level(logging.DEBUG):
        for token in ("nope", signed):
            response = api.post(inbound_url(token), {"from": "+41791234567", "text": "hi"})
            assert response.status_code == 403
    assert InboundMessage.objects.count() == 0
    assert "nope" not in caplog.text
    assert signed not in caplog.text


@pytest.mark.django_db
def test_the_token_is_never_in_a_log_line(api: APIClient, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG):
        api.post(inbound_url(), {"foo": "bar"}, format="json")
        api.post(inbound_url(), {"from": "+41791234567", "text": "hi"}, format="json")
    assert caplog.text
    assert SECRET not in caplog.text


@pytest.mark.django_db
def test_a_ping_stores_nothing(api: APIClient) -> None:
    assert api.get(inbound_url()).json() == {"status": "ok", "detail": "Ready for replies."}
    assert api.post(inbound_url()).status_code == 200
    assert InboundMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_database_error_is_a_503_not_a_500(api: APIClient, monkeypatch: Any) -> None:
    from django_mitto import inbound

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr(inbound, "record_inbound", broken)
    response = api.post(inbound_url(), {"from": "+41791234567", "text": "hi"}, format="json")
    assert response.status_code == 503


# -- keywords and signal -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["STOP", "stop please", "Arrêt", "Stopp!", "unsubscribe me"])
def test_an_opt_out_keyword_adds_an_opt_out(api: APIClient, text: str) -> None:
    api.post(inbound_url(), {"from": "41791234567", "text": text}, format="json")
    opt_out = OptOut.objects.get()
    assert (opt_out.number, opt_out.source) == ("+41791234567", OptOut.Source.KEYWORD)
    assert InboundMessage.objects.get().opted_out
    # A second STOP changes nothing.
    api.post(inbound_url(), {"from": "41791234567", "text": text}, format="json")
    assert OptOut.objects.count() == 1


@pytest.mark.django_db
def test_other_words_add_no_opt_out(api: APIClient) -> None:
    api.post(inbound_url(), {"from": "41791234567", "text": "Don't stop"}, format="json")
    assert OptOut.objects.count() == 0
    assert not InboundMessage.objects.get().opted_out


@pytest.mark.django_db
def test_message_received_is_sent_with_the_reply_and_the_message(
    api: APIClient, no_send: None
) -> None:
    seen: list[tuple[int, int | None]] = []

    def receiver(sender: Any, inbound: InboundMessage, message: Message | None, **kw: Any) -> None:
        seen.append((inbound.pk, message.pk if message else None))

    message = sent_message()
    message_received.connect(receiver, weak=False)
    try:
        api.post(inbound_url(), {"from": "+41791234567", "text": "ok"}, format="json")
    finally:
        message_received.disconnect(receiver)
    assert seen == [(InboundMessage.objects.get().pk, message.pk)]


# -- checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["7 days", -1, True, None])
def test_reply_window_of_a_wrong_type_is_e020(settings: Any, value: Any) -> None:
    settings.MITTO_REPLY_WINDOW = value
    assert [e.id for e in check_reply_settings()] == ["django_mitto.E020"]


@pytest.mark.parametrize("value", [timedelta(days=2), 3600, 0])
def test_reply_window_of_seconds_or_timedelta_passes(settings: Any, value: Any) -> None:
    settings.MITTO_REPLY_WINDOW = value
    assert check_reply_settings() == []


@pytest.mark.parametrize("value", ["STOP", ["STOP", 3], ["STOP ALL"], [""]])
def test_opt_out_keywords_that_are_not_single_words_is_e021(settings: Any, value: Any) -> None:
    settings.MITTO_OPT_OUT_KEYWORDS = value
    assert [e.id for e in check_reply_settings()] == ["django_mitto.E021"]


@pytest.mark.django_db
def test_the_check_command_passes_with_the_defaults() -> None:
    call_command("check")


# -- admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_thread_shows_both_ways_in_order_and_a_reply_is_sent(
    admin_client: Any, mitto_sandbox: Any, api: APIClient
) -> None:
    first = services.send_sms("+41791234567", "Your table is booked for 8 pm")
    api.post(
        inbound_url(), {"from": "41791234567", "to": "DjangoMitto", "text": "Can we come at 9?"}
    )
    url = reverse("admin:django_mitto_inbound_thread", args=["+41791234567"])
    response = admin_client.get(url)
    page = response.content.decode()
    assert page.index("Your table is booked") < page.index("Can we come at 9?")
    assert InboundMessage.objects.get().in_reply_to == first

    response = admin_client.post(url, {"sender": "DjangoMitto", "text": "Yes, 9 pm is fine"})
    assert response.status_code == 302
    reply = Message.objects.order_by("pk").last()
    assert (reply.recipient, reply.text, reply.status) == (
        "+41791234567",
        "Yes, 9 pm is fine",
        Status.SENT,
    )
    page = admin_client.get(url).content.decode()
    assert page.index("Can we come at 9?") < page.index("Yes, 9 pm is fine")
    assert len(mitto_sandbox.messages) == 2


@pytest.mark.django_db
def test_a_reply_to_an_opted_out_number_is_refused_on_the_page(
    admin_client: Any, api: APIClient
) -> None:
    api.post(inbound_url(), {"from": "41791234567", "text": "STOP"})
    url = reverse("admin:django_mitto_inbound_thread", args=["+41791234567"])
    response = admin_client.post(url, {"sender": "DjangoMitto", "text": "Sorry to see you go"})
    assert response.status_code == 200
    assert "opted out" in " ".join(response.context["form"].non_field_errors())
    assert "This number opted out" in response.content.decode()
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_the_list_searches_and_links_to_the_conversation(admin_client: Any, api: APIClient) -> None:
    api.post(inbound_url(), {"from": "41791234567", "text": "Where is my parcel?"})
    api.post(inbound_url(), {"from": "41791234568", "text": "Thanks"})
    response = admin_client.get("/admin/django_mitto/inboundmessage/?q=parcel")
    assert [r.sender for r in response.context["cl"].result_list] == ["+41791234567"]
    assert reverse("admin:django_mitto_inbound_thread", args=["+41791234567"]) in (
        response.content.decode()
    )


# -- sandbox -------------------------------------------------------------------------------------


def _post(url: str, data: dict[str, Any], method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_delivers_a_reply_to_the_inbound_url(
    mitto_sandbox: Any, live_server: Any
) -> None:
    control = mitto_sandbox.url + "/_sandbox/inbound"
    status, answer = _post(control, {"from": "+41791234567", "to": "DjangoMitto", "text": "STOP"})
    assert status == 409
    assert "No inbound URL" in answer["error"]
    status, _answer = _post(
        control, {"inbound_url": live_server.url + inbound_url()}, method="PATCH"
    )
    assert status == 200
    status, answer = _post(control, {"from": "+41791234567", "to": "DjangoMitto", "text": "STOP"})
    assert (status, answer["http_status"], answer["ok"]) == (200, 200, True)
    assert InboundMessage.objects.get().text == "STOP"
    assert OptOut.objects.get().number == "+41791234567"
    assert _post(control, {"to": "x"})[0] == 400


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_auto_reply_answers_every_delivered_message(
    mitto_sandbox: Any, live_server: Any
) -> None:
    mitto_sandbox.inbound_url = live_server.url + inbound_url()
    mitto_sandbox.auto_reply = "Thanks!"
    # The reply comes when the report is due: here after the answer is stored, as a person's
    # reply would (a reply is linked to a message sent, one with its sent_at).
    mitto_sandbox.report_delay = 0.5
    delivered = services.send_sms("+41791234561", "Hello")
    services.send_sms("+41791234569", "Hello")  # ends rejected: no reply
    _wait_for(lambda: InboundMessage.objects.exists())
    time.sleep(0.3)
    inbound = InboundMessage.objects.get()
    assert (inbound.sender, inbound.recipient, inbound.text) == (
        "+41791234561",
        "DjangoMitto",
        "Thanks!",
    )
    assert inbound.in_reply_to == delivered


def test_the_sandbox_command_line_takes_the_inbound_options() -> None:
    from django_mitto.sandbox import Sandbox, inbound
    from django_mitto.sandbox.__main__ import build_parser

    args = build_parser().parse_args(
        ["--inbound-url", "http://127.0.0.1:8000/mitto/inbound/x/", "--auto-reply", "Hi"]
    )
    sandbox = Sandbox()
    assert inbound.configure(sandbox, args) == {
        "inbound_url": "http://127.0.0.1:8000/mitto/inbound/x/",
        "auto_reply": "Hi",
    }
    with pytest.raises(ValueError, match="inbound_url"):
        inbound.configure(sandbox, build_parser().parse_args(["--inbound-url", "ftp://x"]))


def test_mitto_sandbox_command_points_replies_at_this_project(settings: Any) -> None:
    from django_mitto.management.commands.mitto_sandbox import default_callback_url

    settings.MITTO_CALLBACK_BASE_URL = "https://shop.example.com"
    assert default_callback_url("inbound") == "https://shop.example.com/mitto/inbound/old-secret/"
    assert default_callback_url() == "https://shop.example.com/mitto/callback/old-secret/"


@pytest.mark.django_db
def test_a_text_with_nul_or_a_lone_surrogate_is_stored_with_replacement_characters(
    api: APIClient,
) -> None:
    body = '{"from": "+41791234567", "text": "a\\u0000b\\ud800c"}'
    response = api.generic("POST", inbound_url(), body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert InboundMessage.objects.get().text == "a\ufffdb\ufffdc"
