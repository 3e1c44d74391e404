"""Hybrid, dense and BM25 retrieval over real ingested documents (real model, real Chroma)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from citewise.errors import InvalidKnowledgeBaseName, InvalidRequest, KnowledgeBaseNotFound
from citewise.search.embeddings import LocalEmbeddings
from citewise.search.lexical import LexicalStore, texts_in_hand, tokenize
from citewise.search.retrieval import MAX_K, Retriever, zscore_fusion
from citewise.search.store import Hit
from citewise.settings import Settings
from citewise.wiring import build_store
from ingest.report import IngestReport
from tests.answer_helpers import sample_home
from tests.conftest import SAMPLE

MODES = ["dense", "bm25", "hybrid"]
Ingest = Callable[..., IngestReport]


def make_retriever(settings: Settings, embeddings: LocalEmbeddings) -> Retriever:
    return Retriever(
        settings.retrieval, build_store(settings), embeddings, LexicalStore(settings.lexical_path)
    )


@pytest.fixture(scope="module")
def retriever(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings: LocalEmbeddings,
    cache_dir: Path,
) -> Retriever:
    home = sample_home(request.config, tmp_path_factory, embeddings, cache_dir)
    return make_retriever(Settings(home=home, cache_dir=cache_dir), embeddings)


def search(retriever: Retriever, query: str, **options: Any) -> list[Hit]:
    options.setdefault("k", 5)
    return retriever.search(retriever.query(query, kb="default", **options))


def sources(hits: list[Hit]) -> list[str]:
    return [h.metadata["source"] for h in hits]


# --- modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_ranks_the_answering_passage_first(retriever: Retriever, mode: str) -> None:
    hits = search(retriever, "What is the hotel limit per night?", mode=mode)
    assert len(hits) == 5
    assert hits[0].metadata["source"] == "expenses/expense-policy-template.docx"
    assert "150 EUR per night" in hits[0].text
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.chunk_id for h in hits}) == len(hits)
    assert all(-1.0 <= h.similarity <= 1.0 for h in hits)


@pytest.mark.parametrize("mode", MODES)
def test_exact_codes_are_found(retriever: Retriever, mode: str) -> None:
    hits = search(retriever, "TB-409", mode=mode, k=3)
    assert hits[0].metadata["source"] == "troubleshooting/error-code-reference.html"
    assert any("TB-409" in h.text for h in hits)


def test_bm25_needs_shared_words_dense_does_not(retriever: Retriever) -> None:
    query = "zzqxv"  # in no document
    assert search(retriever, query, mode="bm25") == []
    dense = search(retriever, query, mode="dense")
    hybrid = search(retriever, query, mode="hybrid")
    assert len(dense) == 5
    assert [h.chunk_id for h in hybrid] == [h.chunk_id for h in dense]


def test_bm25_hits_contain_a_query_word(retriever: Retriever) -> None:
    query = "mileage allowance"
    hits = search(retriever, query, mode="bm25", k=10)
    assert hits
    terms = set(tokenize([query])[0])
    for h in hits:
        indexed = f"{h.metadata['title']}\n{h.metadata['heading']}\n{h.text}"
        assert terms & set(tokenize([indexed])[0]), h.text


def test_similarity_is_the_same_cosine_in_every_mode(retriever: Retriever) -> None:
    query = "How do I turn on two-factor authentication?"
    by_mode = {mode: search(retriever, query, mode=mode, k=10) for mode in MODES}
    similarity: dict[str, float] = {}
    for hits in by_mode.values():
        for h in hits:
            assert similarity.setdefault(h.chunk_id, h.similarity) == pytest.approx(h.similarity)
    shared = {h.chunk_id for h in by_mode["dense"]} & {h.chunk_id for h in by_mode["bm25"]}
    assert shared, "dense and BM25 should agree on some passages for this question"
    dense = by_mode["dense"]
    assert [h.similarity for h in dense] == sorted((h.similarity for h in dense), reverse=True)


def test_hybrid_fuses_both_rankings(retriever: Retriever) -> None:
    query = "export to accounting software"
    # Each retriever passes its top candidates (here 60 = 3 * k) to the fusion.
    dense = {h.chunk_id for h in search(retriever, query, mode="dense", k=60)}
    bm25 = {h.chunk_id for h in search(retriever, query, mode="bm25", k=60)}
    hybrid = search(retriever, query, mode="hybrid", k=20)
    assert {h.chunk_id for h in hybrid} <= dense | bm25
    both = [h for h in hybrid if h.chunk_id in dense & bm25]
    assert both and hybrid[0].chunk_id in dense & bm25  # found twice beats found once


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_source_prefix_filter(retriever: Retriever, mode: str) -> None:
    hits = search(
        retriever, "how do refunds work", mode=mode, k=8, filters={"source_prefix": "billing/"}
    )
    assert hits and all(s.startswith("billing/") for s in sources(hits))
    unfiltered = search(retriever, "how do refunds work", mode=mode, k=8)
    assert not all(s.startswith("billing/") for s in sources(unfiltered))


@pytest.mark.parametrize("mode", MODES)
def test_exact_metadata_filters(retriever: Retriever, mode: str) -> None:
    titled = search(retriever, "refund", mode=mode, filters={"title": "Refunds"})
    assert titled == []  # no document has that title
    titled = search(
        retriever, "refund annual plan", mode=mode, filters={"title": "Plans and pricing"}
    )
    assert titled and {h.metadata["title"] for h in titled} == {"Plans and pricing"}

    paged = search(
        retriever,
        "refund",
        mode=mode,
        k=10,
        filters={"page": 2, "source_prefix": "billing/"},
    )
    assert paged
    assert {(h.metadata["source"], h.metadata["page"]) for h in paged} == {
        ("billing/refund-policy.pdf", 2)
    }


@pytest.mark.parametrize("mode", MODES)
def test_a_prefix_that_matches_nothing_finds_nothing(retriever: Retriever, mode: str) -> None:
    assert search(retriever, "refund", mode=mode, filters={"source_prefix": "nowhere/"}) == []


def test_unknown_filter_key_is_refused(retriever: Retriever) -> None:
    with pytest.raises(InvalidRequest) as caught:
        search(retriever, "refund", filters={"colour": "blue"})
    message = str(caught.value)
    assert "'colour'" in message and "source_prefix" in message and "title" in message


@pytest.mark.parametrize(
    "filters",
    [
        {"title": ["Plans and pricing"]},
        {"page": {"$gt": 1}},
        {"title": None},
        {"source_prefix": 3},
    ],
)
def test_filter_values_of_the_wrong_type_are_refused(
    retriever: Retriever, filters: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match="must be a string"):
        search(retriever, "refund", filters=filters)


# --- bounds and bad input -----------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1])
def test_k_out_of_bounds_is_refused(retriever: Retriever, k: int) -> None:
    with pytest.raises(InvalidRequest, match="k must be between 1"):
        search(retriever, "refund", k=k)


@pytest.mark.parametrize("mode", MODES)
def test_k_bounds_are_honoured(retriever: Retriever, mode: str) -> None:
    assert len(search(retriever, "refund policy", mode=mode, k=1)) == 1
    many = search(retriever, "refund policy", mode=mode, k=MAX_K)
    limit = MAX_K if mode != "bm25" else len(many)
    assert len(many) == limit and 0 < len(many) <= MAX_K
    assert len({h.chunk_id for h in many}) == len(many)


def test_bad_queries_modes_and_knowledge_bases(retriever: Retriever) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        search(retriever, "   ")
    with pytest.raises(InvalidRequest, match="longer than"):
        search(retriever, "refund " * 400)
    with pytest.raises(InvalidRequest, match="unknown search mode"):
        search(retriever, "refund", mode="fuzzy")
    with pytest.raises(KnowledgeBaseNotFound):
        retriever.search(retriever.query("refund", kb="never-ingested", k=3))
    with pytest.raises(InvalidKnowledgeBaseName):
        retriever.query("refund", kb="../etc", k=3)


# --- the indexes follow re-ingests ----------------------------------------------------------


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "small"
    (corpus / "billing").mkdir(parents=True)
    (corpus / "expenses").mkdir()
    shutil.copy(SAMPLE / "billing" / "managing-your-subscription.md", corpus / "billing")
    shutil.copy(SAMPLE / "expenses" / "mileage-and-per-diem.md", corpus / "expenses")
    shutil.copy(SAMPLE / "expenses" / "capturing-receipts.md", corpus / "expenses")
    return corpus


def test_an_edit_that_only_moves_passages_is_seen_by_a_warm_retriever(
    ingest: Ingest,
    make_settings: Callable[..., Settings],
    embeddings: LocalEmbeddings,
    small_corpus: Path,
) -> None:
    ingest(small_corpus, parse_workers=0)
    settings = make_settings()
    retriever = make_retriever(settings, embeddings)
    question = "How do I switch from monthly to annual billing?"
    before = search(retriever, question)[0]  # now in the retriever's passage cache
    lexical = LexicalStore(settings.lexical_path)
    version_before = lexical.current_generation("default")

    # A line above the passage moves it down without changing its text: same chunk id, same
    # vector, new offsets. That is a new corpus version, and the cached passage is not reused.
    edited = small_corpus / "billing" / "managing-your-subscription.md"
    text = edited.read_text(encoding="utf-8")
    edited.write_text(text.replace("\n\n", "\n\nA short new first paragraph.\n\n", 1))
    report = ingest(small_corpus, parse_workers=0)

    after = search(retriever, question)[0]
    assert after.chunk_id == before.chunk_id and after.text == before.text
    assert report.chunks_embedded < report.chunks_unchanged
    assert after.metadata["start"] > before.metadata["start"]
    assert lexical.current_generation("default") != version_before


def test_bm25_index_follows_edits_and_deletions(
    ingest: Ingest,
    make_settings: Callable[..., Settings],
    embeddings: LocalEmbeddings,
    small_corpus: Path,
) -> None:
    ingest(small_corpus, parse_workers=0)
    retriever = make_retriever(make_settings(), embeddings)
    word = "quokkaberry"
    assert search(retriever, word, mode="bm25") == []

    edited = small_corpus / "billing" / "managing-your-subscription.md"
    with edited.open("a", encoding="utf-8") as handle:
        handle.write(f"\n\n## Loyalty\n\nThe {word} discount applies to annual plans only.\n")
    ingest(small_corpus, parse_workers=0)

    # The same retriever (and its cached index) sees the new generation of the BM25 index.
    for mode in ("bm25", "hybrid"):
        top = search(retriever, word, mode=mode)[0]
        assert top.metadata["source"] == "billing/managing-your-subscription.md"
        assert word in top.text

    question = "How do I cancel my subscription?"
    before = {mode: sources(search(retriever, question, mode=mode, k=20)) for mode in MODES}
    assert all("billing/managing-your-subscription.md" in found for found in before.values())

    edited.unlink()
    ingest(small_corpus, parse_workers=0)

    assert search(retriever, word, mode="bm25") == []
    for mode in MODES:
        found = sources(search(retriever, question, mode=mode, k=20))
        assert "billing/managing-your-subscription.md" not in found, mode
        if mode != "bm25":
            assert found  # the other documents are still there


def test_identical_passages_in_two_files_are_returned_once(
    ingest: Ingest,
    make_settings: Callable[..., Settings],
    embeddings: LocalEmbeddings,
    small_corpus: Path,
) -> None:
    original = small_corpus / "expenses" / "mileage-and-per-diem.md"
    shutil.copy(original, small_corpus / "expenses" / "mileage-copy.md")
    ingest(small_corpus, parse_workers=0)
    settings = make_settings()
    stored = build_store(settings).knowledge_base("default")
    copies = stored.chunks_of_source("expenses/mileage-copy.md")
    assert len(copies) == len(stored.chunks_of_source("expenses/mileage-and-per-diem.md")) > 1

    query = "mileage rate per kilometre for private cars"
    # Without de-duplication the nearest passages come in identical pairs.
    raw = stored.search(embeddings.embed_query(query), 10)
    assert len({h.text for h in raw}) < len(raw)

    retriever = make_retriever(settings, embeddings)
    for mode in MODES:
        hits = search(retriever, query, mode=mode, k=10)
        texts = [h.text for h in hits]
        assert len(texts) == len(set(texts)), mode
        mileage = [h for h in hits if "mileage" in h.metadata["source"]]
        assert mileage, mode
        assert len(mileage) <= len(copies)


def test_a_retriever_survives_a_rebuild_of_its_knowledge_base(
    ingest: Ingest,
    make_settings: Callable[..., Settings],
    embeddings: LocalEmbeddings,
    small_corpus: Path,
) -> None:
    ingest(small_corpus, parse_workers=0)
    retriever = make_retriever(make_settings(), embeddings)
    question = "How do I cancel my subscription?"
    before = search(retriever, question, mode="dense")
    # --rebuild drops the collection the retriever keeps open and creates a new one.
    ingest(small_corpus, parse_workers=0, rebuild=True)
    after = search(retriever, question, mode="dense")
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before]

    build_store(make_settings()).drop("default")
    with pytest.raises(KnowledgeBaseNotFound):
        search(retriever, question)


def test_zscore_fusion_standardises_each_list_and_fills_gaps_with_its_floor() -> None:
    dense = [("a", 3.0), ("b", 1.0)]  # z: a +1, b -1; floor -1
    bm25 = [("b", 10.0), ("c", 4.0), ("d", 1.0)]  # mean 5, std sqrt(14)

    fused = zscore_fusion([dense, bm25], [1.0, 2.0])

    spread = 14**0.5
    expected = {
        "a": 1.0 + 2 * (1.0 - 5.0) / spread,
        "b": -1.0 + 2 * (10.0 - 5.0) / spread,
        "c": -1.0 + 2 * (4.0 - 5.0) / spread,
        "d": -1.0 + 2 * (1.0 - 5.0) / spread,
    }
    assert list(fused) == sorted(expected, key=expected.__getitem__, reverse=True)
    assert fused == pytest.approx(expected)
    assert zscore_fusion([[], bm25], [1.0, 1.0]) == pytest.approx(zscore_fusion([bm25], [1.0]))


def test_a_word_only_one_passage_holds_ranks_it_first_in_hybrid_search() -> None:
    # Dense ranks the passage last of its 20 candidates; BM25 found it alone (no other
    # passage holds the word).
    dense = [(f"p{n}", 0.70 - n * 0.01) for n in range(19)] + [("only", 0.50)]
    bm25 = [("only", 3.1)]

    fused = zscore_fusion([dense, bm25], [1.0, 1.0], exhaustive=[False, True])
    assert next(iter(fused)) == "only"
    # Read as a list cut at its depth instead, one score says nothing about the others.
    assert next(iter(zscore_fusion([dense, bm25], [1.0, 1.0]))) == "p0"


# --- reading around the hits ----------------------------------------------------------------


def test_the_passages_around_a_hit_are_its_neighbours_in_its_document(
    retriever: Retriever,
) -> None:
    hits = search(retriever, "How do I switch from monthly to annual billing?", k=2)
    around = retriever.around("default", hits, "How do I switch from monthly to annual billing?")

    assert around, "the sample's documents are longer than one passage"
    taken = {h.chunk_id for h in hits}
    for nearby in around:
        assert not nearby.retrieved and nearby.chunk_id not in taken
        neighbours_of = [
            h
            for h in hits
            if h.metadata["source"] == nearby.metadata["source"]
            and abs(h.metadata["chunk_index"] - nearby.metadata["chunk_index"]) == 1
        ]
        assert neighbours_of, "every passage read around stands next to a hit"
        assert -1.0 <= nearby.similarity <= 1.0
    assert len({h.chunk_id for h in around}) == len(around)
    assert all(h.retrieved for h in hits)
    assert retriever.around("default", [], "anything") == []


def test_the_lexical_index_does_not_load_numba_and_leaves_it_importable() -> None:
    """bm25s would load numba (about 78 MB in every serving process) for a backend the index
    never calls; the service hides it while bm25s loads, and only then."""
    script = (
        "import sys\n"
        "from citewise.search import lexical\n"
        "assert 'numba' not in sys.modules, 'numba was loaded'\n"
        "scores = lexical.bm25s.BM25(k1=0.7, b=0.6)\n"
        "scores.index([['parrot', 'seed'], ['seed']], show_progress=False)\n"
        "assert scores.get_scores(['parrot'])[0] > 0\n"
        "assert 'numba' not in sys.modules, 'indexing loaded numba'\n"
        "import numba\n"
        "print(numba.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "numba"


def test_a_rebuild_reads_back_only_the_texts_it_has_no_tokens_for(tmp_path: Path) -> None:
    texts = {
        "a": "Parrots eat seeds and fruit.",
        "b": "Refunds take five working days.",
        "c": "Reviewers approve the release notes.",
    }
    asked: list[list[str]] = []

    def reader(wanted: Sequence[str]) -> Mapping[str, str]:
        asked.append(list(wanted))
        return {i: texts[i] for i in wanted if i in texts}

    def metadata(chunk_id: str) -> dict[str, Any]:
        return {"chunk_hash": f"hash-{chunk_id}", "source": f"{chunk_id}.md", "chunk_index": 0}

    store = LexicalStore(tmp_path / "lexical")
    assert store.rebuild("kb", ["a", "b", "c"], [metadata(i) for i in "abc"], reader)
    assert asked == [["a", "b", "c"]]

    texts["d"] = "Reviewers approve refunds over fifty euros."  # c removed, d added
    asked.clear()
    assert store.rebuild("kb", ["a", "b", "d"], [metadata(i) for i in "abd"], reader)
    assert asked == [["d"]]  # a and b kept their tokens from the first build

    cold = LexicalStore(tmp_path / "cold")
    cold.rebuild(
        "kb",
        ["a", "b", "d"],
        [metadata(i) for i in "abd"],
        texts_in_hand(["a", "b", "d"], [texts["a"], texts["b"], texts["d"]]),
    )
    for query in ("reviewers approve refunds", "parrots seeds", "release notes"):
        warm_hits = store.load("kb").search(query, k=3)
        assert warm_hits == cold.load("kb").search(query, k=3), query
    assert {h.position for h in store.load("kb").search("refunds", k=3)} == {1, 2}  # b and d


def test_whole_knowledge_base_reads_cross_page_boundaries(
    ingest: Ingest, corpus: Path, make_settings: Callable[..., Settings], monkeypatch: Any
) -> None:
    ingest(corpus)
    everything = build_store(make_settings()).knowledge_base("default")
    ids, texts, metadatas = everything.all_chunks()
    assert len(ids) == len(set(ids)) > 7 and all(texts)
    monkeypatch.setattr("citewise.search.store._PAGE", 2)  # many pages, by offset and by id
    paged_ids, paged_texts, paged_metadatas = everything.all_chunks()
    assert dict(
        zip(paged_ids, zip(paged_texts, paged_metadatas, strict=True), strict=True)
    ) == dict(zip(ids, zip(texts, metadatas, strict=True), strict=True))
    assert everything.texts_of([ids[0], "no-such-chunk", ids[-1]]) == {
        ids[0]: texts[0],
        ids[-1]: texts[-1],
    }
