from __future__ import annotations

import numpy as np
import pytest

from pdum.rfb.framebuffer import (
    TILE,
    Framebuffer,
    changed_pixels,
    changed_tiles,
    tiles_of,
    tiles_to_rects,
    validate_frame,
)


def test_identical_frame_has_no_damage() -> None:
    fb = Framebuffer(100, 70)
    frame = np.full((70, 100, 3), 9, dtype=np.uint8)
    assert not fb.update(frame).empty
    generation = fb.generation
    damage = fb.update(frame.copy())
    assert damage.empty and fb.generation == generation


def test_damage_tiles_and_rects() -> None:
    old = np.zeros((200, 300, 3), dtype=np.uint8)
    new = old.copy()
    new[70, 130] = 1  # tile (1, 2)
    new[199, 299] = 1  # tile (3, 4), a partial edge tile
    tiles = changed_tiles(old, new)
    assert tiles.shape == (4, 5)
    assert set(zip(*np.nonzero(tiles), strict=True)) == {(1, 2), (3, 4)}
    assert tiles_to_rects(tiles, 300, 200) == [(128, 64, 64, 64), (256, 192, 44, 8)]


def test_rects_merge_and_clip() -> None:
    tiles = np.zeros((3, 3), dtype=bool)
    tiles[0:2, 0:2] = True
    assert tiles_to_rects(tiles, 150, 150) == [(0, 0, 128, 128)]
    assert tiles_to_rects(tiles, 150, 150, clip=(10, 20, 30, 40)) == [(10, 20, 30, 40)]
    assert tiles_to_rects(tiles, 150, 150, clip=(140, 140, 10, 10)) == []


def test_resize_is_full_damage_and_copies() -> None:
    fb = Framebuffer(10, 10)
    frame = np.ones((20, 30, 4), dtype=np.uint8)
    damage = fb.update(frame)
    assert damage.resized and damage.tiles.all()
    frame[:] = 5
    assert fb.pixels.max() == 1  # our own copy, alpha dropped
    assert fb.pixels.shape == (20, 30, 3)


@pytest.mark.parametrize(
    "frame, error",
    [
        ([[1, 2, 3]], TypeError),
        (np.zeros((4, 4, 3), dtype=np.float32), TypeError),
        (np.zeros((4, 4), dtype=np.uint8), ValueError),
        (np.zeros((4, 4, 2), dtype=np.uint8), ValueError),
        (np.zeros((0, 4, 3), dtype=np.uint8), ValueError),
    ],
)
def test_validate_frame(frame: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_frame(frame)


def test_split_rect_limits() -> None:
    from pdum.rfb.encodings.base import split_rect

    assert split_rect(0, 0, 100, 10, None, None) == [(0, 0, 100, 10)]
    pieces = split_rect(10, 20, 5000, 30, 2048, 65536)
    assert all(w <= 2048 and w * h <= 65536 for _, _, w, h in pieces)
    assert sum(w * h for _, _, w, h in pieces) == 5000 * 30
    pieces = split_rect(0, 0, 300, 300, 2048, 65536)
    assert sum(w * h for _, _, w, h in pieces) == 300 * 300 and all(w * h <= 65536 for *_, w, h in pieces)


def test_changed_tiles_matches_the_per_pixel_mask() -> None:
    """The word-wise comparison finds exactly the tiles the per-pixel mask does: any width
    (8-byte words or single bytes), partial edge tiles, one changed byte, non-contiguous input."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        w, h = int(rng.integers(1, 300)), int(rng.integers(1, 200))
        old = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        new = old.copy()
        for _ in range(int(rng.integers(0, 4))):
            new[int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(0, 3))] ^= 1
        assert np.array_equal(changed_tiles(old, new), tiles_of(changed_pixels(old, new)))
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        assert np.array_equal(changed_tiles(old, rgba[..., :3]), tiles_of(changed_pixels(old, rgba[..., :3])))


@pytest.mark.parametrize("width,height", [(320, 240), (203, 157), (64, 64), (130, 1), (8, 200)])
def test_changed_tiles_when_first_rows_change(width: int, height: int) -> None:
    """Every tile changed in its first row is decided by those rows alone; a tile whose first
    row is the same is still compared in full (changed lower down, or not at all)."""
    rng = np.random.default_rng(width * height)
    old = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    new = old.copy()
    new[::TILE] ^= 1  # the first row of every tile
    assert changed_tiles(old, new).all()
    last_row, last_col = ((height - 1) // TILE) * TILE, ((width - 1) // TILE) * TILE
    new[last_row, last_col:] = old[last_row, last_col:]  # the last tile's first row as before
    expected = tiles_of(changed_pixels(old, new))
    assert not expected[-1, -1] and np.array_equal(changed_tiles(old, new), expected)
    if last_row + 1 < height:
        new[height - 1, width - 1, 2] ^= 0x80  # ... but a change lower down in it
        assert changed_tiles(old, new).all()
