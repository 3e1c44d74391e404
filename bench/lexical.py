"""How long a BM25 index rebuild takes at 100k chunks (the per-ingest cost of hybrid search).

Chunks are SciFact abstracts cut into ~60-word passages and repeated with a varying suffix up
to 100,000 (real vocabulary, real lengths). Measured: a cold build (nothing tokenised yet), a
warm rebuild after 1% of chunks changed (tokens of the rest come from the cache), the load
time of the published index, its first query (which reads the postings it needs from disk:
they are memory-mapped) and the median of twenty more. No embedding model or Chroma is involved: the
ingest reads ids, texts and metadata from Chroma and hands them to the same ``rebuild``.

Run:  .venv/bin/python bench/lexical.py     Writes bench/results/lexical.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import shutil
import statistics
import tempfile
import time
from typing import Any

from citewise import stored_chunk
from citewise.search.lexical import LexicalStore, texts_in_hand

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
# Claims of the kind SciFact's are, written for this benchmark: the first is timed alone.
QUERIES = [
    "vitamin D deficiency increases the risk of fractures",
    "statins lower the rate of heart attacks in older adults",
    "regular exercise reduces symptoms of depression",
    "smoking during pregnancy lowers birth weight",
    "antibiotic resistance spreads between bacteria through plasmids",
    "sleep loss impairs memory consolidation",
    "high salt intake raises blood pressure",
    "obesity is associated with insulin resistance",
    "aspirin prevents colorectal cancer",
    "gut bacteria influence the immune response",
    "air pollution increases asthma attacks in children",
    "breastfeeding protects infants against infections",
    "coffee consumption is linked to lower liver disease",
    "mutations in BRCA1 raise the risk of breast cancer",
    "malaria parasites develop resistance to artemisinin",
    "telomere length shortens with age",
    "insulin therapy improves glucose control in type 2 diabetes",
    "chronic stress suppresses the immune system",
    "vaccination reduces the spread of measles",
    "dietary fibre lowers cholesterol levels",
    "alcohol use damages the liver over time",
]


def passages(corpus: Path, count: int) -> list[str]:
    base: list[str] = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            words = json.loads(line)["text"].split()
            base.extend(" ".join(words[i : i + 60]) for i in range(0, len(words), 60))
    return [f"{base[i % len(base)]} v{i // len(base)}" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lexical.json")
    args = parser.parse_args()

    texts = passages(args.corpus, args.chunks)
    ids = [f"chunk-{i}" for i in range(len(texts))]
    metadatas = [
        {stored_chunk.SOURCE: f"doc-{i // 3}.txt", stored_chunk.CHUNK_HASH: f"h{i}"}
        for i in range(len(texts))
    ]
    results = {"chunks": len(texts), **timings(ids, texts, metadatas)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


def timings(ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> dict[str, Any]:
    """Cold build, rebuild after 1% of the chunks changed, load and one query, in a throwaway
    folder (the lists are changed in place: pass copies)."""
    work = Path(tempfile.mkdtemp(prefix="citewise-lexical-"))
    try:
        store = LexicalStore(work)
        started = time.perf_counter()
        store.rebuild("bench", ids, metadatas, texts_in_hand(ids, texts))
        cold = time.perf_counter() - started

        changed = len(texts) // 100
        for i in range(changed):
            texts[i] += " edited"
            ids[i] += "-edited"
            hash_ = str(metadatas[i].get(stored_chunk.CHUNK_HASH) or i)
            metadatas[i] = {**metadatas[i], stored_chunk.CHUNK_HASH: f"{hash_}-edited"}
        started = time.perf_counter()
        store.rebuild("bench", ids, metadatas, texts_in_hand(ids, texts))
        warm = time.perf_counter() - started

        started = time.perf_counter()
        index = LexicalStore(work).load("bench")
        load = time.perf_counter() - started
        started = time.perf_counter()
        index.search(QUERIES[0], 50)
        first = time.perf_counter() - started
        warm_queries = []
        for text in QUERIES[1:]:
            started = time.perf_counter()
            index.search(text, 50)
            warm_queries.append(time.perf_counter() - started)
        return {
            "cold_build_seconds": round(cold, 2),
            "rebuild_after_1pct_change_seconds": round(warm, 2),
            "load_seconds": round(load, 2),
            "first_query_ms": round(first * 1000, 1),
            "query_ms": round(statistics.median(warm_queries) * 1000, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
