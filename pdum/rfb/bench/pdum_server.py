"""pdum.rfb's side of the peer benchmark: a server process that mirrors ``benchmarks/peer/lvs_server.c``.

usage: ``python -m pdum.rfb.bench.pdum_server PORT WIDTH HEIGHT NFRAMES FRAMEFILE NCLIENTS TIMEOUT_S [FPS]``

It runs in its own process, like the C server, so the harness measures both the same way: each
server reads ``getrusage(RUSAGE_SELF)`` (user + system CPU of the whole process, every thread)
around the lock-step run and prints it. The protocol is the C server's:

* frame 0 is published before anyone connects; once NCLIENTS clients hold it and have asked for
  more (plus a short settle, so start-up updates such as ExtendedDesktopSize cannot leave a
  request in flight), the run starts;
* frame k+1 is published only when every client has been sent frame k and has sent its next
  FramebufferUpdateRequest, so every client receives every frame exactly once;
* or, with FPS, on a clock instead, as an application's ``publish_loop`` does: frame k (k >= 1)
  at ``start + (k - 1) / FPS``, each followed by its whole period (the server idles between
  frames, as a real one does), so the run is NFRAMES - 1 periods long. Whether every client still
  got every frame is for the harness to check.

To notice requests without polling (a poll loop would bill our server for CPU the C server does
not spend), the benchmark wraps the session's FramebufferUpdateRequest handler: the request that
completes a frame publishes the next one right there, as the C server's loop does, instead of
waking a task. That is a benchmark-only hook: the session has no public "request arrived"
callback.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from ..display import Display, serve
from ..framebuffer import any_tile
from ..protocol import messages as m
from ..session import Session

#: Extra wait once everyone holds frame 0, so late start-up requests have arrived (the C server
#: does the same).
SETTLE_S = 0.2


def cpu_seconds() -> tuple[float, float, int]:
    """(user, system) CPU seconds of this process (every thread) and its minor page faults:
    what the C server reads too."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


class CpuWindow:
    """This process's CPU (every thread), minor page faults and wall time from construction to
    :meth:`numbers`: what every benchmark server measures around its run and reports."""

    def __init__(self) -> None:
        self._user, self._sys, self._faults = cpu_seconds()
        self._wall = time.perf_counter()

    def numbers(self) -> dict[str, float]:
        wall = time.perf_counter()
        user, sys_, faults = cpu_seconds()
        return {
            "cpu_s": (user - self._user) + (sys_ - self._sys),
            "cpu_user_s": user - self._user,
            "cpu_sys_s": sys_ - self._sys,
            "wall_s": wall - self._wall,
            "minor_faults": faults - self._faults,
        }


def _caught_up(display: Display, session: Session) -> bool:
    """The client has been sent the current frame and asked for the next update."""
    return (
        session.ready
        and session.request is not None
        and session.stats.last_generation_sent == display.generation
        and not any_tile(session.damage)
    )


async def _run(
    port: int, width: int, height: int, nframes: int, path: str, nclients: int, fps: float = 0.0
) -> dict[str, Any]:
    frames = np.fromfile(path, dtype=np.uint8, count=nframes * height * width * 3)
    frames = frames.reshape(nframes, height, width, 3)
    wake = asyncio.Event()
    finished = asyncio.Event()
    original = Session._handlers[m.FramebufferUpdateRequest]
    #: Clients found caught up when their request arrived, since the last publish: the run waits
    #: for all of them without re-checking every client on every request (which cost ~0.1 ms a
    #: frame at 16 clients, bookkeeping of this harness that the C server does in a few loads).
    waiting: set[int] = set()
    running = False  # before the run every request wakes the full check below
    publish_ns: list[int] = []
    next_frame = 1

    def publish_next() -> None:
        """Frame ``next_frame`` goes out, or the run ends after the last one."""
        nonlocal next_frame
        if next_frame == nframes:
            finished.set()
            return
        waiting.clear()
        publish_ns.append(time.monotonic_ns())
        display.publish(frames[next_frame])
        next_frame += 1

    def on_request(session: Session, msg: Any) -> None:
        original(session, msg)
        if not running:
            wake.set()
            return
        if _caught_up(display, session):
            waiting.add(session.client_id)
            if len(waiting) >= nclients:
                # Published right here, as the C server's loop does once it sees everyone caught
                # up: a task switch per frame would bill this harness's bookkeeping to the server.
                publish_next()

    def publish_at(k: int) -> None:
        """Frame k + 1 on the clock (frame 0 went out before the run)."""
        publish_ns.append(time.monotonic_ns())
        display.publish(frames[k + 1])

    Session._handlers[m.FramebufferUpdateRequest] = on_request
    display = await serve(width, height, host="127.0.0.1", port=None, vnc_port=port, name="pdum.rfb")
    try:
        display.publish(frames[0])
        print(f"READY {display.vnc_port}", flush=True)
        sessions = display.server.sessions

        async def everyone_caught_up() -> None:
            """Start-up: every client holds the frame and asks for more (checked in full)."""
            while True:
                wake.clear()
                if len(sessions) >= nclients and all(_caught_up(display, s) for s in sessions.values()):
                    return
                await wake.wait()

        await everyone_caught_up()
        await asyncio.sleep(SETTLE_S)
        await everyone_caught_up()
        running = True
        if fps > 0:  # the stock request handler from here: the clock publishes, not the requests
            Session._handlers[m.FramebufferUpdateRequest] = original
        bytes0 = sum(s.stats.bytes_sent for s in sessions.values())
        window = CpuWindow()
        if fps > 0:
            await on_clock(fps, nframes - 1, publish_at)
        else:
            publish_next()
            await finished.wait()
        measured = window.numbers()
        bytes1 = sum(s.stats.bytes_sent for s in sessions.values())
        return {
            **measured,
            "frames": nframes - 1,
            "clients": len(sessions),
            "bytes_sent": bytes1 - bytes0,
            "publish_ns": publish_ns,
        }
    finally:
        Session._handlers[m.FramebufferUpdateRequest] = original
        await display.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (7, 8):
        print(__doc__, file=sys.stderr)
        return 2
    port, width, height, nframes = (int(v) for v in args[:4])
    path, nclients, timeout = args[4], int(args[5]), int(args[6])
    fps = float(args[7]) if len(args) == 8 else 0.0
    return run_bounded(
        "pdum_server", timeout, lambda: _run(port, width, height, nframes, path, nclients, fps)
    )


async def on_clock(fps: float, count: int, action: Callable[[int], None]) -> None:
    """``action(k)`` for k in 0..count-1 at ``start + k / fps``, each followed by its whole period
    (publish_loop's schedule): the paced runs of this server and of the asyncio floor."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(count):
        action(k)
        await asyncio.sleep(max(0.0, start + (k + 1) / fps - loop.time()))


def run_bounded(name: str, timeout: int, run: Callable[[], Awaitable[dict[str, Any]]]) -> int:
    """Run a benchmark server's coroutine within ``timeout`` seconds and print its result as one
    JSON line (what the harness reads); 1 on a timeout. SIGALRM is a backstop in case the event
    loop itself wedges."""
    signal.alarm(timeout + 5)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return await run()

    try:
        result = asyncio.run(bounded())
    except TimeoutError:
        print(f"{name}: timed out", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
