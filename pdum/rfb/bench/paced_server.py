"""The browser benchmark's server: publishes pre-rendered frames at a fixed rate, each carrying its
frame number in pixels, and reports when it published each one.

usage: ``python -m pdum.rfb.bench.paced_server WIDTH HEIGHT NFRAMES FPS SCENE TIMEOUT_S``

It runs in its own process (like :mod:`.pdum_server`) so that ``getrusage(RUSAGE_SELF)`` is our
server's CPU and nothing else's (the harness's Playwright driver and Chromium are other
processes). Protocol on stdin/stdout:

* it serves the WebSocket bridge on a free loopback port, publishes frame 0 and prints
  ``READY <ws_url>``;
* once the harness writes a line (the browser is connected and shows frame 0), it publishes
  frames 1..NFRAMES-1 at ``FPS``, on a fixed schedule (no lock-step: a browser has no request
  hook, and a real application publishes on its own clock);
* it prints one JSON line: the wall-clock time (``time.time_ns()``, the clock the page's
  ``performance.timeOrigin + performance.now()`` is compared with) just before each publish,
  and the process's CPU over the paced run.

Every frame carries :func:`stamp`: its number as 16 black/white 8x8 blocks in the top-left
corner, which the page decodes from its canvas.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..display import serve
from .pdum_server import CpuWindow, on_clock, run_bounded
from .scenes import SCENES

#: The frame counter: ``COUNTER_BITS`` blocks of ``BLOCK`` x ``BLOCK`` pixels along the top row
#: (the page in :mod:`.browser` reads the same layout).
COUNTER_BITS = 16
BLOCK = 8


def stamp(frame: np.ndarray, n: int) -> np.ndarray:
    """Draw ``n`` into the frame's top-left corner: bit i is block i, white for 1, black for 0."""
    for i in range(COUNTER_BITS):
        frame[:BLOCK, i * BLOCK : (i + 1) * BLOCK] = 255 if (n >> i) & 1 else 0
    return frame


async def _run(width: int, height: int, nframes: int, fps: float, scene: str) -> dict[str, Any]:
    render = SCENES[scene]
    frames = [stamp(np.ascontiguousarray(render(width, height, t)), t) for t in range(nframes)]
    display = await serve(width, height, host="127.0.0.1", port=0, vnc_port=None, name="pdum.rfb")
    loop = asyncio.get_running_loop()
    try:
        display.publish(frames[0])
        print(f"READY {display.ws_url}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        publish_ns: list[int] = []
        period = 1.0 / fps
        window = CpuWindow()

        def publish_at(k: int) -> None:
            publish_ns.append(time.time_ns())
            display.publish(frames[k + 1])

        await asyncio.sleep(period)  # frame 1 a period after the page is ready
        await on_clock(fps, nframes - 1, publish_at)  # (each frame followed by its whole period)
        await asyncio.sleep(max(0.0, min(1.0, 5 * period) - period))  # let the last frame go out
        return {
            **window.numbers(),
            "frames": nframes - 1,
            "publish_ns": publish_ns,
            "clients": display.client_count,
        }
    finally:
        await display.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    width, height, nframes = (int(v) for v in args[:3])
    fps, scene, timeout = float(args[3]), args[4], int(args[5])
    return run_bounded("paced_server", timeout, lambda: _run(width, height, nframes, fps, scene))


if __name__ == "__main__":
    sys.exit(main())
