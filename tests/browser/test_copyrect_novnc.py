"""noVNC's CopyRect decoder (headless Chromium) restricted to [CopyRect, Raw]: the scrolling
document with the caller's copies and with scroll detection, pixel-exact after every frame; and a
burst of frames published without waiting (noVNC skips some, copies queue up), exact at the end."""

from __future__ import annotations

import time
from typing import Any

import pytest

import pdum.rfb as rfb
from pdum.rfb.protocol.messages import Encoding
from tests.scrolling import scrolling_steps

from ..support import LoopThread
from .conftest import wait_for_canvas
from .test_novnc import GRAB, PSEUDO, open_novnc

WIDTH, HEIGHT = 400, 300
ENCODINGS: list[int] = [Encoding.COPY_RECT, Encoding.RAW, *PSEUDO]


def copyrects_sent(served: LoopThread, display: rfb.Display) -> int:
    stats: dict[str, Any] = served.call(lambda: display.stats)
    return sum(c["copyrects_sent"] for c in stats["clients"].values())


@pytest.mark.parametrize("mode", ["copies", "detect"])
def test_novnc_copyrect_scrolling(served: LoopThread, page: Any, static_server: str, mode: str) -> None:
    display = served.serve(WIDTH, HEIGHT, port=0)
    display.detect_scroll = mode == "detect"
    steps = scrolling_steps(WIDTH, HEIGHT, seed=9)
    served.publish(display, steps[0].frame)
    assert display.ws_url is not None
    open_novnc(page, static_server, display.ws_url, ENCODINGS)
    wait_for_canvas(page, steps[0].frame, GRAB)
    for step in steps[1:]:
        served.call(display.publish, step.frame, step.copies if mode == "copies" else None)
        wait_for_canvas(page, step.frame, GRAB)
    assert copyrects_sent(served, display) > 0
    assert page.evaluate("window.rfbErrors") == []


def test_novnc_copyrect_burst(served: LoopThread, page: Any, static_server: str) -> None:
    display = served.serve(WIDTH, HEIGHT, port=0)
    steps = scrolling_steps(WIDTH, HEIGHT, seed=10) * 2
    served.publish(display, steps[0].frame)
    assert display.ws_url is not None
    open_novnc(page, static_server, display.ws_url, ENCODINGS)
    wait_for_canvas(page, steps[0].frame, GRAB)

    def publish_group(group: list[tuple[int, Any]]) -> None:
        # several publishes in one loop callback: no update can go out between them
        for i, step in group:
            display.publish(step.frame, step.copies if i % 3 else None)

    numbered = list(enumerate(steps))[1:]
    start = 0
    while start < len(numbered):
        size = 1 + start % 3  # groups of 1, 2 or 3 frames
        served.call(publish_group, numbered[start : start + size])
        start += size
        time.sleep(0.003)
    wait_for_canvas(page, steps[-1].frame, GRAB)
    stats: dict[str, Any] = served.call(lambda: display.stats)
    (client,) = stats["clients"].values()
    assert client["updates_sent"] < len(steps) - 1  # frames were skipped
    assert client["copyrects_sent"] > 0
    assert page.evaluate("window.rfbErrors") == []
