"""The knowledge bases ``bench/scale.py`` measures: real ones, and larger ones derived from them.

Real (``real``): the FastAPI documentation and SciFact abstracts ingested by the real pipeline
(``bench/answer_latency.py``'s ``ingest``), every chunk embedded by the real model. On two
cores that is about 20-40 chunks a second, so beyond about 10,000 chunks the benchmark
derives them instead.

Derived (``derived``): a base of ``base`` real chunks (text, metadata and the vector the model
gave it) is read from a real knowledge base and kept as is; every further chunk is made from
two real ones, ``a`` (drawn at random) and ``b`` (one of ``a``'s ten nearest neighbours in the
base, by the real vectors), as a passage of the same topic would be:

- its text is ``a``'s first sentences followed by ``b``'s last ones (cut at a random sentence;
  a passage of one sentence is cut between words), so BM25 sees real words at real lengths;
- its vector is ``a``'s and ``b``'s vectors weighted by how many characters each gave, plus
  Gaussian noise of norm 0.1 (so no two are equal), normalised: it lies among the real
  vectors, near the two it was made from;
- its title and heading are ``a``'s; it belongs to a derived document of eight chunks
  (``derived/NNNNNN.md``, ``chunk_index`` 0-7), so reading around a passage works as usual.

What this leaves out: a real corpus of a million chunks has a larger vocabulary than the base
(mixing sentences adds no new word), so BM25's postings are longer per term here than they
would be (searches slower, if anything), and its vectors spread over more topics.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NEIGHBOURS = 10
NOISE = 0.1
PER_DOCUMENT = 8
BATCH = 2000
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Pool:
    """Real chunks with their real vectors (unit length), in store order."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def ingest_real(home: Path, env: dict[str, str], redis_url: str, chunks: int) -> dict[str, Any]:
    """The real ingest of about ``chunks`` chunks into ``home`` (a subprocess, as a worker is),
    with its peak resident memory sampled every 0.2 s."""
    import psutil

    command = [sys.executable, str(HERE / "answer_latency.py"), "--ingest", str(home)]
    command += ["--chunks", str(chunks), "--redis-url", redis_url]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"the ingest failed (exit status {process.returncode})")
    return {**json.loads(out), "worker_peak_rss_mb": round(peak / 2**20, 1)}


def read_pool(settings: Any, kb: str) -> Pool:
    """Every chunk of ``kb`` with its stored vector."""
    from citewise.wiring import build_store

    store = build_store(settings)
    collection = store.knowledge_base(kb)._collection
    ids: list[str] = []
    texts: list[str] = []
    metadatas: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    while True:
        found = collection.get(
            include=["documents", "metadatas", "embeddings"], limit=5000, offset=len(ids)
        )
        if not found["ids"]:
            break
        ids += found["ids"]
        texts += [d or "" for d in found["documents"] or []]
        metadatas += [dict(m or {}) for m in found["metadatas"] or []]
        vectors.append(np.asarray(found["embeddings"], dtype=np.float32))
    store.close()
    matrix = np.concatenate(vectors)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return Pool(ids, texts, metadatas, matrix)


def base_of(pool: Pool, size: int, seed: int) -> Pool:
    """``size`` chunks of ``pool`` drawn at random (all of it when ``size`` covers it)."""
    if size >= len(pool):
        return pool
    chosen = sorted(np.random.default_rng(seed).choice(len(pool), size, replace=False))
    return Pool(
        [pool.ids[i] for i in chosen],
        [pool.texts[i] for i in chosen],
        [pool.metadatas[i] for i in chosen],
        pool.vectors[chosen],
    )


def neighbours(base: Pool) -> np.ndarray:
    """Each base chunk's ten nearest others, by cosine similarity of the real vectors."""
    found = np.empty((len(base), NEIGHBOURS), dtype=np.int64)
    for start in range(0, len(base), 2000):
        similarity = base.vectors[start : start + 2000] @ base.vectors.T
        for row in range(similarity.shape[0]):
            similarity[row, start + row] = -2.0  # not itself
        top = np.argpartition(-similarity, NEIGHBOURS, axis=1)[:, :NEIGHBOURS]
        found[start : start + len(top)] = top
    return found


def halves(text: str, rng: np.random.Generator, first: bool) -> str:
    """The first (or last) sentences of ``text``, cut at a random sentence boundary."""
    parts = _SENTENCE.split(text.strip())
    if len(parts) < 2:
        parts = text.split()
    if len(parts) < 2:
        return text
    cut = int(rng.integers(1, len(parts)))
    return " ".join(parts[:cut] if first else parts[cut:])


def chunks(base: Pool, size: int, seed: int) -> Iterator[tuple[list[Any], np.ndarray]]:
    """Batches of (``stored_chunk.Chunk`` list, vectors): the base as it is, then derived
    chunks up to ``size`` in all."""
    from citewise import stored_chunk
    from citewise.stored_chunk import Chunk

    for start in range(0, min(size, len(base)), BATCH):
        end = min(size, len(base), start + BATCH)
        batch = [
            Chunk(base.ids[i], base.texts[i], base.texts[i], base.metadatas[i])
            for i in range(start, end)
        ]
        yield batch, base.vectors[start:end]
    rng = np.random.default_rng(seed)
    near = neighbours(base) if size > len(base) else np.empty((0, NEIGHBOURS), dtype=np.int64)
    made = 0
    todo = size - len(base)
    while made < todo:
        count = min(BATCH, todo - made)
        firsts = rng.integers(0, len(base), count)
        seconds = near[firsts, rng.integers(0, NEIGHBOURS, count)]
        batch, vectors = [], np.empty((count, base.vectors.shape[1]), dtype=np.float32)
        noise = rng.standard_normal(vectors.shape).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        for row, (a, b) in enumerate(zip(firsts, seconds, strict=True)):
            number = made + row
            head = halves(base.texts[a], rng, first=True)
            tail = halves(base.texts[b], rng, first=False)
            text = f"{head} {tail}"
            share = len(head) / len(text)
            vector = share * base.vectors[a] + (1 - share) * base.vectors[b] + noise[row]
            vectors[row] = vector / np.linalg.norm(vector)
            source = f"derived/{number // PER_DOCUMENT:06d}.md"
            digest = stored_chunk.content_hash(f"{number}\0{text}")
            metadata = {
                stored_chunk.SOURCE: source,
                stored_chunk.TITLE: str(base.metadatas[a].get(stored_chunk.TITLE) or ""),
                stored_chunk.HEADING: str(base.metadatas[a].get(stored_chunk.HEADING) or ""),
                stored_chunk.CHUNK_INDEX: number % PER_DOCUMENT,
                stored_chunk.START: 0,
                stored_chunk.END: len(text),
                stored_chunk.CHUNK_HASH: digest,
            }
            chunk_id = stored_chunk.chunk_id(source, digest, 0)
            batch.append(Chunk(chunk_id, text, text, metadata))
        made += count
        yield batch, vectors


def load(settings: Any, kb: str, base: Pool, size: int, seed: int) -> dict[str, Any]:
    """Write ``size`` chunks into the store ``settings`` names, then publish their BM25 index
    (read back from the store, as an ingest does) and record its generation there."""
    from citewise.wiring import build_lexical, build_store
    from ingest.pipeline import publish_lexical

    store = build_store(settings)
    knowledge_base = store.knowledge_base(kb, create=True)
    started = time.perf_counter()
    for batch, vectors in chunks(base, size, seed):
        knowledge_base.upsert(batch, vectors)
    written = time.perf_counter() - started
    started = time.perf_counter()
    publish_lexical(store, build_lexical(settings), knowledge_base)
    published = time.perf_counter() - started
    count = knowledge_base.count()
    store.close()
    return {
        "chunks": count,
        "real_chunks": min(size, len(base)),
        "write_seconds": round(written, 1),
        "bm25_publish_seconds": round(published, 1),
    }
