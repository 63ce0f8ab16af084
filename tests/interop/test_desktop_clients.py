"""Real desktop clients draw our frames pixel-exact: TigerVNC (under Xvfb), gtk-vnc's
gvnccapture, vncsnapshot (RFB 3.3, JPEG output), vncdotool and asyncvnc."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncvnc
import numpy as np
import pytest

from pdum.rfb.testing import noise, noise_and_gradient

from ..support import LoopThread, free_display_port, run_async
from .clients import Xvfb, load_rgb, require, tigervnc, wait_for_image_on_screen

SIZES = pytest.mark.parametrize("size", [(320, 240), (1280, 720)], ids=["320x240", "1280x720"])


@SIZES
def test_tigervnc(served: LoopThread, xvfb: Xvfb, size: tuple[int, int]) -> None:
    width, height = size
    display = served.serve(width, height)
    first = noise_and_gradient(width, height, seed=11)
    served.publish(display, first)
    with tigervnc(xvfb, display.vnc_port) as viewer:
        wait_for_image_on_screen(xvfb, first)
        second = np.ascontiguousarray(first[:, ::-1])
        served.publish(display, second)
        wait_for_image_on_screen(xvfb, second, timeout=10)
        assert viewer.poll() is None


def test_tigervnc_follows_server_resize(served: LoopThread, xvfb: Xvfb) -> None:
    display = served.serve(320, 240)
    served.publish(display, noise(320, 240, seed=12))
    with tigervnc(xvfb, display.vnc_port):
        wait_for_image_on_screen(xvfb, noise(320, 240, seed=12))
        bigger = noise_and_gradient(480, 360, seed=13)
        served.publish(display, bigger)
        wait_for_image_on_screen(xvfb, bigger, timeout=10)


@SIZES
def test_gvnccapture(served: LoopThread, tmp_path: Path, size: tuple[int, int]) -> None:
    require("gvnccapture")
    width, height = size
    display = served.serve(width, height, vnc_port=free_display_port())
    frame = noise_and_gradient(width, height, seed=21)
    served.publish(display, frame)
    out = tmp_path / "gvnc.png"
    subprocess.run(["gvnccapture", f"127.0.0.1:{display.vnc_port - 5900}", str(out)],
                   check=True, timeout=60, capture_output=True)  # fmt: skip
    assert np.array_equal(load_rgb(out), frame)


@SIZES
def test_vncsnapshot_rfb33(served: LoopThread, tmp_path: Path, size: tuple[int, int]) -> None:
    require("vncsnapshot")
    width, height = size
    display = served.serve(width, height, vnc_port=free_display_port())
    frame = noise_and_gradient(width, height, seed=31)
    served.publish(display, frame)
    out = tmp_path / "snap.jpg"
    subprocess.run(
        ["vncsnapshot", "-quiet", "-quality", "100", "-encodings", "raw zlib",
         f"127.0.0.1:{display.vnc_port - 5900}", str(out)],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    got = load_rgb(out).astype(int)
    assert got.shape == frame.shape
    # vncsnapshot only writes JPEG; at quality 100 a pixel-exact framebuffer comes back within +-2.
    assert np.abs(got - frame).max() <= 2
    assert np.abs(got - frame).mean() < 0.5


@SIZES
def test_vncdotool_capture(served: LoopThread, tmp_path: Path, size: tuple[int, int]) -> None:
    require("vncdo")
    width, height = size
    display = served.serve(width, height)
    frame = noise_and_gradient(width, height, seed=41)
    served.publish(display, frame)
    out = tmp_path / "vncdo.png"
    subprocess.run(["vncdo", "-s", f"127.0.0.1::{display.vnc_port}", "capture", str(out)],
                   check=True, timeout=60, capture_output=True)  # fmt: skip
    assert np.array_equal(load_rgb(out), frame)


@SIZES
def test_asyncvnc_zlib(served: LoopThread, size: tuple[int, int]) -> None:
    width, height = size
    display = served.serve(width, height)
    first = noise_and_gradient(width, height, seed=51)
    served.publish(display, first)
    second = noise(width, height, seed=52)

    async def capture_two() -> tuple[np.ndarray, np.ndarray]:
        async with asyncvnc.connect("127.0.0.1", display.vnc_port) as client:
            a = (await client.screenshot())[..., :3].copy()
            served.loop.call_soon_threadsafe(display.publish, second)
            for _ in range(50):
                b = (await client.screenshot())[..., :3].copy()
                if np.array_equal(b, second):
                    break
                await asyncio.sleep(0.05)
            return a, b

    a, b = run_async(capture_two())
    assert np.array_equal(a, first)
    assert np.array_equal(b, second)
    session = next(iter(display.server.sessions.values()), None)
    assert session is None or 6 in session.encodings  # asyncvnc asks for zlib only


def test_vncdotool_events(served: LoopThread) -> None:
    require("vncdo")
    display = served.serve(320, 240)
    served.publish(display, noise(320, 240))
    subprocess.run(
        ["vncdo", "-s", f"127.0.0.1::{display.vnc_port}", "key", "a", "key", "shift-b", "key", "enter",
         "move", "100", "50", "click", "1", "move", "30", "40", "click", "3"],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    events = [e.event for e in served.call(display.poll_events)]
    keys = [(e["type"], e["key"]) for e in events if e["type"].startswith("key")]
    assert ("key_down", "a") in keys and ("key_up", "a") in keys
    assert ("key_down", "Shift") in keys and ("key_down", "b") in keys
    assert ("key_down", "Enter") in keys
    shifted = [e for e in events if e["type"] == "key_down" and e["key"] == "b"]
    assert shifted[0]["modifiers"] == ["Shift"]
    assert shifted[0]["code"] == "KeyB"
    moves = [(e["x"], e["y"]) for e in events if e["type"] == "pointer_move"]
    assert (100, 50) in moves and (30, 40) in moves
    downs = [(e["button"], e["x"], e["y"]) for e in events if e["type"] == "pointer_down"]
    ups = [(e["button"], e["x"], e["y"]) for e in events if e["type"] == "pointer_up"]
    assert downs == [(0, 100, 50), (2, 30, 40)]  # vncdo button 1 = left, 3 = right
    assert ups == [(0, 100, 50), (2, 30, 40)]
    left_down = next(e for e in events if e["type"] == "pointer_down")
    assert left_down["buttons"] == 1
