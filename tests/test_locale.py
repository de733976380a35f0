"""The German and French catalogs: complete, consistent with their msgids, and used."""

from __future__ import annotations

import ast
import gettext
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from django_mitto.models import Batch, DeliveryReport, Encoding, Message, Status

LOCALE_DIR = Path(__file__).resolve().parent.parent / "django_mitto" / "locale"
LANGUAGES = ["de", "fr"]
PLURAL_FORMS = {
    "de": "nplurals=2; plural=(n != 1);",
    "fr": "nplurals=2; plural=(n > 1);",
}
CHANGELIST_URL = "/admin/django_mitto/message/"

#: printf-style (%(name)s, %s, %%) and str.format ({name}) placeholders.
PLACEHOLDER = re.compile(r"%\([^)]+\)[#0 +-]*\d*(?:\.\d+)?[sdrfiu]|%%|%[sdr]|\{\w*\}")
TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^<>]*>")
#: Tags that are really HTML (messages may also show "+<country code><number>").
HTML_TAGS = {"a", "b", "br", "code", "em", "i", "p", "span", "strong"}


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False


def parse_po(path: Path) -> list[Entry]:
    """A small .po reader: msgid, msgid_plural, msgstr / msgstr[n] and #, flags."""
    entries: list[Entry] = []
    current: Entry | None = None
    key: tuple[str, int] | None = None

    def finish() -> None:
        nonlocal current, key
        if current is not None:
            entries.append(current)
        current, key = None, None

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            if current is None or key is not None:
                finish()
                current = Entry(obsolete=True)
            continue
        if line.startswith("#,"):
            if current is not None and key is not None:
                finish()
            current = current or Entry()
            current.flags.update(f.strip() for f in line[2:].split(","))
            continue
        if line.startswith("#"):
            if current is not None and key is not None:
                finish()
            current = current or Entry()
            continue
        match = re.match(r"(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")$", line)
        if match:
            name, index, text = match.groups()
            if name == "msgid" and current is not None and key is not None:
                finish()
            current = current or Entry()
            key = ("msgstr" if name.startswith("msgstr") else name, int(index or 0))
            value = ast.literal_eval(text)
        else:
            assert line.startswith('"') and key is not None, f"{path}: cannot read {raw!r}"
            value = ast.literal_eval(line)
        assert current is not None and key is not None
        name, index = key
        if name == "msgid":
            current.msgid += value
        elif name == "msgid_plural":
            current.msgid_plural = (current.msgid_plural or "") + value
        elif name == "msgstr":
            current.msgstr[index] = current.msgstr.get(index, "") + value
    finish()
    return entries


def catalog(lang: str) -> tuple[Entry, list[Entry]]:
    """The header and the (live) entries of ``lang``'s django.po."""
    entries = parse_po(LOCALE_DIR / lang / "LC_MESSAGES" / "django.po")
    header = next(e for e in entries if e.msgid == "" and not e.obsolete)
    return header, [e for e in entries if e.msgid != "" and not e.obsolete]


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def html_tags(text: str) -> list[str]:
    return [t for t in TAG.findall(text) if re.match(r"</?(\w+)", t).group(1) in HTML_TAGS]


def edges(text: str) -> tuple[str, str]:
    """Leading and trailing whitespace."""
    return text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]


# -- the catalogs ----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_header(lang: str) -> None:
    header, _ = catalog(lang)
    meta = dict(line.split(": ", 1) for line in header.msgstr[0].splitlines() if ": " in line)
    assert "fuzzy" not in header.flags
    assert meta["Project-Id-Version"] == "django-mitto"
    assert meta["Language"] == lang
    assert meta["Content-Type"] == "text/plain; charset=UTF-8"
    assert meta["Plural-Forms"] == PLURAL_FORMS[lang]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_msgid_is_translated_with_the_same_placeholders(lang: str) -> None:
    _, entries = catalog(lang)
    assert len(entries) > 200
    problems = []
    for entry in entries:
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {entry.msgid!r}")
        if entry.msgid_plural is None:
            pairs = [(entry.msgid, entry.msgstr.get(0, ""))]
        else:
            if sorted(entry.msgstr) != [0, 1]:
                problems.append(f"plural forms {sorted(entry.msgstr)}: {entry.msgid!r}")
            pairs = [
                (entry.msgid, entry.msgstr.get(0, "")),
                (entry.msgid_plural, entry.msgstr.get(1, "")),
            ]
        for source, translated in pairs:
            if not translated.strip():
                problems.append(f"untranslated: {source!r}")
                continue
            if placeholders(source) != placeholders(translated):
                problems.append(f"placeholders differ: {source!r} -> {translated!r}")
            if html_tags(source) != html_tags(translated):
                problems.append(f"HTML tags differ: {source!r} -> {translated!r}")
            if edges(source) != edges(translated):
                problems.append(f"leading/trailing whitespace differs: {source!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang", ["fr"])
def test_both_catalogs_have_the_same_msgids(lang: str) -> None:
    _, german = catalog("de")
    _, other = catalog(lang)
    assert [(e.msgid, e.msgid_plural) for e in german] == [(e.msgid, e.msgid_plural) for e in other]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_the_po_file(lang: str) -> None:
    mo = LOCALE_DIR / lang / "LC_MESSAGES" / "django.mo"
    assert mo.is_file(), f"{mo} is missing: run compilemessages"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    _, entries = catalog(lang)
    stale = []
    for entry in entries:
        if entry.msgid_plural is None:
            if compiled.gettext(entry.msgid) != entry.msgstr[0]:
                stale.append(entry.msgid)
        else:
            one = compiled.ngettext(entry.msgid, entry.msgid_plural, 1)
            many = compiled.ngettext(entry.msgid, entry.msgid_plural, 5)
            if (one, many) != (entry.msgstr[0], entry.msgstr[1]):
                stale.append(entry.msgid)
    assert not stale, f"django.mo is older than django.po (run compilemessages): {stale[:5]}"


# -- the translations in use -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "de",
            {
                "message": "Nachricht",
                "messages": "Nachrichten",
                "batch": "Stapel",
                "report": "Zustellbericht",
                "recipient": "Empfänger",
                "delivered": "Zugestellt",
                "unknown": "Unbekannt (evtl. gesendet)",
                "binary": "Binär (hex)",
            },
        ),
        (
            "fr",
            {
                "message": "message",
                "messages": "messages",
                "batch": "envoi groupé",
                "report": "rapport de remise",
                "recipient": "destinataire",
                "delivered": "Remis",
                "unknown": "Inconnu (peut-être envoyé)",
                "binary": "Binaire (hex)",
            },
        ),
    ],
)
def test_model_labels_are_translated(lang: str, expected: dict[str, str]) -> None:
    with translation.override(lang):
        got = {
            "message": str(Message._meta.verbose_name),
            "messages": str(Message._meta.verbose_name_plural),
            "batch": str(Batch._meta.verbose_name),
            "report": str(DeliveryReport._meta.verbose_name),
            "recipient": str(Message._meta.get_field("recipient").verbose_name),
            "delivered": str(Status.DELIVERED.label),
            "unknown": str(Status.UNKNOWN.label),
            "binary": str(Encoding.BINARY.label),
        }
    assert got == expected


def test_plural_forms_follow_the_language() -> None:
    with translation.override("de"):
        assert translation.ngettext("%(count)d part", "%(count)d parts", 1) == "%(count)d Teil"
        assert translation.ngettext("%(count)d part", "%(count)d parts", 0) == "%(count)d Teile"
    with translation.override("fr"):
        # French uses the singular for 0 and 1.
        assert translation.ngettext("%(count)d part", "%(count)d parts", 0) == "%(count)d partie"
        assert translation.ngettext("%(count)d part", "%(count)d parts", 2) == "%(count)d parties"


@pytest.fixture
def localized(settings: Any) -> Any:
    """LocaleMiddleware on, so that Accept-Language picks the admin's language."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware
    yield settings
    # The middleware activates the request's language on this thread: do not leak it.
    translation.deactivate()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lang", "labels"),
    [
        ("de", ["Nachrichten", "Empfänger", "Zugestellt", "Als CSV exportieren"]),
        ("fr", ["Messages", "Destinataire", "Remis", "Exporter en CSV"]),
    ],
)
def test_message_changelist_speaks_the_users_language(
    admin_client: Any, localized: Any, lang: str, labels: list[str]
) -> None:
    Message.objects.create(
        recipient="+41791234567", sender="Shop", text="Hallo", status=Status.DELIVERED
    )
    response = admin_client.get(CHANGELIST_URL, HTTP_ACCEPT_LANGUAGE=lang)
    assert response.status_code == 200
    assert response["Content-Language"] == lang
    content = response.content.decode()
    for label in labels:
        assert label in content, label
    assert ">Delivered<" not in content


def test_catalogs_hold_every_string_the_code_marks_for_translation(tmp_path) -> None:
    """makemessages on a copy of the package finds no msgid the shipped catalogs lack."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import require_part

    require_part(
        shutil.which("xgettext") is not None,
        "GNU gettext is not installed (apt-get install gettext)",
    )
    package = Path(__file__).resolve().parent.parent / "django_mitto"
    copy = tmp_path / "django_mitto"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "de", "--no-obsolete"],
        cwd=copy, check=True, capture_output=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(package.parent)},
    )  # fmt: skip
    fresh = _msgids(copy / "locale" / "de" / "LC_MESSAGES" / "django.po")
    shipped = _msgids(package / "locale" / "de" / "LC_MESSAGES" / "django.po")
    assert fresh - shipped == set()


def _msgids(path: Path) -> set[str]:
    import re

    text = path.read_text(encoding="utf-8")
    ids = set()
    for block in re.findall(r'^msgid ((?:".*"\n)+)', text, flags=re.M):
        value = "".join(re.findall(r'"(.*)"', block))
        if value:
            ids.add(value)
    return ids
