"""Deterministic test patterns (``HxWx3`` uint8 frames) for demos, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Pattern = Callable[..., np.ndarray]

BACKGROUND_PERIOD = 48
ORANGE = (255, 140, 0)


def solid(width: int, height: int, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    if height:
        # One row from the tuple, then whole rows: broadcasting the 3-tuple over the frame
        # directly runs an inner loop of length 3 and is ~40x slower (the demo renders this
        # every frame).
        frame[0] = color
        frame[1:] = frame[0]
    return frame


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Uniform random RGB: incompressible, and every pixel differs from its neighbours."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def gradient(width: int, height: int) -> np.ndarray:
    """Red rises left to right, green top to bottom, blue along the diagonal."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = np.broadcast_to(x, (height, width)).astype(np.uint8)
    frame[..., 1] = np.broadcast_to(y, (height, width)).astype(np.uint8)
    frame[..., 2] = ((x + y) / 2).astype(np.uint8)
    return frame


def noise_and_gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Left half random noise, right half a gradient: the acceptance-test frame."""
    frame = gradient(width, height)
    half = width // 2
    frame[:, :half] = noise(half, height, seed)
    return frame


def checkerboard(width: int, height: int, size: int = 16,
                 colors: tuple[tuple[int, int, int], tuple[int, int, int]] = ((0, 0, 0), (255, 255, 255))
                 ) -> np.ndarray:  # fmt: skip
    yy, xx = np.indices((height, width))
    mask = ((xx // size) + (yy // size)) % 2 == 1
    frame = solid(width, height, colors[0])
    frame[mask] = colors[1]
    return frame


def test_card(width: int, height: int) -> np.ndarray:
    """Colour bars over a grey ramp with a white border: checks colours, edges and geometry."""
    bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
            (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]  # fmt: skip
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    top = height * 2 // 3
    for i, color in enumerate(bars):
        x0, x1 = width * i // len(bars), width * (i + 1) // len(bars)
        frame[:top, x0:x1] = color
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    frame[top:, :, :] = ramp[None, :, None]
    frame[0, :] = frame[-1, :] = 255
    frame[:, 0] = frame[:, -1] = 255
    return frame


def _box_position(width: int, height: int, t: int, size: int) -> tuple[int, int]:
    span_x, span_y = max(1, width - size), max(1, height - size)
    x = (t * 7) % (2 * span_x)
    y = (t * 5) % (2 * span_y)
    return (x if x < span_x else 2 * span_x - x), (y if y < span_y else 2 * span_y - y)


def bouncing_box(width: int, height: int, t: int = 0, size: int = 48) -> np.ndarray:
    """A box bouncing over a static checkerboard: only a small area changes per frame."""
    frame = checkerboard(width, height, 32, ((32, 32, 48), (48, 48, 64)))
    x, y = _box_position(width, height, t, size)
    frame[y : y + size, x : x + size] = ORANGE
    return frame


def seed_scene(width: int, height: int, t: int = 0) -> np.ndarray:
    """The seed notebook's scene: a 60x60 orange block moving over a uniform background whose
    shade changes every frame (so every tile changes every frame)."""
    shade = 20 + (t % BACKGROUND_PERIOD)
    frame = solid(width, height, (shade, shade, shade + 20))
    x, y = _box_position(width, height, t * 2, 60)
    frame[y : y + 60, x : x + 60] = ORANGE
    return frame


_DIGITS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111",
}  # fmt: skip


def counter(width: int, height: int, n: int = 0, scale: int = 8) -> np.ndarray:
    """The number ``n`` drawn in big blocky digits (a frame counter you can read by eye)."""
    frame = solid(width, height, (0, 0, 0))
    x = scale
    for ch in str(n):
        bits = _DIGITS[ch]
        for i, bit in enumerate(bits):
            if bit == "1":
                r, c = divmod(i, 3)
                y0, x0 = scale + r * scale, x + c * scale
                frame[y0 : y0 + scale, x0 : x0 + scale] = (255, 255, 255)
        x += 4 * scale
    return frame


def text_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Few colours in small runs, like a terminal or a document."""
    rng = np.random.default_rng(seed)
    frame = solid(width, height, (250, 250, 250))
    palette = np.array([(20, 20, 20), (200, 30, 30), (30, 30, 200)], dtype=np.uint8)
    for row in range(4, height - 10, 14):
        x = 4
        while x < width - 10:
            word = int(rng.integers(2, 9)) * 6
            color = palette[int(rng.integers(0, len(palette)))]
            glyphs = rng.random((9, word)) < 0.45
            region = frame[row : row + 9, x : x + word]
            region[glyphs[: region.shape[0], : region.shape[1]]] = color
            x += word + 6
    return frame


PATTERNS: dict[str, Pattern] = {
    "test_card": test_card,
    "gradient": gradient,
    "noise": noise,
    "noise_and_gradient": noise_and_gradient,
    "checkerboard": checkerboard,
    "solid": solid,
    "bouncing_box": bouncing_box,
    "seed_scene": seed_scene,
    "counter": counter,
    "text_like": text_like,
}

#: Patterns that take a frame number and so animate.
ANIMATED = {"bouncing_box", "seed_scene", "counter"}


def render_pattern(name: str, width: int, height: int, t: int = 0) -> np.ndarray:
    if name not in PATTERNS:
        raise ValueError(f"unknown pattern {name!r}; choose from {', '.join(sorted(PATTERNS))}")
    if name in ANIMATED:
        return PATTERNS[name](width, height, t)
    return PATTERNS[name](width, height)
