"""libvncclient (the C client library behind many viewers): every encoding and pixel format we
offer, exact pixels, resize via DesktopSize, and two clients seeing the same frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdum.rfb.testing import gradient, noise, noise_and_gradient, solid, text_like

from ..support import LoopThread
from .clients import VncDump, in_client_format


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)], ids=["320x240", "1280x720"])
@pytest.mark.parametrize("bpp", [32, 16, 8])
@pytest.mark.parametrize("encoding", ["raw", "zlib"])
def test_pixel_exact(served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str, bpp: int,
                     size: tuple[int, int]) -> None:  # fmt: skip
    width, height = size
    display = served.serve(width, height)
    first = noise_and_gradient(width, height, seed=1)
    served.publish(display, first)
    client = VncDump(vncdump_exe, display.vnc_port, encoding, bpp, tmp_path)
    try:
        client.wait_for(in_client_format(first, bpp))
        # a partial change: only some tiles differ
        second = first.copy()
        second[height // 3 : height // 3 + 50, width // 4 : width // 4 + 90] = noise(90, 50, seed=7)
        served.publish(display, second)
        client.wait_for(in_client_format(second, bpp))
        third = gradient(width, height)
        served.publish(display, third)
        client.wait_for(in_client_format(third, bpp))
    finally:
        client.close()


def test_resize_with_desktop_size(served: LoopThread, vncdump_exe: Path, tmp_path: Path) -> None:
    display = served.serve(320, 240)
    served.publish(display, noise(320, 240, seed=2))
    client = VncDump(vncdump_exe, display.vnc_port, "zlib", 32, tmp_path)
    try:
        client.wait_for(in_client_format(noise(320, 240, seed=2), 32))
        bigger = noise_and_gradient(400, 300, seed=3)
        served.publish(display, bigger)
        client.wait_for(in_client_format(bigger, 32))
        smaller = noise(200, 150, seed=4)
        served.publish(display, smaller)
        client.wait_for(in_client_format(smaller, 32))
        assert (display.width, display.height) == (200, 150)
    finally:
        client.close()


def test_two_clients_see_the_same_frames(served: LoopThread, vncdump_exe: Path, tmp_path: Path) -> None:
    display = served.serve(320, 240)
    first = noise_and_gradient(320, 240, seed=5)
    served.publish(display, first)
    a = VncDump(vncdump_exe, display.vnc_port, "raw", 32, tmp_path)
    b = VncDump(vncdump_exe, display.vnc_port, "zlib", 16, tmp_path)
    try:
        a.wait_for(in_client_format(first, 32))
        b.wait_for(in_client_format(first, 16))
        assert display.client_count == 2
        second = np.ascontiguousarray(first[::-1])
        served.publish(display, second)
        a.wait_for(in_client_format(second, 32))
        b.wait_for(in_client_format(second, 16))
    finally:
        a.close()
        b.close()


def test_vnc_auth(served: LoopThread, vncdump_exe: Path, tmp_path: Path) -> None:
    display = served.serve(320, 240, password="s3cret")
    frame = noise(320, 240, seed=9)
    served.publish(display, frame)
    wrong = VncDump(vncdump_exe, display.vnc_port, "raw", 32, tmp_path, password="nope")
    try:
        assert wrong.proc.wait(10) != 0
        assert wrong.read() is None  # refused before any framebuffer byte
    finally:
        wrong.close()
    right = VncDump(vncdump_exe, display.vnc_port, "raw", 32, tmp_path, password="s3cret")
    try:
        right.wait_for(in_client_format(frame, 32))
    finally:
        right.close()


def _twenty_frames(width: int, height: int) -> list[np.ndarray]:
    """Noise, gradient, solid and text-like frames, then partial changes of each kind."""
    rng = np.random.default_rng(20)
    frames = [noise(width, height, seed=20), gradient(width, height), solid(width, height, (40, 90, 200))]
    frames.append(text_like(width, height, seed=21))
    patches = [
        lambda w, h, i: noise(w, h, seed=100 + i),
        lambda w, h, i: gradient(w, h),
        lambda w, h, i: solid(w, h, (i * 13 % 256, 200, 7)),
        lambda w, h, i: text_like(w, h, seed=i),
    ]
    while len(frames) < 20:
        frame = frames[-1].copy()
        i = len(frames)
        w, h = int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        frame[y : y + h, x : x + w] = patches[i % 4](w, h, i)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("bpp", [32, 16, 8])
@pytest.mark.parametrize("encoding", ["raw", "zlib"])
def test_twenty_frames_with_partial_changes(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str, bpp: int
) -> None:
    display = served.serve(333, 250)  # odd size: partial edge tiles
    frames = _twenty_frames(333, 250)
    served.publish(display, frames[0])
    client = VncDump(vncdump_exe, display.vnc_port, encoding, bpp, tmp_path)
    try:
        for frame in frames:
            served.publish(display, frame)
            client.wait_for(in_client_format(frame, bpp))
    finally:
        client.close()
