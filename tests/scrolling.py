"""A deterministic "scrolling document" frame sequence for the CopyRect tests, with the copies a
caller who knows the motion would pass to ``publish(frame, copies=...)``.

A static header band (sometimes redrawn) sits over a viewport into a tall random-noise document
that scrolls by various offsets, up and down, small and large; some frames also draw a small block
over the content, one frame moves a "window" (a drag), and one frame passes a copy that is a lie
(the server must drop it). The honest copies leave out the rows overlays break, as a real caller
would; the tests also publish the same frames without copies (scroll detection) and with
detection off (the byte baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pdum.rfb.testing import noise

HEADER = 24
CopyTuple = tuple[int, int, int, int, int, int]
#: Viewport offsets into the document, one per frame (None: a drag frame, the viewport stays).
OFFSETS: list[int | None] = [0, 10, 47, 48, 112, 100, 230, 229, None, None, 293, 357, 300, 301, 420,
                             200, 201, 264, 263, 180, 181, 400]  # fmt: skip
HEADER_FRAMES = {3, 6, 11, 15, 19}  # the header is redrawn (damage in the copies' tiles)
BLOCK_FRAMES = {4, 12, 17}  # a small block is drawn over the scrolled content
LIE_FRAME = 13  # the copy passed for this frame claims the wrong source rows
WINDOW = (60, 40)  # the dragged window (w, h)


@dataclass
class Step:
    frame: np.ndarray
    copies: list[CopyTuple] = field(default_factory=list)


def _bands(rows: tuple[int, int], excluded: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``rows`` ([start, end)) minus the ``excluded`` intervals."""
    keep = np.ones(rows[1] - rows[0], dtype=bool)
    for a, b in excluded:
        keep[max(0, a - rows[0]) : max(0, b - rows[0])] = False
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.view(np.int8), [0]))))
    return [(rows[0] + int(a), rows[0] + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def scrolling_steps(width: int, height: int, seed: int = 0) -> list[Step]:
    """The frames (``height`` x ``width``) and honest copies; the first step has no copies."""
    rng = np.random.default_rng(seed)
    view = height - HEADER
    doc = noise(width, max(o for o in OFFSETS if o is not None) + view, seed)
    header = noise(width, HEADER, seed + 1)
    steps: list[Step] = []
    offset = 0
    overlays: list[tuple[int, int]] = []  # rows of the previous frame not showing the document
    window_at: tuple[int, int] | None = None
    for i, target in enumerate(OFFSETS):
        if i in HEADER_FRAMES:
            header = noise(width, HEADER, seed + 100 + i)
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:HEADER] = header
        copies: list[CopyTuple] = []
        if target is None:  # drag: the document stays, the window moves
            frame[HEADER:] = doc[offset : offset + view]
            ww, wh = WINDOW
            new_at = (int(rng.integers(0, width - ww)), int(rng.integers(HEADER, height - wh)))
            frame[new_at[1] : new_at[1] + wh, new_at[0] : new_at[0] + ww] = noise(ww, wh, seed + 7)
            if window_at is not None:
                copies.append((*window_at, ww, wh, *new_at))
            window_at = new_at
            steps.append(Step(frame, copies))
            overlays = [(new_at[1], new_at[1] + wh)]
            continue
        window_at = None
        frame[HEADER:] = doc[target : target + view]
        drawn: list[tuple[int, int]] = []
        if i in BLOCK_FRAMES:
            bx, by = int(rng.integers(0, width - 40)), int(rng.integers(HEADER, height - 20))
            frame[by : by + 20, bx : bx + 40] = noise(40, 20, seed + 200 + i)
            drawn.append((by, by + 20))
        d = target - offset  # the content moved up by d rows: new row y shows old row y + d
        if steps and d and abs(d) < view:
            dst_rows = (HEADER, HEADER + view - d) if d > 0 else (HEADER - d, HEADER + view)
            excluded = drawn + [(a - d, b - d) for a, b in overlays]
            bands = _bands(dst_rows, excluded)
            if d < 0:
                bands.reverse()  # moving down: lower bands first
            lie = 3 if i == LIE_FRAME else 0
            copies = [(0, a + d + lie, width, b - a, 0, a) for a, b in bands if b + d + lie <= height]
        offset = target
        overlays = drawn
        steps.append(Step(frame, copies))
    return steps
