"""A minimal PNG writer for TightPNG and ``Display.snapshot()`` (zlib + struct, no imaging library).

TightPNG rectangles carry whole PNG files. Pillow is not a dependency of the package, and we
only ever need two kinds of image, so this writes them directly:

- truecolour RGB (colour type 2), each row filtered with whichever of the five PNG filters gives
  the smallest sum of absolute differences (libpng's heuristic), computed for all rows at once;
- indexed colour (colour type 3) with a PLTE chunk, at 1, 2, 4 or 8 bits per index, unfiltered
  (filters rarely help palette images, PNG's own guidance).

PNG filters predict from the *original* neighbouring bytes, so, unlike decoding, filtering has no
row-to-row dependency and vectorises over the whole image.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_RGB = 2
_COLOUR_INDEXED = 3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes, level: int,
         plte: bytes = b"") -> bytes:  # fmt: skip
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    parts = [_SIGNATURE, _chunk(b"IHDR", ihdr)]
    if plte:
        parts.append(_chunk(b"PLTE", plte))
    parts.append(_chunk(b"IDAT", zlib.compress(rows, level)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _filter_rows(rgb: np.ndarray) -> np.ndarray:
    """Return ``H x (1 + 3W)`` uint8 scanlines, each with its best filter type byte in front."""
    h, w = rgb.shape[:2]
    x = rgb.reshape(h, w * 3).astype(np.int16)
    pad = np.zeros((h + 1, w * 3 + 3), dtype=np.int16)  # one zero row above, one zero pixel left
    pad[1:, 3:] = x
    a = pad[1:, :-3]  # left
    b = pad[:-1, 3:]  # up
    c = pad[:-1, :-3]  # up-left
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]).astype(np.uint8)
    # Score each row by the sum of |filtered byte| read as signed: small residuals compress well.
    scores = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
    best = scores.argmin(axis=0)
    out = np.empty((h, w * 3 + 1), dtype=np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(h)]
    return out


def encode_rgb(rgb: np.ndarray, level: int) -> bytes:
    """A truecolour PNG of an ``HxWx3`` uint8 array, deflated at zlib ``level`` (0-9)."""
    h, w = rgb.shape[:2]
    if level == 0:  # stored: filtering cannot help, skip its cost
        rows = np.zeros((h, w * 3 + 1), dtype=np.uint8)
        rows[:, 1:] = rgb.reshape(h, w * 3)
    else:
        rows = _filter_rows(rgb)
    return _png(w, h, 8, _COLOUR_RGB, rows.tobytes(), level)


def encode_indexed(indices: np.ndarray, palette: np.ndarray, level: int) -> bytes:
    """An indexed-colour PNG: ``indices`` is ``HxW`` uint8 into ``palette`` (``Nx3`` uint8, N<=256)."""
    h, w = indices.shape
    n = len(palette)
    depth = 1 if n <= 2 else 2 if n <= 4 else 4 if n <= 16 else 8
    per_byte = 8 // depth
    row_bytes = -(-w // per_byte)
    if per_byte > 1:
        # Pack `per_byte` indices into each byte, leftmost pixel in the most significant bits.
        padded = np.zeros((h, row_bytes * per_byte), dtype=np.uint8)
        padded[:, :w] = indices
        groups = padded.reshape(h, row_bytes, per_byte)
        shifts = (8 - depth * (np.arange(per_byte) + 1)).astype(np.uint8)
        packed = np.bitwise_or.reduce(groups << shifts, axis=2).astype(np.uint8)
    else:
        packed = indices
    rows = np.zeros((h, row_bytes + 1), dtype=np.uint8)  # filter type 0 (None) on every row
    rows[:, 1:] = packed
    plte = np.ascontiguousarray(palette, dtype=np.uint8).tobytes()
    return _png(w, h, depth, _COLOUR_INDEXED, rows.tobytes(), level, plte)
