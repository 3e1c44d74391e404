"""Which default chunk size retrieves best? Dense retrieval on SciFact (train) per chunk size.

For each ``chunk_tokens/chunk_overlap`` configuration, every SciFact abstract is chunked by the
real ``ingest.chunking.Chunker`` (title + one body block, cl100k_base tokens), every chunk's
``embed_text`` is embedded with the local all-MiniLM-L6-v2 int8 model, and each train query is
scored against every chunk by exact cosine similarity (a numpy matmul over unit vectors). A
document scores as its best chunk (max over its chunks); documents are ranked by that score.

Reported per configuration, over the 809 train queries with binary relevance from the qrels:

* ``ndcg@10`` (log2 discount, ideal DCG from min(relevant, 10)), ``recall@10``, ``mrr@10``,
  ``recall@100``;
* ``chunks`` (all chunks, duplicates included), ``mean_wordpieces`` / ``max_wordpieces`` of the
  embed texts as the model's tokenizer counts them, and ``truncated_share``: the fraction of
  chunks whose embed text exceeds the model's 256 word pieces, so its tail is never read;
* ``embed_seconds``: the embedding cost of the configuration's distinct embed texts. Each
  distinct text is embedded once across all configurations (identical chunks are common: short
  abstracts give one chunk whatever the size); every batch's measured wall time is shared out
  over its texts, and a configuration is charged the cost of all the texts it needs, cached or
  not, so the numbers stay comparable. Other processes on the machine inflate them; scores are
  unaffected.

Run from the repository root (takes roughly 10-20 minutes on 2 cores)::

    .venv/bin/python bench/chunking.py

Results go to ``bench/results/chunking.json``. ``--limit-docs`` is for smoke tests only: it
drops documents, so its scores mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# `python bench/chunking.py` puts bench/ first on sys.path, where a sibling script named like a
# project package (bench/ingest.py) would shadow it: import the project's packages instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

from citewise.offline import prepare_offline  # noqa: E402
from citewise.search.embeddings import MINILM_INT8, LocalEmbeddings  # noqa: E402
from ingest.chunking import Chunker  # noqa: E402
from ingest.document import Block, ParsedDocument  # noqa: E402

ROOT = _BENCH.parent
DATA = Path("/work/shared/eval/scifact")
CONFIGS = "96/16,128/24,200/30,256/40,384/48"
ENCODING = "cl100k_base"
MODEL_MAX_WORDPIECES = 256
K_SMALL, K_LARGE = 10, 100


def parse_configs(spec: str) -> list[tuple[int, int]]:
    configs = []
    for item in spec.split(","):
        size, overlap = item.strip().split("/")
        configs.append((int(size), int(overlap)))
    return configs


def load_corpus(data: Path, limit: int | None) -> list[dict[str, str]]:
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    return docs[:limit] if limit else docs


def load_queries(data: Path) -> list[dict[str, str]]:
    with (data / "queries_train.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_qrels(data: Path) -> dict[str, set[str]]:
    qrels: dict[str, set[str]] = defaultdict(set)
    with (data / "qrels_train.tsv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)  # header
        for query_id, doc_id, score in reader:
            if int(score) > 0:
                qrels[query_id].add(doc_id)
    return qrels


class EmbeddingCache:
    """Embeds each distinct text once; remembers its vector and its share of batch time."""

    def __init__(self, model: LocalEmbeddings) -> None:
        self.model = model
        self.vectors: dict[str, np.ndarray[Any, Any]] = {}
        self.seconds: dict[str, float] = {}
        self.wordpieces: dict[str, int] = {}

    def ensure(self, texts: list[str]) -> None:
        missing = sorted({t for t in texts if t not in self.vectors}, key=len)
        batch_size = self.model.batch_size
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            began = time.perf_counter()
            vectors = self.model.embed_array(batch)
            share = (time.perf_counter() - began) / len(batch)
            for text, vector in zip(batch, vectors, strict=True):
                self.vectors[text] = vector
                self.seconds[text] = share

    def count(self, text: str) -> int:
        if text not in self.wordpieces:
            self.wordpieces[text] = self.model.count_tokens(text)
        return self.wordpieces[text]


def chunk_corpus(
    docs: list[dict[str, str]], chunk_tokens: int, chunk_overlap: int
) -> tuple[list[str], np.ndarray[Any, Any]]:
    """All embed texts, in document order, and the index of each document's first chunk."""
    chunker = Chunker(chunk_tokens, chunk_overlap, ENCODING)
    texts: list[str] = []
    starts: list[int] = []
    for doc in docs:
        chunks = chunker.chunk(
            ParsedDocument(title=doc["title"], blocks=[Block(doc["text"])]), doc["_id"]
        )
        if not chunks:
            raise SystemExit(f"document {doc['_id']} produced no chunks")
        starts.append(len(texts))
        texts.extend(c.embed_text for c in chunks)
    return texts, np.array(starts, dtype=np.int64)


def evaluate(
    doc_scores: np.ndarray[Any, Any],
    doc_ids: list[str],
    query_ids: list[str],
    qrels: dict[str, set[str]],
) -> dict[str, float]:
    """Mean nDCG@10, recall@10, MRR@10 and recall@100 over queries (binary relevance)."""
    k = min(K_LARGE, doc_scores.shape[1])
    top = np.argpartition(-doc_scores, k - 1, axis=1)[:, :k]
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    for row, query_id in enumerate(query_ids):
        relevant = qrels[query_id]
        order = top[row][np.argsort(-doc_scores[row, top[row]], kind="stable")]
        ranked = [doc_ids[i] for i in order]
        hits = [doc in relevant for doc in ranked]
        dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(hits[:K_SMALL]) if hit)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), K_SMALL)))
        totals["ndcg@10"] += dcg / ideal
        totals["recall@10"] += sum(hits[:K_SMALL]) / len(relevant)
        first = next((rank for rank, hit in enumerate(hits[:K_SMALL]) if hit), None)
        totals["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        totals["recall@100"] += sum(hits[:K_LARGE]) / len(relevant)
    return {name: round(value / len(query_ids), 4) for name, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="SciFact directory")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "chunking.json")
    parser.add_argument("--configs", default=CONFIGS, help="chunk_tokens/overlap, comma-separated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-docs", type=int, default=None, help="smoke tests only")
    args = parser.parse_args()

    prepare_offline(Path.home() / ".cache" / "citewise")
    docs = load_corpus(args.data, args.limit_docs)
    doc_ids = [d["_id"] for d in docs]
    qrels = load_qrels(args.data)
    queries = [q for q in load_queries(args.data) if qrels.get(q["_id"])]
    query_ids = [q["_id"] for q in queries]
    print(f"{len(docs)} documents, {len(queries)} queries with relevance judgements")

    model = LocalEmbeddings(MINILM_INT8, batch_size=args.batch_size)
    cache = EmbeddingCache(model)
    query_vectors = model.embed_array([q["text"] for q in queries])

    results = []
    for chunk_tokens, chunk_overlap in parse_configs(args.configs):
        began = time.perf_counter()
        texts, starts = chunk_corpus(docs, chunk_tokens, chunk_overlap)
        chunk_seconds = time.perf_counter() - began
        new = len({t for t in texts if t not in cache.vectors})
        began = time.perf_counter()
        cache.ensure(texts)
        wall = time.perf_counter() - began
        distinct = set(texts)
        embed_seconds = sum(cache.seconds[t] for t in distinct)

        chunk_vectors = np.stack([cache.vectors[t] for t in texts])
        chunk_scores = query_vectors @ chunk_vectors.T
        doc_scores = np.maximum.reduceat(chunk_scores, starts, axis=1)
        metrics = evaluate(doc_scores, doc_ids, query_ids, qrels)

        wordpieces = np.array([cache.count(t) for t in texts])
        row = {
            "chunk_tokens": chunk_tokens,
            "chunk_overlap": chunk_overlap,
            **metrics,
            "chunks": len(texts),
            "mean_wordpieces": round(float(wordpieces.mean()), 1),
            "max_wordpieces": int(wordpieces.max()),
            "truncated_share": round(float((wordpieces > MODEL_MAX_WORDPIECES).mean()), 4),
            "embed_seconds": round(embed_seconds, 1),
        }
        results.append(row)
        print(
            f"{chunk_tokens}/{chunk_overlap}: {metrics} chunks={len(texts)} "
            f"distinct={len(distinct)} new={new} chunking={chunk_seconds:.1f}s "
            f"embedding wall={wall:.1f}s attributed={embed_seconds:.1f}s",
            flush=True,
        )

    report = {
        "corpus": "scifact train",
        "model": MINILM_INT8,
        "configs": results,
        "machine": f"{len(os.sched_getaffinity(0))} cores",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
