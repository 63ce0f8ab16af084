"""Display.snapshot() (the frame as a PNG) and what the widget carries for saved notebooks: an
``image/png`` in its mime bundle and a ``snapshot`` trait that follows the frame."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

import pdum.rfb as rfb
from pdum.rfb.testing import noise
from tests.support import LoopThread, run_async


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert (img.mode, img.format) == ("RGB", "PNG")  # 8-bit truecolour, no alpha
        return np.asarray(img)


def _from_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return _pixels(base64.b64decode(url[len(prefix) :]))


@pytest.mark.parametrize("size", [(1, 1), (33, 17), (7, 64), (200, 3)])
def test_snapshot_is_the_frame_exactly(size: tuple[int, int]) -> None:
    width, height = size

    async def scenario() -> None:
        display = await rfb.serve(width, height, port=None, vnc_port=None)
        assert np.array_equal(_pixels(display.snapshot()), np.zeros((height, width, 3), np.uint8))
        frame = noise(width, height, seed=width * height)
        rgba = np.dstack([frame, np.full((height, width), 7, np.uint8)])
        display.publish(rgba)  # alpha is ignored
        png = display.snapshot()
        assert np.array_equal(_pixels(png), frame)
        assert display.snapshot() is png  # cached while the frame does not change
        await display.aclose()
        assert np.array_equal(_pixels(display.snapshot()), frame)  # still there once closed

    run_async(scenario())


def test_snapshot_follows_resizes_and_changes() -> None:
    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, vnc_port=None)
        for i, (w, h) in enumerate([(64, 48), (31, 77), (31, 77), (640, 360)]):
            frame = noise(w, h, seed=i)
            display.publish(frame)
            assert np.array_equal(_pixels(display.snapshot()), frame)
        await display.aclose()

    run_async(scenario())


def test_snapshot_from_another_thread() -> None:
    lt = LoopThread()
    try:
        display = lt.serve(40, 30, vnc_port=None)
        frame = noise(40, 30, seed=9)
        lt.publish(display, frame)
        assert np.array_equal(_pixels(display.snapshot()), frame)  # copied on the loop
        display.publish(noise(50, 20, seed=10))  # from this thread: handed to the loop
        lt.call(lambda: None)  # the loop has applied it
        assert np.array_equal(_pixels(display.snapshot()), noise(50, 20, seed=10))
    finally:
        lt.stop()


def test_widget_mimebundle_carries_the_frame_as_png() -> None:
    pytest.importorskip("anywidget")

    async def scenario() -> None:
        display = await rfb.serve(45, 23, port=0, vnc_port=None)
        first = noise(45, 23, seed=1)
        display.publish(first)
        view = display.widget()
        assert np.array_equal(_from_data_url(view.snapshot), first)
        second = noise(45, 23, seed=2)
        display.publish(second)
        data, _metadata = view._repr_mimebundle_()
        assert set(data) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
        assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
        assert np.array_equal(_pixels(base64.b64decode(data["image/png"])), second)
        assert np.array_equal(_from_data_url(view.snapshot), second)  # displayed: the trait follows
        await display.aclose()

    run_async(scenario())


def test_widget_snapshot_trait_follows_published_frames() -> None:
    pytest.importorskip("anywidget")

    async def scenario() -> None:
        display = await rfb.serve(32, 16, port=0, vnc_port=None)
        display.snapshot_interval = 0.05
        view = display.widget()
        frame = noise(32, 16, seed=3)
        display.publish(frame)
        for _ in range(100):
            if view._snapshot_generation == display.generation:
                break
            await asyncio.sleep(0.02)
        assert np.array_equal(_from_data_url(view.snapshot), frame)
        # Closing the display pushes the frame it ended with, even between refreshes.
        display.snapshot_interval = 60
        await asyncio.sleep(0.1)
        last = noise(32, 16, seed=4)
        display.publish(last)
        await display.aclose()
        assert np.array_equal(_from_data_url(view.snapshot), last)
        assert display._snapshot_task is not None and display._snapshot_task.done()

    run_async(scenario())


def test_no_refresh_task_without_snapshot_interval() -> None:
    pytest.importorskip("anywidget")

    async def scenario() -> None:
        display = await rfb.serve(8, 8, port=0, vnc_port=None)
        display.snapshot_interval = None
        view = display.widget()
        assert display._snapshot_task is None
        assert view.snapshot.startswith("data:image/png;base64,")  # the frame at creation
        await display.aclose()

    run_async(scenario())
