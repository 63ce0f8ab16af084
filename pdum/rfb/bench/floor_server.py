"""The scaling section's floor: the least an asyncio server can spend per client and frame.

usage: ``python -m pdum.rfb.bench.floor_server PORT NCLIENTS NFRAMES UPDATE_BYTES TIMEOUT_S [FPS]``

The lock-step of the peer benchmark (``pdum_server.py``) with nothing of VNC left: once every
client (``benchmarks/peer/floor_client.c``) has sent its 10-byte request, the server writes
``UPDATE_BYTES`` bytes to each of them, and again when all have asked again, NFRAMES times. No
parsing, no framebuffer, no encoding: an ``asyncio.Protocol`` per client, one ``transport.write``
per client and frame, the kernel's send and receive on loopback and the event loop. With FPS the
writes go out on a clock instead (the ``paced`` section's schedule: each followed by its whole
period, the requests read and ignored), NFRAMES times. It reads ``getrusage(RUSAGE_SELF)``
around the run like the other servers and prints one JSON line.

What it shows: how much CPU one more client costs any asyncio server on this machine and
Python, whatever it sends. pdum.rfb's own cost per extra client (the scaling table) is this
floor plus its own bookkeeping, so a ratio target for many clients cannot be met by a frame
cheaper than what the floor alone adds (docs/performance.md, "Many clients").
``benchmarks/peer/floor_server.c`` is its twin in C (same arguments, schedule and JSON line):
what one more client costs any server on the machine, whatever it is written in.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from .pdum_server import CpuWindow, on_clock, run_bounded


async def _run(port: int, nclients: int, nframes: int, size: int, fps: float = 0.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    update = bytes(size)
    transports: list[asyncio.Transport] = []
    waiting: set[int] = set()
    sent = 0
    started: CpuWindow | None = None
    everyone: asyncio.Future[None] = loop.create_future()  # all connected and asked once

    def publish() -> None:
        nonlocal sent
        if sent == nframes:
            if not finished.done():
                finished.set_result(None)
            return
        waiting.clear()
        sent += 1
        for transport in transports:
            transport.write(update)

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transports.append(transport)

        def data_received(self, data: bytes) -> None:
            nonlocal started
            if everyone.done():  # paced: the clock writes, the requests are only read
                return
            waiting.add(id(self))
            if len(waiting) == nclients:
                if started is None:  # everyone connected and asked: the run starts
                    started = CpuWindow()
                if fps > 0:
                    everyone.set_result(None)
                else:
                    publish()

        def connection_lost(self, exc: Exception | None) -> None:
            if sent < nframes and not finished.done():
                finished.set_exception(ConnectionError("a client left before the last frame"))

    server = await loop.create_server(Client, "127.0.0.1", port)
    try:
        print(f"READY {port}", flush=True)
        if fps > 0:
            await everyone
            await on_clock(fps, nframes, lambda _: publish())
            if finished.done():  # a client left
                await finished
        else:
            await finished
        assert started is not None
        return {**started.numbers(), "frames": nframes, "clients": nclients}
    finally:
        server.close()
        for transport in transports:
            transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    port, nclients, nframes, size, timeout = (int(v) for v in args[:5])
    fps = float(args[5]) if len(args) == 6 else 0.0
    return run_bounded("floor_server", timeout, lambda: _run(port, nclients, nframes, size, fps))


if __name__ == "__main__":
    sys.exit(main())
