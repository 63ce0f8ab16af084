"""noVNC's H.264 decoder (WebCodecs in Debian's headless Chromium) against our libx264 stream: a
1280x720 panning photo shown at >= 35 dB, and the rects really were encoding 50."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pdum.rfb import congestion
from pdum.rfb.bench.scenes import photo_pan
from pdum.rfb.encodings import h264
from pdum.rfb.protocol.messages import QUALITY_LEVEL_0, Encoding

from ..support import LoopThread, wait_until
from ..unit.test_tight import psnr
from .conftest import decode_data_url
from .test_novnc import GRAB, PSEUDO, open_novnc

WIDTH, HEIGHT = 1280, 720
FRAMES = 8

# Only where the optional extra is missing; CI installs every extra, so there it must run.
pytestmark = pytest.mark.skipif(
    not h264.available() and not os.environ.get("CI"), reason=str(h264.unavailable_reason())
)


def test_novnc_h264_moving_photo(
    served: LoopThread, page: Any, static_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lossy tiles are refreshed losslessly once they stop changing; keep the H.264 pixels on
    # screen long enough to measure them.
    no_refresh = hasattr(congestion, "REFRESH_DELAY")
    if no_refresh:
        monkeypatch.setattr(congestion, "REFRESH_DELAY", 3600.0)
    display = served.serve(WIDTH, HEIGHT, port=0, lossy=True)
    assert display.ws_url is not None
    served.publish(display, photo_pan(WIDTH, HEIGHT, 0))
    # Restricted to H.264 (Raw, which every client decodes, carries the first full repaint).
    open_novnc(page, static_server, display.ws_url, [Encoding.H264, QUALITY_LEVEL_0 + 6, *PSEUDO])
    assert page.evaluate("typeof VideoDecoder") == "function", "no WebCodecs in this Chromium"
    scores = []
    for t in range(1, FRAMES + 1):
        frame = photo_pan(WIDTH, HEIGHT, t)
        served.publish(display, frame)
        last: dict[str, float] = {}

        def shown(frame: Any = frame, last: dict[str, float] = last) -> bool:
            url = page.evaluate(GRAB)
            got = decode_data_url(url) if url else None
            if got is None or got.shape != frame.shape:
                return False
            last["psnr"] = psnr(got, frame)
            return last["psnr"] >= 35.0

        try:
            wait_until(shown, timeout=20, interval=0.1)
        except AssertionError:
            raise AssertionError(f"frame {t} never shown at >= 35 dB (last {last.get('psnr')})") from None
        scores.append(last["psnr"])
    session = served.call(lambda: next(iter(display.server.sessions.values())))
    state = session.encode_context.h264
    assert state is not None and state.rects_sent >= FRAMES - 1, "the frames did not go out as H.264"
    # noVNC's H.264 decoder made a context for the whole-screen rectangle, and nothing failed.
    contexts = page.evaluate(f"Object.keys(window.rfb._decoders[{int(Encoding.H264)}]._contexts)")
    assert contexts == [f"0,0,{WIDTH},{HEIGHT}"]
    assert page.evaluate("window.rfbErrors") == []
    if no_refresh:  # what was measured is H.264's output, not an exact repaint
        assert all(score < 60 for score in scores), scores
    print(f"H.264 in noVNC: PSNR per frame {[round(float(s), 1) for s in scores]}")
