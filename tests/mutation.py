"""`make mutation`: run mutmut over the modules that hold the rules, one at a time, and score each.

    python tests/mutation.py [--jobs N] [MODULE ...]     (default: every module, 2 processes)
    python tests/mutation.py --sample N [--seed S] [--jobs N] [MODULE ...]

mutmut (configured in setup.cfg's ``[mutmut]``) copies the package to ``mutants/``, plants one
small change at a time and runs only the tests that cover the changed function. A mutant is
*killed* when a test fails (or hangs until its timeout); one that *survived* is a change no test
noticed: docs/mutants.md lists those of the last run with why each is harmless.

Each run checks every mutant of the modules it is given again; ``mutants/scores.txt`` gets the
table printed at the end. ``mutants/kills.log`` gets a line for each test that failed with a
mutant switched on: the mutant, the test, the phase (setup, call, teardown) and the error's last
line, so that a kill can be checked against the test that made it (`grep MUTANT mutants/kills.log`).

``--sample N`` checks only N mutants of each module, drawn at random with the seed ``--seed``
(default 1): the same seed and the same code give the same mutants. mutmut first lists every
mutant of the package without checking any (its tests run once, to learn which test covers
which function), then the sample is drawn from the module's mutants and checked by name. The
score printed is that of the sample, with its 95 % confidence interval (Wilson) for the share
killed among all the module's mutants. The full run stays the default.

``--postgres URL`` (``MUTATION_POSTGRES``) checks the mutants that survived on SQLite once more
with the tests on PostgreSQL (``DATABASE_URL=URL``, ``--jobs`` processes, each with a test
database of its own: ``MITTO_TEST_DB_NAME``, default ``test_django_mitto_mutation``, followed by
the process id; those a stopped process left behind are dropped at the end), as ``make test`` runs the suite on both: a change to a PostgreSQL-only path (``COPY``, the
one-statement report, row locks) can only be noticed there. Both scores are printed: on SQLite
alone, and on SQLite or PostgreSQL.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

#: Module label -> mutmut name patterns. Only the CSV export of the message admin.
MODULES: dict[str, list[str]] = {
    "validators": ["django_mitto.validators.*"],
    "encoding": ["django_mitto.encoding.*"],
    "callbacks": ["django_mitto.callbacks.*"],
    "auth": ["django_mitto.auth.*"],
    "csv-export": [
        "django_mitto.admin.export.x__csv_*",
        "django_mitto.admin.export.x\u01c1_Echo\u01c1*",
        "django_mitto.admin.message.x\u01c1MessageAdmin\u01c1export_csv*",
    ],
    "client": ["django_mitto.client.*"],
    # The send service: creating and sending messages, their options, and what services keeps.
    "services": [
        "django_mitto.services.*",
        "django_mitto.creating.*",
        "django_mitto.sending.*",
        "django_mitto.options.*",
    ],
}

#: mutmut verdicts that mean a test noticed the change.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def mutmut(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("mutmut")), *args]


def results() -> dict[str, str]:
    """Every mutant's verdict, from ``mutmut results --all true``."""
    out = subprocess.run(
        mutmut("results", "--all", "true"), capture_output=True, text=True, check=True
    ).stdout
    verdicts = {}
    for line in out.splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            verdicts[name] = verdict
    return verdicts


def matching(patterns: list[str], names: list[str] | dict[str, str]) -> list[str]:
    """The mutant names among ``names`` that match one of ``patterns``, sorted."""
    return sorted(name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns))


def generate() -> subprocess.CompletedProcess[str]:
    """Have mutmut write every mutant (and learn which tests cover what) without checking any.

    ``mutmut run`` always creates the mutants, then runs the tests once to record which cover
    which function (kept for the next runs), before it checks the mutants asked for: asked for
    one that does not exist, it stops there, failing, with every mutant listed as "not checked"
    (or with its last verdict).
    """
    return subprocess.run(
        mutmut("run", "django_mitto.x__no_such_mutant__"), capture_output=True, text=True
    )


def fingerprint(folder: str = "tests") -> str:
    """A digest of every file under ``folder``: each ``mutmut run`` copies the tests when it
    starts, so the PostgreSQL pass runs the tests as they are then, not as the SQLite pass did."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def drop_leftovers(url: str, base: str) -> list[str]:
    """Drop the test databases ``<base>_<pid>`` that processes of the PostgreSQL pass left
    behind (a process stopped at its timeout does not drop its own); return their names."""
    import re

    import psycopg
    from psycopg import sql

    # <base>_<pid>, and <base>_sms_<pid> for the second database of tests/settings.py.
    left = re.compile(rf"{re.escape(base)}(_sms)?_[0-9]+")
    with psycopg.connect(url, autocommit=True) as connection:
        names = [
            name
            for (name,) in connection.execute("SELECT datname FROM pg_database").fetchall()
            if left.fullmatch(name)
        ]
        for name in names:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    return names


def draw(names: list[str], size: int, seed: int) -> list[str]:
    """``size`` of ``names`` at random: the same names, size and seed draw the same ones."""
    return sorted(random.Random(seed).sample(sorted(names), min(size, len(names))))


def wilson(killed: int, checked: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of the share killed, ``killed`` of ``checked`` sampled."""
    if not checked:
        return 0.0, 1.0
    share = killed / checked
    denominator = 1 + z * z / checked
    centre = (share + z * z / (2 * checked)) / denominator
    half = z * math.sqrt(share * (1 - share) / checked + z * z / (4 * checked * checked))
    return max(0.0, centre - half / denominator), min(1.0, centre + half / denominator)


def score(
    patterns: list[str], verdicts: dict[str, str], only: list[str] | None = None
) -> tuple[int, int, list[str]]:
    """(killed, checked, survivors) of the mutants matching ``patterns`` (and in ``only``)."""
    mine = {
        name: verdict
        for name, verdict in verdicts.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        and verdict != "not checked"
        and (only is None or name in only)
    }
    killed = sum(verdict in KILLED for verdict in mine.values())
    survivors = sorted(f"{name}: {v}" for name, v in mine.items() if v not in KILLED)
    return killed, len(mine), survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument(
        "--sample", type=int, metavar="N", help="check N mutants of each module drawn at random"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="the draw of --sample (default 1): same seed, same draw"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("MUTATION_POSTGRES") or None,
        help="check the mutants that survived on SQLite again on this PostgreSQL database",
    )
    options = parser.parse_args(argv)
    modules = options.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if options.sample is not None and options.sample < 1:
        parser.error("--sample needs at least 1 mutant")
    # Property tests replay their fixed sequence: a mutant's verdict must not depend on a draw.
    os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")
    # Each failing test is logged with the mutant it ran with (tests/conftest.py): which test
    # killed which mutant, and with what error.
    Path("mutants").mkdir(exist_ok=True)
    os.environ.setdefault("MITTO_MUTATION_KILLS_LOG", str(Path("mutants/kills.log").resolve()))
    rows = []
    sqlite_only: dict[str, int] = {}  # module -> killed on SQLite alone, when PostgreSQL ran too
    for module in modules:
        started = time.monotonic()
        patterns = MODULES[module]
        sample: list[str] | None = None
        total = 0
        if options.sample is not None:
            listing = generate()
            every = matching(patterns, results())
            if not every or "failed to collect stats" in listing.stdout:
                sys.stderr.write(listing.stdout[-3000:] + listing.stderr[-3000:])
                print(f"mutmut could not list the mutants of {module}", file=sys.stderr)
                return 1
            total = len(every)
            sample = draw(every, options.sample, options.seed)
            print(
                f"{module}: checking a sample of {len(sample)} of its {total} mutants "
                f"(seed {options.seed})",
                flush=True,
            )
        tests_at_start = fingerprint()
        log = Path("mutants") / f"run-{module}.log"
        log.parent.mkdir(exist_ok=True)  # a fresh clone has no mutants/ before mutmut's first run
        with log.open("w", encoding="utf-8") as out:
            run = subprocess.run(
                mutmut("run", "--max-children", str(options.jobs), *(sample or patterns)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        killed, checked, survivors = score(patterns, results(), only=sample)
        if run.returncode not in (0, 1) or not checked:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            print(*tail, sep="\n", file=sys.stderr)
            print(f"mutmut failed on {module} (exit {run.returncode}; see {log})", file=sys.stderr)
            return run.returncode or 1
        on_sqlite: int | None = None
        if options.postgres and survivors:
            on_sqlite = killed
            names = [line.split(": ")[0] for line in survivors]
            if fingerprint() != tests_at_start:
                print(
                    f"{module}: WARNING: tests/ changed since this run started; the "
                    "PostgreSQL pass runs the changed tests, so its kills may not be the suite's "
                    "as it was measured on SQLite",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"{module}: {len(names)} survivors checked again on PostgreSQL", flush=True)
            # Two runs at once (two checkouts) each name their own databases.
            base = os.environ.get("MITTO_TEST_DB_NAME") or "test_django_mitto_mutation"
            with log.open("a", encoding="utf-8") as out:
                subprocess.run(
                    mutmut("run", "--max-children", str(options.jobs), *names),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={
                        **os.environ,
                        "DATABASE_URL": options.postgres,
                        "MITTO_TEST_DB_NAME": base,
                    },
                )
            drop_leftovers(options.postgres, base)
            killed, checked, survivors = score(patterns, results(), only=sample)
        seconds = time.monotonic() - started
        if sample is not None and checked < len(sample):
            print(f"{module}: {len(sample) - checked} of the sample not checked (see {log})")
        rows.append((module, killed, checked, total, seconds, survivors))
        what = "of the sample " if sample is not None else ""
        both = f" ({on_sqlite} on SQLite alone)" if on_sqlite is not None else ""
        print(f"{module}: {killed}/{checked} {what}killed{both} in {seconds:.0f} s", flush=True)
        if on_sqlite is not None:
            sqlite_only[module] = on_sqlite
    report = "\n".join(table(rows, options.sample, options.seed, sqlite_only))
    Path("mutants").mkdir(exist_ok=True)
    Path("mutants/scores.txt").write_text(report + "\n", encoding="utf-8")
    print(report)
    return 0


def table(
    rows: list[tuple[str, int, int, int, float, list[str]]],
    sample: int | None,
    seed: int,
    sqlite_only: dict[str, int] | None = None,
) -> list[str]:
    """The lines of the report: one per module, then the survivors of each (and, for the
    modules also checked on PostgreSQL, how many SQLite alone killed)."""
    sqlite_only = sqlite_only or {}
    if sample is None:
        lines = [f"{'module':<12} {'killed':>7} {'mutants':>8} {'score':>7} {'time':>8}"]
        for module, killed, checked, _, seconds, _ in rows:
            percent = 100 * killed / checked if checked else 100.0
            lines.append(f"{module:<12} {killed:>7} {checked:>8} {percent:>6.1f}% {seconds:>7.0f}s")
    else:
        lines = [
            f"A SAMPLE, not every mutant: up to {sample} mutants of each module, seed {seed}.",
            "The interval is where the share killed among all the module's mutants lies,",
            "with 95 % confidence (Wilson score interval).",
            "",
            f"{'module':<12} {'killed':>7} {'sampled':>8} {'of':>6} {'score':>7} "
            f"{'95 % interval':>15} {'time':>8}",
        ]
        for module, killed, checked, total, seconds, _ in rows:
            percent = 100 * killed / checked if checked else 100.0
            low, high = wilson(killed, checked)
            interval = f"{100 * low:.1f}-{100 * high:.1f}%"
            lines.append(
                f"{module:<12} {killed:>7} {checked:>8} {total:>6} {percent:>6.1f}% "
                f"{interval:>15} {seconds:>7.0f}s"
            )
    for module, _, checked, _, _, _ in rows:
        if module in sqlite_only:
            lines.append(
                f"{module}: killed on SQLite or PostgreSQL, as `make test` runs both; "
                f"{sqlite_only[module]} of {checked} on SQLite alone"
            )
    lines.append("")
    for module, _, _, _, _, survivors in rows:
        title = (
            f"surviving in {module} (of the sample)"
            if sample is not None
            else f"surviving in {module}"
        )
        lines += [f"{title}:", *(f"  {s}" for s in survivors), ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
