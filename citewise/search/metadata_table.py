"""Every chunk's metadata held by column, each distinct value once.

A loaded BM25 index keeps the metadata of every chunk it covers, for filters and for finding a
passage's neighbours. As a list of dicts that cost about 700 bytes a chunk (70 MB of an API's
memory at 100,000 chunks): a dict per chunk, and the same source, title and heading strings
repeated in every chunk of a document. By column, a chunk costs four bytes a key plus its own
distinct values (its hash and offsets), and a filter compares each distinct value once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

_ABSENT = -1  # the code of a chunk that has no value under a key


_VALUES = "metadata.json"  # {"rows": n, "keys": [...], "values": [[distinct values], ...]}
_CODES = "metadata.npy"  # int32 (keys, rows): each chunk's value as a position in its list


class PackedStrings(Sequence[str]):
    """Strings in one array of UTF-8 bytes, each decoded when read: a 32-character chunk id
    costs 32 bytes instead of 89 as a ``str`` in a list (9 MB of 100,000 ids become 3)."""

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode() for s in strings]
        self._bytes = np.array(encoded, dtype=f"S{max(map(len, encoded), default=1)}")

    @staticmethod
    def fits(values: Sequence[Any]) -> bool:
        """Whether ``values`` are strings that read back the same (an array of bytes drops
        trailing NULs)."""
        return all(isinstance(v, str) and not v.endswith("\0") for v in values)

    def __len__(self) -> int:
        return len(self._bytes)

    @overload
    def __getitem__(self, position: int) -> str: ...

    @overload
    def __getitem__(self, position: slice) -> list[str]: ...

    def __getitem__(self, position: int | slice) -> str | list[str]:
        if isinstance(position, slice):
            return [b.decode() for b in self._bytes[position].tolist()]
        return bytes(self._bytes[position]).decode()

    def __iter__(self) -> Iterator[str]:
        return (b.decode() for b in self._bytes.tolist())


class _Column:
    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: Sequence[Any]) -> None:
        self.codes = codes
        self.values = values


class MetadataTable(Sequence[dict[str, Any]]):
    """Reads like the list of metadata dicts it was built from (rows come back as new dicts)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        rows = rows if isinstance(rows, Sequence) else list(rows)
        self._rows = len(rows)
        self._columns: dict[str, _Column] = {}
        # Per key: each distinct value's code, the values, and every row's code so far (plain
        # lists while building: setting numpy items one by one is several times slower).
        building: dict[str, tuple[dict[tuple[type, Any], int], list[Any], list[int]]] = {}
        for position, row in enumerate(rows):
            for key, value in row.items():
                column = building.get(key)
                if column is None:
                    column = building[key] = ({}, [], [])
                known, values, codes = column
                if len(codes) < position:  # rows without this key
                    codes.extend([_ABSENT] * (position - len(codes)))
                # Keyed by type too: 1, 1.0 and True are equal in Python but not in JSON.
                try:
                    token = (value.__class__, value)
                    code = known.get(token)
                except TypeError:  # a list: compared by its text
                    token = (value.__class__, repr(value))
                    code = known.get(token)
                if code is None:
                    code = known[token] = len(values)
                    values.append(value)
                codes.append(code)
        for key, (_, values, codes) in building.items():
            codes.extend([_ABSENT] * (self._rows - len(codes)))
            self._columns[key] = _Column(np.asarray(codes, dtype=np.int32), values)

    def save(self, folder: Path) -> None:
        """Write the table into ``folder``: the distinct values as JSON, the codes as an array
        (read back, only the values become Python objects; no dict per chunk is ever made)."""
        keys = list(self._columns)
        values = [list(self._columns[key].values) for key in keys]
        document = {"rows": self._rows, "keys": keys, "values": values}
        (folder / _VALUES).write_text(json.dumps(document), encoding="utf-8")
        codes = [self._columns[key].codes for key in keys]
        stacked = np.stack(codes) if codes else np.zeros((0, self._rows), dtype=np.int32)
        np.save(folder / _CODES, stacked, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> MetadataTable:
        """The table ``save`` wrote into ``folder``."""
        document = json.loads((folder / _VALUES).read_text(encoding="utf-8"))
        codes = np.load(folder / _CODES, allow_pickle=False)
        table = cls()
        table._rows = int(document["rows"])
        for key, values, column in zip(document["keys"], document["values"], codes, strict=True):
            # A value nearly every chunk has its own of (its hash) is packed: 12 MB at 100,000
            # chunks as strings, 6 packed. Values many chunks share stay objects, read often.
            if len(values) > table._rows // 2 and PackedStrings.fits(values):
                values = PackedStrings(values)
            table._columns[key] = _Column(np.ascontiguousarray(column), values)
        return table

    @staticmethod
    def saved_in(folder: Path) -> bool:
        return (folder / _VALUES).exists()

    def __len__(self) -> int:
        return self._rows

    @overload
    def __getitem__(self, position: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, position: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, position: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(position, slice):
            return [self._row(p) for p in range(*position.indices(self._rows))]
        if not -self._rows <= position < self._rows:
            raise IndexError(position)
        return self._row(position % self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._row(p) for p in range(self._rows))

    def _row(self, position: int) -> dict[str, Any]:
        return {
            key: column.values[code]
            for key, column in self._columns.items()
            if (code := int(column.codes[position])) != _ABSENT
        }

    def keys(self) -> set[str]:
        """Every key some chunk has."""
        return set(self._columns)

    def distinct(self, key: str) -> list[Any]:
        """The values chunks have under ``key``, each once."""
        column = self._columns.get(key)
        return list(column.values) if column is not None else []

    def column(self, key: str) -> list[Any]:
        """Each chunk's value under ``key``, None where it has none."""
        column = self._columns.get(key)
        if column is None:
            return [None] * self._rows
        values = [*column.values, None]  # code -1 reads the last: None
        return [values[code] for code in column.codes.tolist()]

    def where(self, key: str, accept: Callable[[Any], bool]) -> np.ndarray:
        """A boolean mask of the chunks whose value under ``key`` ``accept(value)`` is true
        for: each distinct value is asked once."""
        column = self._columns.get(key)
        if column is None:
            return np.zeros(self._rows, dtype=bool)
        wanted = [code for code, value in enumerate(column.values) if accept(value)]
        return np.isin(column.codes, np.asarray(wanted, dtype=np.int32))
