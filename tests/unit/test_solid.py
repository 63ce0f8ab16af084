"""Solid areas cut out for Tight (encodings/solid.py): an exact cover, truly one colour, found
where the references find them, and decoded pixel-exactly through a real session."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.encodings.solid import MAX_STRIPS, MIN_SOLID_AREA, _quick_look, split_solid
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.protocol.pixelformat import BGR233, RGB565, SERVER_DEFAULT, PixelFormat
from pdum.rfb.testing import bouncing_box, checkerboard, noise, seed_scene, solid, text_like
from tests.support import rfb_connect, run_async
from tests.unit.test_tight import TightDecoder

Rect = tuple[int, int, int, int]


def check_cover(frame: np.ndarray, rects: list[Rect], solids: list[Rect], others: list[Rect]) -> None:
    """``solids`` and ``others`` tile ``rects`` exactly, and every solid rect is one colour."""
    h, w = frame.shape[:2]
    wanted = np.zeros((h, w), np.int32)
    for x, y, rw, rh in rects:
        wanted[y : y + rh, x : x + rw] += 1
    got = np.zeros((h, w), np.int32)
    for x, y, rw, rh in solids + others:
        assert rw > 0 and rh > 0, (x, y, rw, rh)
        got[y : y + rh, x : x + rw] += 1
    np.testing.assert_array_equal(got, wanted)
    for x, y, rw, rh in solids:
        part = frame[y : y + rh, x : x + rw]
        assert (part == part[0, 0]).all(), (x, y, rw, rh)


def ui_frame(width: int, height: int, seed: int) -> np.ndarray:
    """Random panels, lines and noisy patches on a background, at unaligned positions."""
    rng = np.random.default_rng(seed)
    frame = solid(width, height, (236, 236, 236))
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, (width - 8, height - 8)))
        w, h = (int(v) for v in rng.integers(1, (width - x + 1, height - y + 1)))
        colour = rng.integers(0, 4, 3) * 80  # few colours: neighbours often share one
        frame[y : y + h, x : x + w] = colour
    for _ in range(3):
        x, y = (int(v) for v in rng.integers(0, (width - 30, height - 30)))
        frame[y : y + 30, x : x + 30] = noise(30, 30, seed=seed)
    return frame


@pytest.mark.parametrize("seed", range(12))
def test_random_ui_frames_are_covered_exactly(seed: int) -> None:
    frame = ui_frame(203, 157, seed)
    rng = np.random.default_rng(100 + seed)
    rects: list[Rect] = [(0, 0, 203, 157)]
    x, y = int(rng.integers(0, 100)), int(rng.integers(0, 80))
    sub = [(x, y, int(rng.integers(1, 203 - x + 1)), int(rng.integers(1, 157 - y + 1)))]
    for case in (rects, sub):
        solids, others = split_solid(frame, case)
        check_cover(frame, case, solids, others)


def test_seed_scene_is_all_fills() -> None:
    """The demo's scene (a box on a uniform background) is mostly a handful of fills, whatever
    the box's position relative to the 16-pixel blocks. Near the bottom edge the box and the
    strip below it hold too few whole blocks and stay one ordinary rect (as with the references)."""
    whole = 0
    for t in range(0, 120, 3):
        frame = seed_scene(320, 240, t)
        solids, others = split_solid(frame, [(0, 0, 320, 240)])
        check_cover(frame, [(0, 0, 320, 240)], solids, others)
        assert len(solids) <= 5 and len(others) <= 1
        assert sum(w * h for _, _, w, h in others) <= 60 * 90
        whole += not others
    assert whole >= 30  # of 40


def panels(width: int, height: int, seed: int) -> np.ndarray:
    """Up to four bands, each of one colour or of up to three one-colour columns (a box on a
    background, side panels, margins), of any height and width down to one pixel: at most 12
    one-colour rects, which the strips cut takes whole."""
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.uint8)
    cuts = sorted({0, height, *rng.integers(1, height, int(rng.integers(0, 4))).tolist()})
    for top, bottom in zip(cuts, cuts[1:], strict=False):
        edges = sorted({0, width, *rng.integers(1, width, int(rng.integers(0, 3))).tolist()})
        for left, right in zip(edges, edges[1:], strict=False):
            frame[top:bottom, left:right] = rng.integers(0, 256, 3)
    return frame


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("width,height", [(320, 240), (203, 157), (64, 64), (96, 48), (90, 700), (64, 300)])
def test_panels_are_cut_into_fills_exactly(seed: int, width: int, height: int) -> None:
    """Frames of bands and columns: an exact cover of one-colour rects, all fills when there are
    few enough strips; a pixel that breaks a strip leaves a valid cover too (the block search)."""
    frame = panels(width, height, seed)
    whole = [(0, 0, width, height)]
    solids, others = split_solid(frame, whole)
    check_cover(frame, whole, solids, others)
    if _quick_look(frame) is not None:  # (else no area is large enough: the rect stays whole)
        assert not others and len(solids) <= MAX_STRIPS  # all fills, whatever the strips' sizes
    inner = [(3, 1, width - 5, height - 2)]  # off the frame's rows and words: unaligned views
    check_cover(frame, inner, *split_solid(frame, inner))
    broken = frame.copy()
    broken[height // 2, width // 3] ^= 0x55  # one pixel off: its column is no longer one colour
    solids, others = split_solid(broken, whole)
    check_cover(broken, whole, solids, others)


def test_strips_need_few_pieces_and_uniform_columns() -> None:
    """The seed scene is five fills by the strips cut; thin stripes (hundreds of pieces) and a
    checkerboard (columns change colour down a band) are not cut into strips."""
    frame = seed_scene(320, 240, 7)
    assert split_solid(frame, [(0, 0, 320, 240)]) == (
        [(0, 0, 320, 70), (0, 70, 98, 60), (98, 70, 60, 60), (158, 70, 162, 60), (0, 130, 320, 110)],
        [],
    )
    stripes = solid(320, 240, (0, 0, 0))
    stripes[:, ::2] = (255, 255, 255)
    solids, others = split_solid(stripes, [(0, 0, 320, 240)])
    assert len(solids) <= MAX_STRIPS
    check_cover(stripes, [(0, 0, 320, 240)], solids, others)
    board = checkerboard(320, 240, 64, ((1, 2, 3), (4, 5, 6)))
    solids, others = split_solid(board, [(0, 0, 320, 240)])
    check_cover(board, [(0, 0, 320, 240)], solids, others)


@pytest.mark.parametrize("size", [44, 46, 48, 60])
def test_area_threshold_and_exact_edges(size: int) -> None:
    """A square inside noise is cut out, at its exact unaligned edges, once it can hold enough
    whole blocks to reach the minimum area (TigerVNC: blocks first, then pixel by pixel)."""
    frame = noise(200, 150, seed=3)
    frame[37 : 37 + size, 21 : 21 + size] = (9, 99, 199)
    solids, others = split_solid(frame, [(0, 0, 200, 150)])
    check_cover(frame, [(0, 0, 200, 150)], solids, others)
    whole_blocks = ((37 + size) // 16 - 3) * ((21 + size) // 16 - 2)
    if whole_blocks * 256 >= MIN_SOLID_AREA:
        assert solids == [(21, 37, size, size)]
    else:
        assert solids == []


@pytest.mark.parametrize("width,height", [(48, 48), (128, 16), (16, 128), (64, 32), (32, 64)])
def test_smallest_areas_pass_the_quick_look(width: int, height: int) -> None:
    """Block-aligned areas of exactly 8 or 9 blocks in every shape (a row, a column, 3x3, 4x2,
    2x4) inside noise are found: the look at two pixels a block must never turn them away."""
    frame = noise(256, 192, seed=5)
    frame[32 : 32 + height, 48 : 48 + width] = (200, 10, 10)
    solids, others = split_solid(frame, [(0, 0, 256, 192)])
    check_cover(frame, [(0, 0, 256, 192)], solids, others)
    assert solids == [(48, 32, width, height)]


@pytest.mark.parametrize(
    "frame",
    [noise(320, 240), checkerboard(320, 240, 32, ((1, 2, 3), (4, 5, 6))), text_like(320, 240)],
    ids=["noise", "checker32", "text"],
)
def test_no_large_solid_area_leaves_the_rect_whole(frame: np.ndarray) -> None:
    assert split_solid(frame, [(0, 0, 320, 240)]) == ([], [(0, 0, 320, 240)])


def test_small_rects_are_not_searched() -> None:
    frame = solid(100, 100, (1, 2, 3))
    assert split_solid(frame, [(0, 0, 60, 60)]) == ([], [(0, 0, 60, 60)])
    assert split_solid(frame, [(0, 0, 64, 64)]) == ([(0, 0, 64, 64)], [])


@pytest.mark.parametrize(
    "width,height,pf",
    [(320, 240, SERVER_DEFAULT), (640, 400, SERVER_DEFAULT), (320, 240, RGB565), (320, 240, BGR233)],
    ids=["inline", "threaded", "rgb565", "bgr233"],
)
def test_tight_session_sends_fills_and_decodes_exactly(width: int, height: int, pf: PixelFormat) -> None:
    """Through a real session: seed frames arrive as a few fill rectangles, a bouncing box frame
    (no large solid area) as ordinary Tight rects, all decoded pixel-exactly in the client's
    pixel format; at 640x400 the update is cut and encoded in a worker thread."""
    tpixel = 3 if pf is SERVER_DEFAULT else pf.bits_per_pixel // 8

    async def main() -> None:
        display = await rfb.serve(width, height, port=0, host="127.0.0.1")
        reader, writer = await rfb_connect(display.vnc_port)
        decoder = TightDecoder(pf)
        screen = np.zeros((height, width, pf.bits_per_pixel // 8), np.uint8)
        try:
            writer.write(struct.pack(">Bxxx", 0) + pf.pack())
            writer.write(struct.pack(">BxHi", 2, 1, Encoding.TIGHT))
            frames = [seed_scene(width, height, t) for t in (3, 4, 40)] + [bouncing_box(width, height, 9)]
            total = 0
            for n, frame in enumerate(frames):
                display.publish(frame)
                writer.write(struct.pack(">BBHHHH", 3, n > 0, 0, 0, width, height))
                head = await asyncio.wait_for(reader.readexactly(4), 10)
                count = struct.unpack(">xxH", head)[0]
                size = 4
                methods = []
                for _ in range(count):
                    x, y, w, h, enc = struct.unpack(">HHHHi", await reader.readexactly(12))
                    assert enc == Encoding.TIGHT
                    payload = await _read_tight_payload(reader, w, h, tpixel)
                    size += 12 + len(payload)
                    decoded = decoder.decode(payload, w, h)
                    methods.append(decoded.method)
                    screen[y : y + h, x : x + w] = decoded.pixels
                expected = pf.encode(frame).reshape(height, width, -1)
                np.testing.assert_array_equal(screen, expected)
                if n < 3:
                    assert set(methods) == {"fill"} and count <= 5, methods
                    assert size <= 4 + 5 * (13 + tpixel)
                elif pf.bits_per_pixel > 8:  # (at 8 bpp colours merge: the encoder finds fills itself)
                    assert "fill" not in methods
                total += count
            (client,) = display.stats["clients"].values()
            assert client["rects_sent"] == total  # counted after the cut, when encoded
        finally:
            writer.close()
            await display.aclose()

    run_async(main())


async def _read_tight_payload(reader: asyncio.StreamReader, w: int, h: int, tpixel: int) -> bytes:
    """One Tight rect's payload off the wire (``tpixel`` bytes a TPIXEL), parsed just enough to
    know its length; the reference decoder checks the rest."""
    data = await reader.readexactly(1)
    kind = data[0] >> 4
    if kind == 0x8:
        return data + await reader.readexactly(tpixel)

    async def compact() -> bytes:
        nonlocal data
        value, shift = 0, 0
        for _ in range(3):
            byte = await reader.readexactly(1)
            data += byte
            value |= (byte[0] & (0x7F if shift < 14 else 0xFF)) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        return await reader.readexactly(value)

    if kind == 0x9:
        return data + await compact()
    size = w * h * tpixel
    if kind & 0x4:
        data += await reader.readexactly(1)
        if data[-1] == 1:
            data += await reader.readexactly(1)
            colours = data[-1] + 1
            data += await reader.readexactly(colours * tpixel)
            size = (w + 7) // 8 * h if colours == 2 else w * h
    if size < 12:
        return data + await reader.readexactly(size)
    body = await compact()
    return data + body
