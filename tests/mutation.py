"""`make mutation`: run mutmut over the modules that hold the rules, one at a time, and score each.

    python tests/mutation.py [--jobs N] [MODULE ...]     (default: every module, 2 processes)

mutmut (configured in setup.cfg's ``[mutmut]``) copies the package to ``mutants/``, plants one
small change at a time and runs only the tests that cover the changed function. A mutant is
*killed* when a test fails (or hangs until its timeout); one that *survived* is a change no test
noticed: docs/mutants.md lists those of the last run with why each is harmless.

Each run checks every mutant of the modules it is given again; ``mutants/scores.txt`` gets the
table printed at the end.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
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


def score(patterns: list[str], verdicts: dict[str, str]) -> tuple[int, int, list[str]]:
    """(killed, checked, survivors) of the mutants matching ``patterns``."""
    mine = {
        name: verdict
        for name, verdict in verdicts.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns) and verdict != "not checked"
    }
    killed = sum(verdict in KILLED for verdict in mine.values())
    survivors = sorted(f"{name}: {v}" for name, v in mine.items() if v not in KILLED)
    return killed, len(mine), survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)}")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    options = parser.parse_args(argv)
    modules = options.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    # Property tests replay their fixed sequence: a mutant's verdict must not depend on a draw.
    os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")
    rows = []
    for module in modules:
        started = time.monotonic()
        run = subprocess.run(
            mutmut("run", "--max-children", str(options.jobs), *MODULES[module]),
            stdout=subprocess.DEVNULL,
        )
        seconds = time.monotonic() - started
        if run.returncode not in (0, 1):
            print(f"mutmut failed on {module} (exit {run.returncode})", file=sys.stderr)
            return run.returncode
        killed, checked, survivors = score(MODULES[module], results())
        rows.append((module, killed, checked, seconds, survivors))
        print(f"{module}: {killed}/{checked} killed in {seconds:.0f} s", flush=True)
    lines = [f"{'module':<12} {'killed':>7} {'mutants':>8} {'score':>7} {'time':>8}"]
    for module, killed, checked, seconds, _ in rows:
        percent = 100 * killed / checked if checked else 100.0
        lines.append(f"{module:<12} {killed:>7} {checked:>8} {percent:>6.1f}% {seconds:>7.0f}s")
    lines.append("")
    for module, _, _, _, survivors in rows:
        lines += [f"surviving in {module}:", *(f"  {s}" for s in survivors), ""]
    report = "\n".join(lines)
    Path("mutants").mkdir(exist_ok=True)
    Path("mutants/scores.txt").write_text(report + "\n", encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
