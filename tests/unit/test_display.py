"""Display lifecycle and API behaviour without real clients (raw sockets speak RFB here)."""

from __future__ import annotations

import asyncio
import os
import struct
import threading

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.session import THREAD_MIN_PIXELS
from pdum.rfb.testing import noise
from tests.support import rfb_connect, run_async


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await rfb_connect(port)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("size", [(64, 48), (640, 480)], ids=["inline", "encode-threads"])
def test_aclose_leaves_nothing_behind(size: tuple[int, int]) -> None:
    threads_before = set(threading.enumerate())
    width, height = size

    async def scenario() -> None:
        fds_before = _fds()
        display = await rfb.serve(width, height, port=None)
        display.publish(noise(width, height))
        port = display.vnc_port
        clients = [await _connect(port) for _ in range(3)]
        for _, writer in clients:
            writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        await clients[0][0].readexactly(4)  # an update has started arriving
        threaded = any(t.name.startswith("pdum-rfb-encode") for t in threading.enumerate())
        assert threaded == (width * height >= THREAD_MIN_PIXELS)
        half_open = await asyncio.open_connection("127.0.0.1", port)  # still in the handshake
        assert display.client_count == 3
        loop = asyncio.get_running_loop()
        started = loop.time()
        await display.aclose()
        assert loop.time() - started < 1.0
        assert display.client_count == 0
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []
        for reader, writer in [*clients, half_open]:
            assert await asyncio.wait_for(reader.read(), 2) is not None  # server side closed: EOF
            writer.close()
        # the port is free again at once
        again = await rfb.serve(64, 48, port=None, vnc_port=port)
        assert again.vnc_port == port
        await again.aclose()
        await asyncio.sleep(0)
        assert _fds() == fds_before

    run_async(scenario())
    assert set(threading.enumerate()) == threads_before


def test_publish_validation_and_closed_display() -> None:
    async def scenario() -> None:
        display = await rfb.serve(32, 16, port=None, vnc_port=None)
        with pytest.raises(TypeError, match="uint8"):
            display.publish(np.zeros((16, 32, 3)))
        with pytest.raises(ValueError, match="shape"):
            display.publish(np.zeros((16, 32), dtype=np.uint8))
        display.publish(np.zeros((10, 20, 4), dtype=np.uint8))
        assert (display.width, display.height) == (20, 10)
        await display.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            display.publish(np.zeros((10, 20, 3), dtype=np.uint8))

    run_async(scenario())


def test_publish_from_another_thread() -> None:
    async def scenario() -> None:
        display = await rfb.serve(32, 16, port=None, vnc_port=None)
        frame = noise(32, 16, seed=3)
        await asyncio.to_thread(display.publish, frame)
        await asyncio.sleep(0.01)
        assert np.array_equal(display.frame, frame)
        await display.aclose()

    run_async(scenario())


def test_events_queue_and_async_iteration() -> None:
    async def scenario() -> None:
        display = await rfb.serve(32, 16, port=None, event_queue_size=2)
        reader, writer = await _connect(display.vnc_port)
        writer.write(struct.pack(">BBxxI", 4, 1, 0x61) + struct.pack(">BBxxI", 4, 0, 0x61))
        writer.write(struct.pack(">BxxxI", 6, 3) + b"hey")
        await writer.drain()
        await asyncio.sleep(0.2)
        events = display.poll_events()
        assert [e.event["type"] for e in events] == ["key_up", "clipboard"]  # queue of 2 dropped the oldest
        assert display.stats["events_dropped"] == 1
        assert events[1].event["text"] == "hey" and events[1].client_id >= 1
        writer.write(struct.pack(">BBHH", 5, 0, 3, 4))
        iterator = display.events().__aiter__()
        event = await asyncio.wait_for(iterator.__anext__(), 2)
        assert event.event["type"] == "pointer_move" and (event.event["x"], event.event["y"]) == (3, 4)
        display.clipboard = "from server"
        data = await asyncio.wait_for(reader.readexactly(8 + 11), 2)
        assert data == b"\x03\0\0\0\0\0\0\x0bfrom server"
        writer.close()
        await display.aclose()

    run_async(scenario())


def test_refuses_open_non_loopback() -> None:
    with pytest.raises(ValueError, match="without authentication"):
        rfb.Display(10, 10, host="0.0.0.0")
    rfb.Display(10, 10, host="0.0.0.0", password="x")
    rfb.Display(10, 10, host="0.0.0.0", allow_insecure=True)


def test_exclusive_client_disconnects_others() -> None:
    async def scenario() -> None:
        display = await rfb.serve(32, 16, port=None)
        r1, w1 = await _connect(display.vnc_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        await reader.readexactly(12)
        writer.write(b"RFB 003.008\n")
        await reader.readexactly(2)
        writer.write(b"\x01")
        await reader.readexactly(4)
        writer.write(b"\x00")  # exclusive
        await reader.readexactly(24)
        assert await asyncio.wait_for(r1.read(), 2) == b""  # the first client was closed
        await asyncio.sleep(0.05)
        assert display.client_count == 1
        writer.close()
        w1.close()
        await display.aclose()

    run_async(scenario())
