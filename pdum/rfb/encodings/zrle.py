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
* Colours are counted by sorting ``tile << 32 | colour`` keys rather than with ``np.unique``: same
  result (sorted distinct values per tile), but the SIMD sort is an order of magnitude faster on
  NumPy 2 for frames with many colours. The keys are those of the tile's runs, not its pixels (a
  run is one colour; text and flat content have many pixels per run). A tile with more runs than
  a palette holds colours is first counted on a sample of its pixels (``_many_colours``): when the
  sample alone shows more than 127 colours (photos, noise) the tile goes raw or plain RLE without
  sorting all its runs.
* Palette indices are looked up once per run, not per pixel, and packed-palette tiles of the same
  width and bit depth are packed as the rows of one array.
* For the common 32 bpp formats (R,G,B,x and B,G,R,x) the pixel values come straight from the
  RGB bytes in stream order (``_wire_pixels``), without converting the rectangle to 4-byte pixels
  first.

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
#: The cost of a candidate a tile cannot use (large, yet far from overflowing when added to).
_UNAVAILABLE = np.iinfo(np.int64).max // 4


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


def _tile_order(values: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten ``values`` (``HxW``, or ``HxWxC``) tile by tile, each tile row by row, as the ZRLE
    stream lists them, into ``out`` (``H*W`` or ``H*W x C``).

    Returns ``out`` and, per tile, its width and height. Copies whole bands of full-width tiles
    with one strided copy each, straight into ``out``, so this costs one pass over the pixels
    rather than a loop per tile (or a copy per band and another to join them).
    """
    h, w = values.shape[:2]
    rest = values.shape[2:]
    inner = tuple(range(3, 3 + len(rest)))
    full_x = (w // TILE) * TILE
    n = full_x // TILE
    widths: list[int] = []
    heights: list[int] = []
    pos = 0
    for y0 in range(0, h, TILE):
        band = values[y0 : y0 + TILE]
        bh = band.shape[0]
        if n:
            size = n * bh * TILE
            tiles = band[:, :full_x].reshape(bh, n, TILE, *rest).transpose(1, 0, 2, *inner)
            np.copyto(out[pos : pos + size].reshape(n, bh, TILE, *rest), tiles)
            pos += size
            widths.extend([TILE] * n)
            heights.extend([bh] * n)
        if full_x < w:
            size = bh * (w - full_x)
            np.copyto(out[pos : pos + size].reshape(bh, w - full_x, *rest), band[:, full_x:])
            pos += size
            widths.append(w - full_x)
            heights.append(bh)
    return out, np.array(widths, dtype=np.int64), np.array(heights, dtype=np.int64)


def _rgb24_order(pixel_format: PixelFormat) -> bool | None:
    """For a little-endian 32 bpp format with 8-bit channels whose colour is the pixel's three low
    bytes as R, G, B (False) or B, G, R (True): whether those bytes are reversed; else None."""
    pf = pixel_format
    if pf.bits_per_pixel != 32 or pf.big_endian or not pf.true_colour:
        return None
    if (pf.red_max, pf.green_max, pf.blue_max) != (255, 255, 255) or pf.green_shift != 8:
        return None
    shifts = (pf.red_shift, pf.blue_shift)
    return None if shifts not in ((0, 16), (16, 0)) else shifts == (16, 0)


def _wire_pixels(
    rgb: np.ndarray, pixel_format: PixelFormat, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rectangle's pixel values in the client's format (``dtype``), in stream order, and
    each tile's width and height.

    The common formats (libvncclient's and noVNC's R,G,B,x; B,G,R,x) skip the conversion to
    4-byte pixels: the RGB bytes are put in stream order (3 bytes a pixel), and reading them as
    overlapping little-endian 32-bit words, one every 3 bytes, with the top byte masked off, gives
    exactly the pixel values: two passes instead of a conversion and a reordering of 4-byte pixels
    (about a quarter of a 320x240 frame's time).
    """
    h, w = rgb.shape[:2]
    n = h * w
    flat = scratch("zrle.flat", (n,), dtype)  # keeps a big-endian order, reused
    reversed_bytes = _rgb24_order(pixel_format)
    if reversed_bytes is None:
        wire = pixel_format.encode(rgb, reuse="zrle.wire").view(dtype).reshape(h, w)
        return _tile_order(wire, flat)
    packed = scratch("zrle.rgb", (3 * n + 1,), np.uint8)  # + 1: the last word's fourth byte
    source = rgb[..., ::-1] if reversed_bytes else rgb
    _, widths, heights = _tile_order(source, packed[: 3 * n].reshape(n, 3))
    words = np.ndarray((n,), dtype="<u4", buffer=packed, strides=(3,))
    np.bitwise_and(words, np.uint32(0xFFFFFF), out=flat)
    return flat, widths, heights


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
    if not len(lengths):  # (often: a rectangle without plain-RLE or palette-RLE tiles)
        return np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64)
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


#: The colour sample of a tile with many runs: every ``SAMPLE_STEP``-th pixel.
SAMPLE_STEP = 8


def _many_colours(
    flat: np.ndarray, offsets: np.ndarray, areas: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Which ``candidates`` tiles certainly have more colours than a ZRLE palette holds (127).

    Every ``SAMPLE_STEP``-th pixel of such a tile already shows more than 127 colours (a lower
    bound on the tile's count, so never a wrong "many"); those tiles go raw or plain RLE whatever
    their exact count, and sorting an eighth of their pixels replaces sorting all their runs.
    Tiles whose sample shows fewer are counted exactly by the caller.
    """
    many = np.zeros(len(areas), dtype=bool)
    ids = np.flatnonzero(candidates)
    if not len(ids):
        return many
    counts = -(-areas[ids] // SAMPLE_STEP)
    first = _exclusive_cumsum(counts)
    at = np.repeat(offsets[ids] - first[:-1] * SAMPLE_STEP, counts) + np.arange(int(first[-1])) * SAMPLE_STEP
    _, found = _tile_colours(np.repeat(np.arange(len(ids)), counts), flat[at], len(ids))
    many[ids] = found > MAX_RLE_PALETTE
    return many


def _tile_keys(tiles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``tile << 32 | value`` for each (tile, value) pair (runs or sampled pixels): sorted, a
    tile's colours in ascending order.

    Written into a scratch buffer (the caller is done with it before the next call): as three
    frame-sized temporaries, the keys faulted ~80 fresh pages a 320x240 frame in the server."""
    keys = scratch("zrle.keys", (len(values),), np.uint64)
    np.left_shift(tiles, 32, out=keys, casting="unsafe")  # (tile ids are far below 2**31)
    np.bitwise_or(keys, values, out=keys, casting="unsafe")
    return keys


def _tile_colours(tiles: np.ndarray, values: np.ndarray, n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct :func:`_tile_keys` of ``values`` (``tiles``: each one's tile), ascending, and
    how many colours each of ``n_tiles`` tiles has."""
    keys = _tile_keys(tiles, values)
    keys.sort()
    distinct = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
    uniq = keys[distinct]
    return uniq, np.bincount((uniq >> np.uint64(32)).astype(np.int64), minlength=n_tiles)


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

    # Pixel values in the client's byte order: comparisons only need equality, and the CPIXEL
    # bytes are then a plain view.
    def cpixels(values: np.ndarray) -> np.ndarray:
        """Values (in ``dtype``) -> ``(n, cp)`` uint8 CPIXEL bytes."""
        raw = values.view(np.uint8).reshape(-1, bpp)
        return raw if cp == bpp else raw[:, cp_off : cp_off + cp]

    flat, widths, heights = _wire_pixels(rgb, pixel_format, dtype)
    n_tiles = len(widths)
    areas = widths * heights
    offsets = _exclusive_cumsum(areas)
    total = int(offsets[-1])
    tile_ids = np.arange(n_tiles, dtype=np.int64)

    # Runs (in stream order, never crossing a tile boundary).
    breaks = np.empty(total, dtype=bool)
    breaks[0] = True
    np.not_equal(flat[1:], flat[:-1], out=breaks[1:])
    breaks[offsets[:-1]] = True
    run_start = np.flatnonzero(breaks)
    run_len = np.diff(np.append(run_start, total))
    n_runs = np.diff(np.searchsorted(run_start, offsets))  # (each tile starts a run)
    run_tile = np.repeat(tile_ids, n_runs)
    n_single = np.bincount(run_tile[run_len == 1], minlength=n_tiles)
    long_runs = run_len > 255
    extra_len = np.bincount(run_tile[long_runs], weights=(run_len[long_runs] - 1) // 255, minlength=n_tiles)
    extra_len = extra_len.astype(np.int64)

    # Colours per tile: distinct ``tile << 32 | value`` keys, sorted. A tile's colours are its
    # runs' colours, so the keys are built per run, not per pixel (text: a run is many pixels).
    # A one-run tile has one colour, and a tile whose sample already shows more colours than a
    # palette holds needs no exact count (photos, noise), so only the other tiles' runs are sorted.
    multi = n_runs > 1
    # (sampled only where the sample is smaller than the tile's runs: text has many runs but a
    # few colours, and its runs are cheaper to count exactly than an eighth of its pixels)
    sampled = (n_runs > MAX_RLE_PALETTE) & (n_runs > -(-areas // SAMPLE_STEP))
    many = _many_colours(flat, offsets, areas, multi & sampled)
    counted = multi & ~many
    counted_runs = np.repeat(counted, n_runs)
    uniq, counts = _tile_colours(run_tile[counted_runs], flat[run_start[counted_runs]], n_tiles)
    # (a tile with "many" colours gets any count past the palettes')
    n_colours = np.where(counted, counts, np.where(many, MAX_RLE_PALETTE + 1, 1))
    colour_first = _exclusive_cumsum(np.where(counted, n_colours, 0))

    # Uncompressed size of each candidate sub-encoding, per tile (without the type byte).
    big = _UNAVAILABLE
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
        if not len(tiles):
            return np.zeros(0, dtype=np.uint8)
        return (np.searchsorted(uniq, _tile_keys(tiles, values)) - colour_first[tiles]).astype(np.uint8)

    # Run bytes for every plain-RLE tile and every palette-RLE tile, built in two passes.
    run_choice = choice[run_tile]
    plain = run_choice == _C_PLAIN_RLE
    plain_bytes, plain_at = _run_bytes(cpixels(flat[run_start[plain]]), run_len[plain], None)
    plain_first = _exclusive_cumsum(np.where(choice == _C_PLAIN_RLE, n_runs, 0))
    plain_cut = plain_at[plain_first].tolist()  # where each tile's run bytes start (and end)
    pal = run_choice == _C_PALETTE_RLE
    pal_len = run_len[pal]
    pal_long = pal_len > 1
    pal_heads = palette_index(run_tile[pal], flat[run_start[pal]]) | (pal_long.astype(np.uint8) << 7)
    pal_bytes, pal_at = _run_bytes(pal_heads[:, None], pal_len, pal_long)
    pal_first = _exclusive_cumsum(np.where(choice == _C_PALETTE_RLE, n_runs, 0))
    pal_cut = pal_at[pal_first].tolist()
    # Packed-palette tiles: a palette index per run (a run is one colour), repeated over its pixels.
    packed_runs = run_choice == _C_PACKED
    packed_index = np.repeat(
        palette_index(run_tile[packed_runs], flat[run_start[packed_runs]]), run_len[packed_runs]
    )
    packed = _pack_tiles(np.flatnonzero(choice == _C_PACKED), packed_index, widths, heights, bits)
    # Every palette in the order of ``uniq`` (tile by tile), and every tile's first pixel (a solid
    # tile's colour), as CPIXEL bytes.
    palettes = cpixels(uniq.astype(dtype)).tobytes()
    firsts = cpixels(flat[offsets[:-1]]).tobytes()

    out: list[bytes] = []
    starts = offsets.tolist()
    colour_at = (colour_first * cp).tolist()
    for t, kind in enumerate(choice.tolist()):
        if kind == _C_RAW:
            out.append(bytes((RAW,)))
            out.append(cpixels(flat[starts[t] : starts[t + 1]]).tobytes())
        elif kind == _C_SOLID:
            out.append(bytes((SOLID,)))
            out.append(firsts[t * cp : (t + 1) * cp])
        elif kind == _C_PLAIN_RLE:
            out.append(bytes((PLAIN_RLE,)))
            out.append(plain_bytes[plain_cut[t] : plain_cut[t + 1]].tobytes())
        else:
            colours = (colour_at[t + 1] - colour_at[t]) // cp
            palette = palettes[colour_at[t] : colour_at[t + 1]]
            if kind == _C_PACKED:
                out.append(bytes((colours,)))
                out.append(palette)
                out.append(packed[t])
            else:
                out.append(bytes((PALETTE_RLE + colours,)))
                out.append(palette)
                out.append(pal_bytes[pal_cut[t] : pal_cut[t + 1]].tobytes())
    return b"".join(out)


def _pack_tiles(
    ids: np.ndarray, indices: np.ndarray, widths: np.ndarray, heights: np.ndarray, bits: np.ndarray
) -> dict[int, bytes]:
    """The packed pixels of the packed-palette tiles ``ids`` (their palette ``indices``, tile after
    tile), by tile number.

    Tiles that share a width and a bit depth are packed together, their rows being rows of one
    array: a few array operations per group instead of several per tile.
    """
    tile_w, tile_h, tile_bits = widths[ids], heights[ids], bits[ids]
    tile_area = tile_w * tile_h
    packed: dict[int, bytes] = {}
    for w, b in set(zip(tile_w.tolist(), tile_bits.tolist(), strict=True)):
        in_group = (tile_w == w) & (tile_bits == b)
        rows = _pack_rows(indices[np.repeat(in_group, tile_area)].reshape(-1, w), b)
        data = rows.tobytes()
        pos = 0
        for g in np.flatnonzero(in_group).tolist():
            size = int(tile_h[g]) * rows.shape[1]
            packed[int(ids[g])] = data[pos : pos + size]
            pos += size
    return packed


def _pack_rows(indices: np.ndarray, bits: int) -> np.ndarray:
    """Pack rows of palette indices ``bits`` wide, leftmost pixel in the most significant bits,
    each row padded to a whole byte: an ``(n_rows, row_bytes)`` uint8 array."""
    if bits == 1:
        return np.packbits(indices.astype(bool), axis=1)
    per_byte = 8 // bits
    n_rows, w = indices.shape
    row_bytes = -(-w // per_byte)
    if w % per_byte:
        grid = np.zeros((n_rows, row_bytes * per_byte), dtype=np.uint8)
        grid[:, :w] = indices
    else:
        grid = indices
    out = grid[:, 0::per_byte] << np.uint8(8 - bits)
    for j in range(1, per_byte):
        out |= grid[:, j::per_byte] << np.uint8(8 - bits * (j + 1))
    return out
