"""The built sdist and wheel carry what a project needs, and nothing of ours besides."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from django_mitto import __version__

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
#: What a checkout holds besides its sources: venvs, caches, build output, test artifacts.
NOT_SOURCE = (
    ".git",
    ".venv*",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".tox",
    "build",
    "dist",
    "*.egg-info",
    "test-artifacts",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("dist")
    # Byte-compiling in the build is what an ordinary install does; PYTHONDONTWRITEBYTECODE
    # would only add a "byte-compiling is disabled" notice to the output checked below.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # Built from a copy of the tree: the build writes into its source (egg-info), and another
    # test run (another Python) may be building from this checkout at the same time.
    source = tmp_path_factory.mktemp("source") / "django-mitto"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        wheel_names = zf.namelist()
        (metadata,) = [n for n in wheel_names if n.endswith(".dist-info/METADATA")]
        metadata_lines = zf.read(metadata).decode().splitlines()
    with tarfile.open(sdist) as tf:
        sdist_names = [name.split("/", 1)[1] for name in tf.getnames() if "/" in name]
    return {
        "wheel": wheel_names,
        "sdist": sdist_names,
        "wheel_name": [wheel.name],
        "output": (build.stdout + build.stderr).splitlines(),
        "metadata": metadata_lines,
    }


def test_wheel_is_named_for_this_version(dists) -> None:
    assert dists["wheel_name"][0].startswith(f"django_mitto-{__version__}-py3-none-any")


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_distribution_carries_migrations_templates_static_and_types(dists, kind) -> None:
    names = dists[kind]
    assert "django_mitto/migrations/0001_initial.py" in names
    assert "django_mitto/py.typed" in names
    assert any(n.startswith("django_mitto/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("django_mitto/static/django_mitto/") for n in names)
    assert any(n.startswith("django_mitto/sandbox/") for n in names)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_distribution_leaves_out_tests_and_the_example_project(dists, kind) -> None:
    names = dists[kind]
    assert not [n for n in names if n.startswith(("tests/", "example_project/", "bench/", ".ci/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_sdist_carries_the_docs_and_license(dists) -> None:
    for name in ("README.rst", "CHANGELOG.rst", "LICENSE", "setup.cfg", "pyproject.toml"):
        assert name in dists["sdist"]


def test_build_prints_no_warning(dists) -> None:
    # A setuptools deprecation (license classifiers, data directories missing from
    # `packages`...) fills the first screen of `make demo` and breaks a future setuptools.
    noisy = [line for line in dists["output"] if re.search(r"deprecat|warning", line, re.I)]
    assert noisy == []


def test_license_is_an_spdx_expression(dists) -> None:
    assert "License-Expression: MIT" in dists["metadata"]
    assert not [line for line in dists["metadata"] if line.startswith("Classifier: License ::")]
