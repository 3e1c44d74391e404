"""Reading a whole knowledge base back from Chroma: by offset pages, or ids first and then by id.

Publishing a BM25 index at a million chunks spent 603 s reading every chunk back
(``bench/scale.py``). Chroma pages a ``get`` by offset, so the suspicion was that a page costs
more the further in it starts; this measures it on one embedded collection of real passages
(SciFact abstracts cut as in ``bench/lexical.py``, with the metadata keys an ingest writes) and
8-dimensional random vectors (a read that includes no vectors does not depend on their size,
and writing 384-dimensional ones would take ten times as long): every page's time by offset,
against listing the ids alone and reading the rest by id.

Run:  .venv/bin/python bench/store_reads.py [--chunks 240000]
      Writes bench/results/store_reads.json (about 5 minutes at 240,000 chunks on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime
import json
import shutil
import tempfile
import time
from typing import Any

import chromadb
import numpy as np

from bench.answer_latency import git_commit
from bench.lexical import DEFAULT_CORPUS, passages

HERE = Path(__file__).resolve().parent
PAGE, ID_PAGE = 5000, 20_000  # citewise.search.store's pages
INCLUDE: Any = ["documents", "metadatas"]


def build(collection: Any, texts: list[str]) -> None:
    vectors = np.random.default_rng(18).standard_normal((len(texts), 8)).astype(np.float32)
    for start in range(0, len(texts), PAGE):
        part = range(start, min(start + PAGE, len(texts)))
        collection.add(
            ids=[f"chunk-{i:08d}" for i in part],
            embeddings=vectors[part.start : part.stop],
            documents=[texts[i] for i in part],
            metadatas=[
                {"source": f"docs/page-{i // 8}.md", "title": f"Page {i // 8}",
                 "heading": "Guide > Section", "start": i * 400, "end": i * 400 + 380,
                 "chunk_index": i % 8, "chunk_hash": f"{i:064x}"}
                for i in part
            ],
        )  # fmt: skip


def by_offset(collection: Any) -> tuple[int, list[float]]:
    """Pages of texts and metadata by offset; the seconds of each page."""
    read, seconds = 0, []
    while True:
        started = time.perf_counter()
        found = collection.get(include=INCLUDE, limit=PAGE, offset=read)
        seconds.append(time.perf_counter() - started)
        read += len(found["ids"])
        if len(found["ids"]) < PAGE:
            return read, seconds


def by_id(collection: Any) -> tuple[int, float]:
    """The ids by offset pages, then texts and metadata by id; the seconds of the listing."""
    ids: list[str] = []
    started = time.perf_counter()
    while True:
        found = collection.get(include=[], limit=ID_PAGE, offset=len(ids))
        ids += found["ids"]
        if len(found["ids"]) < ID_PAGE:
            break
    listing = time.perf_counter() - started
    read = sum(
        len(collection.get(ids=ids[s : s + PAGE], include=INCLUDE)["ids"])
        for s in range(0, len(ids), PAGE)
    )
    return read, listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=240_000)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "store_reads.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citewise-store-reads-"))
    try:
        collection = chromadb.PersistentClient(path=str(work)).create_collection(
            "bench-reads", metadata={"hnsw:space": "cosine"}
        )
        started = time.perf_counter()
        build(collection, passages(args.corpus, args.chunks))
        written = time.perf_counter() - started
        print(f"wrote {args.chunks:,} chunks in {written:.0f} s", file=sys.stderr)

        started = time.perf_counter()
        offset_read, pages = by_offset(collection)
        offset_s = time.perf_counter() - started
        started = time.perf_counter()
        id_read, listing_s = by_id(collection)
        id_s = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert offset_read == id_read == args.chunks, (offset_read, id_read)
    report = {
        "chunks": args.chunks,
        "by_offset_seconds": round(offset_s, 1),
        "by_offset_first_page_s": round(pages[0], 3),
        "by_offset_last_page_s": round(pages[-1], 3),
        "ids_then_by_id_seconds": round(id_s, 1),
        "of_which_listing_ids_s": round(listing_s, 1),
        "write_seconds": round(written, 1),
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
