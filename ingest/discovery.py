"""Find the files under the paths a user names, and which of them we can parse."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from citewise.errors import InvalidRequest
from ingest.loaders import PARSERS


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: ``source`` is its path relative to ``root``, with forward slashes.

    ``confine``, when set, is a folder above ``root`` that every read must stay beneath (the
    ingest root, for jobs): the folders between are opened without following links too."""

    root: Path
    path: Path
    source: str
    confine: Path | None = None

    @property
    def anchor(self) -> Path:
        """The folder the file is opened beneath (``ingest.opening``)."""
        return self.confine or self.root


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[str]  # unsupported types, reported but not errors
    # Folders walked in full: only under these can a missing file mean a deleted one.
    # (A file named on its own says nothing about its siblings.)
    roots: list[Path]
    # Entries of a supported type that must not be read, reported as failures (``root``,
    # ``path`` and ``source`` as for a file; ``source`` printable).
    refused: list[tuple[SourceFile, str]]
    # Each given path's folder: the folder itself, or a single file's folder (resolved).
    given: list[Path] = field(default_factory=list)


def discover(paths: list[Path], confine: Path | None = None) -> Discovery:
    """Walk files and folders (hidden entries and symlinked folders are not followed).

    A folder's contents never lead out of it: a symlinked file whose target lies outside the
    folder is refused, as are broken links, pipes and devices (reading a pipe blocks forever)
    and names that are not UTF-8 (they cannot be stored as a citation's source). With
    ``confine``, a path that no longer resolves beneath it is refused as a whole.
    """
    files: list[SourceFile] = []
    skipped: list[str] = []
    roots: list[Path] = []
    refused: list[tuple[SourceFile, str]] = []
    folders: list[Path] = []
    for given in paths:
        if not given.exists():
            raise InvalidRequest(f"no such file or folder: {given}")
        absolute = given.resolve()
        if confine is not None and not absolute.is_relative_to(confine):
            raise InvalidRequest("the path is no longer inside the ingest root")
        if absolute.is_file():
            root, candidates = absolute.parent, [absolute]
        else:
            root, candidates = absolute, _walk(absolute)
            roots.append(root)
        folders.append(root)
        for path in candidates:
            source = path.relative_to(root).as_posix()
            if path.suffix.lower() not in PARSERS:
                skipped.append(printable(source))
            elif reason := _refusal(path, root, source):
                refused.append((SourceFile(root, path, printable(source), confine), reason))
            else:
                files.append(SourceFile(root, path, source, confine))
    return Discovery(files, skipped, roots, refused, folders)


def _refusal(path: Path, root: Path, source: str) -> str | None:
    """Why ``path`` must not be read, or None. Only the file itself can be a link here: the
    walk does not enter symlinked folders and ``root`` is already resolved."""
    if printable(source) != source:
        return "the file name is not valid UTF-8"
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            return "a symbolic link to a file outside the ingested folder (not followed)"
        if not target.exists():
            return "a broken symbolic link"
    if not path.is_file():
        return "not a regular file (a pipe, socket or device)"
    return None


def printable(source: str) -> str:
    """The name with undecodable bytes (kept by Python as surrogates) shown as U+FFFD."""
    return source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / n for n in sorted(names) if not n.startswith("."))
    return found
