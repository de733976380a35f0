"""The compose form's counter (static/django_mitto/counter.js) counts like encoding.py.

Runs in the real headless Chromium (tests/browser.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from django.utils.html import json_script

import django_mitto
from django_mitto import encoding
from django_mitto.admin.forms import counter_tables
from tests.browser import admin_login, screenshot

pytestmark = pytest.mark.browser

COUNTER_JS = Path(django_mitto.__file__).parent / "static" / "django_mitto" / "counter.js"
VECTORS = json.loads((Path(__file__).parent / "encoding_vectors.json").read_text("utf-8"))
FIELDS = ("encoding", "characters", "units", "parts", "remaining")


@pytest.fixture
def counter(page: Any) -> Any:
    """A blank page holding the GSM tables (rendered as the widget does) and counter.js."""
    tables = json_script(counter_tables(), "gsm-tables")
    page.set_content(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body>{tables}</body></html>"
    )
    page.add_script_tag(path=str(COUNTER_JS))
    return page


def js_analyze(page: Any, cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return page.evaluate(
        """(cases) => {
            const tables = JSON.parse(document.getElementById("gsm-tables").textContent);
            return cases.map(([text, enc]) => window.djangoMittoCounter.analyze(text, enc, tables));
        }""",
        [list(case) for case in cases],
    )


def python_analyze(text: str, requested: str) -> dict[str, Any]:
    """encoding.analyze() in the counter's terms: the figures, or the kind of error."""
    try:
        info = encoding.analyze(text, requested)
    except encoding.EncodingError as exc:
        message = str(exc)
        kind = (
            "gsm"
            if "GSM 03.38" in message
            else "binary_odd"
            if "even number" in message
            else "binary"
            if "hexadecimal" in message
            else "encoding"
        )
        return {"error": kind}
    return {
        "error": "",
        **{name: getattr(info, name) for name in FIELDS},
        "nonGsm": list(info.non_gsm),
    }


def comparable(js: dict[str, Any]) -> dict[str, Any]:
    if js["error"]:
        return {"error": js["error"]}
    return {"error": "", **{name: js[name] for name in FIELDS}, "nonGsm": js["nonGsm"]}


def test_counter_source_holds_no_gsm_table() -> None:
    source = COUNTER_JS.read_text("utf-8")
    for char in "€ΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¥£èéùìòÇØøÅåÄÖÑÜ§¿äöñüà":
        assert char not in source, char


def test_counter_follows_the_tables_it_is_given(counter) -> None:
    tables = {**counter_tables(), "extension": counter_tables()["extension"].replace("€", "")}
    result = counter.evaluate(
        "(tables) => window.djangoMittoCounter.analyze('5 €', 'Auto', tables)", tables
    )
    assert (result["encoding"], result["nonGsm"]) == ("Unicode", ["€"])


def test_counter_matches_every_encoding_vector_and_python(counter) -> None:
    results = js_analyze(counter, [(v["text"], v["encoding"]) for v in VECTORS])
    for vector, js in zip(VECTORS, results):
        assert js["error"] == "", vector["name"]
        got = {name: js[name] for name in ("encoding", "units", "parts", "remaining")}
        assert got == vector["expect"], vector["name"]
        assert comparable(js) == python_analyze(vector["text"], vector["encoding"]), vector["name"]


def _random_texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    tables = counter_tables()
    pools = [
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?-+*/()'\"#%&<>=@$_",
        tables["extension"],
        "éèùìòÇØøÅåÄÖÑÜäöñüàßÆæÉΔΦΓΛΩΠΨΣΘΞ¡¿£¥§¤",  # accented, yet GSM
        "çáíóúâêîôûëïãõñőűłśźżčšžřýÿœ`\u0301\u00a0",  # not GSM
        "中文字符漢字日本語한국어",
        "😀👍🎉🚀❤️🇨🇭\U0001f9d1\u200d\U0001f4bb",
        "\r\n\n\x0c\x1b",
    ]
    # Lengths cluster around the part boundaries, where off-by-one errors live.
    lengths = [
        0,
        1,
        33,
        34,
        35,
        36,
        66,
        67,
        68,
        69,
        70,
        71,
        76,
        77,
        80,
        81,
        133,
        134,
        135,
        152,
        153,
        154,
        159,
        160,
        161,
        305,
        306,
        307,
        459,
        460,
        461,
    ]
    cases: list[tuple[str, str]] = []
    for index in range(count):
        if index % 10 == 9:
            digits = "".join(
                rng.choice("0123456789abcdefABCDEF") for _ in range(rng.choice(lengths) * 2)
            )
            if rng.random() < 0.3:
                digits = digits[:-1] if digits else "f"
            if rng.random() < 0.2:
                digits += rng.choice("gZ 😀")
            cases.append((digits, "Binary"))
            continue
        weights = [rng.random() ** 2 for _ in pools]
        length = rng.choice(lengths) if rng.random() < 0.6 else rng.randint(0, 400)
        text = "".join(rng.choice(rng.choices(pools, weights=weights)[0]) for _ in range(length))
        cases.append((text, rng.choice(["Auto", "Auto", "Auto", "Unicode", "GSM", "auto"])))
    return cases


def test_counter_agrees_with_python_on_random_texts(counter) -> None:
    cases = _random_texts(random.Random(20261124), 600)
    results = js_analyze(counter, cases)
    kinds = set()
    for (text, requested), js in zip(cases, results):
        expected = python_analyze(text, requested)
        assert comparable(js) == expected, (text, requested)
        kinds.add(expected["error"] or expected["encoding"])
    # The sample covered every outcome.
    assert kinds == {"GSM", "Unicode", "Binary", "gsm", "binary", "binary_odd"}


def test_counter_refuses_an_unknown_encoding(counter) -> None:
    (result,) = js_analyze(counter, [("Hi", "Klingon")])
    assert result["error"] == "encoding"


# -- in the admin ----------------------------------------------------------------------------------


def _figures(page: Any) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('#id_text_counter [data-field]')]
                .map((node) => [node.dataset.field, node.textContent.trim()]))"""
    )


@pytest.mark.django_db(transaction=True)
def test_compose_page_counter_follows_the_text_and_the_encoding(
    page, live_server, admin_user
) -> None:
    admin_login(page, live_server.url, "admin", "password")
    page.goto(f"{live_server.url}/admin/django_mitto/message/add/")
    counter = page.locator("#id_text_counter")

    page.fill("#id_text", "Hello [world]")
    figures = _figures(page)
    assert (figures["encoding"], figures["characters"], figures["units"]) == (
        "GSM (Auto)",
        "13",
        "15",
    )
    assert (figures["parts"], figures["remaining"]) == ("1", "145")

    page.fill("#id_recipient", "+41791234567")
    page.fill("#id_text", "Grüezi ç 😀 see you at 10")
    figures = _figures(page)
    assert (figures["encoding"], figures["characters"], figures["units"]) == (
        "Unicode (Auto)",
        "24",
        "25",
    )
    assert (figures["parts"], figures["remaining"]) == ("1", "45")
    assert counter.locator("[data-field=nongsm] mark").all_text_contents() == ["ç", "😀"]
    assert "mitto-counter--unicode" in counter.get_attribute("class")
    screenshot(page, "compose-with-emoji")

    page.select_option("#id_encoding", "GSM")
    assert "mitto-counter--error" in counter.get_attribute("class")
    error = counter.locator("[data-field=error]")
    assert error.is_visible()
    assert error.locator("mark").all_text_contents() == ["ç", "😀"]
    screenshot(page, "compose-gsm-error")

    page.select_option("#id_encoding", "Binary")
    page.fill("#id_text", "0a0B0")
    assert "mitto-counter--error" in counter.get_attribute("class")
    page.fill("#id_text", "0a0B")
    assert "mitto-counter--error" not in counter.get_attribute("class")
    figures = _figures(page)
    assert (figures["encoding"], figures["units"], figures["remaining"]) == ("Binary", "2", "138")
