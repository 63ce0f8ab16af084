"""Benchmark scenes: the deterministic patterns of :mod:`pdum.rfb.testing` plus a photo-like one.

Encoders behave very differently on different content (fills, few colours, smooth gradients,
noise), so the benchmark always reports per scene. The photo-like scene exists because none of
the test patterns looks like a photograph or a rendered 3-D view: smooth shading with thousands
of colours and a little sensor grain, which is where lossless encoders struggle and JPEG wins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import testing

#: A scene renders frame ``t`` at ``width`` x ``height`` as ``HxWx3`` uint8.
Scene = Callable[[int, int, int], np.ndarray]


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int, channels: int) -> np.ndarray:
    """Value noise: a ``cells``-wide grid of random values, bilinearly upsampled to the frame."""
    gw = cells + 1
    gh = max(1, round(cells * height / max(width, 1))) + 1
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    ys = np.linspace(0, gh - 1, height, dtype=np.float32)
    xs = np.linspace(0, gw - 1, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.intp), gh - 2)
    x0 = np.minimum(xs.astype(np.intp), gw - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    y1 = y0 + 1
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x0 + 1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy, dtype=np.float32)


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, many-coloured frame with slight grain, standing in for a photograph.

    A shared luminance field (four octaves of value noise) keeps the channels correlated as in
    real images; a weaker per-channel field adds hue variation; Gaussian grain (sigma 1.5) makes
    neighbouring pixels differ slightly, as camera noise and dithering do.
    """
    rng = np.random.default_rng(seed)
    lum = np.zeros((height, width, 1), dtype=np.float32)
    amp = 1.0
    for cells in (3, 7, 17, 41):
        lum += amp * _smooth_noise(rng, width, height, cells, 1)
        amp *= 0.45
    lum /= float(lum.max()) or 1.0
    hue = _smooth_noise(rng, width, height, 5, 3) + 0.5 * _smooth_noise(rng, width, height, 13, 3)
    image = 255.0 * (0.75 * lum + 0.25 * hue / 1.5)
    # A dozen shaded "objects" with hard outlines: photos have edges, not only soft gradients.
    for _ in range(12):
        cx, cy = rng.random() * width, rng.random() * height
        rx, ry = (0.05 + 0.15 * rng.random()) * width, (0.05 + 0.15 * rng.random()) * height
        x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
        y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u, v = (xx - cx) / rx, (yy - cy) / ry
        inside = u * u + v * v < 1.0
        light = 0.55 + 0.45 * np.clip(1.0 - (u + 0.4) ** 2 - (v + 0.4) ** 2, 0.0, 1.0)
        colour = rng.integers(40, 256, 3).astype(np.float32)
        region = image[y0:y1, x0:x1]
        region[inside] = (light[..., None] * colour)[inside]
    image += rng.normal(0.0, 1.5, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _static(fn: Callable[[int, int], np.ndarray]) -> Scene:
    """A scene that ignores ``t``, rendered once per size (some take a while at 1080p)."""
    cache: dict[tuple[int, int], np.ndarray] = {}

    def render(width: int, height: int, t: int) -> np.ndarray:
        key = (width, height)
        if key not in cache:
            cache[key] = fn(width, height)
        return cache[key]

    return render


_PAN_MARGIN = 256
_pan_sources: dict[tuple[int, int], np.ndarray] = {}


def photo_pan(width: int, height: int, t: int = 0) -> np.ndarray:
    """The photo-like frame as a moving camera sees it: a larger photo panned 3 px right and
    2 px down per frame, back and forth (no jumps). Stands in for video or a 3-D view."""
    key = (width, height)
    if key not in _pan_sources:
        _pan_sources[key] = photo_like(width + _PAN_MARGIN, height + _PAN_MARGIN, seed=1)
    source = _pan_sources[key]

    def bounce(v: int) -> int:
        v %= 2 * _PAN_MARGIN
        return v if v <= _PAN_MARGIN else 2 * _PAN_MARGIN - v

    x, y = bounce(3 * t), bounce(2 * t)
    return np.ascontiguousarray(source[y : y + height, x : x + width])


#: Every benchmark scene by name; ``t`` is the frame number (ignored by static scenes).
SCENES: dict[str, Scene] = {
    "seed_scene": testing.seed_scene,
    "bouncing_box": testing.bouncing_box,
    "text_like": _static(testing.text_like),
    "gradient": _static(testing.gradient),
    "noise": _static(testing.noise),
    "photo": _static(photo_like),
    "photo_pan": photo_pan,
}

#: Scenes that change every frame (the others are one static frame encoded repeatedly).
ANIMATED = frozenset({"seed_scene", "bouncing_box", "photo_pan"})
