"""The derived chunks of ``bench/scale.py``: real words, unit vectors near their parents, and
every id, hash and (source, chunk_index) place distinct."""

from __future__ import annotations

import numpy as np

from bench import scale_corpus
from citewise import stored_chunk


def base(count: int = 40, dimension: int = 16) -> scale_corpus.Pool:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"Alpha {n} rises. Beta {n} falls. Gamma {n} stays." for n in range(count)]
    metadatas = [
        {stored_chunk.SOURCE: f"real/{n}.md", stored_chunk.TITLE: f"T{n}", "chunk_index": 0}
        for n in range(count)
    ]
    return scale_corpus.Pool([f"id{n}" for n in range(count)], texts, metadatas, vectors)


def test_derived_chunks_keep_the_base_and_add_distinct_passages_of_real_words() -> None:
    pool = base()
    made = [pair for pair in scale_corpus.chunks(pool, 500, seed=3)]
    chunks = [c for batch, _ in made for c in batch]
    vectors = np.concatenate([v for _, v in made])

    assert len(chunks) == 500 and vectors.shape == (500, 16)
    assert [c.id for c in chunks[:40]] == pool.ids  # the real base, as it is
    assert np.allclose(vectors[:40], pool.vectors)
    assert len({c.id for c in chunks}) == 500
    assert len({c.hash for c in chunks[40:]}) == 460
    places = {(c.source, c.metadata[stored_chunk.CHUNK_INDEX]) for c in chunks[40:]}
    assert len(places) == 460
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    words = {w for text in pool.texts for w in text.split()}
    assert all(set(c.text.split()) <= words for c in chunks[40:])
    # Each derived vector lies near a real one: closer than random vectors ever are here.
    nearest = (vectors[40:] @ pool.vectors.T).max(axis=1)
    assert float(np.median(nearest)) > 0.6


def test_the_same_seed_derives_the_same_corpus() -> None:
    first = [c.id for batch, _ in scale_corpus.chunks(base(), 100, seed=5) for c in batch]
    again = [c.id for batch, _ in scale_corpus.chunks(base(), 100, seed=5) for c in batch]
    assert first == again


def test_sizes_are_read_as_people_write_them() -> None:
    from bench.scale import label, size_of

    assert [size_of(s) for s in ("10k", "100K", "1M", "2500")] == [10_000, 100_000, 10**6, 2500]
    assert [label(n) for n in (10_000, 100_000, 1_000_000)] == ["10k", "100k", "1M"]
