"""``citewise eval`` on tiny labelled sets, through the real command (subprocess, offline)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import citewise_env, run_json

RETRIEVAL_KEYS = {"ndcg@10", "recall@10", "mrr@10", "recall@100", "queries"}
ANSWER_KEYS = {
    "retrieved_hit",
    "cited_hit",
    "answer_contains",
    "refused",
    "unsupported",
    "p50_ms",
    "questions",
}

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
    assert scores["unsupported"] == 0.0  # quoted from the passages: every claim is backed

    code, unanswerable = run_json(
        "eval", "answers", "--squad", str(path), "--unanswerable", env=env
    )
    assert code == 0 and unanswerable["questions"] == 1
    assert unanswerable["refused"] == 1.0

    # Each article one document: the same questions, answered from the long documents.
    squad["data"][0]["paragraphs"].append(
        {"context": "Bumblebees do not dance; they leave scent marks on flowers.", "qas": []}
    )
    path.write_text(json.dumps(squad), encoding="utf-8")
    code, joined = run_json("eval", "answers", "--squad", str(path), "--joined", env=env)
    assert code == 0 and joined["joined"] is True and joined["questions"] == 2
    assert joined["cited_hit"] == 1.0 and joined["answer_contains"] == 1.0
    assert scores["failed"] == 0 and joined["failed"] == 0

    # A model server that is down fails each answer, not the run: they are counted and named.
    down = env | {
        "CITEWISE_ANSWER_PROVIDER": "openai",
        "CITEWISE_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens on the discard port
        "CITEWISE_LLM_MAX_RETRIES": "0",
    }
    code, failing = run_json("eval", "answers", "--squad", str(path), env=down)
    assert code == 0 and failing["questions"] == 2 and failing["failed"] == 2
    assert failing["answer_contains"] == 0.0 and failing["provider"] == "openai"


DOCS_PAGES = {
    "guide/caching.md": "# Caching\n\n"
    "The response cache keeps every answer for 300 seconds by default. "
    "Set CACHE_TTL to keep answers for longer or shorter.\n",
    "guide/deploying.md": "# Deploying\n\n"
    "The container image listens on port 8080. "
    "Put a reverse proxy in front of it to terminate TLS.\n",
}
DOCS_QUESTIONS = [
    {
        "id": "fact-01",
        "question": "For how long does the response cache keep an answer by default?",
        "kind": "fact",
        "gold_pages": ["guide/caching.md"],
        "key_phrase": "300 seconds",
    },
    {
        "id": "how-01",
        "question": "Which port does the container image listen on?",
        "kind": "how",
        "gold_pages": ["guide/deploying.md"],
        "key_phrase": "8080",
    },
    {
        "id": "unanswerable-01",
        "question": "At what temperature does mercury boil?",
        "kind": "unanswerable",
        "gold_pages": [],
        "key_phrase": None,
    },
]


def write_docs_qa(folder: Path) -> tuple[Path, Path]:
    docs = folder / "docs"
    for name, text in DOCS_PAGES.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in DOCS_QUESTIONS), encoding="utf-8")
    return questions, docs


def test_eval_answers_on_a_documentation_folder(tmp_path: Path, cache_dir: Path) -> None:
    questions, docs = write_docs_qa(tmp_path)
    details = tmp_path / "details.jsonl"
    env = citewise_env(tmp_path / "home", cache_dir)

    args = ["eval", "answers", "--docs-qa", str(questions), "--docs", str(docs)]
    code, scores = run_json(*args, "--details", str(details), env=env)
    assert code == 0, scores
    assert (scores["questions"], scores["answerable"], scores["unanswerable"]) == (3, 2, 1)
    assert (scores["pages"], scores["pages_failed"]) == (2, 0)
    # Each answerable question's only page is found, cited and quoted; the other is refused.
    for flag in ("gold_page_retrieved", "gold_page_cited", "key_phrase_in_answer"):
        assert scores[flag] == 1.0, flag
    assert scores["refused"] == 0.0 and scores["unanswerable_refused"] == 1.0
    assert scores["unsupported"] == 0.0
    assert scores["by_kind"]["fact"]["key_phrase_in_answer"] == 1.0
    assert scores["by_kind"]["unanswerable"] == {"questions": 1, "refused": 1.0}
    assert scores["answer_words_mean"] > 0 and scores["p50_ms"] > 0

    records = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["fact-01", "how-01", "unanswerable-01"]
    fact, _, refused = records
    assert "300 seconds" in fact["answer"] and fact["cited"] == ["guide/caching.md"]
    assert fact["key_phrase_in_answer"] is True and fact["sources"][0] == "guide/caching.md"
    assert refused["refused"] is True and refused["key_phrase_in_answer"] is None
    assert fact["unsupported"] is False
    assert not (tmp_path / "home" / "chroma").exists()


def test_eval_answers_wants_one_format(tmp_path: Path, cache_dir: Path) -> None:
    questions, docs = write_docs_qa(tmp_path)
    env = citewise_env(tmp_path / "home", cache_dir)
    for args in (
        ["--docs-qa", str(questions)],  # no folder to ask about
        [],  # neither format
        ["--docs-qa", str(questions), "--docs", str(docs), "--unanswerable"],
        ["--docs-qa", str(questions), "--docs", str(docs / "guide")],  # gold pages not there
    ):
        code, error = run_json("eval", "answers", *args, env=env)
        assert code == 2 and error["error"]["code"] == "invalid_request", args
