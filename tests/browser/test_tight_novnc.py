"""noVNC's own Tight and TightPNG decoders (headless Chromium) against our encoders: exact pixels
for every lossless method, JPEG quality when the Display allows lossy output.

TightPNG has no other client here (libvncclient, TigerVNC and gtk-vnc do not implement it), so
this is its only interop test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb import congestion
from pdum.rfb.protocol.messages import QUALITY_LEVEL_0, Encoding
from pdum.rfb.testing import checkerboard, gradient, noise, noise_and_gradient, solid, text_like

from ..support import LoopThread, wait_until
from ..unit.test_tight import photo_like, psnr
from .conftest import decode_data_url, wait_for_canvas
from .test_novnc import GRAB, PSEUDO, open_novnc

WIDTH, HEIGHT = 320, 240


def ws_url(display: rfb.Display) -> str:
    assert display.ws_url is not None
    return display.ws_url


def frames() -> list[np.ndarray]:
    text = text_like(WIDTH, HEIGHT, seed=3)
    partial = text.copy()
    partial[40:100, 60:200] = noise(140, 60, seed=4)  # mixed with text: many colours
    # Whole 64x64 damage tiles, so these rects are exactly two colours (1-bit palette) and one (fill).
    partial[128:192, 64:256] = checkerboard(192, 64, 5, ((10, 20, 30), (240, 230, 220)))
    partial[192:240, 256:320] = (12, 34, 56)
    return [
        noise_and_gradient(WIDTH, HEIGHT, seed=1),
        gradient(WIDTH, HEIGHT),
        solid(WIDTH, HEIGHT, (12, 200, 99)),
        text,
        partial,
        photo_like(WIDTH, HEIGHT, seed=5),
    ]


@pytest.mark.parametrize(
    "encoding, gradient_filter",
    [(Encoding.TIGHT, False), (Encoding.TIGHT, True), (Encoding.TIGHT_PNG, False)],
    ids=["tight", "tight-gradient", "tightpng"],
)
def test_novnc_lossless(
    served: LoopThread, page: Any, static_server: str, encoding: Encoding, gradient_filter: bool
) -> None:
    # noVNC 1.7 decodes the gradient filter (1.3 does not: see test_hosted's stock-page test)
    display = served.serve(WIDTH, HEIGHT, port=0, tight_gradient=gradient_filter)
    sequence = frames()
    served.publish(display, sequence[0])
    open_novnc(page, static_server, ws_url(display), [encoding, *PSEUDO])
    for frame in sequence:
        served.publish(display, frame)
        wait_for_canvas(page, frame, GRAB)
    assert page.evaluate("window.rfbErrors") == []


@pytest.mark.parametrize("encoding", [Encoding.TIGHT, Encoding.TIGHT_PNG], ids=["tight", "tightpng"])
def test_novnc_jpeg_quality_8(
    served: LoopThread, page: Any, static_server: str, encoding: Encoding, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keep the JPEG pixels on screen to measure them (no lossless refresh while still).
    monkeypatch.setattr(congestion, "REFRESH_DELAY", 3600.0)
    display = served.serve(WIDTH, HEIGHT, port=0, lossy=True)
    photo = photo_like(WIDTH, HEIGHT, seed=6)
    served.publish(display, photo)
    open_novnc(page, static_server, ws_url(display), [encoding, QUALITY_LEVEL_0 + 8, *PSEUDO])

    last: dict[str, Any] = {}

    def shown() -> bool:
        # noVNC draws JPEG rects asynchronously, so poll until the whole photo is there.
        url = page.evaluate(GRAB)
        got = decode_data_url(url) if url else None
        if got is None or got.shape != photo.shape:
            return False
        last["got"], last["psnr"] = got, psnr(got, photo)
        return bool(last["psnr"] >= 35.0)

    try:
        wait_until(shown, timeout=15, interval=0.2)
    except AssertionError:
        raise AssertionError(f"noVNC never showed the photo at >= 35 dB (last {last.get('psnr')})") from None
    assert not np.array_equal(last["got"], photo)  # lossy: JPEG was used
    # Few colours stay lossless with JPEG enabled.
    text = text_like(WIDTH, HEIGHT, seed=7)
    served.publish(display, text)
    wait_for_canvas(page, text, GRAB)
