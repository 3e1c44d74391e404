"""Blocking request work runs on warm worker threads (citewise.threads)."""

from __future__ import annotations

import threading

import anyio
import pytest

from citewise.threads import run_blocking


def test_after_a_burst_a_lone_caller_keeps_one_thread() -> None:
    async def scenario() -> set[int]:
        started = threading.Barrier(4)

        def meet() -> None:
            started.wait(timeout=30)  # four calls at once: four worker threads exist

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(run_blocking, meet)
        return {await run_blocking(threading.get_ident) for _ in range(20)}

    # The thread that went idle last takes the next call: one warm thread, not a rotation.
    assert len(anyio.run(scenario)) == 1


def test_arguments_and_errors_pass_through() -> None:
    def divide(a: int, b: int = 1) -> float:
        return a / b

    async def scenario() -> None:
        assert await run_blocking(divide, 6, b=3) == 2
        with pytest.raises(ZeroDivisionError):
            await run_blocking(divide, 1, b=0)

    anyio.run(scenario)
