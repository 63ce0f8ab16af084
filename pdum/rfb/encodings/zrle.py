"""ZRLE encoding (16): 64x64 tiles, each raw, solid, packed-palette or run-length encoded, all
through one zlib stream per client.

Why this shape:

* The client keeps a single inflater for the whole connection, so the compressor lives in
  ``ctx.streams`` and every rectangle ends with ``Z_SYNC_FLUSH`` (the client must be able to decode
  the rectangle without waiting for more data).
* The per-tile choice is made on the *uncompressed* size of each sub-encoding, which NumPy can
  compute for every tile at once from three cheap statistics: the number of colours, the number of
  runs and how many of those runs have length one. Running zlib once per candidate would be exact
  but several times slower; TigerVNC chooses the same way.
* All per-pixel work (colour counting, run detection, palette lookup, bit packing, run-length
  bytes) is vectorised; Python only loops over tiles.
* Colours are counted by sorting ``tile << 32 | pixel`` keys rather than with ``np.unique``: same
  result (sorted distinct values per tile), but the SIMD sort is an order of magnitude faster on
  NumPy 2 for frames with many colours.

CPIXEL: when the client uses 32 bits per pixel, depth <= 24 and every colour bit lives in the three
least (or, failing that, the three most) significant bytes of the pixel value, a pixel travels as
just those three bytes, in the client's byte order (rfbproto "ZRLE Encoding"). Note that
libvncclient and TigerVNC ignore the depth test; we follow the specification.
"""

from __future__ import annotations

import struct
import zlib
from typing import ClassVar

import numpy as np

from ..protocol.messages import Encoding
from ..protocol.pixelformat import PixelFormat
from .base import EncodeContext, scratch

_STREAM = "zrle"
TILE = 64

# Sub-encoding type bytes.
RAW = 0
SOLID = 1
PLAIN_RLE = 128
PALETTE_RLE = 128  # + palette size (2..127)
MAX_PACKED_PALETTE = 16
MAX_RLE_PALETTE = 127

# Indices of the candidates in the per-tile cost table (ties go to the lower index).
_C_SOLID, _C_PACKED, _C_PALETTE_RLE, _C_PLAIN_RLE, _C_RAW = range(5)


def cpixel_layout(pixel_format: PixelFormat) -> tuple[int, int]:
    """``(bytes per CPIXEL, offset of those bytes within the client's pixel bytes)``.

    The spec prefers the three least significant bytes when both choices would hold every
    colour bit. The least significant bytes come first on the wire for a little-endian client
    and last for a big-endian one, hence the offsets.
    """
    bpp = pixel_format.bytes_per_pixel
    if pixel_format.bits_per_pixel == 32 and pixel_format.true_colour and pixel_format.depth <= 24:
        used = (
            (pixel_format.red_max << pixel_format.red_shift)
            | (pixel_format.green_max << pixel_format.green_shift)
            | (pixel_format.blue_max << pixel_format.blue_shift)
        )
        if used < 1 << 24:
            return 3, (1 if pixel_format.big_endian else 0)
        if used & 0xFF == 0:
            return 3, (0 if pixel_format.big_endian else 1)
    return bpp, 0


def _wire_dtype(pixel_format: PixelFormat) -> np.dtype:
    order = ">" if pixel_format.big_endian else "<"
    return np.dtype({8: "u1", 16: f"{order}u2", 32: f"{order}u4"}[pixel_format.bits_per_pixel])


def _tile_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten ``values`` (HxW) tile by tile, each tile row by row, as the ZRLE stream lists them.

    Returns the flat pixels and, per tile, its width and height. Copies whole bands of full-width
    tiles with one reshape each, so this costs a few array copies rather than a loop per tile.
    """
    h, w = values.shape
    full_x = (w // TILE) * TILE
    parts: list[np.ndarray] = []
    widths: list[int] = []
    heights: list[int] = []
    for y0 in range(0, h, TILE):
        band = values[y0 : y0 + TILE]
        bh = band.shape[0]
        if full_x:
            n = full_x // TILE
            parts.append(band[:, :full_x].reshape(bh, n, TILE).transpose(1, 0, 2).reshape(-1))
            widths.extend([TILE] * n)
            heights.extend([bh] * n)
        if full_x < w:
            parts.append(band[:, full_x:].reshape(-1))
            widths.append(w - full_x)
            heights.append(bh)
    flat = scratch("zrle.flat", (h * w,), values.dtype)  # keeps a big-endian order, reused
    return (
        np.concatenate(parts, out=flat),
        np.array(widths, dtype=np.int64),
        np.array(heights, dtype=np.int64),
    )


def _run_bytes(
    heads: np.ndarray, lengths: np.ndarray, has_length: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Serialise runs: each run's head bytes, then (for every run, or where ``has_length``) its
    length as ``(L-1) // 255`` bytes of 255 and a final ``(L-1) % 255``.

    Returns the bytes and the offset where each run starts (plus the total at the end), so the
    runs of many tiles are built in one pass and sliced per tile. The buffer starts filled with
    255, so only the head bytes and the final length byte of each run need writing. Runs over
    255 pixels are rare, so the division is only done for them.
    """
    k = heads.shape[1]
    last = lengths - 1
    extra = np.zeros(len(lengths), dtype=np.int64)
    long_runs = np.flatnonzero(last >= 255)
    if len(long_runs):
        extra[long_runs], last[long_runs] = np.divmod(last[long_runs], 255)
    length_bytes = extra + 1
    if has_length is not None:
        length_bytes *= has_length
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(length_bytes + k, out=starts[1:])
    out = np.full(int(starts[-1]), 255, dtype=np.uint8)
    for j in range(k):  # k <= 4 scatters; cheaper than one (runs x k) fancy index
        out[starts[:-1] + j] = heads[:, j]
    if has_length is None:
        out[starts[:-1] + k + extra] = last
    else:
        which = np.flatnonzero(has_length)
        out[starts[which] + k + extra[which]] = last[which]
    return out, starts


def _pack_indices(indices: np.ndarray, w: int, h: int, bits: int) -> bytes:
    """Pack palette indices ``bits`` wide, leftmost pixel in the most significant bits, each
    row padded to a whole byte."""
    per_byte = 8 // bits
    row_bytes = -(-w // per_byte)
    grid = np.zeros((h, row_bytes * per_byte), dtype=np.uint8)
    grid[:, :w] = indices.reshape(h, w)
    shifts = (bits * np.arange(per_byte - 1, -1, -1)).astype(np.uint8)
    packed = np.bitwise_or.reduce(grid.reshape(h, row_bytes, per_byte) << shifts, axis=2)
    return packed.astype(np.uint8).tobytes()


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class ZRLEEncoder:
    """ZRLE: no size limits (tiles are cut here); the client's zlib stream is ``ctx.streams["zrle"]``."""

    max_width: ClassVar[int | None] = None
    max_area: ClassVar[int | None] = None
    encoding: ClassVar[int] = Encoding.ZRLE

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        compressor = ctx.streams.get(_STREAM)
        if compressor is None:
            # The level is fixed when the stream starts: the client cannot restart its inflater.
            compressor = ctx.new_compressor(ctx.compress_level)
            ctx.streams[_STREAM] = compressor
        raw = encode_tiles(rgb, pixel_format)
        data = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", len(data)) + data


def encode_tiles(rgb: np.ndarray, pixel_format: PixelFormat) -> bytes:
    """The uncompressed ZRLE tile data for one rectangle (what the client gets after inflating)."""
    cp, cp_off = cpixel_layout(pixel_format)
    bpp = pixel_format.bytes_per_pixel
    dtype = _wire_dtype(pixel_format)
    height, width = rgb.shape[:2]
    # Pixel values in the client's byte order: comparisons only need equality, and the CPIXEL
    # bytes are then a plain view. (``encode`` has a fast path for byte-aligned 32 bpp formats.)
    wire = pixel_format.encode(rgb, reuse="zrle.wire").view(dtype).reshape(height, width)

    def cpixels(values: np.ndarray) -> np.ndarray:
        """Values (in ``dtype``) -> ``(n, cp)`` uint8 CPIXEL bytes."""
        raw = values.view(np.uint8).reshape(-1, bpp)
        return raw if cp == bpp else raw[:, cp_off : cp_off + cp]

    flat, widths, heights = _tile_order(wire)
    n_tiles = len(widths)
    areas = widths * heights
    offsets = _exclusive_cumsum(areas)
    total = int(offsets[-1])
    tile_ids = np.arange(n_tiles, dtype=np.int64)

    def tiles_of(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the pixels of the ``chosen`` tiles, their tile ids in stream order): per-pixel
        arrays only as large as needed, and a bool mask instead of a frame of int64 tile ids."""
        return np.repeat(chosen, areas), np.repeat(tile_ids[chosen], areas[chosen])

    # Runs (in stream order, never crossing a tile boundary).
    breaks = np.empty(total, dtype=bool)
    breaks[0] = True
    np.not_equal(flat[1:], flat[:-1], out=breaks[1:])
    breaks[offsets[:-1]] = True
    run_start = np.flatnonzero(breaks)
    run_len = np.diff(np.append(run_start, total))
    run_tile = np.searchsorted(offsets, run_start, side="right") - 1
    n_runs = np.bincount(run_tile, minlength=n_tiles)
    n_single = np.bincount(run_tile[run_len == 1], minlength=n_tiles)
    long_runs = run_len > 255
    extra_len = np.bincount(run_tile[long_runs], weights=(run_len[long_runs] - 1) // 255, minlength=n_tiles)
    extra_len = extra_len.astype(np.int64)

    # Colours per tile: distinct ``tile << 32 | value`` keys, sorted. A one-run tile has one colour,
    # so only pixels of tiles with several runs need sorting.
    multi = n_runs > 1
    if multi.all():
        pick: np.ndarray | slice = slice(None)
        pick_tiles = np.repeat(tile_ids, areas)
    else:
        pick, pick_tiles = tiles_of(multi)
    keys = (pick_tiles.astype(np.uint64) << np.uint64(32)) | flat[pick].astype(np.uint64)
    ordered = np.sort(keys)
    distinct = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=distinct[1:])
    uniq = ordered[distinct]
    n_colours = np.where(multi, np.bincount((uniq >> np.uint64(32)).astype(np.int64), minlength=n_tiles), 1)
    colour_first = _exclusive_cumsum(np.where(multi, n_colours, 0))

    # Uncompressed size of each candidate sub-encoding, per tile (without the type byte).
    big = np.iinfo(np.int64).max // 4
    bits = np.where(n_colours <= 2, 1, np.where(n_colours <= 4, 2, 4))
    cost = np.full((5, n_tiles), big, dtype=np.int64)
    cost[_C_SOLID] = np.where(n_colours == 1, cp, big)
    cost[_C_PACKED] = np.where(
        (n_colours >= 2) & (n_colours <= MAX_PACKED_PALETTE),
        n_colours * cp + heights * ((widths * bits + 7) // 8),
        big,
    )
    cost[_C_PALETTE_RLE] = np.where(
        (n_colours >= 2) & (n_colours <= MAX_RLE_PALETTE),
        n_colours * cp + 2 * n_runs - n_single + extra_len,
        big,
    )
    cost[_C_PLAIN_RLE] = n_runs * (cp + 1) + extra_len
    cost[_C_RAW] = areas * cp
    choice = np.argmin(cost, axis=0)

    def palette_index(tiles: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Index of each value in its tile's sorted palette."""
        wanted = (tiles.astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64)
        return (np.searchsorted(uniq, wanted) - colour_first[tiles]).astype(np.uint8)

    # Run bytes for every plain-RLE tile and every palette-RLE tile, built in two passes.
    run_choice = choice[run_tile]
    plain = run_choice == _C_PLAIN_RLE
    plain_bytes, plain_at = _run_bytes(cpixels(flat[run_start[plain]]), run_len[plain], None)
    plain_first = _exclusive_cumsum(np.where(choice == _C_PLAIN_RLE, n_runs, 0))
    pal = run_choice == _C_PALETTE_RLE
    pal_len = run_len[pal]
    pal_long = pal_len > 1
    pal_heads = palette_index(run_tile[pal], flat[run_start[pal]]) | (pal_long.astype(np.uint8) << 7)
    pal_bytes, pal_at = _run_bytes(pal_heads[:, None], pal_len, pal_long)
    pal_first = _exclusive_cumsum(np.where(choice == _C_PALETTE_RLE, n_runs, 0))
    # Palette indices of every pixel of the packed-palette tiles.
    packed_tiles = choice == _C_PACKED
    packed_pixels, packed_ids = tiles_of(packed_tiles)
    packed_index = palette_index(packed_ids, flat[packed_pixels])
    packed_first = _exclusive_cumsum(np.where(packed_tiles, areas, 0))

    out: list[bytes] = []
    for t, kind in enumerate(choice.tolist()):
        if kind == _C_RAW:
            out.append(bytes((RAW,)))
            out.append(cpixels(flat[offsets[t] : offsets[t + 1]]).tobytes())
        elif kind == _C_SOLID:
            out.append(bytes((SOLID,)))
            out.append(cpixels(flat[offsets[t] : offsets[t] + 1]).tobytes())
        elif kind == _C_PLAIN_RLE:
            out.append(bytes((PLAIN_RLE,)))
            out.append(plain_bytes[plain_at[plain_first[t]] : plain_at[plain_first[t + 1]]].tobytes())
        else:
            palette = cpixels(uniq[colour_first[t] : colour_first[t + 1]].astype(dtype)).tobytes()
            if kind == _C_PACKED:
                out.append(bytes((int(n_colours[t]),)))
                out.append(palette)
                indices = packed_index[packed_first[t] : packed_first[t + 1]]
                out.append(_pack_indices(indices, int(widths[t]), int(heights[t]), int(bits[t])))
            else:
                out.append(bytes((PALETTE_RLE + int(n_colours[t]),)))
                out.append(palette)
                out.append(pal_bytes[pal_at[pal_first[t]] : pal_at[pal_first[t + 1]]].tobytes())
    return b"".join(out)
