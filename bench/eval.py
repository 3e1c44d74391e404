"""Retrieval and answer quality on ../shared/eval, with the offline defaults.

1. SciFact (train queries): nDCG@10, recall@10, MRR@10, recall@100 for dense, bm25 and hybrid,
   through the same ingest and retrieval code as ``citewise eval retrieval`` (one ingest,
   three modes).
2. XQuAD (English): retrieved_hit, cited_hit, answer_contains, refused and p50 latency with the
   extractive provider, as ``citewise eval answers``; then the unanswerable split (half the
   articles ingested, the other half's questions asked) for the refusal rate; then each
   article ingested as one long document (``--joined``).
3. The FastAPI documentation (155 Markdown pages) with our own questions about it
   (bench/data/fastapi_docs_qa.jsonl), as ``citewise eval answers --docs-qa``: gold pages found
   and cited, key phrases in the answers, refusals, by kind of question; every question's
   answer and flags go to bench/results/fastapi_docs_qa_details.jsonl.

Run:  .venv/bin/python bench/eval.py      Writes bench/results/eval.json (about 25 minutes).
      --only retrieval|answers|docs-qa runs one part and keeps the others' entries.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from typing import Any

HERE = Path(__file__).resolve().parent
EVAL = HERE.parent.parent / "shared" / "eval"
DOCS_QA = HERE / "data" / "fastapi_docs_qa.jsonl"
CLI = [sys.executable, "-m", "cli"]


def run(*args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One ``citewise eval`` command, its JSON output parsed; ``env`` replaces this process's
    environment (bench/llm_answers.py points the answering settings at a model server)."""
    started = time.perf_counter()
    command = [*CLI, "eval", *args, "--json"]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # its last lines say why (a JSON error with --json)
        sys.stderr.write(out.stderr[-4000:] + out.stdout[-2000:])
        out.check_returncode()
    result: dict[str, Any] = json.loads(out.stdout)
    print(f"{' '.join(args[:1])} {result} ({time.perf_counter() - started:.0f}s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "eval.json")
    parser.add_argument(
        "--only",
        choices=["retrieval", "answers", "docs-qa"],
        help="run one part and update its entries in --out, keeping the others'",
    )
    args = parser.parse_args()

    scifact = args.eval_dir / "scifact"
    squad = str(args.eval_dir / "xquad_en" / "xquad.en.json")
    beir = [
        "retrieval",
        "--corpus",
        str(scifact / "corpus.jsonl"),
        "--queries",
        str(scifact / "queries_train.jsonl"),
        "--qrels",
        str(scifact / "qrels_train.tsv"),
    ]
    results = json.loads(args.out.read_text(encoding="utf-8")) if args.only else {}
    docs = str(args.eval_dir / "fastapi_docs" / "docs")
    if args.only in (None, "retrieval"):
        results["scifact_train"] = run(
            *beir, "--mode", "dense", "--mode", "bm25", "--mode", "hybrid"
        )
    if args.only in (None, "answers"):
        results["xquad_en"] = run("answers", "--squad", squad)
        results["xquad_en_unanswerable"] = run("answers", "--squad", squad, "--unanswerable")
        results["xquad_en_joined"] = run("answers", "--squad", squad, "--joined")
    if args.only in (None, "docs-qa"):
        details = args.out.parent / "fastapi_docs_qa_details.jsonl"  # each answer, to study
        results["fastapi_docs_qa"] = run(
            "answers", "--docs-qa", str(DOCS_QA), "--docs", docs, "--details", str(details)
        )
    results.pop("machine", None)  # last, after whichever parts ran
    results["machine"] = (
        f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
