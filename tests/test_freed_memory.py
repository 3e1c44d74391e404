"""Memory a process freed goes back to the system when ``freed_memory.release`` is called."""

from __future__ import annotations

import psutil

from citewise import freed_memory


def _resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_freed_heap_pages_are_returned() -> None:
    # 200 MB of malloc'd blocks (above Python's small-object size), one kept in a hundred: the
    # heap cannot shrink from its top, so without a trim the freed pages stay resident.
    blocks = [bytes(2000) + i.to_bytes(4, "little") for i in range(100_000)]
    kept = blocks[::100]
    del blocks
    before = _resident_mb()
    freed_memory.release()
    after = _resident_mb()
    assert kept and before - after > 100, (before, after)
