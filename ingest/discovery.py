"""Find the files under the paths a user names, and which of them we can parse."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from citewise.errors import InvalidRequest
from ingest.loaders import PARSERS


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: ``source`` is its path relative to ``root``, with forward slashes."""

    root: Path
    path: Path
    source: str


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[str]  # unsupported types, reported but not errors
    # Folders walked in full: only under these can a missing file mean a deleted one.
    # (A file named on its own says nothing about its siblings.)
    roots: list[Path]


def discover(paths: list[Path]) -> Discovery:
    """Walk files and folders (hidden entries and symlinked folders are not followed)."""
    files: list[SourceFile] = []
    skipped: list[str] = []
    roots: list[Path] = []
    for given in paths:
        if not given.exists():
            raise InvalidRequest(f"no such file or folder: {given}")
        absolute = given.resolve()
        if absolute.is_file():
            root, candidates = absolute.parent, [absolute]
        else:
            root, candidates = absolute, _walk(absolute)
            roots.append(root)
        for path in candidates:
            source = path.relative_to(root).as_posix()
            if path.suffix.lower() in PARSERS:
                files.append(SourceFile(root, path, source))
            else:
                skipped.append(source)
    return Discovery(files, skipped, roots)


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / n for n in sorted(names) if not n.startswith("."))
    return found
