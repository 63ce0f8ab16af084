"""More noVNC (npm @novnc/novnc in headless Chromium) against pdum.rfb: its Hextile and ZRLE decoders
one at a time; SetDesktopSize from noVNC (``resizeSession``), accepted with libvncclient and
TigerVNC attached, and rejected; a server-side resize followed by noVNC and TigerVNC at once; and
a paste larger than the clipboard limit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import checkerboard, gradient, noise, noise_and_gradient, solid, text_like

from ..interop.clients import VncDump, Xvfb, find_subimage, in_client_format, tigervnc
from ..support import LoopThread, wait_until
from .conftest import wait_for_canvas
from .test_novnc import GRAB, PSEUDO, open_novnc


def ws_url(display: rfb.Display) -> str:
    assert display.ws_url is not None
    return display.ws_url


def vnc_port(display: rfb.Display) -> int:
    assert display.vnc_port is not None
    return display.vnc_port


def chosen_encoders(served: LoopThread, display: rfb.Display) -> list[int]:
    return served.call(lambda: [s._choose_encoder().encoding for s in display.server.sessions.values()])


# -- one encoding at a time ----------------------------------------------------------------------------
def sequence(width: int, height: int) -> list[np.ndarray]:
    """Whole frames of each kind, then partial changes: a noise box moving over text, a tile-aligned
    two-colour patch, a solid patch and the bottom-right pixel (the last, partial tile) toggling."""
    frames = [noise_and_gradient(width, height, seed=61), gradient(width, height),
              solid(width, height, (12, 200, 99)), text_like(width, height, seed=62)]  # fmt: skip
    frame = frames[-1]
    for i in range(6):
        frame = frame.copy()
        x, y = (i * 53) % (width - 60), (i * 31) % (height - 45)
        frame[y : y + 45, x : x + 60] = noise(60, 45, seed=63 + i)
        if i % 2:
            frame[64:128, 128:256] = checkerboard(128, 64, 1 + i, ((250, 250, 240), (20, 30, 40)))
        else:
            frame[128:192, 0:64] = (30 * i, 255 - 30 * i, 77)
        frame[height - 1, width - 1] = (255, 255, 255) if i % 2 else (255, 0, 0)
        frames.append(frame)
    return frames


SIZES = pytest.mark.parametrize("size", [(320, 240), (333, 250)], ids=["320x240", "333x250"])


@SIZES
@pytest.mark.parametrize("encoding", [Encoding.HEXTILE, Encoding.ZRLE], ids=["hextile", "zrle"])
def test_novnc_hextile_zrle(
    served: LoopThread, page: Any, static_server: str, encoding: Encoding, size: tuple[int, int]
) -> None:
    width, height = size
    display = served.serve(width, height, port=0)
    frames = sequence(width, height)
    served.publish(display, frames[0])
    open_novnc(page, static_server, ws_url(display), [encoding, *PSEUDO])
    for frame in frames:
        served.publish(display, frame)
        wait_for_canvas(page, frame, GRAB)
    assert chosen_encoders(served, display) == [encoding]
    assert page.evaluate("window.rfbErrors") == []


# -- SetDesktopSize from noVNC -------------------------------------------------------------------------
def follow_viewport(page: Any) -> None:
    """Make noVNC's screen element fill the viewport and turn resizeSession on: noVNC asks for the
    viewport's size now and whenever its screen element changes size. Turned on only once the
    ResizeObserver has seen the new element size, so that this asks once."""
    page.evaluate("""async () => {
        document.getElementById('screen').style.cssText = 'width: 100vw; height: 100vh';
        await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
        window.rfb.resizeSession = true;
    }""")


def resize_events(served: LoopThread, display: rfb.Display) -> list[dict[str, Any]]:
    return [e.event for e in served.call(display.poll_events) if e.event["type"] == "resize"]


def display_size(served: LoopThread, display: rfb.Display) -> tuple[int, int]:
    return served.call(lambda: (display.width, display.height))


def test_novnc_set_desktop_size_accepted(
    served: LoopThread, page: Any, static_server: str, vncdump_exe: Path, tmp_path: Path, xvfb: Xvfb
) -> None:
    """noVNC asks for its viewport's size; the Display resizes, and the other clients attached at the
    same time (libvncclient and TigerVNC) follow and draw the next frame of the new size."""
    display = served.serve(320, 240, port=0, resize_policy="accept")
    first = noise(320, 240, seed=64)
    served.publish(display, first)
    other = VncDump(vncdump_exe, vnc_port(display), "hextile", 32, tmp_path)

    def everywhere(expected: np.ndarray) -> None:
        wait_for_canvas(page, expected, GRAB)
        other.wait_for(in_client_format(expected, 32))
        wait_until(lambda: find_subimage(xvfb.screenshot(), expected), timeout=20, interval=0.3)

    try:
        with tigervnc(xvfb, vnc_port(display), "-MenuKey=") as viewer:
            open_novnc(page, static_server, ws_url(display))
            everywhere(first)
            served.call(display.poll_events)
            for i, (width, height) in enumerate([(501, 333), (417, 299)]):
                page.set_viewport_size({"width": width, "height": height})
                if i == 0:
                    follow_viewport(page)  # then noVNC follows the viewport on its own
                events = wait_until(lambda: resize_events(served, display), timeout=10)
                assert events == [{"type": "resize", "width": width, "height": height, "accepted": True}]
                assert display_size(served, display) == (width, height)
                # Every client follows, showing the old content top-left on black...
                kept = np.zeros((height, width, 3), dtype=np.uint8)
                old = first[:height, :width]
                kept[: old.shape[0], : old.shape[1]] = old
                assert np.array_equal(served.call(lambda: display.frame.copy()), kept)
                everywhere(kept)
                # ... then draws the next frame of the new size.
                first = noise_and_gradient(width, height, seed=width)
                served.publish(display, first)
                everywhere(first)
            assert viewer.poll() is None
        assert display_size(served, display) == (417, 299)
        assert resize_events(served, display) == []  # noVNC asked once per viewport size
        assert other.proc.poll() is None
        assert page.evaluate("window.rfbState") == "connected"
    finally:
        other.close()


def test_novnc_set_desktop_size_rejected(served: LoopThread, page: Any, static_server: str) -> None:
    display = served.serve(320, 240, port=0)  # resize_policy="reject" by default
    first = noise(320, 240, seed=65)
    served.publish(display, first)
    open_novnc(page, static_server, ws_url(display))
    wait_for_canvas(page, first, GRAB)
    served.call(display.poll_events)
    page.set_viewport_size({"width": 500, "height": 300})
    follow_viewport(page)
    asked = {"type": "resize", "width": 500, "height": 300, "accepted": False}
    events = wait_until(lambda: resize_events(served, display), timeout=10)
    assert display_size(served, display) == (320, 240)
    second = noise(320, 240, seed=66)
    served.publish(display, second)
    wait_for_canvas(page, second, GRAB)  # same size, same canvas: noVNC took "prohibited" in its stride
    assert page.evaluate("window.rfbState") == "connected"
    # noVNC asks again only when its element changes size; whatever it asked, it was this.
    assert all(e == asked for e in events + resize_events(served, display))


# -- server-side resize, noVNC and TigerVNC at once ----------------------------------------------------
def test_server_resize_followed_by_novnc_and_tigervnc(
    served: LoopThread, page: Any, static_server: str, xvfb: Xvfb
) -> None:
    display = served.serve(320, 240, port=0)
    first = noise(320, 240, seed=67)
    served.publish(display, first)
    open_novnc(page, static_server, ws_url(display))
    with tigervnc(xvfb, vnc_port(display), "-MenuKey=") as viewer:
        wait_until(lambda: find_subimage(xvfb.screenshot(), first), timeout=20, interval=0.3)
        wait_for_canvas(page, first, GRAB)
        for width, height in [(481, 361), (250, 190), (640, 200)]:
            frame = noise_and_gradient(width, height, seed=width)
            served.publish(display, frame)
            wait_for_canvas(page, frame, GRAB)
            wait_until(lambda frame=frame: find_subimage(xvfb.screenshot(), frame), timeout=10, interval=0.3)
        assert viewer.poll() is None
    assert page.evaluate("window.rfbState") == "connected"


# -- a clipboard larger than the limit -----------------------------------------------------------------
def test_novnc_oversize_paste_is_dropped_not_fatal(
    served: LoopThread, page: Any, static_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """noVNC answers our clipboard Request with the whole text whatever size our Caps announced (the
    Caps limit only binds unsolicited transfers): a paste over ``max_cut_text`` (1 MiB) is dropped,
    and the viewer stays connected."""
    caplog.set_level(logging.WARNING, logger="pdum.rfb.session")
    display = served.serve(320, 240, port=0)
    first = noise(320, 240, seed=68)
    served.publish(display, first)
    open_novnc(page, static_server, ws_url(display))
    wait_for_canvas(page, first, GRAB)
    page.evaluate("window.rfb.clipboardPasteFrom('x'.repeat(1500000))")
    wait_until(lambda: "1500001-byte clipboard dropped" in caplog.text, timeout=10)
    page.evaluate("window.rfb.clipboardPasteFrom('small ✓')")
    received: list[dict[str, Any]] = []

    def clipboard_events() -> list[str]:
        received.extend(e.event for e in served.call(display.poll_events) if e.event["type"] == "clipboard")
        return [e["text"] for e in received]

    assert wait_until(clipboard_events, timeout=10) == ["small ✓"]
    second = noise(320, 240, seed=69)
    served.publish(display, second)
    wait_for_canvas(page, second, GRAB)
    assert page.evaluate("window.rfbState") == "connected"
    assert served.call(lambda: display.stats["protocol_errors"]) == 0
