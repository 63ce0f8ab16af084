"""noVNC (npm @novnc/novnc, the decoder our widget uses) in headless Chromium, talking to our
in-process WebSocket bridge: exact pixels per encoding, follow-up frames, input and clipboard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import gradient, noise, noise_and_gradient

from ..support import LoopThread, wait_until
from .conftest import wait_for_canvas

GRAB = "() => window.rfb && window.rfbState === 'connected' ? window.rfb.toDataURL('image/png') : null"

# noVNC pseudo-encodings it always wants alongside the data encoding under test
PSEUDO = [Encoding.DESKTOP_SIZE, Encoding.EXTENDED_DESKTOP_SIZE, Encoding.LAST_RECT]


def open_novnc(page: Any, static_server: str, ws_url: str, encodings: list[int] | None = None) -> None:
    query = f"url={ws_url}"
    if encodings is not None:
        query += "&encodings=" + ",".join(str(int(e)) for e in encodings)
    page.goto(f"{static_server}/novnc_page.html?{query}")
    wait_until(lambda: page.evaluate("window.rfbState") == "connected", timeout=15)


ENCODINGS = {"raw": Encoding.RAW, "zlib": Encoding.ZLIB}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_novnc_single_encoding(served: LoopThread, page: Any, static_server: str, name: str) -> None:
    display = served.serve(320, 240, port=0)
    frames = [noise_and_gradient(320, 240, seed=71), gradient(320, 240)]
    partial = frames[0].copy()
    partial[100:160, 50:200] = noise(150, 60, seed=72)
    frames.insert(1, partial)
    served.publish(display, frames[0])
    open_novnc(page, static_server, display.ws_url, [ENCODINGS[name], *PSEUDO])
    for frame in frames:
        served.publish(display, frame)
        wait_for_canvas(page, frame, GRAB)


def test_novnc_full_encoding_list_and_resize(served: LoopThread, page: Any, static_server: str) -> None:
    display = served.serve(320, 240, port=0)
    served.publish(display, noise(320, 240, seed=73))
    open_novnc(page, static_server, display.ws_url)
    wait_for_canvas(page, noise(320, 240, seed=73), GRAB)
    bigger = noise_and_gradient(400, 300, seed=74)
    served.publish(display, bigger)
    wait_for_canvas(page, bigger, GRAB)


def test_novnc_input_and_clipboard(served: LoopThread, page: Any, static_server: str) -> None:
    display = served.serve(320, 240, port=0)
    served.publish(display, noise(320, 240, seed=75))
    open_novnc(page, static_server, display.ws_url)
    wait_for_canvas(page, noise(320, 240, seed=75), GRAB)
    canvas = page.locator("#screen canvas")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 40, box["y"] + 30)
    page.keyboard.press("q")
    page.evaluate("window.rfb.clipboardPasteFrom('héllo ☃')")

    def got_all() -> list[dict[str, Any]] | None:
        events = received.extend(e.event for e in served.call(display.poll_events)) or received
        types = {e["type"] for e in events}
        return events if {"pointer_down", "key_down", "clipboard"} <= types else None

    received: list[dict[str, Any]] = []
    events = wait_until(got_all, timeout=10)
    down = next(e for e in events if e["type"] == "pointer_down")
    assert (down["x"], down["y"], down["button"]) == (40, 30, 0)
    key = next(e for e in events if e["type"] == "key_down")
    assert key["key"] == "q" and key["code"] == "KeyQ"
    clip = next(e for e in events if e["type"] == "clipboard")
    assert clip["text"] == "héllo ☃"  # UTF-8 through the extended clipboard
    display.clipboard = "from the server ✓"
    wait_until(lambda: page.evaluate("window.rfbClipboard") == "from the server ✓", timeout=10)


def test_novnc_rtt_and_continuous_updates(served: LoopThread, page: Any, static_server: str) -> None:
    display = served.serve(320, 240, port=0, stats_interval=0.2)
    served.publish(display, noise(320, 240, seed=76))
    open_novnc(page, static_server, display.ws_url)
    wait_for_canvas(page, noise(320, 240, seed=76), GRAB)
    session = next(iter(display.server.sessions.values()))
    assert session.continuous is not None  # noVNC switched to continuous updates
    wait_until(lambda: display.stats["clients"][session.client_id]["rtt_ms"] is not None, timeout=5)
    rtt = display.stats["clients"][session.client_id]["rtt_ms"]
    assert 0 < rtt < 1000
    for i in range(5):
        frame = np.ascontiguousarray(np.roll(noise(320, 240, seed=77), i * 7, axis=1))
        served.publish(display, frame)
        wait_for_canvas(page, frame, GRAB)
