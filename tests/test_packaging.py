"""The built sdist and wheel carry what a project needs, and nothing of ours besides."""

from __future__ import annotations

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
    # Built from a copy of the tree: the build writes into its source (egg-info), and another
    # test run (another Python) may be building from this checkout at the same time.
    source = tmp_path_factory.mktemp("source") / "django-mitto"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        wheel_names = zf.namelist()
    with tarfile.open(sdist) as tf:
        sdist_names = [name.split("/", 1)[1] for name in tf.getnames() if "/" in name]
    return {"wheel": wheel_names, "sdist": sdist_names, "wheel_name": [wheel.name]}


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
