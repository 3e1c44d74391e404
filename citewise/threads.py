"""Blocking work of a request (embedding, Chroma, composing an answer) off the event loop.

On anyio's worker threads rather than asyncio's default executor: anyio hands the work to the
thread that went idle last, so at low concurrency one warm thread does every search, where the
executor passes them round its threads. After a burst of 32 concurrent searches had started
six executor threads, a lone search took 6.0-6.1 ms instead of 4.9-5.7 ms (bench/serve.py).
The pool is capped at what asyncio's executor allowed (cores + 4): more threads than that only
make searches queue for the two cores inside onnxruntime instead of in the pool.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

T = TypeVar("T")

_limiter: RunVar[anyio.CapacityLimiter] = RunVar("citewise_blocking_limiter")


async def run_blocking(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)`` on a worker thread; waits for it even if cancelled meanwhile."""
    return await anyio.to_thread.run_sync(
        functools.partial(call, *args, **kwargs), limiter=_pool_limit()
    )


def _pool_limit() -> anyio.CapacityLimiter:
    # One per event loop: a limiter belongs to the loop it was created in.
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(min(32, (os.cpu_count() or 1) + 4))
        _limiter.set(limiter)
        return limiter
