"""``manage.py mitto_send_bulk``: a bulk send from a file, against the sandbox."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_mitto.backends import get_backend
from django_mitto.bulk import ColumnError, parse_csv, preview_bulk
from django_mitto.models import Batch, Message, OptOut
from tests.custom_backend import ListBackend

pytestmark = pytest.mark.django_db(transaction=True)

# A header row; 4 valid numbers (one written locally), 2 invalid, 2 duplicates, 1 opted out.
CAMPAIGN = """name,phone
Anna,+41791234561
Ben,079 123 45 62
Cleo,hello
Dan,+41791234561
Eve,0041791234563
Finn,12
Gus,+41 79 123 45 62
Hal,+41791234564
Ida,+41791234565
"""
OPTED_OUT = "+41791234564"


@pytest.fixture(autouse=True)
def _region(settings: Any) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    OptOut.objects.create(number=OPTED_OUT)
    path = tmp_path / "numbers.csv"
    path.write_text(CAMPAIGN, encoding="utf-8")
    return path


def run(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("mitto_send_bulk", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def failing(*args: str, **kwargs: Any) -> tuple[CommandError, str]:
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("mitto_send_bulk", *args, stdout=out, stderr=io.StringIO(), **kwargs)
    return info.value, out.getvalue()


def sent_to(sandbox: Any) -> list[str]:
    return sorted(m["to"] for m in sandbox.messages)


# -- the preview ---------------------------------------------------------------------------------


def test_dry_run_prints_the_preview_and_creates_nothing(mitto_sandbox, campaign) -> None:
    out, err = run("--file", str(campaign), "--text", "Sale today!", "--dry-run")
    assert (Batch.objects.count(), Message.objects.count(), mitto_sandbox.messages) == (0, 0, [])
    assert f"{campaign}: Header row found. Numbers from column 2 (“phone”)." in out
    # Invalid entries with their line and the reason, as the admin's preview lists them.
    assert "Invalid numbers: not sent\n  line 4: hello — hello is not a phone number." in out
    assert "  line 7: 12 — " in out
    assert "Opted out: not sent\n  line 9: +41791234564 → +41791234564\n" in out
    assert "  line 5: +41791234561 → +41791234561 (first given on line 2)" in out
    assert "  line 8: +41 79 123 45 62 → +41791234562 (first given on line 3)" in out
    lines = out.splitlines()
    assert "Valid numbers:     4" in lines
    assert "Invalid:           2" in lines
    assert "Duplicates:        2 (sent once)" in lines
    assert "Opted out:         1 (left out)" in lines
    assert "Encoding:          GSM 03.38, 11 characters" in lines
    assert "Parts per message: 1 (up to 160 per part)" in lines
    assert "Total parts:       4" in lines
    assert out.rstrip().endswith("Dry run: nothing was created.")
    assert "Batch:" not in out
    assert err == ""  # stderr is no terminal: no progress bar


def test_dry_run_shows_the_unicode_parts_of_a_long_text(mitto_sandbox, campaign) -> None:
    out, _err = run("--file", str(campaign), "--text", "Grüezi 😀 " * 10, "--dry-run")
    assert "Encoding:          Unicode (UCS-2), 90 characters" in out.splitlines()
    assert "Parts per message: 2 (up to 67 per part)" in out.splitlines()
    assert "Total parts:       8" in out.splitlines()


def test_dry_run_lists_the_valid_numbers_with_verbosity_2(mitto_sandbox, campaign) -> None:
    out, _err = run("--file", str(campaign), "--text", "Hi", "--dry-run", "-v", "2")
    assert "4 valid numbers\n  line 2: +41791234561 → +41791234561\n" in out
    assert "  line 6: 0041791234563 → +41791234563" in out


def test_dry_run_with_no_valid_number_fails_naming_the_file(mitto_sandbox, tmp_path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("12345\nhello\n")
    error, out = failing("--file", str(path), "--text", "Hi", "--dry-run")
    assert str(error).startswith("--file: no valid number")
    assert error.returncode == 1
    assert "  line 2: hello — hello is not a phone number." in out
    assert "Valid numbers:     0" in out.splitlines()


def test_every_number_opted_out_fails_naming_the_file(mitto_sandbox, tmp_path) -> None:
    OptOut.objects.create(number="+41791234561")
    path = tmp_path / "one.txt"
    path.write_text("+41791234561\n")
    error, _out = failing("--file", str(path), "--text", "Hi")
    assert str(error) == "--file: Every valid number opted out: there is no one to send to."
    assert (Batch.objects.count(), mitto_sandbox.messages) == (0, [])


# -- the send ------------------------------------------------------------------------------------


def test_send_creates_the_batch_and_every_number_reaches_the_sandbox_once(
    mitto_sandbox, campaign, settings
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 3  # two /smsbulk requests
    out, _err = run("--file", str(campaign), "--text", "Sale today!", "--sender", "Shop")
    batch = Batch.objects.get()
    assert sent_to(mitto_sandbox) == ["41791234561", "41791234562", "41791234563", "41791234565"]
    assert (batch.total, batch.opted_out, batch.sender, batch.text) == (4, 1, "Shop", "Sale today!")
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}
    lines = out.splitlines()
    assert f"Batch:             {batch.pk}" in lines
    assert "Valid numbers:     4" in lines
    assert "Invalid:           2" in lines
    assert "Duplicates:        2 (sent once)" in lines
    assert "Opted out:         1 (left out)" in lines
    assert "Total parts:       4" in lines
    assert "Messages:          Sent: 4" in lines
    assert any(line.startswith("Time taken:        ") and line.endswith(" s") for line in lines)
    # The entries left out are listed as in the preview.
    assert "  line 4: hello — hello is not a phone number." in out
    assert "  line 9: +41791234564 → +41791234564" in out


def test_send_passes_the_message_options(mitto_sandbox, campaign) -> None:
    run(
        "--file",
        str(campaign),
        "--text",
        "Hi",
        "--encoding",
        "unicode",
        "--reference",
        "spring",
        "--test",
        "--no-progress",
    )
    bodies = [m["body"] for m in mitto_sandbox.messages]
    assert {(b["type"], b["reference"], b["test"]) for b in bodies} == {("Unicode", "spring", True)}
    batch = Batch.objects.get()
    assert batch.test is True
    assert set(batch.messages.values_list("reference", flat=True)) == {"spring"}


def test_send_reads_the_text_from_a_file(mitto_sandbox, tmp_path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+41791234561\n+41791234562\n")
    text = tmp_path / "text.txt"
    text.write_text("Line one\nLine two\n", encoding="utf-8")
    run("--file", str(numbers), "--text-file", str(text))
    assert Batch.objects.get().text == "Line one\nLine two"
    assert len(mitto_sandbox.messages) == 2


def test_send_reads_the_numbers_from_stdin(mitto_sandbox) -> None:
    stdin = io.BytesIO("\ufeffphone;ref\n+41791234561;a\n+41791234562;b\n".encode())
    out, _err = run("--file", "-", "--text", "Hi", stdin=stdin)
    batch = Batch.objects.get()
    assert sorted(batch.messages.values_list("recipient", "reference")) == [
        ("+41791234561", "a"),
        ("+41791234562", "b"),
    ]
    assert "standard input: Header row found." in out
    assert sent_to(mitto_sandbox) == ["41791234561", "41791234562"]


def test_column_picks_the_numbers_by_name_or_number(mitto_sandbox, tmp_path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("home,work\n+41791234561,+41791234571\n+41791234562,+41791234572\n")
    out, _err = run("--file", str(path), "--text", "Hi", "--column", "Work", "--dry-run")
    assert "Numbers from column 2 (“work”)." in out
    assert "Valid numbers:     2" in out.splitlines()
    run("--file", str(path), "--text", "Hi", "--column", "2")
    assert sent_to(mitto_sandbox) == ["41791234571", "41791234572"]


def test_ignore_opt_out_sends_to_numbers_that_opted_out(mitto_sandbox, campaign) -> None:
    out, _err = run("--file", str(campaign), "--text", "Outage", "--ignore-opt-out")
    assert "41791234564" in sent_to(mitto_sandbox)
    assert "1 number opted out but is sent to all the same (opt-outs ignored)." in out
    assert "Opted out:         1 (sent to all the same)" in out.splitlines()
    assert Batch.objects.get().total == 5


def test_a_background_backend_queues_the_batch_and_says_how_to_follow_it(
    mitto_sandbox, campaign, settings
) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    ListBackend.scheduled.clear()
    ListBackend.pending.clear()
    try:
        out, _err = run("--file", str(campaign), "--text", "Later")
        batch = Batch.objects.get()
        assert mitto_sandbox.messages == []
        assert ListBackend.scheduled == [("batch", (batch.pk,), 0.0)]
        assert (
            f"Batch {batch.pk} is queued: the task backend (tests.custom_backend.ListBackend) "
            "sends it." in out
        )
        assert f"/admin/django_mitto/batch/{batch.pk}/change/" in out
        assert "mitto_reports" in out
        assert "Messages:" not in out
        backend = get_backend()
        assert isinstance(backend, ListBackend)
        backend.drain()
        assert len(mitto_sandbox.messages) == 4
    finally:
        ListBackend.scheduled.clear()
        ListBackend.pending.clear()


def test_a_refused_send_exits_3_and_never_prints_the_api_key(
    mitto_sandbox, campaign, settings
) -> None:
    settings.MITTO_API_KEY = "wrong-secret-api-key"
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command(
            "mitto_send_bulk", "--file", str(campaign), "--text", "Hi", stdout=out, stderr=err
        )
    assert info.value.returncode == 3
    batch = Batch.objects.get()
    assert str(info.value).startswith(f"Batch {batch.pk}: 4 messages were not sent")
    assert "HTTP 401" in str(info.value)
    assert "Messages:          Failed: 4" in out.getvalue().splitlines()
    for text in (out.getvalue(), err.getvalue(), str(info.value)):
        assert "wrong-secret-api-key" not in text


def test_no_api_key_fails_before_anything_is_created(mitto_sandbox, campaign, settings) -> None:
    settings.MITTO_API_KEY = ""
    error, _out = failing("--file", str(campaign), "--text", "Hi")
    assert "MITTO_API_KEY is not set" in str(error)
    assert Batch.objects.count() == 0
    # A dry run needs no key.
    run("--file", str(campaign), "--text", "Hi", "--dry-run")


# -- progress ------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_are_drawn_on_a_terminal_stderr(mitto_sandbox, campaign, monkeypatch) -> None:
    from django_mitto.management.commands.mitto_send_bulk import Command

    # Draw every step (tqdm skips the steps of a fast burst).
    monkeypatch.setattr(Command, "bar_options", {"mininterval": 0, "miniters": 1})
    err = Terminal()
    call_command(
        "mitto_send_bulk", "--file", str(campaign), "--text", "Hi", stdout=io.StringIO(), stderr=err
    )
    drawn = err.getvalue()
    for stage in ("Checking numbers", "Validating", "Inserting", "Sending"):
        assert stage in drawn
    assert "Checking numbers: 100%" in drawn and "9/9" in drawn
    assert "Sending: 100%" in drawn  # the sending bar saw every message leave "queued"


def test_no_progress_draws_nothing_even_on_a_terminal(mitto_sandbox, campaign) -> None:
    err = Terminal()
    call_command(
        "mitto_send_bulk",
        "--file",
        str(campaign),
        "--text",
        "Hi",
        "--no-progress",
        stdout=io.StringIO(),
        stderr=err,
    )
    assert err.getvalue() == ""


# -- bad options and input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--account", "sales"], "--account"),
        (["--region", "XX"], "--region"),
        (["--encoding", "latin1"], "--encoding"),
        (["--encoding", "GSM", "--text", "Привет"], "--text"),
        (["--text", ""], "--text"),
        (["--reference", "a\x07b"], "--reference"),
        (["--sender", "Sh\nop"], "--sender"),
        (["--column", "mobile"], "--column"),
        (["--column", "9"], "--column"),
        (["--column", " "], "--column"),
    ],
)
def test_a_bad_option_is_a_command_error_naming_it(mitto_sandbox, campaign, options, named) -> None:
    args = ["--file", str(campaign), "--text", "Hi", *options]
    error, _out = failing(*args)
    assert str(error).startswith(f"{named}: "), str(error)
    assert error.returncode == 1
    assert (Batch.objects.count(), mitto_sandbox.messages) == (0, [])


def test_bad_files_are_command_errors_naming_the_option(mitto_sandbox, tmp_path) -> None:
    missing = tmp_path / "missing.csv"
    error, _out = failing("--file", str(missing), "--text", "Hi")
    assert str(error).startswith(f"--file: {missing} cannot be read: No such file")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Zürich,+41791234561\n".encode("latin-1"))
    error, _out = failing("--file", str(latin), "--text", "Hi")
    assert str(error).startswith("--file: The file is not UTF-8 text.")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    error, _out = failing("--file", str(empty), "--text", "Hi")
    assert str(error) == f"--file: {empty} holds no numbers."
    error, _out = failing("--file", str(empty), "--text-file", str(missing))
    assert str(error).startswith("--text-file: ")
    error, _out = failing("--file", "-", "--text-file", "-", stdin=io.BytesIO(b"+41791234561"))
    assert str(error).startswith("--text-file: ")
    assert Batch.objects.count() == 0


def test_the_text_is_required_once(mitto_sandbox, campaign) -> None:
    error, _out = failing("--file", str(campaign))
    assert "--text" in str(error) and "--text-file" in str(error)
    error, _out = failing("--file", str(campaign), "--text", "Hi", "--text-file", "t.txt")
    assert "not allowed with argument" in str(error)


def test_the_command_line_exits_with_the_status_and_no_traceback(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "mitto_send_bulk",
            "--file",
            str(tmp_path / "missing.csv"),
            "--text",
            "Hi",
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        },
        check=False,
    )
    assert result.returncode == 1
    assert "CommandError: --file: " in result.stderr
    assert "Traceback" not in result.stderr


# -- the shared parsing and preview ----------------------------------------------------------------


def test_parse_csv_takes_the_column_asked_for() -> None:
    entries, layout = parse_csv("a;b;ref\n1;+41791234561;x\n", column="B")
    assert [(e.raw, e.reference) for e in entries] == [("+41791234561", "x")]
    assert (layout.number_column, layout.reference_column) == (2, 3)
    # Without a header row a number picks the column, and no column is taken as references.
    entries, layout = parse_csv("Anna,+41791234561\n", column="2")
    assert [(e.raw, e.reference) for e in entries] == [("+41791234561", "")]
    assert (layout.header, layout.reference_column) == (False, None)


@pytest.mark.parametrize(
    ("text", "column", "error"),
    [
        ("+41791234561\n", "phone", "The file has no header row: give the column by its number"),
        ("a,b\n+41791234561,1\n", "3", "There is no column 3: the file has 2 columns."),
        ("a,b\n+41791234561,1\n", "0", "There is no column 0: the file has 2 columns."),
        ("a,b\n+41791234561,1\n", "c", "No column is named “c”; the header row holds: “a”, “b”."),
    ],
)
def test_parse_csv_says_why_the_column_asked_for_is_not_there(text, column, error) -> None:
    with pytest.raises(ColumnError, match=re.escape(error)):
        parse_csv(text, column=column)


def test_preview_checks_the_opt_outs_of_the_account_it_sends_through(settings) -> None:
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k"}}
    OptOut.objects.create(number="+41791234561", account="marketing")
    OptOut.objects.create(number="+41791234562")
    entries, _layout = parse_csv("+41791234561\n+41791234562\n")
    preview, problems = preview_bulk(entries, text="Hi", encoding="Auto", account="marketing")
    assert problems == {}
    assert [r.number for r in preview.opted_out] == ["+41791234561"]
    assert preview.numbers == ["+41791234562"]
