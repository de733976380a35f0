"""A live check of the configured Mitto account, as ``manage.py mitto_check`` runs it.

One test request (``"test": true``: nothing is sent, nothing is charged) to the configured API
with the configured key shows whether Mitto is reachable, whether it accepts the key (a 401 most
often means this server's IP address is not whitelisted at Mitto), what its answer looks like
and whether the client understood every field of it. Then the callback URL Mitto will call is
worked out from the settings and fetched with a GET, which this site's callback view answers
with 200 when the URL and its token are right. A real SMS is sent only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from . import encoding
from .client import MittoClient, ProbeResult
from .conf import DEFAULT_ACCOUNT, conf
from .exceptions import MittoAPIError, MittoAuthenticationError, MittoError

__all__ = ["DEFAULT_NUMBER", "CheckReport", "Finding", "run_check"]

OK = "ok"
WARNING = "warning"
PROBLEM = "problem"

#: The recipient of the test call when none is given. Mitto's documentation says a test call
#: needs a real number to succeed: give ``--to`` when Mitto refuses this one.
DEFAULT_NUMBER = "+41791234567"

#: What is shown in place of a callback token.
HIDDEN = "<token>"


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``level`` is ``ok``, ``warning`` or ``problem``."""

    level: str
    text: str


@dataclass
class CheckReport:
    """What the check found, in order. ``ok`` is False when anything is a problem."""

    findings: list[Finding] = field(default_factory=list)
    probe: ProbeResult | None = None
    callback_urls: list[str] = field(default_factory=list)

    def add(self, level: str, text: str) -> None:
        self.findings.append(Finding(level, text))

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == PROBLEM]

    @property
    def ok(self) -> bool:
        return not self.problems


def _callback_path(token: str) -> str:
    return reverse("django_mitto:callback", kwargs={"token": token})


def _shown_path() -> str:
    """The callback path with its token replaced by :data:`HIDDEN` (never printed)."""
    return _callback_path("__token__").replace("__token__", HIDDEN)


def _check_callbacks(report: CheckReport, timeout: float, account: str = DEFAULT_ACCOUNT) -> None:
    from .auth import message_token

    acc = conf.account(account)
    base = acc.CALLBACK_BASE_URL
    secrets = acc.CALLBACK_SECRETS
    try:
        _callback_path("x")
    except NoReverseMatch:
        report.add(
            PROBLEM,
            _(
                "The callback view has no URL: add "
                'path("mitto/", include("django_mitto.urls")) to your URLconf.'
            ),
        )
        return
    # (url to fetch, url as shown with its token hidden, what it is)
    targets: list[tuple[str, str, str]] = []
    if base:
        # Any signed message token gets the same answer from the view as a real one.
        token = message_token(0)
        targets.append(
            (
                base + _callback_path(token),
                base + _shown_path(),
                _("per message (MITTO_CALLBACK_BASE_URL; each message carries its own token)"),
            )
        )
    if secrets:
        shown = (base or _("<this site>")) + _shown_path()
        if base:
            targets.append(
                (
                    base + _callback_path(secrets[0]),
                    shown,
                    _("account-wide (give it to Mitto, with MITTO_CALLBACK_SECRET as the token)"),
                )
            )
        else:
            report.add(
                WARNING,
                _(
                    "Account-wide callback URL: %(url)s, with MITTO_CALLBACK_SECRET as the "
                    "token. Set MITTO_CALLBACK_BASE_URL to this site's public address to have "
                    "it checked."
                )
                % {"url": shown},
            )
    if not base and not secrets:
        report.add(
            PROBLEM,
            _(
                "No callback URL: set MITTO_CALLBACK_BASE_URL (each message then carries its "
                "own URL) or MITTO_CALLBACK_SECRET (for the URL configured on your Mitto "
                "account). Without either, delivery reports cannot reach this site."
            ),
        )
    for url, shown, kind in targets:
        report.callback_urls.append(shown)
        try:
            response = requests.get(url, timeout=timeout, allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            report.add(
                PROBLEM,
                _("Callback URL %(kind)s: %(url)s does not answer (%(error)s).")
                % {"kind": kind, "url": shown, "error": type(exc).__name__},
            )
            continue
        if response.status_code == 200:
            report.add(
                OK,
                _("Callback URL %(kind)s: %(url)s answers 200.") % {"kind": kind, "url": shown},
            )
        else:
            hint = {
                403: _(
                    " A 403 means the token was refused or MITTO_CALLBACK_ALLOWED_IPS does "
                    "not include the address the check came from."
                ),
                404: _(" A 404 means the URL does not lead to the callback view."),
            }.get(response.status_code, "")
            report.add(
                PROBLEM,
                _("Callback URL %(kind)s: %(url)s answers HTTP %(status)s, not 200.")
                % {"kind": kind, "url": shown, "status": response.status_code}
                + hint,
            )


def _describe_probe(report: CheckReport, probe: ProbeResult, api_url: str, to: str) -> None:
    if not probe.reached:
        report.add(
            PROBLEM,
            _("Mitto at %(url)s is NOT reachable: %(error)s")
            % {"url": api_url, "error": probe.error},
        )
        return
    report.add(
        OK,
        _("Mitto at %(url)s is reachable (HTTP %(status)s).")
        % {"url": api_url, "status": probe.status_code},
    )
    where = (
        _(
            " The request left from the local address %(address)s (behind NAT, Mitto sees "
            "the network's public address)."
        )
        % {"address": probe.local_address}
        if probe.local_address
        else ""
    )
    if isinstance(probe.error, MittoAuthenticationError):
        report.add(
            PROBLEM,
            _(
                "API key REFUSED (HTTP 401). Check MITTO_API_KEY, and ask Mitto to whitelist "
                "this server's public IP address: Mitto accepts a key only from whitelisted "
                "addresses."
            )
            + where,
        )
        return
    if probe.key_accepted is None:
        report.add(
            WARNING,
            _("Whether the API key is accepted is not known: Mitto answered HTTP %(status)s.")
            % {"status": probe.status_code}
            + where,
        )
    else:
        report.add(OK, _("API key accepted.") + where)
    if probe.fields:
        shape = ", ".join(f"{name} ({kind})" for name, kind in probe.fields.items())
        report.add(OK, _("Reply fields seen: %(fields)s.") % {"fields": shape})
    if isinstance(probe.error, MittoAPIError):
        hint = ""
        if probe.error.response_code in (7, 8):
            hint = _(" Give a real mobile number with --to (now %(to)s).") % {"to": to}
        elif probe.error.response_code in (5, 6):
            hint = _(" Check MITTO_DEFAULT_SENDER or give --sender.")
        report.add(
            PROBLEM, _("Mitto refused the request: %(error)s") % {"error": probe.error} + hint
        )
        return
    if probe.error is not None:
        report.add(PROBLEM, str(probe.error))
        return
    unknown = probe.unknown_fields
    if unknown:
        report.add(
            WARNING,
            _("Fields the client does not read (kept nowhere): %(fields)s.")
            % {"fields": ", ".join(unknown)},
        )
    else:
        report.add(OK, _("Every field of the reply was understood."))
    result = probe.result
    if result is not None and not result.id:
        report.add(
            WARNING,
            _("The reply has no message id: delivery reports could not be matched to it."),
        )
    elif result is not None:
        report.add(
            OK,
            _("Mitto answered responseCode %(code)s (%(text)s), message id %(id)s%(test)s.")
            % {
                "code": result.response_code,
                "text": result.response_text or "-",
                "id": result.id,
                "test": _(", a test call: nothing sent") if probe.test else "",
            },
        )


def run_check(
    *,
    to: str | None = None,
    sender: str | None = None,
    real: bool = False,
    text: str | None = None,
    check_callbacks: bool = True,
    client: MittoClient | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> CheckReport:
    """Check the configured Mitto account and this site's callback URL; see the module doc.

    ``real=True`` sends a real SMS (through :func:`~django_mitto.services.send_sms`, so it is
    recorded like any other) to ``to``, which is then required. ``account`` names the
    configured account to check (its key, URL, sender and callback settings).
    """
    report = CheckReport()
    try:
        acc = conf.account(account)
    except MittoError as exc:
        report.add(PROBLEM, str(exc))
        return report
    if real and not to:
        report.add(PROBLEM, _("--real needs --to: the number that receives the real SMS."))
        return report
    number = to or DEFAULT_NUMBER
    sender = sender or acc.DEFAULT_SENDER
    if not sender:
        report.add(
            WARNING,
            _("MITTO_DEFAULT_SENDER is empty: messages without a sender will be refused."),
        )
        sender = "Check"
    try:
        client = client or MittoClient(
            acc.require_api_key(),
            api_url=acc.API_URL,
            timeout=acc.TIMEOUT,
            response_format=acc.RESPONSE_FORMAT,
            test_mode=acc.TEST_MODE,
        )
    except MittoError as exc:
        report.add(PROBLEM, str(exc))
        return report
    try:
        probe_text = text or _("django-mitto account check")
        try:
            kind = encoding.analyze(probe_text).encoding
        except encoding.EncodingError:
            kind = encoding.UNICODE
        probe = client.probe(number, probe_text, sender=sender, type=kind)
        report.probe = probe
        _describe_probe(report, probe, client.api_url, number)
        if to is None and probe.error is None and probe.reached:
            report.add(
                OK,
                _("Test call made to %(to)s (give --to to use another number).") % {"to": number},
            )
    finally:
        if client is not None:
            client.close()
    if check_callbacks:
        _check_callbacks(report, acc.TIMEOUT, acc.name)
    if real:
        if report.problems:
            report.add(PROBLEM, _("No real SMS was sent, because of the problems above."))
        else:
            _send_real(report, number, sender, text, acc.name)
    return report


def _send_real(
    report: CheckReport, to: str, sender: str, text: str | None, account: str = DEFAULT_ACCOUNT
) -> None:
    from django.core.exceptions import ValidationError

    from .models import Message
    from .services import send_sms

    try:
        message = send_sms(
            to,
            text or _("django-mitto account check"),
            sender=sender,
            test=False,
            account=account,
        )
    except ValidationError as exc:
        report.add(PROBLEM, _("No real SMS sent: %(errors)s") % {"errors": "; ".join(exc.messages)})
        return
    message.refresh_from_db()
    level = OK if message.status not in (Message.Status.FAILED, Message.Status.UNKNOWN) else PROBLEM
    report.add(
        level,
        _("Real SMS to %(to)s: message %(pk)s is %(status)s, Mitto id %(id)s%(test)s.")
        % {
            "to": message.recipient,
            "pk": message.pk,
            "status": message.status,
            "id": message.provider_id or "-",
            "test": _(" (MITTO_TEST_MODE is on: it went as a test call)")
            if conf.account(account).TEST_MODE
            else "",
        }
        + (f" {message.error}" if message.error else ""),
    )
