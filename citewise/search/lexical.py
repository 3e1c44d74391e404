"""The lexical half of hybrid retrieval: a BM25 index (bm25s) per knowledge base.

The index is derived data: Chroma holds the chunks, and every ingest that changes a knowledge
base rebuilds its index from them (``rebuild``). Rebuilding is cheap because tokens are kept per
chunk hash between builds, so only new chunk texts are tokenised (see ``bench/lexical.py`` for
the numbers at 100k chunks). Each build is written to a fresh folder and published by atomically
replacing a ``CURRENT`` pointer file, so a reader never sees a half-written index and a killed
ingest leaves the previous one in place; the index records the chunk ids it was built from, so a
stale one is detected and rebuilt by the next ingest. Builds in one folder are serialised by a
file lock, as several processes may build there: an ingest and the serving processes that
follow a Chroma server (``citewise.search.lexical_sync``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import Stemmer
from filelock import FileLock

from citewise import freed_memory, stored_chunk
from citewise.search.metadata_table import MetadataTable, PackedStrings


def _import_bm25s_without_numba() -> ModuleType:
    """bm25s imports numba when it is installed (unstructured depends on it) for a retrieval
    backend Citewise does not call: ``get_scores`` and ``index`` are numpy and scipy either way,
    with the same scores. Loading numba and LLVM costs every process that searches or publishes
    about 78 MB resident (measured: 116 against 38 MB after the import), so it is hidden while
    bm25s is imported, and only then: a later ``import numba`` elsewhere still works."""
    hidden = "numba" not in sys.modules
    if hidden:
        sys.modules["numba"] = None  # type: ignore[assignment]  # makes ``import numba`` fail
    try:
        return importlib.import_module("bm25s")
    finally:
        if hidden:
            del sys.modules["numba"]


if TYPE_CHECKING:
    import bm25s
else:
    bm25s = _import_bm25s_without_numba()

_POINTER = "CURRENT"
_IDS = "ids.json"  # the chunk ids, in index order
_TABLE = "chunks.json"  # ids and a metadata dict per chunk: the format of earlier releases
_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, Snowball-stemmed tokens: the same for chunks and queries."""
    if not texts:
        return []
    tokens = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return [list(t) for t in tokens]


def index_text(text: str, metadata: Mapping[str, Any]) -> str:
    """What BM25 sees for a chunk: its title and heading path count as words of the passage."""
    title = str(metadata.get(stored_chunk.TITLE) or "")
    heading = str(metadata.get(stored_chunk.HEADING) or "")
    return "\n".join(part for part in (title, heading, text) if part)


# Reads the texts of chunks by id (``KnowledgeBase.texts_of``); ids it cannot read are left out.
TextReader = Callable[[Sequence[str]], Mapping[str, str]]


def texts_in_hand(ids: Sequence[str], texts: Sequence[str]) -> TextReader:
    """A ``TextReader`` over texts already read, for callers that have them all."""
    by_id = dict(zip(ids, texts, strict=True))
    return lambda wanted: {i: by_id[i] for i in wanted if i in by_id}


@dataclass(frozen=True)
class LexicalHit:
    position: int
    score: float


class LexicalIndex:
    """A loaded BM25 index: chunk ids and metadata in index order, plus the scorer."""

    def __init__(
        self,
        generation: str,
        ids: Sequence[str],
        metadatas: MetadataTable,
        bm25: bm25s.BM25 | None,
    ) -> None:
        self.generation = generation
        self.ids = ids
        self.metadatas = metadatas
        self._bm25 = bm25
        self._places: dict[tuple[str, int], int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def places(self) -> dict[tuple[str, int], int]:
        """(source, chunk_index) -> position of that chunk, built on first use."""
        if self._places is None:
            sources = self.metadatas.column(stored_chunk.SOURCE)
            indexes = self.metadatas.column(stored_chunk.CHUNK_INDEX)
            self._places = {
                (str(source or ""), at): position
                for position, (source, at) in enumerate(zip(sources, indexes, strict=True))
                if isinstance(at, int) and not isinstance(at, bool)
            }
        return self._places

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[LexicalHit]:
        """Top ``k`` positions by BM25 score, restricted to ``allowed`` (a boolean mask)."""
        if self._bm25 is None or k <= 0:
            return []
        vocabulary = self._bm25.vocab_dict
        terms = [t for t in tokenize([query])[0] if t in vocabulary]
        if not terms:
            return []
        scores = self._bm25.get_scores(terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [LexicalHit(int(p), float(scores[p])) for p in top if scores[p] > 0]


def generation_of(ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> str:
    """A fingerprint of the chunks an index covers: their ids (which encode their text) and
    their metadata, so an edit that only moves a passage (new offsets, a new anchor) is a new
    corpus version too, and answers cached with the old deep links are not served."""
    digest = hashlib.sha256()
    for chunk_id, metadata in sorted(zip(ids, metadatas, strict=True), key=lambda p: p[0]):
        digest.update(chunk_id.encode())
        digest.update(json.dumps(metadata, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


class LexicalStore:
    """BM25 indexes of all knowledge bases under one folder, loaded lazily and cached.

    ``k1`` and ``b`` apply to the indexes this store builds; a loaded index keeps the ones it
    was built with. The defaults (0.7, 0.6) were chosen on SciFact (see the README): term
    frequency saturates sooner and length matters less than Lucene's 1.2 / 0.75, which
    suits short passages that repeat their key terms.
    """

    def __init__(self, root: Path, k1: float = 0.7, b: float = 0.6) -> None:
        self.root = root
        self.k1 = k1
        self.b = b
        self._loaded: dict[str, LexicalIndex] = {}
        self._lock = threading.Lock()

    def _folder(self, kb: str) -> Path:
        return self.root / kb

    def generation_of(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> str:
        """Names an index by the chunks it covers and the parameters it was built with."""
        return generation_of([*ids, "\0bm25"], [*metadatas, {"k1": self.k1, "b": self.b}])

    def current_generation(self, kb: str) -> str | None:
        try:
            return (self._folder(kb) / _POINTER).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def load(self, kb: str) -> LexicalIndex:
        """The published index of ``kb`` (empty if none); reloaded when an ingest replaced it."""
        generation = self.current_generation(kb)
        with self._lock:
            cached = self._loaded.get(kb)
            if cached is not None and cached.generation == generation:
                return cached
        try:
            index = (
                self._read(kb, generation)
                if generation
                else LexicalIndex("", [], MetadataTable(), None)
            )
        except FileNotFoundError:
            if self.current_generation(kb) == generation:
                raise  # not a race: the published index itself is incomplete
            return self.load(kb)  # replaced and removed by another process's build meanwhile
        with self._lock:
            self._loaded[kb] = index
        return index

    def _read(self, kb: str, generation: str) -> LexicalIndex:
        folder = self._folder(kb) / generation
        ids: Sequence[str]
        if MetadataTable.saved_in(folder):
            ids = json.loads((folder / _IDS).read_text(encoding="utf-8"))
            metadatas = MetadataTable.load(folder)
        else:  # published before the metadata was kept by column: a dict per chunk
            table = json.loads((folder / _TABLE).read_text(encoding="utf-8"))
            ids, metadatas = table["ids"], MetadataTable(table["metadatas"])
            del table
        if PackedStrings.fits(ids):
            ids = PackedStrings(ids)
        # Mapped, not read: the pages belong to the page cache, which the API processes of a
        # machine share, and a replaced index's files stay readable after its folder is gone.
        bm25 = (
            bm25s.BM25.load(str(folder / "bm25"), mmap=True, show_progress=False) if ids else None
        )
        freed_memory.release()
        return LexicalIndex(generation, ids, metadatas, bm25)

    def rebuild(
        self,
        kb: str,
        ids: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        read_texts: TextReader,
    ) -> bool:
        """Publish an index over these chunks unless the current one already covers them.

        ``read_texts`` is asked only for the chunks whose tokens no earlier build kept (all of
        them the first time; after a 1% change, that 1%): reading a million passages back from
        the store is the slow part of publishing, not indexing them. Returns whether a new
        index was written.
        """
        generation = self.generation_of(ids, metadatas)
        if self.current_generation(kb) == generation:
            return False
        folder = self._folder(kb)
        folder.mkdir(parents=True, exist_ok=True)
        # Knowledge base names never start with a dot: the lock is never taken for a folder.
        with FileLock(str(self.root / f".{kb}.lock")):
            if self.current_generation(kb) == generation:  # another process just built it
                return False
            self._build(kb, generation, ids, metadatas, read_texts)
        return True

    def _build(
        self,
        kb: str,
        generation: str,
        ids: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        read_texts: TextReader,
    ) -> None:
        folder = self._folder(kb)
        cache = _TokenCache(folder / "tokens.json")
        hashes = [
            str(m.get(stored_chunk.CHUNK_HASH) or chunk_id)
            for chunk_id, m in zip(ids, metadatas, strict=True)
        ]
        unknown = [i for i, h in enumerate(hashes) if not cache.has(h)]
        texts = read_texts([ids[i] for i in unknown])
        cache.add(
            [hashes[i] for i in unknown if ids[i] in texts],
            [index_text(texts[ids[i]], metadatas[i]) for i in unknown if ids[i] in texts],
        )
        # A chunk deleted from the store since ``ids`` were listed has no text: it is indexed
        # with no words (no query finds it) and the next build, which will not list it, drops it.
        tokens = [cache.tokens(h) for h in hashes]

        staging = folder / f".{generation}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / _IDS).write_text(json.dumps(list(ids)), encoding="utf-8")
        MetadataTable(metadatas).save(staging)
        # Also the table earlier releases read, so their processes keep serving through a
        # rolling upgrade (this one reads it only where the files above are missing).
        table = {"ids": list(ids), "metadatas": [dict(m) for m in metadatas]}
        (staging / _TABLE).write_text(json.dumps(table), encoding="utf-8")
        if ids:
            bm25 = bm25s.BM25(k1=self.k1, b=self.b)
            bm25.index(tokens, show_progress=False)
            bm25.save(str(staging / "bm25"), show_progress=False)
        target = folder / generation
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        _write_atomically(folder / _POINTER, generation)
        cache.keep(hashes)
        for old in folder.iterdir():
            if old.is_dir() and old.name != generation:
                shutil.rmtree(old, ignore_errors=True)

    def drop(self, kb: str) -> None:
        """Remove ``kb``'s index: the pointer first, so a drop cut short leaves nothing that
        looks published (and ``kb`` has no corpus version from that moment)."""
        (self._folder(kb) / _POINTER).unlink(missing_ok=True)
        shutil.rmtree(self._folder(kb), ignore_errors=True)
        with self._lock:
            self._loaded.pop(kb, None)


class _TokenCache:
    """Tokens per chunk hash from earlier builds, so a rebuild tokenises only new chunks."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tokens: dict[str, list[str]] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            self._tokens = json.loads(path.read_text(encoding="utf-8"))

    def has(self, chunk_hash: str) -> bool:
        return chunk_hash in self._tokens

    def add(self, hashes: Sequence[str], texts: Sequence[str]) -> None:
        for chunk_hash, tokens in zip(hashes, tokenize(texts), strict=True):
            self._tokens[chunk_hash] = tokens

    def tokens(self, chunk_hash: str) -> list[str]:
        return self._tokens.get(chunk_hash, [])

    def keep(self, hashes: Iterable[str]) -> None:
        wanted = set(hashes)
        kept = {h: t for h, t in self._tokens.items() if h in wanted}
        _write_atomically(self._path, json.dumps(kept))


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
