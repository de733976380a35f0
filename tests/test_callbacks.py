"""Delivery-report rules: the status table, tokens, caller addresses and applying reports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse

from django_mitto import callbacks, sending
from django_mitto.callbacks import ParsedReport
from django_mitto.client import SendResult
from django_mitto.models import Batch, DeliveryReport, Message, Status
from django_mitto.signals import delivery_report_received, message_status_changed

SECRET = "callback-secret"

Outcome = DeliveryReport.Outcome


# -- helpers --------------------------------------------------------------------------------------


@dataclass
class SignalLog:
    """What the delivery-report signals announced, in order."""

    received: list[tuple[int, int | None]] = field(default_factory=list)
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def signals() -> Iterator[SignalLog]:
    log = SignalLog()

    def on_received(
        sender: Any, report: DeliveryReport, message: Message | None, **kw: Any
    ) -> None:
        with log.lock:
            log.received.append((report.pk, message.pk if message else None))

    def on_changed(
        sender: Any, message: Message, old_status: str, new_status: str, report: Any, **kw: Any
    ) -> None:
        assert isinstance(report, DeliveryReport)
        with log.lock:
            log.changed.append((message.pk, old_status, new_status))

    delivery_report_received.connect(on_received, weak=False)
    message_status_changed.connect(on_changed, weak=False)
    yield log
    delivery_report_received.disconnect(on_received)
    message_status_changed.disconnect(on_changed)


def report(provider_id: str = "", status: str = "delivered", **fields: Any) -> ParsedReport:
    return ParsedReport(provider_id=provider_id, status=status, payload={"query": {}}, **fields)


def record(parsed: ParsedReport, message_pk: int | None = None) -> DeliveryReport:
    return callbacks.record_report(
        parsed, method="POST", remote_addr="127.0.0.1", message_pk=message_pk
    )


# -- the status table -----------------------------------------------------------------------------

SMPP_WORDS = {
    "DELIVRD": Status.DELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTD": Status.REJECTED,
    "DELETED": Status.FAILED,
    "ACCEPTD": Status.SENT,
    "ENROUTE": Status.SENT,
    "UNKNOWN": Status.SENT,
}
PLAIN_WORDS = {
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "undeliverable": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "expired": Status.EXPIRED,
    "rejected": Status.REJECTED,
    "sent": Status.SENT,
    "buffered": Status.SENT,
    "accepted": Status.SENT,
}
ALL_WORDS = {**SMPP_WORDS, **PLAIN_WORDS}


@pytest.mark.parametrize(("word", "expected"), sorted(ALL_WORDS.items()))
def test_map_status_knows_every_smpp_and_plain_word(word: str, expected: str) -> None:
    assert callbacks.map_status(word) == expected
    assert callbacks.map_status(word.lower()) == expected
    assert callbacks.map_status(word.upper()) == expected
    assert callbacks.map_status(word.title()) == expected


def test_map_status_ignores_surrounding_spaces() -> None:
    assert callbacks.map_status("  Delivrd\t") == Status.DELIVERED


@pytest.mark.parametrize("word", ["", "   ", "deliver", "DELIVRD!", "ok", "0", "délivré"])
def test_map_status_gives_none_for_an_unknown_word(word: str) -> None:
    assert callbacks.map_status(word) is None


def test_map_status_accepts_none() -> None:
    assert callbacks.map_status(None) is None  # type: ignore[arg-type]


def test_every_word_in_the_table_means_a_message_status() -> None:
    assert set(callbacks.STATUS_WORDS.values()) <= set(Status.values)
    assert all(word == word.lower() for word in callbacks.STATUS_WORDS)


# -- tokens ---------------------------------------------------------------------------------------


def test_message_token_names_its_message() -> None:
    check = callbacks.check_token(callbacks.message_token(42))
    assert check == callbacks.TokenCheck(True, message_pk=42)


def test_message_token_accepts_a_message_instance() -> None:
    message = Message(pk=7)
    assert callbacks.message_token(message) == callbacks.message_token(7)


def test_batch_token_names_its_batch() -> None:
    check = callbacks.check_token(callbacks.batch_token(Batch(pk=9)))
    assert check == callbacks.TokenCheck(True, batch_pk=9)


def test_message_token_is_usable_in_the_callback_url() -> None:
    token = callbacks.message_token(12345)
    url = reverse("django_mitto:callback", kwargs={"token": token})
    assert url == f"/mitto/callback/{token}/"


def _swap_pk(token: str, new: str) -> str:
    value, signature = token.split(".", 1)
    return f"{value[0]}{new}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: _swap_pk(t, "2"), id="other-pk-same-signature"),
        pytest.param(lambda t: "b" + t[1:], id="message-token-as-batch-token"),
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="signature-altered"),
        pytest.param(lambda t: t.split(".")[0] + ".", id="signature-removed"),
        pytest.param(lambda t: t.split(".")[0], id="bare-value"),
        pytest.param(lambda t: t + "x", id="extra-character"),
        pytest.param(lambda t: t.upper(), id="upper-case"),
    ],
)
def test_altered_message_token_is_refused(forge: Callable[[str], str]) -> None:
    token = callbacks.message_token(1)
    assert callbacks.check_token(forge(token)).valid is False


def test_a_value_signed_elsewhere_in_the_site_is_no_token(settings: Any) -> None:
    # Same SECRET_KEY, but Django's default salt: a signature made for another purpose.
    from django.core import signing

    settings.MITTO_CALLBACK_SECRET = ""
    for signer in (signing.TimestampSigner(sep="."), signing.Signer(sep=".")):
        assert callbacks.check_token(signer.sign("m5")) == callbacks.TokenCheck(False)
        assert callbacks.check_token(signer.sign("b5")) == callbacks.TokenCheck(False)


def test_tokens_follow_the_current_secret_key(settings: Any) -> None:
    settings.SECRET_KEY = "another-project"
    foreign = callbacks.message_token(1)
    settings.SECRET_KEY = "django-mitto-tests"
    assert callbacks.check_token(foreign).valid is False
    # Rotation: tokens signed with a fallback key stay valid.
    settings.SECRET_KEY = "rotated-key"
    settings.SECRET_KEY_FALLBACKS = ["django-mitto-tests"]
    assert callbacks.check_token(callbacks.message_token(1)).valid is True


def test_configured_secret_is_accepted_and_names_no_message() -> None:
    assert callbacks.check_token(SECRET) == callbacks.TokenCheck(True)


@pytest.mark.parametrize(
    "token", ["", "callback-secre", "callback-secretx", "Callback-Secret", " callback-secret"]
)
def test_anything_but_the_exact_secret_is_refused(token: str) -> None:
    assert callbacks.check_token(token).valid is False


def test_every_secret_of_a_rotation_list_is_accepted(settings: Any) -> None:
    settings.MITTO_CALLBACK_SECRET = ["new", "old"]
    assert callbacks.check_token("new").valid
    assert callbacks.check_token("old").valid
    assert not callbacks.check_token(SECRET).valid
    assert not callbacks.check_token("newold").valid


def test_no_secret_configured_accepts_no_plain_token(settings: Any) -> None:
    settings.MITTO_CALLBACK_SECRET = ""
    assert not callbacks.check_token(SECRET).valid
    assert not callbacks.check_token("").valid
    # Signed per-message tokens do not depend on MITTO_CALLBACK_SECRET.
    assert callbacks.check_token(callbacks.message_token(3)).message_pk == 3


def test_secret_that_looks_like_a_signed_token_still_works(settings: Any) -> None:
    settings.MITTO_CALLBACK_SECRET = "m1.not-a-signature"
    assert callbacks.check_token("m1.not-a-signature") == callbacks.TokenCheck(True)


def test_callback_urls_are_empty_without_a_base_url(settings: Any) -> None:
    settings.MITTO_CALLBACK_BASE_URL = ""
    assert callbacks.callback_url_for_message(Message(pk=1)) == ""
    assert callbacks.callback_url_for_batch(Batch(pk=1)) == ""


def test_callback_urls_carry_signed_tokens(settings: Any) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "https://example.com/"
    url = callbacks.callback_url_for_message(Message(pk=5))
    assert url == "https://example.com/mitto/callback/" + callbacks.message_token(5) + "/"
    batch_url = callbacks.callback_url_for_batch(Batch(pk=6))
    assert batch_url == "https://example.com/mitto/callback/" + callbacks.batch_token(6) + "/"


# -- caller address -------------------------------------------------------------------------------


def test_client_address_is_remote_addr_by_default() -> None:
    meta = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_REAL_IP": "192.0.2.1"}
    assert callbacks.client_address(meta) == "10.1.2.3"


def test_client_address_comes_from_the_configured_header(settings: Any) -> None:
    settings.MITTO_CALLBACK_IP_HEADER = "X-Real-IP"
    meta = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_REAL_IP": "192.0.2.1"}
    assert callbacks.client_address(meta) == "192.0.2.1"


def test_client_address_falls_back_to_remote_addr_without_the_header(settings: Any) -> None:
    settings.MITTO_CALLBACK_IP_HEADER = "X-Real-IP"
    assert callbacks.client_address({"REMOTE_ADDR": "10.1.2.3"}) == "10.1.2.3"
    assert callbacks.client_address({}) == ""


def test_address_allowed_without_a_list_allows_everything(settings: Any) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = []
    assert callbacks.address_allowed("192.0.2.1")
    assert callbacks.address_allowed("")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.0.0.1", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("2a06:b080:a001:8641::12", True),
        ("2a06:b080:a001:8642::12", False),
        ("", False),
        ("not-an-address", False),
        ("10.0.0.1, 10.0.0.2", False),
    ],
)
def test_address_allowed_checks_ipv4_and_ipv6_ranges(
    settings: Any, address: str, allowed: bool
) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8", "2a06:b080:a001:8641::/64", "bogus"]
    assert callbacks.address_allowed(address) is allowed


# -- applying reports -----------------------------------------------------------------------------


def test_report_moves_the_message_forward_and_keeps_the_details(make_message) -> None:
    message = make_message(provider_id="abc")
    parsed = report(
        "abc",
        "DELIVRD",
        error_code="0",
        reference="order-1",
        recipient="41791234567",
        mcc="228",
        mnc="01",
        sent_at=datetime(2024, 5, 31, 12, tzinfo=timezone.utc),
    )
    before = datetime.now(timezone.utc)
    stored = record(parsed)
    assert stored.outcome == Outcome.APPLIED
    stored.refresh_from_db()
    assert stored.message_id == message.pk
    assert stored.mapped_status == Status.DELIVERED
    assert stored.provider_sent_at == datetime(2024, 5, 31, 12, tzinfo=timezone.utc)
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.delivery_status == "DELIVRD"
    assert message.error_code == "0"
    assert (message.mcc, message.mnc) == ("228", "01")
    assert message.status_changed_at is not None
    assert message.status_changed_at >= before


def test_duplicate_report_changes_nothing(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(provider_id="abc")
    with django_capture_on_commit_callbacks(execute=True):
        first = record(report("abc", "delivered"))
    message.refresh_from_db()
    changed_at = message.status_changed_at
    with django_capture_on_commit_callbacks(execute=True):
        second = record(report("abc", "delivered"))
    assert (first.outcome, second.outcome) == (Outcome.APPLIED, Outcome.DUPLICATE)
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.status_changed_at == changed_at
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 2
    assert DeliveryReport.objects.filter(message=message).count() == 2


def test_same_intermediate_word_twice_is_a_duplicate(make_message) -> None:
    make_message(provider_id="abc")
    assert record(report("abc", "buffered")).outcome == Outcome.APPLIED
    assert record(report("abc", "BUFFERED")).outcome == Outcome.DUPLICATE


@pytest.mark.parametrize("late", ["sent", "buffered", "ENROUTE", "accepted"])
def test_late_intermediate_report_does_not_undo_delivered(make_message, late: str) -> None:
    message = make_message(provider_id="abc")
    record(report("abc", "delivered", error_code="0"))
    late_report = record(report("abc", late, error_code="99"))
    assert late_report.outcome == Outcome.STALE
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.delivery_status == "delivered"
    assert message.error_code == "0"


@pytest.mark.parametrize("final", [Status.DELIVERED, Status.UNDELIVERED, Status.FAILED])
def test_final_status_is_never_replaced_by_another_final_status(make_message, final: str) -> None:
    message = make_message(provider_id="abc", status=final)
    other = "expired" if final != Status.EXPIRED else "rejected"
    assert record(report("abc", other)).outcome == Outcome.STALE
    message.refresh_from_db()
    assert message.status == final


def test_intermediate_word_after_sent_updates_details_without_a_status_change(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(provider_id="abc")
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("abc", "buffered", error_code="5"))
    assert stored.outcome == Outcome.APPLIED
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert (message.delivery_status, message.error_code) == ("buffered", "5")
    assert signals.changed == []
    assert signals.received == [(stored.pk, message.pk)]


def test_same_status_details_do_not_move_status_changed_at(make_message) -> None:
    message = make_message(provider_id="abc")
    record(report("abc", "sent"))
    message.refresh_from_db()
    changed_at = message.status_changed_at
    record(report("abc", "buffered"))
    message.refresh_from_db()
    assert message.delivery_status == "buffered"
    assert message.status_changed_at == changed_at


def test_report_with_an_unknown_word_is_stored_and_changes_nothing(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(provider_id="abc")
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("abc", "mystery"))
    assert stored.outcome == Outcome.UNKNOWN_STATUS
    stored.refresh_from_db()
    assert (stored.message_id, stored.status, stored.mapped_status) == (message.pk, "mystery", "")
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.delivery_status == ""
    assert signals.changed == []
    assert signals.received == [(stored.pk, message.pk)]


def test_unmatched_report_is_stored_without_a_message(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("nobody", "delivered"))
    assert stored.outcome == Outcome.UNMATCHED
    stored.refresh_from_db()
    assert stored.message_id is None
    assert stored.provider_id == "nobody"
    assert signals.received == [(stored.pk, None)]
    assert signals.changed == []


def test_report_by_message_pk_with_another_messages_id_is_mismatched(make_message) -> None:
    target = make_message(status=Status.SENDING)
    other = make_message(provider_id="other-id")
    stored = record(report("other-id", "delivered"), message_pk=target.pk)
    assert (stored.message_id, stored.outcome) == (target.pk, Outcome.MISMATCHED)
    target.refresh_from_db()
    other.refresh_from_db()
    assert target.status == Status.SENDING
    assert other.status == Status.SENT


def test_report_by_message_pk_without_id_applies_to_that_message(make_message) -> None:
    target = make_message(status=Status.SENDING)
    make_message(provider_id="other-id")
    stored = record(report("", "delivered"), message_pk=target.pk)
    assert (stored.message_id, stored.outcome) == (target.pk, Outcome.APPLIED)


def _id_recorded_first_by(other: Message, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage a race: ``other``'s send records the id a report brings just before the report
    records it on the message it found."""
    learn = callbacks._learn_id

    def recorded_elsewhere_first(message: Message, provider_id: str) -> bool:
        Message.objects.filter(pk=other.pk).update(status=Status.SENT, provider_id=provider_id)
        return learn(message, provider_id)

    monkeypatch.setattr(callbacks, "_learn_id", recorded_elsewhere_first)


def test_an_id_another_message_records_while_a_token_report_learns_it_is_mismatched(
    make_message,
    signals: SignalLog,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
) -> None:
    # The message's send ended without an id; the report on its token brings one, which
    # another message's send records between the report's lookup and the report's update.
    target = make_message(status=Status.UNKNOWN)
    other = make_message(status=Status.SENDING)
    _id_recorded_first_by(other, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("late-id", "delivered"), message_pk=target.pk)
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (target.pk, Outcome.MISMATCHED)
    assert Message.objects.filter(pk=target.pk).values_list("status", "provider_id").get() == (
        Status.UNKNOWN,
        "",
    )
    assert Message.objects.get(pk=other.pk).status == Status.SENT
    assert signals.changed == []


def test_an_id_another_message_records_while_a_receiver_match_learns_it_goes_to_that_one(
    make_message,
    signals: SignalLog,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
) -> None:
    # The report is found by its receiver on the one message accepted without an id; before
    # the id is recorded there, another message's send records it: the id is that message's.
    lone = make_message(status=Status.SENT)
    other = make_message(status=Status.SENDING)
    _id_recorded_first_by(other, monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("late-id", "delivered", recipient="41791234567"))
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (other.pk, Outcome.APPLIED)
    assert Message.objects.get(pk=other.pk).status == Status.DELIVERED
    assert Message.objects.filter(pk=lone.pk).values_list("status", "provider_id").get() == (
        Status.SENT,
        "",
    )
    assert signals.changed == [(other.pk, Status.SENT, Status.DELIVERED)]


def test_report_for_a_deleted_message_pk_is_refused(make_message) -> None:
    make_message(provider_id="some-id")
    with pytest.raises(callbacks.MessageGone):
        record(report("some-id", "delivered"), message_pk=999_999)
    assert not DeliveryReport.objects.exists()


def test_remote_address_is_normalised_or_dropped(make_message) -> None:
    make_message(provider_id="abc")
    parsed = report("abc", "sent")
    v6 = callbacks.record_report(parsed, method="GET", remote_addr="2A06:B080::0012")
    junk = callbacks.record_report(parsed, method="GET", remote_addr="not-an-ip")
    assert DeliveryReport.objects.get(pk=v6.pk).remote_addr == "2a06:b080::12"
    assert DeliveryReport.objects.get(pk=junk.pk).remote_addr is None


# -- reports that arrive before the send's response -----------------------------------------------


def test_early_report_on_the_account_url_is_applied_when_the_send_records_the_id(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    with django_capture_on_commit_callbacks(execute=True):
        early = record(report("late-id", "delivered", error_code="0"))
    assert early.outcome == Outcome.UNMATCHED

    with django_capture_on_commit_callbacks(execute=True):
        sending._record_sent(
            message, SendResult(id="late-id", response_code=0, response_text="SMS sent")
        )
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.provider_id == "late-id"
    assert message.delivery_status == "delivered"
    early.refresh_from_db()
    assert early.message_id == message.pk
    assert early.outcome == Outcome.APPLIED
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert signals.received == [(early.pk, None), (early.pk, message.pk)]


def test_apply_pending_reports_links_reports_once_the_id_is_known(make_message) -> None:
    message = make_message(status=Status.SENDING)
    early = record(report("late-id", "DELIVRD"))
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="late-id")
    message.refresh_from_db()
    assert callbacks.apply_pending_reports(message) == 1
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    early.refresh_from_db()
    assert (early.message_id, early.outcome) == (message.pk, Outcome.APPLIED)
    # Applied once: a second call finds nothing left.
    assert callbacks.apply_pending_reports(message) == 0


def test_a_pending_report_is_announced_with_the_message_it_was_applied_to(
    make_message, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    record(report("late-id", "delivered"))
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="late-id")
    message.refresh_from_db()
    seen: list[tuple[int | None, int | None]] = []

    def on_received(
        sender: Any, report: DeliveryReport, message: Message | None, **kw: Any
    ) -> None:
        seen.append((report.message_id, message.pk if message else None))

    delivery_report_received.connect(on_received, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert callbacks.apply_pending_reports(message) == 1
    finally:
        delivery_report_received.disconnect(on_received)
    assert seen == [(message.pk, message.pk)]


def test_a_report_whose_id_the_send_recorded_while_it_was_stored_is_still_applied(
    make_message,
    signals: SignalLog,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
) -> None:
    # The send path records the id after the report's lookup found no message and before the
    # report is stored, so the send finds no pending report: the report must look once more.
    message = make_message(status=Status.SENDING)
    store = callbacks.insert

    def id_recorded_first(row: Any) -> None:
        Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="race-id")
        assert callbacks.apply_pending_reports(Message.objects.get(pk=message.pk)) == 0
        store(row)

    monkeypatch.setattr(callbacks, "insert", id_recorded_first)
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("race-id", "delivered"))
    assert (stored.message_id, stored.outcome) == (message.pk, Outcome.APPLIED)
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (message.pk, Outcome.APPLIED)
    assert Message.objects.get(pk=message.pk).status == Status.DELIVERED
    assert signals.received == [(stored.pk, message.pk)]
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


@pytest.mark.parametrize("on", ["batch URL", "account URL"])
def test_a_report_that_three_rows_without_id_fit_never_reaches_a_message_outside_its_url(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks, on: str
) -> None:
    # Three messages without id fit the receiver within the URL's batch (or account), so the
    # report's id is asked for alone; it is held by a message outside them.
    batch = Batch.objects.create(text="Hello", total=3)
    for _ in range(3):
        if on == "batch URL":
            make_message(status=Status.UNKNOWN, batch=batch)
        else:
            make_message(status=Status.SENT, account="marketing")
    outsider = make_message(status=Status.SENT, provider_id="x-1")
    with django_capture_on_commit_callbacks(execute=True):
        stored = callbacks.record_report(
            report("x-1", "delivered", recipient="41791234567"),
            method="POST",
            remote_addr="127.0.0.1",
            batch_pk=batch.pk if on == "batch URL" else None,
            account="marketing" if on == "account URL" else "",
        )
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (None, Outcome.UNMATCHED)
    assert Message.objects.get(pk=outsider.pk).status == Status.SENT
    assert Message.objects.filter(provider_id="").count() == 3
    assert signals.changed == []


@pytest.mark.parametrize("on", ["batch URL", "account URL"])
def test_a_report_whose_id_a_bulk_answer_recorded_while_it_was_stored_is_still_applied(
    make_message,
    signals: SignalLog,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
    on: str,
) -> None:
    # As above, for a row of a bulk send: the bulk answer records the row's id after the
    # report's lookup found nothing and before the report is stored.
    batch = Batch.objects.create(text="Hello", total=1)
    row = make_message(status=Status.SENDING, batch=batch)
    store = callbacks.insert

    def id_recorded_first(stored: Any) -> None:
        Message.objects.filter(pk=row.pk).update(status=Status.SENT, provider_id="race-id")
        assert callbacks.apply_pending_reports_bulk([Message.objects.get(pk=row.pk)]) == 0
        store(stored)

    monkeypatch.setattr(callbacks, "insert", id_recorded_first)
    with django_capture_on_commit_callbacks(execute=True):
        stored = callbacks.record_report(
            report("race-id", "delivered", recipient="41791234567"),
            method="POST",
            remote_addr="127.0.0.1",
            batch_pk=batch.pk if on == "batch URL" else None,
        )
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (row.pk, Outcome.APPLIED)
    assert Message.objects.get(pk=row.pk).status == Status.DELIVERED
    assert signals.received == [(stored.pk, row.pk)]
    assert signals.changed == [(row.pk, Status.SENT, Status.DELIVERED)]


class AppLabelRouter:
    """A database router as projects write them: by the app of the model it is asked about."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "default" if model._meta.app_label == "django_mitto" else None

    db_for_write = db_for_read


def test_a_project_whose_router_routes_by_app_gets_its_reports_applied(
    make_message, settings: Any, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENT, provider_id="routed-id")
    settings.DATABASE_ROUTERS = [f"{__name__}.AppLabelRouter"]
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("routed-id", "delivered"))
    stored.refresh_from_db()
    assert (stored.message_id, stored.outcome) == (message.pk, Outcome.APPLIED)
    assert Message.objects.get(pk=message.pk).status == Status.DELIVERED
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


@pytest.mark.parametrize(
    ("signal", "sender"),
    [(delivery_report_received, DeliveryReport), (message_status_changed, Message)],
    ids=["delivery_report_received", "message_status_changed"],
)
def test_a_receiver_connected_for_its_sender_only_gets_the_whole_message(
    signal: Any,
    sender: type,
    make_message,
    django_capture_on_commit_callbacks,
    django_assert_num_queries,
) -> None:
    message = make_message(status=Status.SENT, provider_id="the-id")
    seen: list[tuple[set[str], str, str]] = []

    def on_signal(sender: Any, message: Message, **kw: Any) -> None:
        # The message it gets is read whole, not field by field as the receiver reads it.
        with django_assert_num_queries(0):
            seen.append((message.get_deferred_fields(), message.text, message.recipient))

    signal.connect(on_signal, sender=sender, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record(report("the-id", "delivered"))
    finally:
        signal.disconnect(on_signal, sender=sender)
    assert seen == [(set(), message.text, message.recipient)]


def _apply_to_stale(message: Message, word: str) -> DeliveryReport:
    """Apply a report to ``message`` as read before another report moved it on."""
    stored = DeliveryReport(
        provider_id=message.provider_id,
        status=word,
        mapped_status=callbacks.map_status(word) or "",
        method="POST",
        payload={},
    )
    callbacks._apply(stored, message, save=True)
    assert DeliveryReport.objects.get(pk=stored.pk).outcome == stored.outcome
    return stored


def test_a_report_read_behind_a_concurrent_one_still_moves_the_message_forward(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    stale = make_message(status=Status.SENDING, provider_id="abc")
    bystander = make_message(status=Status.SENT, provider_id="other")
    Message.objects.filter(pk=stale.pk).update(status=Status.SENT)
    with django_capture_on_commit_callbacks(execute=True):
        stored = _apply_to_stale(stale, "delivered")
    assert Message.objects.get(pk=bystander.pk).status == Status.SENT
    assert stored.outcome == Outcome.APPLIED
    current = Message.objects.get(pk=stale.pk)
    assert (current.status, current.delivery_status) == (Status.DELIVERED, "delivered")
    # The change announced is the one made: from what the other report had set.
    assert signals.changed == [(stale.pk, Status.SENT, Status.DELIVERED)]


def test_a_report_read_behind_a_final_status_is_stale_and_changes_nothing(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    stale = make_message(status=Status.SENT, provider_id="abc")
    Message.objects.filter(pk=stale.pk).update(status=Status.DELIVERED, delivery_status="DELIVRD")
    # The status as read ("sent"), then one after the status read ("sending").
    assert _apply_to_stale(stale, "buffered").outcome == Outcome.STALE
    stale.status = Status.SENDING
    assert _apply_to_stale(stale, "sent").outcome == Outcome.STALE
    current = Message.objects.get(pk=stale.pk)
    assert (current.status, current.delivery_status) == (Status.DELIVERED, "DELIVRD")
    # Read "sending", but another report set "sent" meanwhile: a second "sent" is a duplicate.
    other = make_message(status=Status.SENDING, provider_id="def")
    Message.objects.filter(pk=other.pk).update(status=Status.SENT, delivery_status="ACCEPTD")
    with django_capture_on_commit_callbacks(execute=True):
        duplicate = _apply_to_stale(other, "buffered")
    assert duplicate.outcome == Outcome.DUPLICATE
    assert Message.objects.get(pk=other.pk).delivery_status == "ACCEPTD"
    assert signals.received == [(duplicate.pk, other.pk)]
    assert signals.changed == []


def test_a_report_read_behind_a_concurrent_one_announces_the_message_as_it_left_it(
    make_message, django_capture_on_commit_callbacks
) -> None:
    stale = make_message(status=Status.SENDING, provider_id="abc")
    Message.objects.filter(pk=stale.pk).update(status=Status.SENT)
    seen: list[tuple[str, str, str, str, str, bool]] = []

    def on_changed(
        sender: Any, message: Message, old_status: str, new_status: str, **kw: Any
    ) -> None:
        seen.append(
            (
                old_status,
                new_status,
                message.status,
                message.delivery_status,
                message.error_code,
                message.status_changed_at is not None,
            )
        )

    stored = DeliveryReport(
        provider_id="abc",
        status="UNDELIV",
        mapped_status=Status.UNDELIVERED,
        error_code="34",
        method="POST",
        payload={},
    )
    message_status_changed.connect(on_changed, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            callbacks._apply(stored, stale, save=True)
    finally:
        message_status_changed.disconnect(on_changed)
    # The receiver's message holds what the report wrote, as after a report read in time.
    assert seen == [(Status.SENT, Status.UNDELIVERED, Status.UNDELIVERED, "UNDELIV", "34", True)]


def test_apply_pending_reports_needs_a_provider_id(make_message) -> None:
    message = make_message(status=Status.SENDING)
    record(report("late-id", "delivered"))
    assert callbacks.apply_pending_reports(message) == 0
    assert DeliveryReport.objects.get().message_id is None


def test_pending_reports_are_applied_in_the_order_received(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    buffered = record(report("late-id", "buffered"))
    delivered = record(report("late-id", "delivered"))
    repeated = record(report("late-id", "delivered"))
    late = record(report("late-id", "sent"))
    unknown = record(report("late-id", "mystery"))
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="late-id")
    message.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert callbacks.apply_pending_reports(message) == 5
    outcomes = {
        r.pk: r.outcome for r in DeliveryReport.objects.filter(message=message).order_by("pk")
    }
    assert outcomes == {
        buffered.pk: Outcome.APPLIED,
        delivered.pk: Outcome.APPLIED,
        repeated.pk: Outcome.DUPLICATE,
        late.pk: Outcome.STALE,
        unknown.pk: Outcome.UNKNOWN_STATUS,
    }
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.DELIVERED, "delivered")
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


def test_apply_pending_reports_takes_one_query_when_no_report_waits_for_the_message(
    make_message, django_assert_num_queries
) -> None:
    # Reports wait for other ids, and one for this id was stored unread: none is this
    # message's to take, and the send path asks after every id it records.
    record(report("someone-else", "delivered"))
    callbacks.store_unparsed(
        {"body": "late-id delivered"}, method="POST", remote_addr=None, fields={"id": "late-id"}
    )
    message = make_message(status=Status.SENT, provider_id="late-id")
    with django_assert_num_queries(1):
        assert callbacks.apply_pending_reports(message) == 0


def test_pending_reports_of_other_ids_stay_pending(make_message) -> None:
    message = make_message(status=Status.SENDING)
    other = record(report("someone-else", "delivered"))
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="late-id")
    message.refresh_from_db()
    assert callbacks.apply_pending_reports(message) == 0
    other.refresh_from_db()
    assert (other.message_id, other.outcome) == (None, Outcome.UNMATCHED)


@pytest.mark.parametrize(
    ("receiver", "numbers"),
    [
        ("41791234567", ["+41791234567"]),  # Mitto writes no "+"
        ("0041791234567", ["+41791234567"]),  # "00" is the international prefix
        (" 00 41 79 123 45 67", ["+41791234567"]),
        ("123456", ["+123456"]),  # 6 to 15 digits
        ("123456789012345", ["+123456789012345"]),
        ("12345", []),
        ("1234567890123456", []),
        ("", []),
    ],
)
def test_a_report_receiver_is_looked_up_in_its_e164_form(receiver: str, numbers: list[str]) -> None:
    assert callbacks._receiver_numbers(receiver) == numbers


@pytest.mark.django_db
def test_a_report_stored_unread_keeps_only_short_printable_text_of_its_fields(
    signals: SignalLog, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        kept = callbacks.store_unparsed(
            {"body": "x"},
            method="POST",
            remote_addr="2001:db8::0:1",
            fields={
                "id": 12345,  # a number is kept as its text
                "status": True,  # a boolean is no text
                "reference": "r" * 255,  # as long as the column allows
                "receiver": "4179\x00123\ud800\udfff",  # control, surrogates dropped
            },
        )
    assert signals.received == [(kept.pk, None)]
    assert (kept.provider_id, kept.status, kept.reference, kept.recipient) == (
        "12345",
        "",
        "r" * 255,
        "4179123",
    )
    assert kept.remote_addr == "2001:db8::1"
    dropped = callbacks.store_unparsed(
        {"body": "x"},
        method="POST",
        remote_addr=None,
        fields={"id": "i" * 65, "status": 1.5, "reference": "r" * 256, "receiver": ["4179"]},
    )
    assert (dropped.provider_id, dropped.status, dropped.reference, dropped.recipient) == (
        "",
        "1.5",
        "",
        "",
    )
    assert dropped.remote_addr is None
    assert (kept.method, dropped.method) == ("POST", "POST")
    # Whatever the client sent as method is cut to the column (8 characters).
    odd = callbacks.store_unparsed(
        {"body": "x"},
        method="M-SEARCH-X",
        remote_addr=None,
        fields={"status": "s" * 33, "receiver": "4" * 33},
    )
    assert (odd.method, odd.status, odd.recipient) == ("M-SEARCH", "", "")


def test_a_report_stored_unread_is_never_taken_by_the_message_whose_id_it_named(
    make_message,
) -> None:
    callbacks.store_unparsed(
        {"body": "id-1 delivered"}, method="POST", remote_addr=None, fields={"id": "id-1"}
    )
    message = make_message(status=Status.SENT, provider_id="id-1")
    assert callbacks.apply_pending_reports_bulk([message]) == 0
    assert callbacks.apply_pending_reports(message) == 0
    stored = DeliveryReport.objects.get()
    assert (stored.message_id, stored.outcome) == (None, DeliveryReport.Outcome.UNPARSED)
    assert Message.objects.get(pk=message.pk).status == Status.SENT


def test_apply_pending_reports_bulk_links_each_report_to_its_message(make_message) -> None:
    first = make_message(status=Status.SENDING)
    second = make_message(status=Status.SENDING)
    record(report("id-1", "delivered"))
    record(report("id-2", "undelivered"))
    Message.objects.filter(pk=first.pk).update(status=Status.SENT, provider_id="id-1")
    Message.objects.filter(pk=second.pk).update(status=Status.SENT, provider_id="id-2")
    first.refresh_from_db()
    second.refresh_from_db()
    assert callbacks.apply_pending_reports_bulk([first, second]) == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Status.DELIVERED, Status.UNDELIVERED)
    # Messages without a Mitto id have no report to take.
    assert callbacks.apply_pending_reports_bulk([make_message(status=Status.SENDING)]) == 0


def test_apply_pending_reports_bulk_reads_no_other_message(
    make_message, django_assert_num_queries
) -> None:
    first = make_message(status=Status.SENDING)
    second = make_message(status=Status.SENDING)
    for _ in range(3):
        make_message(status=Status.SENT, provider_id="")  # the rest of the table
    record(report("id-1", "delivered"))
    record(report("id-2", "undelivered"))
    Message.objects.filter(pk=first.pk).update(status=Status.SENT, provider_id="id-1")
    Message.objects.filter(pk=second.pk).update(status=Status.SENT, provider_id="id-2")
    first.refresh_from_db()
    second.refresh_from_db()
    # Whole messages given: the reports waiting for them are read in one query, then each
    # message's status is read again and the report and the message are written; no message
    # is loaded besides.
    with django_assert_num_queries(1 + 2 * 3):
        assert callbacks.apply_pending_reports_bulk([first, second]) == 2
    assert Message.objects.get(pk=first.pk).status == Status.DELIVERED
    assert Message.objects.get(pk=second.pk).status == Status.UNDELIVERED


def test_report_on_the_message_token_before_the_send_response_is_applied_at_once(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("late-id", "delivered"), message_pk=message.pk)
    assert stored.outcome == Outcome.APPLIED
    message.refresh_from_db()
    assert message.status == Status.DELIVERED

    # The send's response is recorded afterwards: it must not move the message back to "sent".
    with django_capture_on_commit_callbacks(execute=True):
        sending._record_sent(
            message, SendResult(id="late-id", response_code=0, response_text="SMS sent")
        )
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.provider_id == "late-id"
    assert message.response_text == "SMS sent"
    assert message.sent_at is not None
    assert signals.changed == [(message.pk, Status.SENDING, Status.DELIVERED)]
    assert DeliveryReport.objects.get().outcome == Outcome.APPLIED


def test_intermediate_report_before_the_send_response_then_send_keeps_sent(make_message) -> None:
    message = make_message(status=Status.SENDING)
    record(report("", "buffered"), message_pk=message.pk)
    sending._record_sent(message, SendResult(id="late-id", response_code=0))
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.SENT, "buffered")
    assert message.provider_id == "late-id"


# -- signals and transactions ---------------------------------------------------------------------


def test_signals_wait_for_the_commit(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(provider_id="abc")
    with django_capture_on_commit_callbacks() as pending:
        stored = record(report("abc", "delivered"))
        assert signals.received == []
        assert signals.changed == []
    assert len(pending) == 1
    assert signals.received == []
    pending[0]()
    assert signals.received == [(stored.pk, message.pk)]
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_after_commit_and_never_after_rollback(
    make_message, signals: SignalLog
) -> None:
    message = make_message(provider_id="abc")

    def report_then_fail() -> None:
        with transaction.atomic():
            record(report("abc", "delivered"))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        report_then_fail()
    assert signals.received == []
    assert signals.changed == []
    assert not DeliveryReport.objects.exists()
    message.refresh_from_db()
    assert message.status == Status.SENT

    with transaction.atomic():
        stored = record(report("abc", "delivered"))
        assert signals.received == []
    assert signals.received == [(stored.pk, message.pk)]
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]

    # Outside any transaction (autocommit) the signals are sent at once.
    record(report("abc", "delivered"))
    assert len(signals.received) == 2
    assert len(signals.changed) == 1


def test_status_change_signal_carries_the_updated_message(
    make_message, django_capture_on_commit_callbacks
) -> None:
    make_message(provider_id="abc")
    seen: list[tuple[str, str, str]] = []

    def receiver(sender: Any, message: Message, report: DeliveryReport, **kw: Any) -> None:
        seen.append((message.status, message.delivery_status, report.outcome))

    message_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record(report("abc", "UNDELIV", error_code="34"))
    finally:
        message_status_changed.disconnect(receiver)
    assert seen == [(Status.UNDELIVERED, "UNDELIV", Outcome.APPLIED)]


def test_a_message_deleted_before_the_commit_is_still_announced_as_read(
    make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(provider_id="abc")
    with django_capture_on_commit_callbacks() as pending:
        stored = record(report("abc", "delivered"))
    # Deleted after the report applied, before the signals went out: the receivers still get
    # the report and the message as the rules read it, and nothing raises.
    Message.objects.filter(pk=message.pk).delete()
    for callback in pending:
        callback()
    assert signals.received == [(stored.pk, message.pk)]
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


# -- rules a one-line change would break ----------------------------------------------------------

#: README's "Status words" table, written out: a word dropped from or added to the code fails.
README_STATUS_WORDS = {
    "delivrd": "delivered",
    "delivered": "delivered",
    "undeliv": "undelivered",
    "undelivered": "undelivered",
    "undeliverable": "undelivered",
    "expired": "expired",
    "rejectd": "rejected",
    "rejected": "rejected",
    "deleted": "failed",
    "failed": "failed",
    "acceptd": "sent",
    "enroute": "sent",
    "unknown": "sent",
    "sent": "sent",
    "buffered": "sent",
    "accepted": "sent",
    "submitted": "sent",
}


def test_status_table_is_the_readme_table_word_for_word() -> None:
    assert callbacks.STATUS_WORDS == README_STATUS_WORDS
    for word, status in README_STATUS_WORDS.items():
        assert callbacks.map_status(word.upper()) == status


def test_client_address_is_the_last_entry_of_a_forwarded_list(settings: Any) -> None:
    settings.MITTO_CALLBACK_IP_HEADER = "X-Forwarded-For"
    # The caller wrote the first entries; the proxy in front of Django appended the last one.
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.0.0.1, 192.0.2.7"}
    assert callbacks.client_address(meta) == "192.0.2.7"
    meta["HTTP_X_FORWARDED_FOR"] = "10.0.0.1,10.0.0.2 ,  203.0.113.9  "
    assert callbacks.client_address(meta) == "203.0.113.9"
    # Entries are separated by commas, with or without a space.
    meta["HTTP_X_FORWARDED_FOR"] = "10.0.0.1,192.0.2.7"
    assert callbacks.client_address(meta) == "192.0.2.7"


def test_a_prepended_allowed_address_does_not_open_the_callback(
    settings: Any, client: Any, make_message: Callable[..., Message]
) -> None:
    settings.MITTO_CALLBACK_IP_HEADER = "X-Forwarded-For"
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8"]
    message = make_message(provider_id="abc")
    url = reverse("django_mitto:callback", kwargs={"token": SECRET})
    query = {"id": "abc", "status": "delivered"}
    spoofed = client.get(url, query, HTTP_X_FORWARDED_FOR="10.0.0.1, 192.0.2.7")
    assert spoofed.status_code == 403
    message.refresh_from_db()
    assert message.status == Status.SENT
    allowed = client.get(url, query, HTTP_X_FORWARDED_FOR="192.0.2.7, 10.0.0.1")
    assert allowed.status_code == 200
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


@pytest.mark.parametrize(
    ("word", "settled"),
    [("DELIVRD", Status.DELIVERED), ("UNDELIV", Status.UNDELIVERED), ("ACCEPTD", Status.SENT)],
)
def test_report_settles_a_message_whose_send_outcome_was_unknown(
    make_message,
    signals: SignalLog,
    django_capture_on_commit_callbacks,
    word: str,
    settled: str,
) -> None:
    # unknown < sent < final: the report is the proof the send went through.
    message = make_message(provider_id="abc", status=Status.UNKNOWN)
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("abc", word), message_pk=message.pk)
    assert stored.outcome == Outcome.APPLIED
    message.refresh_from_db()
    assert message.status == settled
    assert signals.changed == [(message.pk, Status.UNKNOWN, settled)]


def test_unknown_ranks_between_sending_and_sent() -> None:
    from django_mitto.models import STATUS_RANK

    ranks = [STATUS_RANK[s] for s in ("queued", "sending", "unknown", "sent", "delivered")]
    assert ranks == sorted(set(ranks))


def test_every_configured_secret_is_compared_in_constant_time(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    settings.MITTO_CALLBACK_SECRET = ["new-secret", "old-secret"]
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert callbacks.check_token("old-secret").valid
    # Both secrets, even after a match: the time taken must not tell which one matched.
    assert sorted(compared) == [(b"new-secret", b"old-secret"), (b"old-secret", b"old-secret")]
    compared.clear()
    assert not callbacks.check_token("guess").valid
    assert sorted(compared) == [(b"new-secret", b"guess"), (b"old-secret", b"guess")]


def test_report_fields_are_cut_to_their_column_sizes(db: None) -> None:
    parsed = report(
        "p" * 70,
        "s" * 40,
        error_code="e" * 40,
        reference="r" * 300,
        recipient="4" * 40,
        mcc="2281",
        mnc="0123",
    )
    stored = callbacks.record_report(parsed, method="PROPFINDX", remote_addr="10.0.0.1")
    stored.refresh_from_db()
    assert stored.provider_id == "p" * 64
    assert stored.status == "s" * 32
    assert stored.error_code == "e" * 32
    assert stored.reference == "r" * 255
    assert stored.recipient == "4" * 32
    assert (stored.mcc, stored.mnc) == ("228", "012")
    assert stored.method == "PROPFIND"
    assert stored.outcome == Outcome.UNMATCHED


def test_allowed_ranges_may_be_written_with_host_bits_and_junk_is_skipped(settings: Any) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["bogus", None, "10.1.2.3/8", "192.0.2.1"]
    assert callbacks.address_allowed("10.200.0.1")
    assert callbacks.address_allowed("192.0.2.1")
    assert not callbacks.address_allowed("192.0.2.2")


def test_signed_token_with_a_non_numeric_value_is_refused(settings: Any) -> None:
    from django.core import signing

    signer = signing.Signer(salt="django_mitto.callback", sep=".")
    # "\u0663" is a digit (ARABIC-INDIC THREE), but no primary key is written with it.
    for value in ("mabc", "m", "m-1", "x12", "m\u0663", "m\u06631"):
        assert callbacks.check_token(signer.sign(value)) == callbacks.TokenCheck(False)
    settings.MITTO_CALLBACK_SECRET = ""
    assert callbacks.check_token(signer.sign("b12")) == callbacks.TokenCheck(True, batch_pk=12)


# -- the unordered lookup -------------------------------------------------------------------------


@pytest.mark.parametrize("without_id", [2, 3, 5])
def test_the_message_with_the_id_wins_over_any_number_without_id(
    make_message, django_capture_on_commit_callbacks, django_assert_max_num_queries, without_id: int
) -> None:
    # The lookup has no ORDER BY and a LIMIT: with three or more messages without id to the
    # same number the one with the id may be left out, and is then asked for alone.
    for _ in range(without_id):
        make_message(status=Status.SENT, provider_id="")
    own = make_message(provider_id="the-id")
    received: list[Message] = []

    def on_changed(sender: Any, message: Message, **kw: Any) -> None:
        received.append(message)

    message_status_changed.connect(on_changed, weak=False)
    try:
        # At most two lookups, the report's INSERT and the message's UPDATE (the signals are sent
        # after): the message with the id already has it, so nothing is learned and no pending
        # report is looked for.
        with (
            django_capture_on_commit_callbacks(execute=True),
            django_assert_max_num_queries(4),
        ):
            stored = record(report("the-id", recipient="41791234567"))
    finally:
        message_status_changed.disconnect(on_changed)
    assert (stored.message_id, stored.outcome) == (own.pk, DeliveryReport.Outcome.APPLIED)
    assert Message.objects.get(pk=own.pk).status == Status.DELIVERED
    assert Message.objects.exclude(pk=own.pk).filter(provider_id="").count() == without_id
    # Receivers get the whole message, not only the columns the rules read.
    [message] = received
    assert message.get_deferred_fields() == set() and message.text == "Hello"


def test_a_mismatched_report_is_announced_with_the_message_whose_url_it_came_on(
    make_message, signals, django_capture_on_commit_callbacks
) -> None:
    target = make_message(status=Status.SENDING)
    make_message(provider_id="other-id")
    with django_capture_on_commit_callbacks(execute=True):
        stored = record(report("other-id", "delivered"), message_pk=target.pk)
    assert stored.outcome == Outcome.MISMATCHED
    assert signals.received == [(stored.pk, target.pk)]
    assert signals.changed == []


def test_a_stored_report_sends_pre_save_and_post_save_as_save_does(make_message) -> None:
    from django.db.models.signals import post_save, pre_save

    seen: list[tuple[str, Any, dict[str, Any]]] = []

    def on_pre_save(sender: Any, instance: DeliveryReport, **kw: Any) -> None:
        seen.append(("pre_save", instance.pk, kw))

    def on_post_save(sender: Any, instance: DeliveryReport, **kw: Any) -> None:
        seen.append(("post_save", instance.pk, kw))

    pre_save.connect(on_pre_save, sender=DeliveryReport, weak=False)
    post_save.connect(on_post_save, sender=DeliveryReport, weak=False)
    try:
        stored = record(report("nobody", "delivered"))
    finally:
        pre_save.disconnect(on_pre_save, sender=DeliveryReport)
        post_save.disconnect(on_post_save, sender=DeliveryReport)
    common = {"raw": False, "using": "default", "update_fields": None}
    assert [
        (name, pk, {k: v for k, v in kw.items() if k != "signal"}) for name, pk, kw in seen
    ] == [
        ("pre_save", None, common),
        ("post_save", stored.pk, {**common, "created": True}),
    ]


def test_delivery_report_received_is_sent_by_the_delivery_report_class(
    make_message, django_capture_on_commit_callbacks
) -> None:
    senders: list[Any] = []

    def on_received(sender: Any, **kw: Any) -> None:
        senders.append(sender)

    delivery_report_received.connect(on_received, sender=DeliveryReport, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record(report("nobody", "delivered"))
    finally:
        delivery_report_received.disconnect(on_received, sender=DeliveryReport)
    assert senders == [DeliveryReport]
