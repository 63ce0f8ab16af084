"""Client-side cursors (Cursor pseudo-encoding -239).

A client that announces the Cursor pseudo-encoding draws the pointer itself, without a round trip,
from a shape the server sends: pixels in the client's pixel format followed by a 1-bit mask (rows
padded to whole bytes, most significant bit first). Our framebuffer has no pointer of its own, so
every such client gets a visible default arrow until :meth:`Display.set_cursor` replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protocol import messages as m
from .protocol.pixelformat import PixelFormat

_ARROW = [
    "X...........",
    "XX..........",
    "XOX.........",
    "XOOX........",
    "XOOOX.......",
    "XOOOOX......",
    "XOOOOOX.....",
    "XOOOOOOX....",
    "XOOOOOOOX...",
    "XOOOOOOOOX..",
    "XOOOOOOOOOX.",
    "XOOOOOXXXXXX",
    "XOOXOOX.....",
    "XOX.XOOX....",
    "XX..XOOX....",
    "X....XOOX...",
    ".....XOOX...",
    "......XX....",
]


def default_cursor() -> tuple[np.ndarray, tuple[int, int]]:
    """A white arrow with a black outline (RGBA) and its hotspot."""
    h, w = len(_ARROW), len(_ARROW[0])
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    for y, row in enumerate(_ARROW):
        for x, ch in enumerate(row):
            if ch == "X":
                rgba[y, x] = (0, 0, 0, 255)
            elif ch == "O":
                rgba[y, x] = (255, 255, 255, 255)
    return rgba, (0, 0)


@dataclass(frozen=True)
class CursorShape:
    rgba: np.ndarray
    hotspot: tuple[int, int]

    @classmethod
    def from_user(cls, rgba: np.ndarray, hotspot: tuple[int, int]) -> CursorShape:
        if not isinstance(rgba, np.ndarray) or rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError("cursor must be an HxWx4 uint8 RGBA array")
        h, w = rgba.shape[:2]
        if not (1 <= w <= 256 and 1 <= h <= 256):
            raise ValueError("cursor must be between 1x1 and 256x256 pixels")
        hx, hy = hotspot
        if not (0 <= hx < w and 0 <= hy < h):
            raise ValueError(f"hotspot {hotspot} lies outside the {w}x{h} cursor")
        return cls(np.array(rgba, copy=True), (int(hx), int(hy)))

    def rect(self, pixel_format: PixelFormat) -> bytes:
        """The whole Cursor pseudo-rectangle (header included) for a client's pixel format."""
        h, w = self.rgba.shape[:2]
        pixels = pixel_format.encode_bytes(np.ascontiguousarray(self.rgba[..., :3]))
        visible = self.rgba[..., 3] >= 128
        mask = np.packbits(visible, axis=1, bitorder="big").tobytes()
        hx, hy = self.hotspot
        return m.rect_header(hx, hy, w, h, m.Encoding.CURSOR) + pixels + mask
