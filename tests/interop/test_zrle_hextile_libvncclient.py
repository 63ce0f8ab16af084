"""libvncclient decodes our ZRLE and Hextile pixel-exact at 32, 16 and 8 bpp: whole frames of every
kind, then a run of partial updates that share one ZRLE stream.

The display is 333x250, not a multiple of 16 or 64, so edge tiles are partial in both encodings.

One libvncclient quirk: for 3-byte ZRLE CPIXELs its decoder reads a 4-byte word per CPIXEL, so the
padding byte of each 32 bpp pixel in its framebuffer holds whatever byte followed in the stream.
That byte is not part of the colour (depth 24), so ZRLE at 32 bpp is compared on colour bytes only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import gradient, noise, solid, text_like

from ..support import LoopThread, wait_until
from .clients import VncDump, in_client_format

WIDTH, HEIGHT = 333, 250


def colour_bytes(pixels: np.ndarray, encoding: str, bpp: int) -> np.ndarray:
    return pixels[..., :3] if encoding == "zrle" and bpp == 32 else pixels


def wait_for(client: VncDump, frame: np.ndarray, encoding: str, bpp: int, timeout: float = 15.0) -> None:
    """Like :meth:`VncDump.wait_for`, minus the padding byte libvncclient garbles (see above)."""
    expected = colour_bytes(in_client_format(frame, bpp), encoding, bpp)

    def matches() -> bool:
        got = client.read()
        return (
            got is not None
            and got[1].shape[:2] == expected.shape[:2]
            and np.array_equal(colour_bytes(got[1], encoding, bpp), expected)
        )

    try:
        wait_until(matches, timeout=timeout)
    except AssertionError:
        got = client.read()
        detail = "no update" if got is None else f"shape {got[1].shape}, updates {got[0]}"
        if got is not None and got[1].shape[:2] == expected.shape[:2]:
            differ = np.any(colour_bytes(got[1], encoding, bpp) != expected, axis=2)
            detail += f", {int(differ.sum())} pixels differ"
        raise AssertionError(f"libvncclient ({encoding}, {bpp} bpp) never matched ({detail})") from None


def assert_encoder_used(served: LoopThread, display: rfb.Display, encoding: str) -> None:
    """The session really chose our encoder (a missing one would silently fall back to Raw)."""
    wanted = {"zrle": Encoding.ZRLE, "hextile": Encoding.HEXTILE}[encoding]
    chosen = served.call(lambda: [s._choose_encoder().encoding for s in display.server.sessions.values()])
    assert chosen == [wanted]


def partial_frames(count: int) -> list[np.ndarray]:
    """Text with a noise box moving over it, a line of text rewritten and a flag toggling each frame:
    only a few 64x64 damage tiles change per frame, at different places."""
    frame = text_like(WIDTH, HEIGHT, seed=1)
    frames = []
    for i in range(count):
        frame = frame.copy()
        x, y = (i * 37) % (WIDTH - 48), (i * 23) % (HEIGHT - 40)
        frame[y : y + 40, x : x + 48] = noise(48, 40, seed=100 + i)
        row = 14 * (i % (HEIGHT // 14))
        frame[row : row + 14, :] = text_like(WIDTH, 14 + 10, seed=200 + i)[5:19]
        frame[HEIGHT - 20 :, WIDTH - 30 :] = (255, 0, 0) if i % 2 else (0, 0, 255)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("bpp", [32, 16, 8])
@pytest.mark.parametrize("encoding", ["zrle", "hextile"])
def test_frames_pixel_exact(served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str,
                            bpp: int) -> None:  # fmt: skip
    display = served.serve(WIDTH, HEIGHT)
    frames = [noise(WIDTH, HEIGHT, seed=5), gradient(WIDTH, HEIGHT), solid(WIDTH, HEIGHT, (40, 90, 200)),
              text_like(WIDTH, HEIGHT, seed=6)]  # fmt: skip
    served.publish(display, frames[0])
    client = VncDump(vncdump_exe, display.vnc_port, encoding, bpp, tmp_path)
    try:
        for frame in frames:
            served.publish(display, frame)
            wait_for(client, frame, encoding, bpp)
        assert client.proc.poll() is None, "client exited (decoding error?)"
        assert_encoder_used(served, display, encoding)
    finally:
        client.close()


@pytest.mark.parametrize("bpp", [32, 16, 8])
@pytest.mark.parametrize("encoding", ["zrle", "hextile"])
def test_partial_updates(served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str,
                         bpp: int) -> None:  # fmt: skip
    display = served.serve(WIDTH, HEIGHT)
    frames = partial_frames(20)
    served.publish(display, frames[0])
    client = VncDump(vncdump_exe, display.vnc_port, encoding, bpp, tmp_path)
    try:
        wait_for(client, frames[0], encoding, bpp)
        for frame in frames[1:]:
            served.publish(display, frame)
            wait_for(client, frame, encoding, bpp)
        assert client.proc.poll() is None, "client exited (decoding error?)"
        assert_encoder_used(served, display, encoding)
    finally:
        client.close()
