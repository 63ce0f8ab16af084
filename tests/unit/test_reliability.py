"""Reliability under churn and stuck clients, in-process with raw sockets (bounded in time)."""

from __future__ import annotations

import asyncio
import os
import struct

import numpy as np

import pdum.rfb as rfb
from pdum.rfb.testing import noise
from tests.support import run_async


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _handshake(port: int, stage: int) -> None:
    """Connect and stop after ``stage`` steps of the handshake (0 = connect only, 5 = complete)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if stage >= 1:
            await reader.readexactly(12)
            writer.write(b"RFB 003.008\n")
        if stage >= 2:
            count = (await reader.readexactly(1))[0]
            await reader.readexactly(count)
            writer.write(b"\x01")
        if stage >= 3:
            await reader.readexactly(4)
            writer.write(b"\x01")
        if stage >= 4:
            header = await reader.readexactly(24)
            await reader.readexactly(struct.unpack(">I", header[20:])[0])
        if stage >= 5:
            writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, 64, 48))
            await reader.readexactly(4)
    finally:
        writer.close()
        await writer.wait_closed()


def test_connect_disconnect_cycles_leave_nothing_behind() -> None:
    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None)
        display.publish(noise(64, 48))
        await _handshake(display.vnc_port, 5)  # warm up lazily created state
        await asyncio.sleep(0.05)
        fds, tasks = _fds(), len(asyncio.all_tasks())
        for i in range(1000):
            await _handshake(display.vnc_port, i % 6)
        for _ in range(100):  # let the server notice the last closes
            if display.client_count == 0 and len(display.server._tasks) == 0:
                break
            await asyncio.sleep(0.02)
        assert display.client_count == 0
        assert len(display.server._tasks) == 0
        assert len(asyncio.all_tasks()) == tasks
        assert _fds() == fds
        assert display.stats["connections"] == 1001
        await display.aclose()

    run_async(scenario(), timeout=300)


def test_a_client_that_never_reads_does_not_hold_up_others() -> None:
    async def scenario() -> None:
        width, height = 640, 480
        frame_bytes = width * height * 4
        display = await rfb.serve(width, height, port=None)
        display.publish(noise(width, height, seed=0))
        # the stuck client: asks for everything, then never reads again
        stuck_r, stuck_w = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        await stuck_r.readexactly(12)
        stuck_w.write(b"RFB 003.008\n\x01\x01")
        await stuck_r.readexactly(2 + 4 + 24 + len(display.name))
        stuck_w.write(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        # a healthy client that reads every update
        good_r, good_w = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        await good_r.readexactly(12)
        good_w.write(b"RFB 003.008\n\x01\x01")
        await good_r.readexactly(2 + 4 + 24 + len(display.name))
        received = 0
        for i in range(60):
            display.publish(noise(width, height, seed=i + 1))
            stuck_w.write(struct.pack(">BBHHHH", 3, 1, 0, 0, width, height))
            good_w.write(struct.pack(">BBHHHH", 3, 1 if i else 0, 0, 0, width, height))
            header = await asyncio.wait_for(good_r.readexactly(4), 5)
            for _ in range(struct.unpack(">xxH", header)[0]):
                x, y, w, h, enc = struct.unpack(">HHHHi", await good_r.readexactly(12))
                assert enc == 0
                await good_r.readexactly(w * h * 4)
            received += 1
        assert received == 60
        stuck_port = stuck_w.get_extra_info("sockname")[1]
        stuck = next(s for s in display.server.sessions.values() if s.peer.endswith(f":{stuck_port}"))
        # bounded: at most about one frame waits in our buffer (the kernel's buffers hold a few
        # more); the stuck client got far fewer updates than the healthy one and skipped frames
        assert stuck.stream.pending_bytes() <= 2 * frame_bytes
        assert stuck.stats.updates_sent < 30 and stuck.stats.frames_skipped > 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        await display.aclose()
        assert loop.time() - started < 1.5
        for w in (stuck_w, good_w):
            w.close()
        assert np.all(display.frame == noise(width, height, seed=60))

    run_async(scenario(), timeout=120)
