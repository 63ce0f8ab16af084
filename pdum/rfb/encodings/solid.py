"""Large single-colour areas cut out of damaged rectangles, to be sent as Tight fills.

A Tight rectangle of one colour costs its 12-byte header and one pixel, whatever its size, while
the same area inside a bigger mixed rectangle costs palette indices and zlib work. So, like
libvncserver's and TigerVNC's Tight servers, we look for solid areas before encoding.

A look at two pixels per 16x16 block turns away rectangles that cannot hold a large solid area
(photos, noise, small checkers). A rectangle that is only a few one-colour strips (bands of
identical rows cut into their one-colour runs: a box on a background, panels, margins) is cut
into those strips directly, as fills (:func:`_strips`: one comparison of each row with the row
above, then a look at one row a band). A rectangle whose top row is one colour tries the strips
first, since they cost less than the look; one of them of a solid area's size is then taken
without the look. The rest go through the block search:

1. mark the 16x16 blocks of the rectangle that are one colour (one vectorised pass);
2. in reading order, take the first solid block from which same-coloured solid blocks grow to
   at least :data:`MIN_SOLID_AREA` pixels (growing right along each row, down while every row
   keeps the width, the largest such staircase step wins: libvncserver's FindBestSolidArea);
3. extend that area a row / column of pixels at a time up, down, left and right (blocks are
   aligned to the rectangle, real edges are not);
4. send it as a fill; search the part left of it, right of it and below it the same way (the
   part above holds no qualifying block: it was scanned first) and send what has no solid area
   as ordinary rectangles, or as fills when they are one colour (thin strips hold no block);
5. a remainder whose corner is off the block grid is searched once more with blocks aligned to
   its own corner (TigerVNC aligns blocks to each searched rectangle; one grid per remainder
   for every remainder would cost too much).

Blocks cut short by a rectangle's edge are not tested: step 3 reaches into them.

The result depends on the pixels alone, so every client with the same damage gets the same cut
(the encode-once cache keys payloads by rectangle). Rectangles smaller than
:data:`MIN_SPLIT_AREA` are not searched: the encoder sees a small solid one as a fill anyway.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from typing import Any, NamedTuple

import numpy as np

from .base import rgb_keys, scratch, split_rect

Rect = tuple[int, int, int, int]

#: Side of the blocks tested for solidity (libvncserver's MAX_SPLIT_TILE_SIZE, TigerVNC's
#: SolidSearchBlock).
BLOCK = 16
#: Smallest solid area worth its own rectangle, in pixels (both references use 2048).
MIN_SOLID_AREA = 2048
#: Rectangles smaller than this are encoded whole (libvncserver's MIN_SPLIT_RECT_SIZE).
MIN_SPLIT_AREA = 4096
#: Most one-colour strips a rectangle is cut into without the block search (:func:`_strips`):
#: each is a 16-byte fill, so a few beat any other encoding, thin stripes would not.
MAX_STRIPS = 16
#: Tall rects: :func:`_strips` first compares every this many rows with the row above.
_SAMPLE = 16

#: Eight True bytes read as one word.
_ALL_TRUE = np.frombuffer(b"\x01" * 8, dtype=np.uint64)[0]


class _Blocks(NamedTuple):
    """The block grid of one rectangle, as lists (the search reads single cells)."""

    colour: list[list[int]]  # 0xRRGGBB of each solid block, -1 for a mixed one
    right: list[list[int]]  # same-coloured solid blocks from here rightwards, this one included
    #: Solid blocks that might grow large enough, as ``row * cols + col`` (reading order).
    candidates: list[int]
    rgb: np.ndarray  # the rectangle's pixels
    rows: int  # whole blocks down and across
    cols: int
    realign: bool  # see _split


def encode_order(encoder: Any, pixels: np.ndarray, rects: list[Rect]) -> list[tuple[Any, list[Rect]]]:
    """``(encoder, pieces)`` batches that encode ``rects`` of ``pixels`` as a session does: with
    an encoder that has a ``solid_fill`` (Tight, TightPNG), its solid areas first as fills, then
    the rest; every batch cut to its encoder's ``max_width`` / ``max_area``."""
    fill = getattr(encoder, "solid_fill", None)
    if fill is None:
        return [(encoder, _cut(rects, encoder))]
    solids, rest = split_solid(pixels, rects)
    return [(fill, _cut(solids, fill)), (encoder, _cut(rest, encoder))]


def _cut(rects: list[Rect], encoder: Any) -> list[Rect]:
    max_width, max_area = encoder.max_width or 1 << 30, encoder.max_area or 1 << 60
    if all(w <= max_width and w * h <= max_area for _, _, w, h in rects):
        return rects  # the common case: nothing to cut
    return [p for r in rects for p in split_rect(*r, encoder.max_width, encoder.max_area)]


def split_solid(pixels: np.ndarray, rects: list[Rect]) -> tuple[list[Rect], list[Rect]]:
    """``(solid, other)``: ``rects`` (x, y, w, h in ``pixels``, an HxWx3 frame) cut into solid
    areas worth a fill of their own and the remaining rectangles, together covering exactly the
    same pixels, without overlap."""
    solids: list[Rect] = []
    others: list[Rect] = []
    for rect in rects:
        _split(pixels, rect, True, solids, others)
    return solids, others


def _split(pixels: np.ndarray, rect: Rect, realign: bool, solids: list[Rect], others: list[Rect]) -> None:
    """:func:`split_solid` of one rect, with blocks aligned to its corner. ``realign``: search a
    remainder whose corner is off the blocks once more with blocks aligned to it (a 60x60 box
    holds 9 blocks aligned to its corner but as few as 4 of a grid that is not)."""
    x, y, w, h = rect
    if w * h < MIN_SPLIT_AREA:
        others.append(rect)
        return
    rgb = pixels[y : y + h, x : x + w]
    first = rgb[0].tobytes()
    if first[3:] == first[:-3]:
        # One colour along the top (a background, a margin): most likely strips, which cost less
        # than the look below; any strip of a solid area's size is taken at once.
        strips = _strips(rgb)
        if strips is not None and max(rw * rh for _, _, rw, rh in strips) >= MIN_SOLID_AREA:
            solids.extend((x + rx, y + ry, rw, rh) for rx, ry, rw, rh in strips)
            return
        colour = _quick_look(rgb)
    else:
        # Mixed from the first row (checkerboards, text, photos): the look turns most of them away
        # before any pass over every row.
        colour = _quick_look(rgb)
        strips = None if colour is None else _strips(rgb)
    if colour is None:
        others.append(rect)
        return
    if strips is not None:  # only smaller strips, but solid blocks side by side: fills all the same
        solids.extend((x + rx, y + ry, rw, rh) for rx, ry, rw, rh in strips)
        return
    blocks = _block_grid(rgb, colour, realign)
    if blocks is None:
        others.append(rect)
        return
    found_solid: list[Rect] = []
    found_other: list[Rect] = []
    _search(blocks, (0, 0, w, h), found_solid, found_other)
    solids.extend((x + rx, y + ry, rw, rh) for rx, ry, rw, rh in found_solid)
    others.extend((x + rx, y + ry, rw, rh) for rx, ry, rw, rh in found_other)


def _quick_look(rgb: np.ndarray) -> np.ndarray | None:
    """Each whole block's top-left colour, or None when no solid area can be in ``rgb``."""
    rows, cols = rgb.shape[0] // BLOCK, rgb.shape[1] // BLOCK
    return _even_corner_colours(rgb, rows, cols) if rows and cols else None


def _strips(rgb: np.ndarray) -> list[Rect] | None:
    """``rgb`` as at most :data:`MAX_STRIPS` one-colour rectangles when it is that simple, else
    None: bands of identical rows, each cut into its runs of one colour (a box on a background,
    side panels, margins).

    One pass compares every row with the one above (as 8-byte words where the row allows); only
    the first row of each band is looked at further, as bytes. A handful of array operations
    where the block search takes a hundred or more: the demo's every frame."""
    h, w = rgb.shape[:2]
    flat = rgb.reshape(h, w * 3)
    lines = flat.view(np.uint64) if (w * 3) % 8 == 0 and w >= 8 else flat
    per_row = lines.shape[1]
    # More than MAX_STRIPS - 1 changed rows cannot make few bands; a changed row has at most
    # per_row differing words, so a count above this bound proves it without finding the rows.
    most = (MAX_STRIPS - 1) * per_row
    if (h - 1) // _SAMPLE > MAX_STRIPS:  # tall rects: a look at every 16th row pair first
        if np.count_nonzero(lines[_SAMPLE:h:_SAMPLE] != lines[_SAMPLE - 1 : h - 1 : _SAMPLE]) > most:
            return None  # photos, noise: no full pass
    changed = np.not_equal(lines[1:], lines[:-1], out=scratch("solid.rows", (h - 1, per_row), np.bool_))
    if np.count_nonzero(changed) > most:
        return None
    rows = changed.ravel().nonzero()[0] // per_row  # a changed row once per differing word, in order
    distinct = rows[:1].tolist() + rows[1:][rows[1:] != rows[:-1]].tolist()
    if len(distinct) >= MAX_STRIPS:
        return None
    bounds = [0, *(row + 1 for row in distinct), h]  # pair (r, r + 1) differs: a band starts at r + 1
    pieces: list[Rect] = []
    for top, bottom in itertools.pairwise(bounds):
        line = flat[top]
        raw = line.tobytes()
        if raw[3:] == raw[:-3]:  # one colour: every pixel equals the next
            if len(pieces) >= MAX_STRIPS:
                return None
            pieces.append((0, top, w, bottom - top))
            continue
        cut = (line[3:] != line[:-3]).nonzero()[0]  # differing bytes: up to 3 an edge
        if len(cut) > 3 * MAX_STRIPS:
            return None
        edges = [0, *sorted({i // 3 + 1 for i in cut.tolist()}), w]
        if len(pieces) + len(edges) - 1 > MAX_STRIPS:
            return None
        pieces.extend((left, top, right - left, bottom - top) for left, right in itertools.pairwise(edges))
    return pieces


def _block_grid(rgb: np.ndarray, colour: np.ndarray, realign: bool) -> _Blocks | None:
    """Which whole 16x16 blocks of ``rgb`` are one colour, or None when no block could start a
    solid area. Blocks cut short by the rectangle's right or bottom edge count as mixed: the
    pixel-by-pixel extension reaches into them. ``colour``: :func:`_quick_look`'s."""
    h, w = rgb.shape[:2]
    rows, cols = h // BLOCK, w // BLOCK
    # A block is one colour when every row equals the block's first row and that first row has
    # each pixel equal to the next. A block's row is 48 bytes, 6 words of 8 bytes: the rows are
    # compared as words (one pass over the frame, an eighth of the comparisons of bytes), the
    # first rows as bytes, whose flags are then read as 6 words per block.
    bands = rgb[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols * BLOCK * 3)
    first = bands[:, 0, :]
    words = bands.view(np.uint64)
    # (the frame-sized comparison goes to a reused buffer: no page faults per frame)
    same = np.equal(words, words[:, :1, :], out=scratch("solid.same", words.shape, np.bool_)).all(axis=1)
    across = scratch("solid.across", first.shape, np.bool_)
    across[:, -3:] = True
    np.equal(first[:, 3:], first[:, :-3], out=across[:, :-3])
    across[:, :-3] |= _block_ends(cols)
    same &= across.view(np.uint64) == _ALL_TRUE  # per word: its 8 bytes' flags
    solid = same.reshape(rows, cols, 6).all(axis=2)
    if int(np.count_nonzero(solid)) * BLOCK * BLOCK < MIN_SOLID_AREA:
        return None
    colour[~solid] = -1  # never equal to a real colour: runs stop at mixed blocks
    right = _runs(colour[:, :-1] == colour[:, 1:])
    down = _runs((colour[:-1, :] == colour[1:, :]).T).T
    # An area grown from a block spans at most its right run times its down run of blocks.
    candidates = np.flatnonzero(solid & (right * down * (BLOCK * BLOCK) >= MIN_SOLID_AREA)).tolist()
    if not candidates:
        return None
    return _Blocks(colour.tolist(), right.tolist(), candidates, rgb, rows, cols, realign)


def _even_corner_colours(rgb: np.ndarray, rows: int, cols: int) -> np.ndarray | None:
    """The top-left colour of each whole block (packed, see :func:`_packed`), or None when too
    few blocks could be solid for a solid area: a look at two pixels a block that turns
    photo-like and noisy content away before the full pass over every pixel. A solid block has
    its top-left pixel equal to its bottom-right one ("even"), and a solid area needs
    ``MIN_SOLID_AREA / 256`` whole blocks side by side: so at least one fewer neighbouring pairs
    of even blocks of one colour, and three of them in a row or a column."""
    # _packed gathers the pixels (a block apart) into small arrays. Blocks that are not even
    # get a key of their own (negative, never a colour), so equal keys mean two even blocks of
    # one colour without a separate validity test.
    colour = _packed(rgb[: rows * BLOCK : BLOCK, : cols * BLOCK : BLOCK])
    even = colour == _packed(rgb[BLOCK - 1 : rows * BLOCK : BLOCK, BLOCK - 1 : cols * BLOCK : BLOCK])
    key = np.where(even, colour, _own_keys(rows, cols))
    across = key[:, :-1] == key[:, 1:]
    down = key[:-1] == key[1:]
    if np.count_nonzero(across) + np.count_nonzero(down) < MIN_SOLID_AREA // (BLOCK * BLOCK) - 1:
        return None
    # An area of 8+ blocks is 3 or more blocks wide or tall, so some such block starts a run of
    # three: small checkers (2x2 blocks of a colour at most) stop here too.
    if (across[:, :-1] & across[:, 1:]).any() or (down[:-1] & down[1:]).any():
        return colour
    return None


@functools.lru_cache(maxsize=16)
def _own_keys(rows: int, cols: int) -> np.ndarray:
    """A distinct negative number per block (keys that equal nothing else)."""
    return -1 - np.arange(rows * cols, dtype=np.int32).reshape(rows, cols)


def _packed(rgb: np.ndarray) -> np.ndarray:
    """``HxWx3`` or ``Nx3`` uint8 pixels as int32 0xRRGGBB (:func:`rgb_keys`; signed, so the
    search can mark blocks with negative keys that equal no colour)."""
    if rgb.ndim == 2:
        return rgb_keys(rgb[None]).view(np.int32)[0]
    return rgb_keys(rgb).view(np.int32)


@functools.lru_cache(maxsize=16)
def _block_ends(cols: int) -> np.ndarray:
    """For a row of ``cols`` blocks (minus its last pixel): True at the bytes that compare a
    block's last pixel with the next block's first, which must not count against solidity."""
    return (np.arange(cols * BLOCK * 3 - 3) % (BLOCK * 3)) >= (BLOCK - 1) * 3


def _runs(same_as_next: np.ndarray) -> np.ndarray:
    """For each cell, 1 + how many following cells along a row continue its run, given
    ``same_as_next`` (whether cell n and cell n+1 of a row belong to the same run)."""
    rows, gaps = same_as_next.shape
    # A run ends at the first break at or after the cell: mark each break with its index (the
    # row's end with the last index), take the running minimum from the right, subtract.
    index = np.arange(gaps + 1, dtype=np.int32)
    ends = np.full((rows, gaps + 1), gaps, dtype=np.int32)
    np.copyto(ends[:, :gaps], index[:gaps], where=~same_as_next)
    first_end = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]
    return first_end - index + 1


def _search(blocks: _Blocks, region: Rect, solids: list[Rect], others: list[Rect]) -> None:
    """Cut ``region`` (pixels of ``blocks.rgb``) into solid areas and the rest (module doc)."""
    rx, ry, rw, rh = region
    if rw <= 0 or rh <= 0:
        return
    found = _first_solid_area(blocks, region)
    if found is None:
        if blocks.realign and (rx % BLOCK or ry % BLOCK) and rw * rh >= MIN_SPLIT_AREA:
            realigned: list[Rect] = []
            _split(blocks.rgb, region, False, solids, realigned)
            for rect in realigned:
                _plain(blocks.rgb, rect, solids, others)
        else:
            _plain(blocks.rgb, region, solids, others)
        return
    sx, sy, sw, sh = _extend_by_pixels(blocks.rgb, region, found)
    if sy > ry:  # above: scanned first, no block there grows large enough
        _plain(blocks.rgb, (rx, ry, rw, sy - ry), solids, others)
    _search(blocks, (rx, sy, sx - rx, sh), solids, others)
    solids.append((sx, sy, sw, sh))
    _search(blocks, (sx + sw, sy, rx + rw - sx - sw, sh), solids, others)
    _search(blocks, (rx, sy + sh, rw, ry + rh - sy - sh), solids, others)


def _plain(rgb: np.ndarray, region: Rect, solids: list[Rect], others: list[Rect]) -> None:
    """A region without a large solid area: still a fill if it is one colour (a strip too thin
    to hold a block), else an ordinary rectangle."""
    rx, ry, rw, rh = region
    data = rgb[ry : ry + rh, rx : rx + rw].tobytes()  # compared as bytes: no NumPy passes
    (solids if data == data[:3] * (rw * rh) else others).append(region)


def _first_solid_area(blocks: _Blocks, region: Rect) -> tuple[int, int, int, int, int] | None:
    """The first block (reading order) wholly inside ``region`` that grows over same-coloured
    solid blocks inside it into at least :data:`MIN_SOLID_AREA` pixels: ``(x, y, w, h,
    colour)`` of the largest such block-aligned area, in pixels, or None."""
    rx, ry, rw, rh = region
    i0, i1 = -(-ry // BLOCK), min((ry + rh) // BLOCK, blocks.rows)
    j0, j1 = -(-rx // BLOCK), min((rx + rw) // BLOCK, blocks.cols)
    if i0 >= i1 or j0 >= j1:
        return None
    colour, right = blocks.colour, blocks.right
    start = bisect.bisect_left(blocks.candidates, i0 * blocks.cols)
    for index in itertools.islice(blocks.candidates, start, None):
        i, j = divmod(index, blocks.cols)
        if i >= i1:
            break
        if j < j0 or j >= j1:
            continue
        c = colour[i][j]
        width = j1 - j  # the run may not leave the region
        best_w = best_h = best_px = 0
        for k in range(i, i1):
            if colour[k][j] != c:
                break
            width = min(width, right[k][j])
            w_px = width * BLOCK
            h_px = (k + 1 - i) * BLOCK
            if w_px * h_px > best_px:
                best_w, best_h, best_px = w_px, h_px, w_px * h_px
        if best_px >= MIN_SOLID_AREA:
            return j * BLOCK, i * BLOCK, best_w, best_h, c
    return None


def _extend_by_pixels(rgb: np.ndarray, region: Rect, area: tuple[int, int, int, int, int]) -> Rect:
    """Grow a block-aligned solid area one pixel row / column at a time, inside ``region``,
    while the new row or column is all the area's colour (up, down, left, then right).

    Usually by less than a block: a whole matching block row above or to the left would have
    been found first, and the block search already took every whole block below and to the
    right that makes the area larger."""
    rx, ry, rw, rh = region
    x, y, w, h, c = area
    pixel = bytes(((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF))
    top = y - _matching_lines(rgb, y - 1, ry - 1, x, x + w, pixel, rows=True)
    bottom = y + h + _matching_lines(rgb, y + h, ry + rh, x, x + w, pixel, rows=True)
    left = x - _matching_lines(rgb, x - 1, rx - 1, top, bottom, pixel, rows=False)
    right = x + w + _matching_lines(rgb, x + w, rx + rw, top, bottom, pixel, rows=False)
    return left, top, right - left, bottom - top


def _matching_lines(
    rgb: np.ndarray, start: int, stop: int, lo: int, hi: int, pixel: bytes, rows: bool
) -> int:
    """How many rows (or columns) of ``rgb`` from ``start`` towards ``stop`` (exclusive, either
    direction) hold only ``pixel`` between ``lo`` and ``hi``. A block's worth of lines is copied
    out as bytes at a time and compared line by line (a column as three strided byte slices):
    few NumPy calls, which is what this costs most at 10 frames a second with cold caches."""
    step = 1 if stop > start else -1
    count = 0
    line = start
    size = hi - lo
    row = pixel * size  # a row of the colour; a column's red, green and blue bytes:
    red, green, blue = (bytes((channel,)) * size for channel in pixel)
    while line != stop:
        if (rgb[line, lo] if rows else rgb[lo, line]).tobytes() != pixel:
            return count  # the usual answer, without copying lines
        end = line + step * min(BLOCK, abs(stop - line))
        first, last = (line, end) if step > 0 else (end + 1, line + 1)
        n = last - first
        data = (rgb[first:last, lo:hi] if rows else rgb[lo:hi, first:last]).tobytes()
        for i in range(n) if step > 0 else range(n - 1, -1, -1):
            if rows:
                same = data[i * size * 3 : (i + 1) * size * 3] == row
            else:
                same = (
                    data[i * 3 :: n * 3] == red
                    and data[i * 3 + 1 :: n * 3] == green
                    and data[i * 3 + 2 :: n * 3] == blue
                )
            if not same:
                return count
            count += 1
        line = end
    return count
