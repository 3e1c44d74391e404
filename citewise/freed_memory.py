"""Hand memory the process has freed back to the system, after the few steps that free a lot.

glibc's allocator keeps what Python and onnxruntime free in its own pools for reuse, and a
long-lived process stays that size: loading the embedding model folds its int8 weights into
float32 copies and frees the intermediate ones (58 MB kept for nothing), and reading a BM25
index frees what parsing its files took. ``malloc_trim`` returns those pages.
Elsewhere (musl, macOS) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    # The symbols the process already has: no search for the library (``find_library`` runs
    # ldconfig), and only glibc has the function.
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release() -> None:
    """Return freed heap pages to the system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
