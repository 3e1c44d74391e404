"""The layers hold: the import contracts in pyproject.toml pass, and they do catch a
backward import (one is planted in a copy of the code)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("citewise", "api", "ingest", "cli")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    env = os.environ | {"PYTHONPATH": str(root)}  # the code under root, not the installed one
    return subprocess.run(
        [str(lint), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_the_code(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("static"))
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_import_contracts_hold() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_core_module_importing_a_face_breaks_a_contract(tmp_path: Path) -> None:
    root = copy_of_the_code(tmp_path)
    store = root / "citewise" / "search" / "store.py"
    store.write_text(store.read_text() + "\nimport api.main  # planted\n")
    done = lint_imports(root)
    assert done.returncode == 1
    assert "The core (citewise) imports no face BROKEN" in " ".join(done.stdout.split())


def test_search_importing_the_answer_layer_breaks_a_contract(tmp_path: Path) -> None:
    root = copy_of_the_code(tmp_path)
    retrieval = root / "citewise" / "search" / "retrieval.py"
    retrieval.write_text(retrieval.read_text() + "\nimport citewise.answer.citations  # planted\n")
    done = lint_imports(root)
    assert done.returncode == 1
    assert "answer uses search, not back BROKEN" in " ".join(done.stdout.split())
