"""Adaptive quality with real noVNC clients: one behind a 2 Mbit/s relay, one direct.

The slow client must stay close to the latest frame (congestion control from Fence round trips
keeps the link's buffers empty, and its JPEG quality drops), the fast one must keep the full
frame rate, and once the scene stops both must end pixel-exact (the lossless refresh).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from pdum.rfb.bench.scenes import photo_like
from pdum.rfb.protocol.messages import QUALITY_LEVEL_0, Encoding
from pdum.rfb.testing import noise

from ..support import LoopThread
from ..throttle import ThrottledRelay
from .conftest import wait_for_canvas
from .test_novnc import GRAB, PSEUDO, open_novnc

WIDTH, HEIGHT = 640, 360
FPS = 20
MOVING_SECONDS = 8.0
WARMUP_SECONDS = 2.0
RATE = 2_000_000 / 8  # 2 Mbit/s in bytes per second
BITS = 16
BOX = 16  # the frame counter: BITS black/white squares along the top edge

# Reads the frame counter off noVNC's canvas every few ms and records when it changes.
WATCH = f"""() => {{
  const canvas = document.querySelector('#screen canvas');
  const ctx = canvas.getContext('2d', {{ willReadFrequently: true }});
  window.seen = [];
  let last = -1;
  setInterval(() => {{
    if (canvas.width < {BITS * BOX}) return;
    const row = ctx.getImageData(0, {BOX // 2}, {BITS * BOX}, 1).data;
    let n = 0;
    for (let i = 0; i < {BITS}; i++) {{
      if (row[(i * {BOX} + {BOX // 2}) * 4 + 1] > 128) n |= 1 << i;
    }}
    if (n !== last) {{ last = n; window.seen.push([n, Date.now()]); }}
  }}, 2);
}}"""


def frame(background: np.ndarray, n: int) -> np.ndarray:
    """The photo-like background scrolled by ``n`` pixels (every tile changes), with ``n`` in bits."""
    out = np.roll(background, 3 * n, axis=1)[:HEIGHT, :WIDTH].copy()
    for i in range(BITS):
        out[:BOX, i * BOX : (i + 1) * BOX] = 255 if (n >> i) & 1 else 0
    return out


def lags(seen: list[list[float]], published: dict[int, float], since: float, until: float) -> list[float]:
    """Milliseconds from each frame's publish to the page showing it, within [since, until]."""
    return [
        t - published[n] * 1000.0
        for n, t in seen
        if n in published and since * 1000.0 <= published[n] * 1000.0 <= until * 1000.0
    ]


#: noVNC's encodings without H.264 (so the slow client gets Tight JPEG and its quality adapts),
#: and H.264 only (its frames are small; the window and the lossless refresh still apply).
TIGHT = [Encoding.TIGHT, QUALITY_LEVEL_0 + 6, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES, *PSEUDO]
H264 = [Encoding.H264, QUALITY_LEVEL_0 + 6, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES, *PSEUDO]


@pytest.mark.parametrize("encodings", [TIGHT, H264], ids=["tight-jpeg", "h264"])
def test_slow_client_keeps_up_and_fast_client_keeps_rate(
    served: LoopThread, browser: Any, static_server: str, encodings: list[int]
) -> None:
    display = served.serve(WIDTH, HEIGHT, port=0, lossy=True)
    wide = WIDTH + 3 * FPS * 20
    # Grain makes JPEG work: about 40 KB per frame at noVNC's default quality, more than 2 Mbit/s
    # carries at the publish rate, so the slow client must skip frames and lower its quality.
    grain = noise(wide, HEIGHT, seed=10).astype(np.int16) // 4 - 32
    background = np.clip(photo_like(wide, HEIGHT, seed=9).astype(np.int16) + grain, 0, 255).astype(np.uint8)
    served.publish(display, frame(background, 0))
    ws = urlparse(display.ws_url)
    assert ws.hostname is not None and ws.port is not None
    relay = ThrottledRelay(ws.hostname, ws.port, RATE)
    contexts = [browser.new_context(viewport={"width": 1400, "height": 850}) for _ in range(2)]
    try:
        fast, slow = (context.new_page() for context in contexts)
        open_novnc(fast, static_server, str(display.ws_url), encodings)
        open_novnc(slow, static_server, display.ws_url.replace(f":{ws.port}", f":{relay.port}"), encodings)
        for page in (fast, slow):
            wait_for_canvas(page, frame(background, 0), GRAB, timeout=30)
            page.evaluate(WATCH)

        published: dict[int, float] = {}
        start = time.time()
        n = 0
        while time.time() - start < MOVING_SECONDS:
            n += 1
            published[n] = time.time()
            served.publish(display, frame(background, n))
            time.sleep(max(0.0, start + n / FPS - time.time()))
        last = frame(background, n)
        time.sleep(0.3)
        seen = {name: page.evaluate("window.seen") for name, page in (("fast", fast), ("slow", slow))}
        window = (start + WARMUP_SECONDS, published[n])
        moving = [k for k, t in published.items() if window[0] <= t <= window[1]]

        slow_lags = lags(seen["slow"], published, *window)
        fast_seen = {k for k, _ in seen["fast"]} & set(moving)
        sessions = served.call(lambda: list(display.server.sessions.values()))
        quality = [s.quality.level for s in sessions]
        links = served.call(
            lambda: [
                f"quality {s.quality.level}, {(s.congestion.bandwidth or 0) / 1e3:.0f} kB/s, "
                f"{s.stats.updates_sent} updates, "
                f"{s.encode_context.h264.rects_sent if s.encode_context.h264 else 0} H.264 rects"
                for s in display.server.sessions.values()
            ]
        )
        report = (
            f"slow: {len(slow_lags)} frames, lag max {max(slow_lags, default=-1):.0f} ms, "
            f"p50 {np.median(slow_lags) if slow_lags else -1:.0f} ms; "
            f"fast: {len(fast_seen)}/{len(moving)} frames; sessions {links}; "
            f"relay forwarded {relay.forwarded} bytes"
        )
        print(report)
        assert len(slow_lags) >= MOVING_SECONDS - WARMUP_SECONDS, report  # at least ~1 fps gets through
        assert max(slow_lags) < 200, report
        assert len(fast_seen) >= 0.9 * len(moving), report
        h264_rects = served.call(
            lambda: [s.encode_context.h264.rects_sent if s.encode_context.h264 else 0 for s in sessions]
        )
        if Encoding.H264 in encodings:
            assert min(h264_rects) > 0.5 * len(moving), report
        else:
            assert h264_rects == [0, 0]
            assert min(q for q in quality if q is not None) < 6, report  # the slow client's dropped

        # The scene stops: both end exactly on the last frame, the slow one through the relay.
        wait_for_canvas(fast, last, GRAB, timeout=15)
        wait_for_canvas(slow, last, GRAB, timeout=30)
        for page in (fast, slow):
            assert page.evaluate("window.rfbErrors") == []
    finally:
        for context in contexts:
            context.close()
        relay.close()
