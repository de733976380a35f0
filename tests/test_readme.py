"""The README is valid reStructuredText and opens with the demo and test commands CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import docutils.core
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def test_readme_renders_without_warnings() -> None:
    docutils.core.publish_string(
        README,
        writer="html",
        settings_overrides={"report_level": 2, "halt_level": 2, "output_encoding": "unicode"},
    )


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    opening = README[: README.index(".. contents::")]
    assert "make demo" in opening
    assert "make test" in opening


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"\bmake test$", ci, re.MULTILINE)


@pytest.mark.parametrize(
    "name", ["compose", "message", "changelist", "bulk-preview", "batch", "dashboard"]
)
def test_readme_screenshots_exist(name: str) -> None:
    assert f"docs/screenshots/{name}.png" in README
    assert (ROOT / "docs" / "screenshots" / f"{name}.png").stat().st_size > 10_000


def test_every_setting_has_a_heading_with_its_type_and_default() -> None:
    from django_mitto.conf import DEFAULTS

    for name in DEFAULTS:
        heading = f"\n{name}\n{'-' * len(name)}\n\nType: "
        assert heading in README, name
