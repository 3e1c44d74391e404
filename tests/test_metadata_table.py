"""The BM25 index's metadata by column reads back exactly as the dicts it was built from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citewise.search.lexical import LexicalStore, texts_in_hand
from citewise.search.metadata_table import MetadataTable, PackedStrings
from citewise.search.retrieval import Filters

ROWS = [
    {"source": "a.md", "title": "A", "chunk_index": 0, "start": 0, "flag": True},
    {"source": "a.md", "title": "A", "chunk_index": 1, "start": 812},
    {"source": "b/c.pdf", "page": 2, "chunk_index": 0, "start": 1.0},
    {"source": "b/d.pdf", "page": 1, "chunk_index": 1, "start": 1, "tags": ["x", "y"]},
    {},
]


def test_rows_read_back_as_they_were_given() -> None:
    table = MetadataTable(ROWS)
    assert len(table) == len(ROWS)
    assert list(table) == ROWS
    assert table[1] == ROWS[1] and table[-1] == {} and table[1:3] == ROWS[1:3]
    # Equal in Python, not the same value in JSON: each keeps its own type.
    starts = table.column("start")
    assert [type(s) for s in starts] == [int, int, float, int, type(None)]
    assert table[0]["flag"] is True and "flag" not in table[3]
    with pytest.raises(IndexError):
        table[len(ROWS)]


def test_columns_keys_and_distinct_values() -> None:
    table = MetadataTable(iter(ROWS))  # any iterable
    assert table.keys() == {"source", "title", "chunk_index", "start", "flag", "page", "tags"}
    assert table.distinct("source") == ["a.md", "b/c.pdf", "b/d.pdf"]
    assert table.distinct("nothing") == []
    assert table.column("page") == [None, None, 2, 1, None]
    assert table.column("nothing") == [None] * len(ROWS)


@pytest.mark.parametrize(
    "filters",
    [
        {"source_prefix": "b/"},
        {"page": 2},
        {"page": 2.0},
        {"title": "A", "chunk_index": 1},
        {"source_prefix": "a", "start": 0},
        {"flag": True},
        {"colour": "blue"},
        {"source_prefix": "nowhere/"},
    ],
)
def test_a_filter_mask_equals_matching_each_dict(filters: dict[str, object]) -> None:
    parsed = Filters.parse(filters)
    expected = [
        (not parsed.source_prefix or str(row.get("source", "")).startswith(parsed.source_prefix))
        and all(row.get(k) == v for k, v in parsed.equals.items())
        for row in ROWS
    ]
    mask = parsed.mask(MetadataTable(ROWS))
    assert mask.dtype == np.bool_ and mask.tolist() == expected


def test_a_saved_table_loads_back_the_same(tmp_path: Path) -> None:
    rows = [{**row, "chunk_hash": f"h{n}é"} for n, row in enumerate(ROWS)]
    MetadataTable(rows).save(tmp_path)
    loaded = MetadataTable.load(tmp_path)
    assert list(loaded) == rows and loaded.keys() == MetadataTable(rows).keys()
    assert loaded.distinct("chunk_hash") == [f"h{n}é" for n in range(len(rows))]
    assert loaded.where("chunk_hash", lambda h: h == "h2é").tolist() == [
        n == 2 for n in range(len(rows))
    ]


def test_packed_strings_read_back_as_given() -> None:
    strings = ["661acdf6b63b5524", "résumé", "", "a" * 40]
    packed = PackedStrings(strings)
    assert len(packed) == 4 and list(packed) == strings
    assert packed[1] == "résumé" and packed[-1] == "a" * 40 and packed[1:3] == strings[1:3]
    assert PackedStrings.fits(strings)
    assert not PackedStrings.fits(["ends with a NUL\0"]) and not PackedStrings.fits(["a", 1])


def test_indexes_stay_readable_across_the_change_to_metadata_by_column(
    tmp_path: Path,
) -> None:
    ids = [f"{n:032x}" for n in range(len(ROWS))]
    fruits = ["apples", "bananas", "cherries", "dates", "elderberries"]
    texts = [f"a passage about refunds of {fruit}" for fruit in fruits[: len(ROWS)]]
    store = LexicalStore(tmp_path)
    assert store.rebuild("kb", ids, ROWS, texts_in_hand(ids, texts))
    current = LexicalStore(tmp_path).load("kb")
    assert list(current.ids) == ids and list(current.metadatas) == ROWS
    # Earlier releases read one JSON table of ids and metadata dicts: it is still written, so
    # their processes keep serving indexes this one publishes during a rolling upgrade.
    folder = tmp_path / "kb" / current.generation
    table = json.loads((folder / "chunks.json").read_text())
    assert table == {"ids": ids, "metadatas": ROWS}
    # And an index they published (that table alone) loads here.
    for name in ("ids.json", "metadata.json", "metadata.npy"):
        (folder / name).unlink()
    older = LexicalStore(tmp_path).load("kb")
    assert list(older.ids) == ids and list(older.metadatas) == ROWS
    assert [h.position for h in older.search("refunds of dates", 1)] == [3]
