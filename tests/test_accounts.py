"""Several Mitto accounts (MITTO_ACCOUNTS): each message goes through its own account's key,
URL, sender and test mode, and its reports are believed only on its own account's secret.

Two sandboxes on loopback stand for two Mitto accounts with different keys.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from django_mitto import callbacks, services
from django_mitto.checks import check_settings
from django_mitto.conf import conf
from django_mitto.exceptions import MittoConfigurationError
from django_mitto.models import Batch, DeliveryReport, Message, Status
from django_mitto.sandbox import Sandbox

DEFAULT_KEY = "default-key"
MARKETING_KEY = "marketing-key"
DEFAULT_SECRET = "callback-secret"
MARKETING_SECRET = "marketing-secret"


@pytest.fixture
def two_sandboxes(settings: Any) -> Iterator[tuple[Sandbox, Sandbox]]:
    """The flat settings point at one sandbox ("default"), MITTO_ACCOUNTS["marketing"] at
    another, with another key, sender and callback secret."""
    with (
        Sandbox(api_key=DEFAULT_KEY, report_delay=0) as default,
        Sandbox(api_key=MARKETING_KEY, report_delay=0) as marketing,
    ):
        settings.MITTO_API_URL = default.url
        settings.MITTO_API_KEY = DEFAULT_KEY
        settings.MITTO_CALLBACK_SECRET = DEFAULT_SECRET
        settings.MITTO_DEFAULT_SENDER = "DjangoMitto"
        settings.MITTO_ACCOUNTS = {
            "marketing": {
                "API_KEY": MARKETING_KEY,
                "API_URL": marketing.url,
                "DEFAULT_SENDER": "Promo",
                "CALLBACK_SECRET": MARKETING_SECRET,
            }
        }
        yield default, marketing


@pytest.fixture
def sms(django_capture_on_commit_callbacks: Any) -> Any:
    """send_sms, with the send that follows the commit run (the test is one transaction)."""

    def send(*args: Any, **kwargs: Any) -> Message:
        with django_capture_on_commit_callbacks(execute=True):
            message = services.send_sms(*args, **kwargs)
        message.refresh_from_db()
        return message

    return send


@pytest.fixture
def bulk(django_capture_on_commit_callbacks: Any) -> Any:
    def send(*args: Any, **kwargs: Any) -> Batch:
        with django_capture_on_commit_callbacks(execute=True):
            return services.send_bulk(*args, **kwargs)

    return send


def wait_for_status(message: Message, status: str, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message.refresh_from_db()
        if message.status == status or time.monotonic() > deadline:
            return message
        time.sleep(0.05)


# -- settings ---------------------------------------------------------------------------------


def test_flat_settings_are_the_default_account(settings: Any) -> None:
    settings.MITTO_API_KEY = "flat-key"
    settings.MITTO_DEFAULT_SENDER = "Flat"
    assert conf.accounts() == ["default"]
    assert not conf.SEVERAL_ACCOUNTS
    account = conf.account()
    assert (account.name, account.API_KEY, account.DEFAULT_SENDER) == (
        "default",
        "flat-key",
        "Flat",
    )


def test_a_default_entry_overrides_the_flat_settings(settings: Any) -> None:
    settings.MITTO_API_KEY = "flat-key"
    settings.MITTO_ACCOUNTS = {"default": {"API_KEY": "entry-key"}}
    assert conf.account("default").API_KEY == "entry-key"
    assert conf.API_KEY == "entry-key"
    assert conf.accounts() == ["default"]


def test_an_account_falls_back_to_flat_settings_except_for_secrets(settings: Any) -> None:
    settings.MITTO_API_KEY = "flat-key"
    settings.MITTO_CALLBACK_SECRET = "flat-secret"
    settings.MITTO_TIMEOUT = 7.5
    settings.MITTO_TEST_MODE = True
    settings.MITTO_ACCOUNTS = {"eu": {"API_URL": "https://eu.example.test/"}}
    account = conf.account("eu")
    assert account.API_URL == "https://eu.example.test"
    assert account.TIMEOUT == 7.5 and account.TEST_MODE is True
    # Never another account's key or callback secret.
    assert account.API_KEY == "" and account.CALLBACK_SECRETS == []
    with pytest.raises(MittoConfigurationError, match=r'MITTO_ACCOUNTS\["eu"\]\["API_KEY"\]'):
        account.require_api_key()


def test_an_unknown_account_is_a_configuration_error_naming_the_known_ones(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k"}}
    with pytest.raises(MittoConfigurationError, match="default, marketing"):
        conf.account("sales")


def test_settings_are_read_at_use_time(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"DEFAULT_SENDER": "Old"}}
    account = conf.account("marketing")
    settings.MITTO_ACCOUNTS = {"marketing": {"DEFAULT_SENDER": "New"}}
    assert account.DEFAULT_SENDER == "New"


# -- sending ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_marketing_message_goes_to_the_marketing_sandbox_with_its_key_and_sender(
    two_sandboxes: tuple[Sandbox, Sandbox], sms: Any
) -> None:
    default, marketing = two_sandboxes
    message = sms("+41791234561", "Spring sale", account="marketing")
    assert message.account == "marketing"
    assert message.status == Status.SENT
    assert default.messages == []
    (record,) = marketing.messages  # the marketing sandbox accepts only the marketing key
    assert record["body"]["from"] == "Promo"
    assert message.provider_id == record["id"]

    other = sms("+41791234562", "Your code is 1234")
    assert other.account == "default" and other.status == Status.SENT
    (record,) = default.messages
    assert record["body"]["from"] == "DjangoMitto"
    assert len(marketing.messages) == 1


@pytest.mark.django_db
def test_an_account_with_the_wrong_key_fails_at_its_own_sandbox(
    two_sandboxes: tuple[Sandbox, Sandbox], settings: Any, sms: Any
) -> None:
    # The marketing account given the default key: the marketing sandbox refuses it.
    settings.MITTO_ACCOUNTS = {
        "marketing": {**settings.MITTO_ACCOUNTS["marketing"], "API_KEY": DEFAULT_KEY}
    }
    message = sms("+41791234561", "Spring sale", account="marketing")
    assert message.status == Status.FAILED
    assert "HTTP 401" in message.error


@pytest.mark.django_db
def test_the_account_test_mode_applies_to_its_messages_only(
    two_sandboxes: tuple[Sandbox, Sandbox], settings: Any, sms: Any
) -> None:
    default, marketing = two_sandboxes
    settings.MITTO_ACCOUNTS = {
        "marketing": {**settings.MITTO_ACCOUNTS["marketing"], "TEST_MODE": True}
    }
    promo = sms("+41791234561", "Spring sale", account="marketing")
    plain = sms("+41791234562", "Your code")
    assert promo.test is True and plain.test is False
    assert marketing.messages[0]["test"] is True
    assert default.messages[0]["test"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["sales", "", None, 3])
def test_send_sms_refuses_an_unknown_account_naming_the_known_ones(
    two_sandboxes: tuple[Sandbox, Sandbox], name: Any, sms: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        sms("+41791234561", "Hi", account=name)
    assert list(info.value.message_dict) == ["account"]
    assert "default, marketing" in info.value.message_dict["account"][0]
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_send_bulk_sends_through_the_account_and_records_it(
    two_sandboxes: tuple[Sandbox, Sandbox], bulk: Any
) -> None:
    default, marketing = two_sandboxes
    batch = bulk(["+41791234561", "+41791234562"], "Sale", account="marketing")
    assert batch.account == "marketing"
    assert set(batch.messages.values_list("account", flat=True)) == {"marketing"}
    assert set(batch.messages.values_list("status", flat=True)) == {Status.SENT}
    assert default.messages == []
    assert [r["body"]["from"] for r in marketing.messages] == ["Promo", "Promo"]


@pytest.mark.django_db
def test_send_bulk_refuses_an_unknown_account(
    two_sandboxes: tuple[Sandbox, Sandbox], bulk: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        bulk(["+41791234561"], "Sale", account="sales")
    assert "account" in info.value.message_dict
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_a_message_of_a_removed_account_fails_without_a_request(
    two_sandboxes: tuple[Sandbox, Sandbox], settings: Any
) -> None:
    default, marketing = two_sandboxes
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234561", text="Hi", account="gone")
    message = services.send_message(message)
    assert message.status == Status.FAILED
    assert "'gone'" in message.error
    assert default.messages == [] and marketing.messages == []


def test_each_account_has_its_own_pooled_client(two_sandboxes: tuple[Sandbox, Sandbox]) -> None:
    default, marketing = two_sandboxes
    assert services.get_client().api_url == default.url
    assert services.get_client("marketing").api_url == marketing.url
    assert services.get_client("marketing") is services.get_client("marketing")
    assert services.get_client("marketing") is not services.get_client("default")


# -- delivery reports -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_marketing_report_comes_back_through_the_marketing_secret(
    two_sandboxes: tuple[Sandbox, Sandbox], live_server: Any, settings: Any, sms: Any
) -> None:
    default, marketing = two_sandboxes
    settings.MITTO_CALLBACK_BASE_URL = ""
    default.callback_url = f"{live_server.url}/mitto/callback/{DEFAULT_SECRET}/"
    marketing.callback_url = f"{live_server.url}/mitto/callback/{MARKETING_SECRET}/"
    promo = sms("+41791234561", "Spring sale", account="marketing")
    plain = sms("+41791234567", "Your code")
    assert wait_for_status(promo, Status.DELIVERED).status == Status.DELIVERED
    assert wait_for_status(plain, Status.UNDELIVERED).status == Status.UNDELIVERED
    report = DeliveryReport.objects.get(message=promo)
    assert report.payload["account"] == "marketing"
    assert report.outcome == DeliveryReport.Outcome.APPLIED


@pytest.mark.django_db(transaction=True)
def test_per_message_callback_urls_use_the_account_base_url(
    two_sandboxes: tuple[Sandbox, Sandbox], live_server: Any, settings: Any, sms: Any
) -> None:
    _default, marketing = two_sandboxes
    settings.MITTO_CALLBACK_BASE_URL = "https://unreachable.invalid"
    settings.MITTO_ACCOUNTS = {
        "marketing": {**settings.MITTO_ACCOUNTS["marketing"], "CALLBACK_BASE_URL": live_server.url}
    }
    marketing.callback_url = None
    promo = sms("+41791234561", "Spring sale", account="marketing")
    assert marketing.messages[0]["callback_url"].startswith(live_server.url + "/mitto/callback/m")
    assert wait_for_status(promo, Status.DELIVERED).status == Status.DELIVERED


def test_callback_urls_of_a_batch_and_a_message_use_their_account_base_url(
    settings: Any,
) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "https://shop.example.com"
    settings.MITTO_ACCOUNTS = {
        "marketing": {"API_KEY": "k", "CALLBACK_BASE_URL": "https://promo.example.com"}
    }
    base = "https://promo.example.com/mitto/callback/"
    batch = Batch(pk=6, account="marketing")
    assert callbacks.callback_url_for_batch(batch) == base + callbacks.batch_token(6) + "/"
    message = Message(pk=5, account="marketing")
    assert callbacks.callback_url_for_message(message) == base + callbacks.message_token(5) + "/"


def test_a_secret_finds_its_account_message_without_id_by_receiver(
    settings: Any, make_message: Any
) -> None:
    settings.MITTO_CALLBACK_SECRET = DEFAULT_SECRET
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "CALLBACK_SECRET": MARKETING_SECRET}}
    promo = make_message(account="marketing", status=Status.SENT)
    Message.objects.filter(pk=promo.pk).update(recipient="+41791234561")
    assert post_report(MARKETING_SECRET, "late-id").json()["outcome"] == "applied"
    promo.refresh_from_db()
    assert (promo.status, promo.provider_id) == (Status.DELIVERED, "late-id")


def post_report(secret: str, provider_id: str, status: str = "delivered") -> Any:
    client = APIClient(enforce_csrf_checks=True)
    return client.post(
        f"/mitto/callback/{secret}/",
        {"id": provider_id, "status": status, "receiver": "41791234561"},
        format="json",
    )


@pytest.mark.django_db
def test_a_report_on_the_default_secret_is_not_applied_to_a_marketing_message(
    two_sandboxes: tuple[Sandbox, Sandbox], sms: Any
) -> None:
    promo = sms("+41791234561", "Spring sale", account="marketing")
    response = post_report(DEFAULT_SECRET, promo.provider_id)
    assert response.status_code == 200
    assert response.json()["outcome"] == DeliveryReport.Outcome.UNMATCHED
    promo.refresh_from_db()
    assert promo.status == Status.SENT
    report = DeliveryReport.objects.get()
    assert report.message is None and report.payload["account"] == "default"

    # The same report on the marketing secret is applied.
    response = post_report(MARKETING_SECRET, promo.provider_id)
    assert response.json()["outcome"] == DeliveryReport.Outcome.APPLIED
    promo.refresh_from_db()
    assert promo.status == Status.DELIVERED


@pytest.mark.django_db
def test_a_marketing_secret_report_is_not_applied_to_a_default_message(
    two_sandboxes: tuple[Sandbox, Sandbox], sms: Any
) -> None:
    plain = sms("+41791234561", "Your code")
    assert post_report(MARKETING_SECRET, plain.provider_id).json()["outcome"] == "unmatched"
    plain.refresh_from_db()
    assert plain.status == Status.SENT


@pytest.mark.django_db
def test_a_waiting_report_is_applied_later_only_to_a_message_of_its_account(
    two_sandboxes: tuple[Sandbox, Sandbox], make_message: Any
) -> None:
    # Reports that arrive before the send's answer wait unmatched for the id to be recorded.
    promo = make_message(status=Status.SENDING, account="marketing")
    post_report(DEFAULT_SECRET, "id-1")
    post_report(MARKETING_SECRET, "id-1", status="buffered")
    Message.objects.filter(pk=promo.pk).update(provider_id="id-1", status=Status.SENT)
    promo.refresh_from_db()
    assert callbacks.apply_pending_reports(promo) == 1
    promo.refresh_from_db()
    assert promo.delivery_status == "buffered"  # not the default secret's "delivered"
    outcomes = dict(DeliveryReport.objects.values_list("payload__account", "outcome"))
    assert outcomes == {"default": "unmatched", "marketing": "applied"}


@pytest.mark.django_db
def test_a_signed_message_token_follows_the_message_account(
    two_sandboxes: tuple[Sandbox, Sandbox], sms: Any
) -> None:
    promo = sms("+41791234561", "Spring sale", account="marketing")
    response = post_report(callbacks.message_token(promo), promo.provider_id)
    assert response.json()["outcome"] == DeliveryReport.Outcome.APPLIED


def test_a_secret_names_its_account(two_sandboxes: tuple[Sandbox, Sandbox]) -> None:
    assert callbacks.check_token(MARKETING_SECRET).account == "marketing"
    assert callbacks.check_token(DEFAULT_SECRET).account == "default"
    assert not callbacks.check_token("nobody's-secret").valid
    # The label names whose secret it was (for log lines), never the secret itself.
    assert callbacks.check_token(MARKETING_SECRET).label == "secret of account marketing"
    assert callbacks.check_token(DEFAULT_SECRET).label == "account secret"


# -- conversion, usage, mitto_check -----------------------------------------------------------


@pytest.mark.django_db
def test_mark_converted_goes_to_the_message_account(
    two_sandboxes: tuple[Sandbox, Sandbox], sms: Any
) -> None:
    _default, marketing = two_sandboxes
    promo = sms("+41791234561", "Spring sale", account="marketing")
    services.mark_converted(promo)
    assert "converted_at" in marketing.messages[0]


@pytest.mark.django_db
def test_usage_asks_the_account_and_counts_its_messages(
    two_sandboxes: tuple[Sandbox, Sandbox], settings: Any, sms: Any
) -> None:
    settings.MITTO_ACCOUNT_NAME = "main"
    settings.MITTO_ACCOUNTS = {
        "marketing": {**settings.MITTO_ACCOUNTS["marketing"], "ACCOUNT_NAME": "promo"}
    }
    sms("+41791234561", "Spring sale", account="marketing")
    sms("+41791234562", "Your code")
    sms("+41791234563", "Your code")
    today = dt.datetime.now(dt.timezone.utc).date()
    report = services.usage(today, today, account="marketing")
    assert report.local_messages == 1
    assert report.mitto_messages == 1  # the marketing sandbox saw one message
    assert services.usage(today, today).local_messages == 2


@pytest.mark.django_db
def test_mitto_usage_takes_an_account(
    two_sandboxes: tuple[Sandbox, Sandbox], capsys: Any, sms: Any, settings: Any
) -> None:
    settings.MITTO_ACCOUNT_NAME = "main"
    sms("+41791234561", "Spring sale", account="marketing")
    call_command("mitto_usage", "--account", "marketing", "--csv")
    out = capsys.readouterr().out
    assert "CHE" in out
    with pytest.raises(CommandError, match="default, marketing"):
        call_command("mitto_usage", "--account", "sales")


@pytest.mark.django_db
def test_mitto_check_checks_the_named_account(
    two_sandboxes: tuple[Sandbox, Sandbox], settings: Any, capsys: Any
) -> None:
    default, marketing = two_sandboxes
    call_command("mitto_check", "--account", "marketing", "--skip-callback")
    out = capsys.readouterr().out
    assert marketing.url in out and default.url not in out
    assert MARKETING_KEY not in out
    with pytest.raises(CommandError):
        call_command("mitto_check", "--account", "sales", "--skip-callback")


# -- system checks ----------------------------------------------------------------------------


def test_check_e030_accounts_must_be_a_dict_of_dicts(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = ["marketing"]
    assert "django_mitto.E030" in [m.id for m in check_settings()]
    settings.MITTO_ACCOUNTS = {"marketing": "key"}
    (found,) = [m for m in check_settings() if m.id == "django_mitto.E030"]
    assert 'MITTO_ACCOUNTS["marketing"]' in found.msg


def test_check_e031_unknown_key_names_account_and_key(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "APIKEY": "k"}}
    (found,) = [m for m in check_settings() if m.id == "django_mitto.E031"]
    assert "marketing" in found.msg and "APIKEY" in found.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("API_URL", "rest.mittoapi.net"),
        ("TEST_MODE", "yes"),
        ("TIMEOUT", 0),
        ("RESPONSE_FORMAT", "csv"),
        ("CALLBACK_SECRET", 42),
        ("DEFAULT_SENDER", None),
        ("CALLBACK_BASE_URL", "example.com"),
    ],
)
def test_check_e032_wrong_type_names_account_and_key(settings: Any, key: str, value: Any) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", key: value}}
    (found,) = [m for m in check_settings() if m.id == "django_mitto.E032"]
    assert f'MITTO_ACCOUNTS["marketing"]["{key}"]' in found.msg


def test_check_e033_two_accounts_with_the_same_callback_secret(settings: Any) -> None:
    settings.MITTO_CALLBACK_SECRET = "shared"
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "CALLBACK_SECRET": ["new", "shared"]}}
    (found,) = [m for m in check_settings() if m.id == "django_mitto.E033"]
    assert "'default'" in found.msg and "'marketing'" in found.msg
    assert "shared" not in found.msg  # a secret is never shown
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "CALLBACK_SECRET": "own"}}
    assert "django_mitto.E033" not in [m.id for m in check_settings()]


@pytest.mark.django_db  # the check command reads the database on Django 6.1+
def test_check_w001_an_account_without_api_key_is_a_warning(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"API_URL": "https://rest.mittoapi.net"}}
    found = [m for m in check_settings() if m.id == "django_mitto.W001"]
    assert [m.level for m in found] == [30]
    assert "marketing" in found[0].msg
    call_command("check")  # a warning alone does not fail


def test_a_valid_accounts_setting_passes_every_check(settings: Any) -> None:
    settings.MITTO_ACCOUNTS = {
        "default": {"API_KEY": "d"},
        "marketing": {
            "API_KEY": "m",
            "API_URL": "https://rest.mittoapi.net",
            "DEFAULT_SENDER": "Promo",
            "CALLBACK_SECRET": "own",
            "TEST_MODE": False,
            "RESPONSE_FORMAT": "xml",
            "TIMEOUT": 3,
            "ACCOUNT_NAME": "promo",
            "CALLBACK_BASE_URL": "https://example.com",
        },
    }
    assert [m.id for m in check_settings() if "ACCOUNTS" in m.msg] == []


# -- admin ------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_logged(db: None, admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_admin_compose_offers_the_account_only_with_several(
    admin_client_logged: Client, settings: Any
) -> None:
    page = admin_client_logged.get("/admin/django_mitto/message/add/").content.decode()
    assert 'name="account"' not in page
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k"}}
    page = admin_client_logged.get("/admin/django_mitto/message/add/").content.decode()
    assert '<select name="account"' in page
    assert '<option value="marketing">' in page


@pytest.mark.django_db
def test_admin_compose_sends_through_the_chosen_account(
    admin_client_logged: Client,
    two_sandboxes: tuple[Sandbox, Sandbox],
    django_capture_on_commit_callbacks: Any,
) -> None:
    default, marketing = two_sandboxes
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged.post(
            "/admin/django_mitto/message/add/",
            {
                "account": "marketing",
                "recipient": "+41791234561",
                "sender": "",
                "text": "Sale",
                "encoding": "Auto",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    message = Message.objects.get()
    assert (message.account, message.sender, message.status) == ("marketing", "Promo", "sent")
    assert marketing.messages[0]["body"]["from"] == "Promo" and default.messages == []


@pytest.mark.django_db
def test_admin_compose_refuses_an_unknown_account(
    admin_client_logged: Client, two_sandboxes: tuple[Sandbox, Sandbox]
) -> None:
    response = admin_client_logged.post(
        "/admin/django_mitto/message/add/",
        {"account": "sales", "recipient": "+41791234561", "text": "Sale", "encoding": "Auto"},
    )
    assert response.status_code == 200
    assert "sales is not one of the available choices" in response.content.decode()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_admin_changelists_filter_by_account_only_with_several(
    admin_client_logged: Client, settings: Any, make_message: Any
) -> None:
    make_message(account="default", reference="for-everyone")
    settings.MITTO_ACCOUNTS = {}
    page = admin_client_logged.get("/admin/django_mitto/message/").content.decode()
    assert "?account=" not in page
    assert "?account=" not in admin_client_logged.get("/admin/django_mitto/batch/").content.decode()
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k"}}
    make_message(account="marketing", reference="spring-sale")
    page = admin_client_logged.get("/admin/django_mitto/message/").content.decode()
    assert "?account=marketing" in page
    filtered = admin_client_logged.get("/admin/django_mitto/message/?account=marketing")
    assert [m.reference for m in filtered.context["cl"].result_list] == ["spring-sale"]
    assert (
        "?account=marketing"
        in admin_client_logged.get("/admin/django_mitto/batch/").content.decode()
    )


@pytest.mark.django_db
def test_admin_bulk_send_through_the_chosen_account(
    admin_client_logged: Client,
    two_sandboxes: tuple[Sandbox, Sandbox],
    django_capture_on_commit_callbacks: Any,
) -> None:
    default, marketing = two_sandboxes
    data = {
        "account": "marketing",
        "numbers": "+41791234561\n+41791234562",
        "text": "Sale",
        "encoding": "Auto",
        "sender": "",
    }
    preview = admin_client_logged.post("/admin/django_mitto/batch/send/", data)
    page = preview.content.decode()
    assert 'id="mitto-preview-account"' in page and "marketing" in page
    digest = preview.context["form"].preview.digest
    # The digest covers the account: confirming with another account is not the previewed send.
    changed = admin_client_logged.post(
        "/admin/django_mitto/batch/send/",
        {**data, "account": "default", "digest": digest, "_send": "1"},
    )
    assert changed.status_code == 200 and not Batch.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged.post(
            "/admin/django_mitto/batch/send/", {**data, "digest": digest, "_send": "1"}
        )
    assert response.status_code == 302
    batch = Batch.objects.get()
    assert batch.account == "marketing"
    assert [r["body"]["from"] for r in marketing.messages] == ["Promo", "Promo"]
    assert default.messages == []


@pytest.mark.django_db
def test_admin_dashboard_per_account(
    admin_client_logged: Client, settings: Any, make_message: Any
) -> None:
    make_message(account="default", status=Status.DELIVERED)
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k"}}
    for _ in range(2):
        make_message(account="marketing", status=Status.DELIVERED)
    url = "/admin/django_mitto/batch/dashboard/"
    assert admin_client_logged.get(url).context["dashboard"].total == 3
    response = admin_client_logged.get(url + "?account=marketing")
    assert response.context["dashboard"].total == 2
    assert 'id="mitto-accounts"' in response.content.decode()
    assert admin_client_logged.get(url + "?account=default").context["dashboard"].total == 1
    settings.MITTO_ACCOUNTS = {}
    assert 'id="mitto-accounts"' not in admin_client_logged.get(url).content.decode()


@pytest.mark.django_db
def test_admin_usage_page_per_account(
    admin_client_logged: Client, two_sandboxes: tuple[Sandbox, Sandbox], sms: Any, settings: Any
) -> None:
    settings.MITTO_ACCOUNT_NAME = "main"
    sms("+41791234561", "Spring sale", account="marketing")
    sms("+41791234562", "Your code")
    sms("+41791234563", "Your code")
    url = "/admin/django_mitto/batch/usage/"
    assert admin_client_logged.get(url).context["report"].local_messages == 2
    response = admin_client_logged.get(url + "?account=marketing")
    assert '<select name="account"' in response.content.decode()
    report = response.context["report"]
    assert (report.local_messages, report.mitto_messages) == (1, 1)


@pytest.mark.django_db
def test_mitto_send_takes_an_account(
    two_sandboxes: tuple[Sandbox, Sandbox], django_capture_on_commit_callbacks: Any, capsys: Any
) -> None:
    default, marketing = two_sandboxes
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "mitto_send", "--to", "+41791234561", "--text", "Sale", "--account", "marketing"
        )
    assert Message.objects.get().account == "marketing"
    assert len(marketing.messages) == 1 and default.messages == []
    with pytest.raises(CommandError, match=r"account: .*default, marketing"):
        call_command("mitto_send", "--to", "+41791234561", "--text", "Sale", "--account", "x")
