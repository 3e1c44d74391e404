"""``citewise eval``: score retrieval on a BEIR set and answers on a SQuAD set.

Both load their corpus into a throwaway knowledge base through the real pipeline (chunker,
embedding model, Chroma, BM25) and query it through the same code the HTTP API uses.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from citewise.search.retrieval import MAX_K, Retriever
from ingest.document import Block, ParsedDocument
from ingest.pipeline import IngestPipeline, Progress

DOC_ID = "doc_id"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels (``query-id corpus-id score``, tab separated, with a header line)."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            parts = line.strip().split("\t")
            if len(parts) < 3 or not parts[2].lstrip("-").isdigit():
                continue  # header or blank
            qrels[parts[0]][parts[1]] = int(parts[2])
    return dict(qrels)


def beir_documents(corpus: Path) -> Iterator[tuple[str, ParsedDocument, dict[str, Any]]]:
    for record in read_jsonl(corpus):
        doc_id = str(record["_id"])
        title = str(record.get("title") or "").strip()
        document = ParsedDocument(title=title, blocks=[Block(str(record.get("text") or ""))])
        yield f"{doc_id}.txt", document, {DOC_ID: doc_id}


def ingest_beir(pipeline: IngestPipeline, kb: str, corpus: Path, progress: Progress) -> int:
    total = sum(1 for _ in read_jsonl(corpus))
    return pipeline.add_documents(kb, beir_documents(corpus), progress, total)


def score_retrieval(
    retriever: Retriever,
    kb: str,
    queries: list[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
    mode: str | None,
    progress: Progress,
) -> dict[str, float]:
    """nDCG@10, recall@10, MRR@10 and recall@100; a document ranks at its best chunk."""
    judged = [q for q in queries if str(q["_id"]) in qrels]
    progress.start(len(judged))
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    for query in judged:
        relevant = qrels[str(query["_id"])]
        hits = retriever.search(retriever.query(str(query["text"]), kb=kb, k=MAX_K, mode=mode))
        ranking = list(dict.fromkeys(str(h.metadata.get(DOC_ID)) for h in hits))
        for name, value in document_metrics(ranking, relevant).items():
            totals[name] += value
        progress.advance(str(query["_id"]))
    count = max(1, len(judged))
    return {**{k: round(v / count, 4) for k, v in totals.items()}, "queries": len(judged)}


def document_metrics(ranking: list[str], relevant: dict[str, int]) -> dict[str, float]:
    positive = {d: g for d, g in relevant.items() if g > 0}
    if not positive:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    dcg = sum(positive.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(positive.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i for i, d in enumerate(ranking[:10]) if d in positive), None)
    return {
        "ndcg@10": dcg / idcg,
        "recall@10": len(positive.keys() & set(ranking[:10])) / len(positive),
        "mrr@10": 0.0 if first is None else 1.0 / (first + 1),
        "recall@100": len(positive.keys() & set(ranking[:100])) / len(positive),
    }


# --- SQuAD-format answers ---------------------------------------------------------------


def squad_paragraphs(path: Path) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(title, context, questions) for every paragraph of a SQuAD v1.1 file."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [
        (str(article.get("title", "")), str(p["context"]), list(p["qas"]))
        for article in data
        for p in article["paragraphs"]
    ]


def squad_documents(
    paragraphs: list[tuple[str, str, list[dict[str, Any]]]],
) -> Iterator[tuple[str, ParsedDocument, dict[str, Any]]]:
    for number, (title, context, _) in enumerate(paragraphs):
        source = f"{_slug(title)}-{number:04d}.txt"
        document = ParsedDocument(title=title.replace("_", " "), blocks=[Block(context)])
        yield source, document, {DOC_ID: str(number)}


def squad_articles(
    paragraphs: list[tuple[str, str, list[dict[str, Any]]]],
) -> Iterator[tuple[str, ParsedDocument, dict[str, Any]]]:
    """One document per article, its paragraphs in order: a long document whose answer sits
    in one part of it, as in a paper or a long manual page."""
    articles: dict[str, list[str]] = {}
    for title, context, _ in paragraphs:
        articles.setdefault(title, []).append(context)
    for number, (title, contexts) in enumerate(articles.items()):
        document = ParsedDocument(
            title=title.replace("_", " "), blocks=[Block(c) for c in contexts]
        )
        yield f"{_slug(title)}.txt", document, {DOC_ID: str(number)}


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_answer(haystack: str, answers: list[str]) -> bool:
    normalized = normalize_answer(haystack)
    return any(normalize_answer(a) and normalize_answer(a) in normalized for a in answers)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


_PUNCTUATION = set(string.punctuation)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "article"
