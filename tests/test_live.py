"""The account check against Mitto's real API: ``pytest -m live`` with MITTO_LIVE_API_KEY set.

Optional: MITTO_LIVE_API_URL (default https://rest.mittoapi.net), MITTO_LIVE_TO (the number of
the test call; Mitto wants a real one), MITTO_LIVE_SENDER. Only a test call is made: nothing is
sent or charged. Without the key the test is skipped, also under MITTO_REQUIRE_ALL_PARTS: a key
is a secret CI does not have, not a part it failed to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_mitto.account_check import run_check

LIVE_KEY = os.environ.get("MITTO_LIVE_API_KEY", "")
NO_KEY = (
    "MITTO_LIVE_API_KEY is not set: no live check against Mitto's real API (a secret, not a part)"
)


@pytest.mark.live
@pytest.mark.skipif(not LIVE_KEY, reason=NO_KEY)
def test_live_account_accepts_the_key_and_the_reply_is_understood(settings) -> None:
    settings.MITTO_API_KEY = LIVE_KEY
    settings.MITTO_API_URL = os.environ.get("MITTO_LIVE_API_URL", "https://rest.mittoapi.net")
    settings.MITTO_TIMEOUT = 20
    if os.environ.get("MITTO_LIVE_SENDER"):
        settings.MITTO_DEFAULT_SENDER = os.environ["MITTO_LIVE_SENDER"]
    report = run_check(to=os.environ.get("MITTO_LIVE_TO") or None, check_callbacks=False)
    findings = "\n".join(f"[{f.level}] {f.text}" for f in report.findings)
    assert report.probe is not None and report.probe.reached, findings
    assert report.probe.key_accepted, findings
    assert report.ok, findings
    assert LIVE_KEY not in findings


def test_without_a_key_the_live_test_is_skipped_even_when_every_part_is_required() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MITTO_LIVE_API_KEY"}
    env["MITTO_REQUIRE_ALL_PARTS"] = "1"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-m",
            "live",
            "-rs",
            "-q",
            str(Path(__file__).relative_to(root)),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "MITTO_LIVE_API_KEY is not set" in done.stdout
