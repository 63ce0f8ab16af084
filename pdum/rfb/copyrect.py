"""CopyRect (RFB encoding 1): which parts of a new frame are moved parts of the previous one, and
which of those each client may be told to copy.

A CopyRect rectangle tells the client "copy (w, h) pixels from (src-x, src-y) of *your current*
framebuffer to (x, y)"; rectangles of one update are applied in order. So a copy is only right if
the client, at that point of the update, holds exactly the source pixels we assume. Three steps,
all here so that framebuffer/session/display only call them:

1. :func:`parse_copies` checks the user's ``publish(frame, copies=...)`` list (types, bounds).
2. :func:`find_copies` runs while the framebuffer still holds the previous frame. It keeps a copy
   only if ``new[dst] == old[src]`` really holds (a wrong claim must never corrupt a client), and
   only if no earlier copy of the same frame writes over its source. Without user copies it can
   detect vertical scrolling itself (:func:`detect_vertical_scroll`; cheap, and exact because
   every candidate is verified like a user copy).
3. :func:`usable_copies` decides per client, relying on one invariant the session keeps:

       Every tile that is *clean* in ``Session.damage`` holds, on the client, exactly the current
       framebuffer's pixels, once the client has applied what was sent *and* the copies still
       queued in ``Session.copies`` (the next update sends them first, before any pixel rect).

   A copy from frame ``old`` to ``new`` may be queued for a client where its source lies in clean
   tiles (so the client will hold ``old[src]`` there) and no copy queued before it for the same
   frame writes over that source. Applying it leaves ``new[dst]`` on the client, so the client's
   new damage is the tiles that changed *outside* the accepted destinations
   (:func:`tiles_outside`), OR-ed into what was dirty already: the invariant holds again, however
   many frames the client skipped. Source rows in dirty tiles (drawn by a frame the client never
   got) are cut away in whole tile rows; their destination simply stays ordinary damage. Clients
   without CopyRect, a pending resize or a full queue get the plain tile damage.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from .framebuffer import TILE, Damage, tiles_of

log = logging.getLogger(__name__)

#: Copies considered per published frame (each is verified with a pixel compare).
MAX_COPIES_PER_FRAME = 64
#: Copies a session may queue before it refuses more (a client that stops asking must not make
#: the queue grow without bound; refused copies are plain damage).
MAX_PENDING_COPIES = 64
#: Scroll detection ignores runs of matching rows shorter than this.
MIN_SCROLL_ROWS = 8
#: ... and changed areas narrower than this (too little to gain).
MIN_SCROLL_WIDTH = 16


class Copy(NamedTuple):
    """``width`` x ``height`` pixels of the old frame at (src_x, src_y), moved to (dst_x, dst_y)."""

    src_x: int
    src_y: int
    width: int
    height: int
    dst_x: int
    dst_y: int

    @property
    def src(self) -> tuple[slice, slice]:
        return slice(self.src_y, self.src_y + self.height), slice(self.src_x, self.src_x + self.width)

    @property
    def dst(self) -> tuple[slice, slice]:
        return slice(self.dst_y, self.dst_y + self.height), slice(self.dst_x, self.dst_x + self.width)


def reads_after_write(later: Copy, earlier: Copy) -> bool:
    """Whether ``later``'s source overlaps ``earlier``'s destination: applied after it, ``later``
    would read pixels ``earlier`` already replaced instead of the old frame's."""
    w, h = later.width, later.height
    ew, eh = earlier.width, earlier.height
    return (
        later.src_x < earlier.dst_x + ew
        and earlier.dst_x < later.src_x + w
        and later.src_y < earlier.dst_y + eh
        and earlier.dst_y < later.src_y + h
    )


# -- 1. the user's list ------------------------------------------------------------------------------
def parse_copies(copies: Iterable[Sequence[int]], width: int, height: int) -> tuple[Copy, ...]:
    """Check ``(src_x, src_y, width, height, dst_x, dst_y)`` tuples against a ``width`` x ``height`` frame.

    Raises ``TypeError`` for non-integers and ``ValueError`` for a wrong arity, negative values or a
    rectangle outside the frame, so mistakes show up at the call instead of as silent damage. Empty
    copies and copies onto themselves mean nothing and are dropped.
    """
    parsed: list[Copy] = []
    for item in copies:
        values = tuple(item)
        if len(values) != 6:
            raise ValueError(f"a copy is (src_x, src_y, width, height, dst_x, dst_y), got {item!r}")
        try:
            copy = Copy(*(operator.index(v) for v in values))
        except TypeError:
            raise TypeError(f"copy values must be integers, got {item!r}") from None
        if min(copy) < 0:
            raise ValueError(f"copy {tuple(copy)} has a negative value")
        if copy.width == 0 or copy.height == 0 or (copy.src_x, copy.src_y) == (copy.dst_x, copy.dst_y):
            continue
        for name, x, y in (("source", copy.src_x, copy.src_y), ("destination", copy.dst_x, copy.dst_y)):
            if x + copy.width > width or y + copy.height > height:
                raise ValueError(f"copy {tuple(copy)}: {name} is outside the {width}x{height} frame")
        parsed.append(copy)
    return tuple(parsed)


# -- 2. what holds between the old and the new frame -------------------------------------------------
def find_copies(
    old: np.ndarray, new: np.ndarray, diff: np.ndarray, copies: Sequence[Copy], detect_scroll: bool
) -> tuple[Copy, ...]:
    """The copies (the user's, else detected ones) that really turn ``old`` into ``new`` where they write.

    ``diff`` is the changed-pixel mask of ``old`` vs ``new``. A copy is kept if its destination
    changed at all, ``new[dst] == old[src]`` exactly, and no copy kept before it writes over its
    source (clients apply them in this order, each reading what the earlier ones left).
    """
    candidates = list(copies) if copies else detect_vertical_scroll(old, new, diff) if detect_scroll else []
    if len(candidates) > MAX_COPIES_PER_FRAME:
        log.debug("using the first %d of %d copies", MAX_COPIES_PER_FRAME, len(candidates))
        candidates = candidates[:MAX_COPIES_PER_FRAME]
    kept: list[Copy] = []
    for copy in candidates:
        if not diff[copy.dst].any():
            continue  # nothing to do there
        if any(reads_after_write(copy, earlier) for earlier in kept):
            log.debug("copy %s reads what an earlier copy writes; sending it as pixels", tuple(copy))
            continue
        if not np.array_equal(new[copy.dst], old[copy.src]):
            log.debug("copy %s does not match the pixels; sending it as pixels", tuple(copy))
            continue
        kept.append(copy)
    return tuple(kept)


def _row_hashes(img: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A cheap 64-bit signature per row of ``img[y0:y1, x0:x1]``: candidates only, verified later.

    The wrapping sum of the row's 8-byte words (trailing columns past a multiple of 8 are left
    out) costs one pass over the band; collisions only cost a failed verification.
    """
    cols = (x1 - x0) // 8 * 8
    band = np.ascontiguousarray(img[y0:y1, x0 : x0 + cols]).reshape(y1 - y0, cols * 3)
    return np.asarray(band.view(np.uint64).sum(axis=1, dtype=np.uint64))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def detect_vertical_scroll(old: np.ndarray, new: np.ndarray, diff: np.ndarray) -> list[Copy]:
    """Copies for the one vertical shift that explains most changed rows, or ``[]``.

    Works on the bounding box of the changed pixels: rows of ``new`` and ``old`` are hashed, each
    changed new row whose hash occurs exactly once among the old rows votes for a shift, and the
    shift with most votes (at least :data:`MIN_SCROLL_ROWS`) becomes one copy per run of rows that
    match under it. The caller verifies every copy against the pixels.
    """
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size < MIN_SCROLL_ROWS:
        return []
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(diff[y0:y1].any(axis=0))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    if x1 - x0 < MIN_SCROLL_WIDTH:
        return []
    n = y1 - y0
    h_old, h_new = _row_hashes(old, y0, y1, x0, x1), _row_hashes(new, y0, y1, x0, x1)
    order = np.argsort(h_old, kind="stable")
    sorted_old = h_old[order]
    left = np.searchsorted(sorted_old, h_new, "left")
    right = np.searchsorted(sorted_old, h_new, "right")
    changed = h_new != h_old
    voters = np.flatnonzero(changed & (right - left == 1))
    shifts = order[left[voters]] - voters  # old row - new row: src_y - dst_y
    shifts = shifts[shifts != 0]
    if shifts.size < MIN_SCROLL_ROWS:
        return []
    counts = np.bincount(shifts + n)
    shift = int(np.argmax(counts)) - n
    if counts[shift + n] < MIN_SCROLL_ROWS:
        return []
    lo, hi = max(0, -shift), min(n, n - shift)
    match = np.zeros(n, dtype=bool)
    match[lo:hi] = h_new[lo:hi] == h_old[lo + shift : hi + shift]
    found: list[Copy] = []
    for start, end in _runs(match):
        moved = np.flatnonzero(changed[start:end])  # trim rows that did not change anyway
        if moved.size == 0:
            continue
        start, end = start + int(moved[0]), start + int(moved[-1]) + 1
        if end - start >= MIN_SCROLL_ROWS:
            found.append(Copy(x0, y0 + start + shift, x1 - x0, end - start, x0, y0 + start))
    if shift < 0:  # content moved down: bottom runs first, so none reads what another wrote
        found.reverse()
    return found


# -- 3. per client -----------------------------------------------------------------------------------
def _clean_bands(copy: Copy, dirty: np.ndarray) -> list[Copy]:
    """``copy`` cut to the whole tile rows where its source lies in clean tiles, in a safe order."""
    ty0, ty1 = copy.src_y // TILE, -(-(copy.src_y + copy.height) // TILE)
    tx0, tx1 = copy.src_x // TILE, -(-(copy.src_x + copy.width) // TILE)
    clean = ~np.asarray(dirty[ty0:ty1, tx0:tx1].any(axis=1))
    if clean.all():
        return [copy]
    bands = []
    for r0, r1 in _runs(clean):
        y0 = max(copy.src_y, (ty0 + r0) * TILE)
        y1 = min(copy.src_y + copy.height, (ty0 + r1) * TILE)
        bands.append(copy._replace(src_y=y0, height=y1 - y0, dst_y=copy.dst_y + y0 - copy.src_y))
    if copy.src_y < copy.dst_y:  # moving down: lower bands first, like memmove
        bands.reverse()
    return bands


def usable_copies(copies: Sequence[Copy], dirty: np.ndarray) -> tuple[Copy, ...]:
    """The parts of one frame's ``copies`` a client with damage grid ``dirty`` may apply, in order.

    ``dirty`` is the client's damage *before* this frame's damage is added. A part is kept when its
    source tiles are clean and no part kept before it writes over its source; see the module doc
    for why that keeps every client's framebuffer exact.
    """
    kept: list[Copy] = []
    for copy in copies:
        for band in _clean_bands(copy, dirty):
            if not any(reads_after_write(band, earlier) for earlier in kept):
                kept.append(band)
    return tuple(kept)


def tiles_outside(damage: Damage, accepted: tuple[Copy, ...]) -> np.ndarray:
    """Tiles that changed outside ``accepted``'s destinations (shared by clients that took the same)."""
    tiles = damage.cache.get(accepted)
    if tiles is None:
        assert damage.diff is not None  # kept whenever damage.copies is not empty
        diff = damage.diff.copy()
        for copy in accepted:
            diff[copy.dst] = False
        tiles = damage.cache[accepted] = tiles_of(diff)
        tiles.flags.writeable = False  # shared by the clients that took these copies
    return tiles
