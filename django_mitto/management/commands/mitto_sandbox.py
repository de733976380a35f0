"""``manage.py mitto_sandbox``: the Mitto sandbox, configured from this project's settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from django_mitto.conf import conf
from django_mitto.sandbox import __main__ as sandbox_main

#: Where the development server listens unless told otherwise (``runserver``'s default).
DEFAULT_SITE = "http://127.0.0.1:8000"


def default_port() -> int:
    parts = urlsplit(conf.API_URL)
    if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port:
        return parts.port
    return sandbox_main.DEFAULT_PORT


def default_site() -> str:
    """This site's address: ``MITTO_CALLBACK_BASE_URL`` when set, else runserver's default."""
    return conf.CALLBACK_BASE_URL or DEFAULT_SITE


def callback_url_for_site(site: str, name: str = "callback") -> tuple[str, str]:
    """The account-wide callback URL on ``site`` (the first ``MITTO_CALLBACK_SECRET`` as token);
    ``name="inbound"`` gives the URL replies go to.

    Returns ``(url, "")``, or ``("", why)`` when no URL can be made.
    """
    secrets = conf.CALLBACK_SECRETS
    if not secrets:
        return "", _("MITTO_CALLBACK_SECRET is not set")
    try:
        path = reverse(f"django_mitto:{name}", kwargs={"token": secrets[0]})
    except NoReverseMatch:
        return "", _('django_mitto.urls is not included in the URLconf (path("mitto/", ...))')
    return site.rstrip("/") + path, ""


def default_callback_url(name: str = "callback") -> str:
    """The account-wide callback URL of this project on :func:`default_site` (``"inbound"``:
    the URL replies go to)."""
    return callback_url_for_site(default_site(), name)[0]


def _same_place(url: str, other: str) -> bool:
    """Whether two http URLs name the same local host and port (localhost == 127.0.0.1)."""
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}

    def place(value: str) -> tuple[str, int | None]:
        parts = urlsplit(value)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        return ("local" if host in local else host), port

    return place(url) == place(other)


def _masked(value: str) -> str:
    """A secret as shown on the terminal: enough to recognise it, not enough to use it."""
    if not value:
        return _("(none: the key is not checked)")
    if len(value) <= 8:
        return value[:1] + "…" + f" ({len(value)} characters)"
    return value[:4] + "…" + value[-2:] + f" ({len(value)} characters)"


class Command(BaseCommand):
    help = (
        "Run the local Mitto sandbox for this project: it listens where MITTO_API_URL points, "
        "expects MITTO_API_KEY, and sends delivery reports to this project's callback URL "
        "(--site plus the callback path with the first MITTO_CALLBACK_SECRET). Takes every "
        "option of python -m django_mitto.sandbox."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # The same options as python -m django_mitto.sandbox, with defaults from the settings.
        sandbox_main.add_arguments(
            parser,
            port=None,
            port_help="default: the port of MITTO_API_URL when it is local, else "
            f"{sandbox_main.DEFAULT_PORT}",
            api_key=None,
            api_key_help="value expected in X-Mitto-API-Key; default: MITTO_API_KEY",
            callback_url_help="account callback URL for delivery reports; default: --site plus "
            "the callback path with the first MITTO_CALLBACK_SECRET (messages sent with a "
            "per-message URL use that one)",
            report_delay=2.0,
            report_delay_help="seconds before the first delivery report (default 2)",
        )
        parser.add_argument(
            "--site",
            default=None,
            help="this site's address, where reports are sent; default: MITTO_CALLBACK_BASE_URL "
            f"when set, else {DEFAULT_SITE} (runserver)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        options = dict(options)
        site = options.pop("site") or default_site()
        if options["port"] is None:
            options["port"] = default_port()
        if options["api_key"] is None:
            options["api_key"] = conf.API_KEY
        callback = options["callback_url"]
        if callback is None:
            callback, why = callback_url_for_site(site)
            if not callback:
                self.stderr.write(
                    _(
                        "Warning: no callback URL for delivery reports (%(why)s): reports will "
                        "not come back. Set MITTO_CALLBACK_SECRET and include django_mitto.urls, "
                        "or pass --callback-url."
                    )
                    % {"why": why}
                )
                if conf.CALLBACK_BASE_URL:
                    self.stderr.write(
                        _(
                            "Messages sent with their own callback URL (MITTO_CALLBACK_BASE_URL "
                            "is set) still get reports."
                        )
                    )
            options["callback_url"] = callback or None
        if options["inbound_url"] is None:
            options["inbound_url"] = callback_url_for_site(site, "inbound")[0] or None

        host = options["host"]
        port = options["port"]
        api_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.stdout.write(
            _("API URL:      %(url)s")
            % {"url": api_url if port else _("a free port, printed below")}
        )
        self.stdout.write(_("API key:      %(key)s") % {"key": _masked(options["api_key"])})
        self.stdout.write(
            _("Callback URL: %(url)s") % {"url": self._redacted(callback) if callback else "-"}
        )
        inbound = options["inbound_url"]
        self.stdout.write(
            _("Inbound URL:  %(url)s") % {"url": self._redacted(inbound) if inbound else "-"}
        )
        if port and not _same_place(conf.API_URL, api_url):
            self.stderr.write(
                _(
                    "Warning: MITTO_API_URL is %(setting)s, so this project sends elsewhere: set "
                    "it to %(url)s to send to the sandbox."
                )
                % {"setting": conf.API_URL, "url": api_url}
            )
        code = sandbox_main.main(sandbox_main.to_argv(options))
        if code:
            raise CommandError(f"The sandbox stopped with status {code}.")

    @staticmethod
    def _redacted(url: str) -> str:
        # The account secret is the callback's password: say which one, never print it.
        for index, secret in enumerate(conf.CALLBACK_SECRETS):
            if secret:
                url = url.replace(secret, f"<MITTO_CALLBACK_SECRET[{index}]>")
        return url
