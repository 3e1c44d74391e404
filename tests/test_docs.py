"""The documentation site: the settings table is current, and the strict MkDocs build passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "settings-reference"
REFERENCE = REPO / "docs" / "configuration-reference.md"
REGENERATE = ".venv/bin/python scripts/settings-reference --write"


def test_settings_reference_is_current() -> None:
    generated = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == generated, (
        f"docs/configuration-reference.md does not match citewise/settings.py "
        f"(a setting was added, removed or changed): run `{REGENERATE}` and commit the result"
    )


def test_mkdocs_strict_build(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}{built.stderr}"
    assert (tmp_path / "site" / "configuration.html").exists()
