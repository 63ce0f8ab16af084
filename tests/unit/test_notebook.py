"""publish_loop: fixed rate without drift, sync or async render, visible failure, clean cancel."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.notebook import publish_loop
from tests.support import run_async


def test_sync_and_async_render_at_fixed_rate() -> None:
    async def scenario() -> tuple[int, int, float]:
        display = await rfb.serve(16, 8, port=None, vnc_port=None)
        calls = {"sync": 0, "async": 0}

        def render_sync() -> np.ndarray:
            calls["sync"] += 1
            return np.full((8, 16, 3), calls["sync"] % 256, dtype=np.uint8)

        async def render_async() -> np.ndarray:
            calls["async"] += 1
            await asyncio.sleep(0)
            return np.full((8, 16, 3), calls["async"] % 256, dtype=np.uint8)

        loop = asyncio.get_running_loop()
        start = loop.time()
        t1 = publish_loop(display, render_sync, fps=50)
        t2 = publish_loop(display, render_async, fps=20)
        await asyncio.sleep(1.0)
        t1.cancel()
        t2.cancel()
        for task in (t1, t2):
            with pytest.raises(asyncio.CancelledError):
                await task
        elapsed = loop.time() - start
        await display.aclose()
        return calls["sync"], calls["async"], elapsed

    sync_calls, async_calls, elapsed = run_async(scenario())
    # a fixed schedule: 50 fps for ~1 s gives ~50 calls (drift would lose several)
    assert abs(sync_calls - 50 * elapsed) <= 4
    assert abs(async_calls - 20 * elapsed) <= 3


def test_render_error_ends_task_visibly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)

    async def scenario() -> BaseException | None:
        display = await rfb.serve(16, 8, port=None, vnc_port=None)
        count = 0

        def render() -> np.ndarray:
            nonlocal count
            count += 1
            if count == 3:
                raise ZeroDivisionError("boom")
            return np.zeros((8, 16, 3), dtype=np.uint8)

        task = publish_loop(display, render, fps=100)
        await asyncio.wait([task], timeout=2)
        await display.aclose()
        return task.exception()

    exc = run_async(scenario())
    assert isinstance(exc, ZeroDivisionError)
    assert any("render() failed" in r.getMessage() for r in caplog.records)


def test_bad_frame_from_render_is_reported() -> None:
    async def scenario() -> BaseException | None:
        display = await rfb.serve(16, 8, port=None, vnc_port=None)
        task = publish_loop(display, lambda: np.zeros((8, 16), dtype=np.float32), fps=10)
        await asyncio.wait([task], timeout=2)
        await display.aclose()
        return task.exception()

    assert isinstance(run_async(scenario()), TypeError)


def test_fps_must_be_positive() -> None:
    async def scenario() -> None:
        display = await rfb.serve(16, 8, port=None, vnc_port=None)
        try:
            with pytest.raises(ValueError):
                publish_loop(display, lambda: np.zeros((8, 16, 3), dtype=np.uint8), fps=0)
        finally:
            await display.aclose()

    run_async(scenario())
