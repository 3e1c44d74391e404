"""Sources: the folders that feed a knowledge base, and each document's identity within them.

A knowledge base is fed by one or more sources, each a folder (its resolved absolute root)
registered the first time something under it is ingested, and named after it (``handbook``,
``handbook-2`` when that name is taken). A document's identity is (source, path within the
source), written as one key: the path itself for the knowledge base's first source, and
``<source name>/<path>`` for every later one, so two folders holding the same relative path
both stay and every citation names one document. The key is what chunk metadata, citations
and the manifest call ``source``.

Placing the files an ingest found:

- a file belongs to the most specific registered source whose root holds it, so a single file
  (or a subfolder) of an already-ingested folder updates that folder's document in place;
- a given folder, or a single file's folder, that no source holds becomes a new source;
- only under folders walked in full can a missing file mean a deleted document, and only
  documents of the sources (and the part of them) that were walked are candidates: ingesting
  folder B never deletes a document of folder A.

Homes made before sources existed hold file rows with their roots but no sources: each of
those roots becomes a source with the bare-path keys its documents already have (migrated on
first use, nothing re-embedded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from citewise.errors import InvalidRequest
from ingest.discovery import Discovery, SourceFile, printable

_NOT_IN_NAME = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Source:
    """A registered folder of one knowledge base."""

    name: str
    root: str  # resolved absolute path, as recorded on each of its documents' manifest rows
    prefix: str  # "" for the first source, "<name>/" for later ones

    @property
    def is_web(self) -> bool:
        """A web source: its root is a URL prefix and its documents' keys are their URLs."""
        return self.root.startswith(("http://", "https://"))

    def holds(self, path: Path) -> bool:
        if self.is_web:
            return False
        return path == Path(self.root) or path.is_relative_to(self.root)

    def key(self, path: Path) -> str:
        # Printable: a name that is not UTF-8 is refused, and its key is reported and stored.
        return self.prefix + printable(path.relative_to(self.root).as_posix())


@dataclass(frozen=True)
class Scope:
    """Documents whose file is expected under a folder walked in full: those of ``root``'s
    source whose key starts with ``key_prefix``."""

    root: str
    key_prefix: str

    def covers(self, root: str, key: str) -> bool:
        return root == self.root and key.startswith(self.key_prefix)


@dataclass(frozen=True)
class Placed:
    files: list[SourceFile]  # keyed by their source: ``root`` is the source's root
    scopes: list[Scope]
    new_sources: list[Source]  # registered by this placement (written only when applied)
    kept: list[SourceFile] = field(default_factory=list)  # present, but not to be read


def place(found: Discovery, sources: list[Source], keys: set[str]) -> Placed:
    """Give every found file its source and key, registering sources for new folders.

    ``keys`` are the documents already stored: a new source is not named after the first
    folder of one of them, so its keys cannot fall among another source's."""
    known = list(sources)
    new: list[Source] = []
    reserved = {key.split("/", 1)[0] for key in keys if "/" in key}
    for given in found.given:
        if not any(s.holds(given) for s in known):
            registered = _new_source(given, known, reserved)
            known.append(registered)
            new.append(registered)
    files = []
    for file in found.files:
        holder = _deepest(file.path.parent, known)
        assert holder is not None  # every given folder is held by a source now
        files.append(replace(file, root=Path(holder.root), source=holder.key(file.path)))
    scopes = []
    for walked in found.roots:
        walked_in = _deepest(walked, known)
        assert walked_in is not None
        at_root = walked == Path(walked_in.root)
        scopes.append(
            Scope(walked_in.root, walked_in.prefix if at_root else walked_in.key(walked) + "/")
        )
        # A walk of a folder also covers every source registered for a folder inside it.
        scopes += [
            Scope(s.root, s.prefix)
            for s in known
            if s is not walked_in and Path(s.root).is_relative_to(walked)
        ]
    return Placed(files, scopes, new)


def legacy_sources(roots: list[str]) -> list[Source]:
    """Sources for the roots recorded by a home made before sources existed: bare-path keys,
    as their documents already have."""
    found: list[Source] = []
    for root in sorted(set(roots)):
        found.append(Source(_unique_name(Path(root), found), root, ""))
    return found


def _deepest(path: Path, sources: list[Source]) -> Source | None:
    holding = [s for s in sources if s.holds(path)]
    return max(holding, key=lambda s: len(Path(s.root).parts), default=None)


def _new_source(root: Path, known: list[Source], reserved: set[str]) -> Source:
    name = _unique_name(root, known, reserved)
    # A web source's keys are URLs, which no path can be: only folders need telling apart.
    first = not any(not s.is_web for s in known)
    return Source(name, str(root), "" if first else f"{name}/")


def with_web_source(known: list[Source], root: str, keys: set[str]) -> list[Source]:
    """``known``, and the web source whose prefix is ``root`` if it is not registered yet:
    named after its host and path (``docs-example-com-guide``), keys are the pages' URLs."""
    if any(s.root == root for s in known):
        return known
    for other in known:
        if other.is_web and (root.startswith(other.root) or other.root.startswith(root)):
            # Two sources holding one URL would each take its document from the other.
            raise InvalidRequest(
                f"{root} overlaps the web source {other.name} ({other.root}) of this "
                "knowledge base: ingest that one (with --include to narrow it), or use "
                "another knowledge base"
            )
    address = root.split("://", 1)[1]
    reserved = {key.split("/", 1)[0] for key in keys if "/" in key}
    return [
        *known,
        Source(_unique_name(Path(address.replace("/", "-")), known, reserved), root, ""),
    ]


def _unique_name(
    root: Path, known: list[Source], reserved: frozenset[str] | set[str] = frozenset()
) -> str:
    base = _NOT_IN_NAME.sub("-", root.name.lower()).strip("-") or "source"
    taken = {s.name for s in known} | set(reserved)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
