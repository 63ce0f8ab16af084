"""Notebook helpers: :func:`publish_loop` drives a render function at a fixed rate."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from .display import Display

log = logging.getLogger(__name__)

RenderFn = Callable[[], np.ndarray | Awaitable[np.ndarray]]


async def _run(display: Display, render: RenderFn, fps: float) -> None:
    loop = asyncio.get_running_loop()
    period = 1.0 / fps
    start = loop.time()
    tick = 0
    while True:
        try:
            frame: Any = render()
            if inspect.isawaitable(frame):
                frame = await frame
            display.publish(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("publish_loop: render() failed; the loop stops")
            raise
        tick += 1
        # Fixed-rate schedule against the start time: no drift; if a render overran, skip the
        # ticks it missed instead of bursting to catch up.
        next_time = start + tick * period
        now = loop.time()
        if next_time < now:
            tick = int((now - start) / period) + 1
            next_time = start + tick * period
        await asyncio.sleep(next_time - now)


def publish_loop(display: Display, render: RenderFn, *, fps: float = 30) -> asyncio.Task[None]:
    """Call ``render()`` (sync or async, returning a frame) ``fps`` times a second and publish it.

    Returns the running :class:`asyncio.Task`; ``task.cancel()`` stops it cleanly. An exception in
    ``render`` is logged and ends the task, so ``task.exception()`` shows it.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    return asyncio.get_running_loop().create_task(_run(display, render, fps), name="pdum-rfb-publish-loop")
