"""``citewise eval`` on tiny labelled sets, through the real command (subprocess, offline)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import citewise_env, run_json

RETRIEVAL_KEYS = {"ndcg@10", "recall@10", "mrr@10", "recall@100", "queries"}
ANSWER_KEYS = {"retrieved_hit", "cited_hit", "answer_contains", "refused", "p50_ms", "questions"}

DOCUMENTS = {
    "d1": (
        "Honeybee navigation",
        "Honeybees communicate the direction of flowers with a waggle dance.",
    ),
    "d2": ("Glacier retreat", "Alpine glaciers lost a large share of their ice volume since 1850."),
    "d3": ("Octopus cognition", "Octopuses solve puzzles and open jars to reach food inside."),
    "d4": ("Desert plants", "Cacti store water in thick stems and open their pores at night."),
}
QUERIES = {
    "q1": ("How do bees tell others where flowers are?", "d1"),
    "q2": ("Octopuses can open jars", "d3"),
    "q3": ("Why do cacti open pores at night?", "d4"),
}


def write_beir(folder: Path) -> tuple[Path, Path, Path]:
    corpus, queries, qrels = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels.tsv"
    corpus.write_text(
        "".join(
            json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in DOCUMENTS.items()
        ),
        encoding="utf-8",
    )
    queries.write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUERIES.items()),
        encoding="utf-8",
    )
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, (_, d) in QUERIES.items()]
    qrels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return corpus, queries, qrels


def test_eval_retrieval_scores_every_mode(tmp_path: Path, cache_dir: Path) -> None:
    corpus, queries, qrels = write_beir(tmp_path)
    env = citewise_env(tmp_path / "home", cache_dir)
    args = ["eval", "retrieval", "--corpus", str(corpus), "--queries", str(queries)]
    args += ["--qrels", str(qrels)]

    code, single = run_json(*args, "--mode", "bm25", env=env)
    assert code == 0
    assert set(single) >= RETRIEVAL_KEYS and single["queries"] == 3
    # Each query has one relevant document and these are easy: it must rank first.
    assert single["mrr@10"] == 1.0 and single["ndcg@10"] == 1.0

    code, by_mode = run_json(*args, "--mode", "dense", "--mode", "hybrid", env=env)
    assert code == 0 and set(by_mode) == {"dense", "hybrid", "seconds"}
    for mode in ("dense", "hybrid"):
        assert set(by_mode[mode]) >= RETRIEVAL_KEYS
        assert by_mode[mode]["recall@10"] == 1.0
    # The throwaway knowledge base never lands in the user's home.
    assert not (tmp_path / "home" / "chroma").exists()


def test_eval_answers_and_unanswerable(tmp_path: Path, cache_dir: Path) -> None:
    articles = [
        (
            "Bees",
            "Honeybees tell their nestmates where flowers are with a waggle dance. "
            "The angle of the dance encodes the direction relative to the sun.",
            "How do honeybees tell nestmates where flowers are?",
            "waggle dance",
        ),
        (
            "Glaciers",
            "The Rhone Glacier has retreated by more than a kilometre since 1850. "
            "Meltwater from it feeds Lake Geneva.",
            "Which lake does the Rhone Glacier feed?",
            "Lake Geneva",
        ),
    ]
    squad = {
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": title,
                                "question": question,
                                "answers": [
                                    {"text": answer, "answer_start": context.index(answer)}
                                ],
                            }
                        ],
                    }
                ],
            }
            for title, context, question, answer in articles
        ]
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad), encoding="utf-8")
    env = citewise_env(tmp_path / "home", cache_dir)

    code, scores = run_json("eval", "answers", "--squad", str(path), env=env)
    assert code == 0 and set(scores) >= ANSWER_KEYS and scores["questions"] == 2
    assert scores["retrieved_hit"] == 1.0 and scores["cited_hit"] == 1.0
    assert scores["answer_contains"] == 1.0 and scores["refused"] == 0.0

    code, unanswerable = run_json(
        "eval", "answers", "--squad", str(path), "--unanswerable", env=env
    )
    assert code == 0 and unanswerable["questions"] == 1
    assert unanswerable["refused"] == 1.0
