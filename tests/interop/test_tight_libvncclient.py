"""libvncclient decoding our Tight encoding: every method, 32/16/8 bpp, pixel-exact while lossless,
and JPEG quality when the client enables it (vncdump's optional QUALITY argument)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb import congestion
from pdum.rfb.testing import checkerboard, counter, gradient, noise, noise_and_gradient, solid, text_like

from ..support import LoopThread, wait_until
from ..unit.test_tight import photo_like, psnr
from .clients import VncDump, in_client_format

WIDTH, HEIGHT = 320, 240


class VncDumpWithQuality(VncDump):
    """vncdump with JPEG enabled at ``quality`` (0-9): libvncclient then sends a quality level."""

    def __init__(self, exe: Path, port: int, encodings: str, bpp: int, workdir: Path, quality: int) -> None:
        # Not super().__init__: that would start a client without the QUALITY argument.
        self.out = Path(tempfile.mktemp(prefix="vncdump-", suffix=".bin", dir=workdir))
        self.bpp = bpp
        args = [str(exe), "127.0.0.1", str(port), encodings, str(bpp), str(self.out), "", str(quality)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def port(display: rfb.Display) -> int:
    assert display.vnc_port is not None
    return display.vnc_port


def partial_changes(base: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` frames, each changing one region of the last, so that consecutive updates use
    every Tight method over the same zlib streams. Solid and two-colour patches cover whole 64x64
    damage tiles, so their rects really are one or two colours (fill, 1-bit palette); the others
    land anywhere and mix with what is around them."""
    rng = np.random.default_rng(seed)
    frames, frame = [], base.copy()
    for i in range(count):
        frame = frame.copy()
        kind = i % 6
        if kind in (1, 2, 4):  # tile-aligned
            x, y = 64 * int(rng.integers(0, WIDTH // 64)), 64 * int(rng.integers(0, HEIGHT // 64))
            w, h = min(64 * int(rng.integers(1, 3)), WIDTH - x), min(64 * int(rng.integers(1, 3)), HEIGHT - y)
        else:
            w, h = int(rng.integers(8, 140)), int(rng.integers(8, 110))
            x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        if kind == 0:
            patch = noise(w, h, seed=i)
        elif kind == 1:
            r, g, b = (int(v) for v in rng.integers(0, 256, 3))
            patch = solid(w, h, (r, g, b))
        elif kind == 2:
            patch = checkerboard(w, h, int(rng.integers(1, 9)), ((250, 250, 240), (20, 30, 40)))
        elif kind == 3:
            patch = text_like(max(w, 24), max(h, 24), seed=i)[:h, :w]
        elif kind == 4:
            patch = gradient(w, h)
        else:
            patch = counter(w, h, n=i, scale=2)
        frame[y : y + h, x : x + w] = patch
        frames.append(frame)
    return frames


@pytest.mark.parametrize("gradient_filter", [False, True], ids=["default", "gradient"])
@pytest.mark.parametrize("bpp", [32, 16, 8])
def test_tight_pixel_exact(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, bpp: int, gradient_filter: bool
) -> None:
    display = served.serve(WIDTH, HEIGHT, tight_gradient=gradient_filter)
    first = noise_and_gradient(WIDTH, HEIGHT, seed=1)
    served.publish(display, first)
    client = VncDump(vncdump_exe, port(display), "tight", bpp, tmp_path)
    try:
        client.wait_for(in_client_format(first, bpp))
        full = [
            noise(WIDTH, HEIGHT, seed=2),
            gradient(WIDTH, HEIGHT),
            solid(WIDTH, HEIGHT, (12, 200, 99)),
            text_like(WIDTH, HEIGHT, seed=3),
            photo_like(WIDTH, HEIGHT, seed=4),
        ]
        for frame in full + partial_changes(full[3], 20, seed=bpp):
            served.publish(display, frame)
            client.wait_for(in_client_format(frame, bpp))
    finally:
        client.close()


def test_tight_wider_than_2048(served: LoopThread, vncdump_exe: Path, tmp_path: Path) -> None:
    """The session cuts rects to Tight's 2048-pixel width; libvncclient reassembles them."""
    frame = np.concatenate([noise_and_gradient(1300, 96, seed=5), text_like(1000, 96, seed=6)], axis=1)
    display = served.serve(2300, 96)
    served.publish(display, frame)
    client = VncDump(vncdump_exe, port(display), "tight", 32, tmp_path)
    try:
        client.wait_for(in_client_format(frame, 32))
    finally:
        client.close()


@pytest.mark.parametrize("bpp", [32, 16])
def test_tight_jpeg_quality_8(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, bpp: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keep the JPEG pixels on screen to measure them (no lossless refresh while still).
    monkeypatch.setattr(congestion, "REFRESH_DELAY", 3600.0)
    display = served.serve(WIDTH, HEIGHT, lossy=True)
    photo = photo_like(WIDTH, HEIGHT, seed=7)
    served.publish(display, photo)
    client = VncDumpWithQuality(vncdump_exe, port(display), "tight", bpp, tmp_path, quality=8)
    try:
        expected = in_client_format(photo, bpp)
        first = wait_until(client.read)  # one update: the photo (two rects, > 65536 pixels)
        assert first is not None
        pixels = first[1]
        assert not np.array_equal(pixels, expected)  # lossy, so JPEG really was used
        if bpp == 32:
            score = psnr(pixels[..., :3], photo)
        else:  # compare in the client's 5/6/5-bit space, rescaled to 8 bits
            score = psnr(rgb565_to_rgb(pixels), rgb565_to_rgb(expected))
        assert score >= 35.0, f"PSNR {score:.1f} dB"
        # Few-colour content stays lossless even with JPEG enabled.
        text = text_like(WIDTH, HEIGHT, seed=8)
        served.publish(display, text)
        client.wait_for(in_client_format(text, bpp))
    finally:
        client.close()


@pytest.mark.parametrize("bpp", [32, 16])
def test_tight_jpeg_is_refreshed_losslessly_once_still(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, bpp: int
) -> None:
    """libvncclient (no Fence: its requests pace it) first gets the photo as JPEG, then, once the
    frame has not changed for congestion.REFRESH_DELAY, the exact pixels."""
    display = served.serve(WIDTH, HEIGHT, lossy=True)
    photo = photo_like(WIDTH, HEIGHT, seed=11)
    served.publish(display, photo)
    client = VncDumpWithQuality(vncdump_exe, port(display), "tight", bpp, tmp_path, quality=5)
    try:
        client.wait_for(in_client_format(photo, bpp))
        updates = client.read()
        assert updates is not None and updates[0] >= 2  # the lossy update came first
    finally:
        client.close()


def rgb565_to_rgb(pixels: np.ndarray) -> np.ndarray:
    value = pixels.view("<u2")[..., 0].astype(np.uint32)
    r, g, b = (value >> 11) & 31, (value >> 5) & 63, value & 31
    return np.stack([r * 255 // 31, g * 255 // 63, b * 255 // 31], axis=-1).astype(np.uint8)


def test_tight_stays_lossless_unless_the_display_allows_lossy(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path
) -> None:
    display = served.serve(WIDTH, HEIGHT)  # lossy=False: the client's quality level is ignored
    photo = photo_like(WIDTH, HEIGHT, seed=9)
    served.publish(display, photo)
    client = VncDumpWithQuality(vncdump_exe, port(display), "tight", 32, tmp_path, quality=8)
    try:
        client.wait_for(in_client_format(photo, 32))
    finally:
        client.close()
