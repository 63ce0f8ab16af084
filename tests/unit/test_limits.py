"""Limits with small configured values: each violation closes only that client, is counted in
``metrics()["violations"]`` and logged once at WARNING with the peer (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from typing import Any

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.asgi import RfbApp
from pdum.rfb.testing import noise
from tests.support import rfb_connect, run_async

LOG = "pdum.rfb"


async def _connect(port: int, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client through the whole RFB 3.8 handshake (security None, shared)."""
    return await rfb_connect(port, rcvbuf=rcvbuf)


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> None:
    """Read (and drop) until the server closes the connection."""
    async with asyncio.timeout(timeout):
        while await reader.read(1 << 16):
            pass


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _peer(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def _fbur(incremental: bool, x: int = 0, y: int = 0, w: int = 64, h: int = 48) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), x, y, w, h)


def test_limits_are_exported_and_documented_defaults() -> None:
    limits = rfb.Limits()
    assert limits.max_cut_text == 1 << 20
    assert limits.max_encodings == 1024
    assert limits.max_pending_output == 4 << 20
    assert limits.handshake_timeout == 30.0
    assert limits.idle_timeout == 60.0
    assert limits.message_timeout == 30.0
    assert limits.max_clients == 64
    assert limits.max_ws_message == 4 << 20


def test_idle_timeout_closes_a_client_that_never_asks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, limits=rfb.Limits(idle_timeout=0.3))
        idle_r, idle_w = await _connect(display.vnc_port)
        busy_r, busy_w = await _connect(display.vnc_port)
        busy_w.write(_fbur(False))
        await _closed_by_server(idle_r, timeout=3)
        await asyncio.sleep(0.4)  # past the idle timeout: the client that asked stays
        assert display.client_count == 1
        busy_w.write(_fbur(False))
        assert (await busy_r.readexactly(4))[0] == 0  # FramebufferUpdate
        assert display.metrics()["violations"]["idle_timeout"] == 1
        warnings = _warnings(caplog)
        assert len(warnings) == 1 and _peer(idle_w) in warnings[0] and "idle_timeout" in warnings[0]
        for w in (idle_w, busy_w):
            w.close()
        await display.aclose()

    run_async(scenario(), timeout=30)


def test_handshake_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, limits=rfb.Limits(handshake_timeout=0.3))
        reader, writer = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        writer.write(b"RFB 003.008\n")  # and then nothing
        await _closed_by_server(reader, timeout=3)
        assert display.metrics()["violations"]["handshake_timeout"] == 1
        warnings = _warnings(caplog)
        assert len(warnings) == 1 and _peer(writer) in warnings[0]
        writer.close()
        await display.aclose()

    run_async(scenario(), timeout=30)


def test_stalled_and_truncated_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, limits=rfb.Limits(message_timeout=0.3))
        # stops mid-message and stays connected
        r1, w1 = await _connect(display.vnc_port)
        w1.write(_fbur(False) + b"\x00\x00\x00")  # a SetPixelFormat cut short
        await _closed_by_server(r1, timeout=3)
        assert display.metrics()["violations"]["message_timeout"] == 1
        # stops mid-message and leaves
        r2, w2 = await _connect(display.vnc_port)
        w2.write(_fbur(False) + b"\x02\x00\x00\x05\x00\x00")  # SetEncodings cut short
        w2.write_eof()
        await _closed_by_server(r2, timeout=3)
        # a client streaming many small messages in odd-sized pieces is never "stalled"
        r3, w3 = await _connect(display.vnc_port)
        w3.write(_fbur(False))
        pointer = struct.pack(">BBHH", 5, 0, 1, 1) * 20
        for _ in range(8):
            w3.write(pointer[:7])
            await asyncio.sleep(0.1)
            w3.write(pointer[7:])
        await asyncio.sleep(0.1)
        assert display.client_count == 1
        violations = display.metrics()["violations"]
        assert violations["message_timeout"] == 1 and violations["protocol_error"] == 1
        warnings = _warnings(caplog)
        assert len(warnings) == 2, warnings
        assert _peer(w1) in warnings[0] and _peer(w2) in warnings[1] and "middle of a message" in warnings[1]
        for w in (w1, w2, w3):
            w.close()
        await display.aclose()

    run_async(scenario(), timeout=30)


def test_max_clients(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, limits=rfb.Limits(max_clients=2))
        clients = [await _connect(display.vnc_port) for _ in range(2)]
        r3, w3 = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        await _closed_by_server(r3)
        assert display.metrics()["violations"]["max_clients"] == 1
        assert display.client_count == 2
        assert len(_warnings(caplog)) == 1
        for _, w in clients:
            w.close()
        w3.close()
        await display.aclose()

    run_async(scenario(), timeout=30)


def test_outbox_bound_disconnects_a_client_that_never_reads(caplog: pytest.LogCaptureFixture) -> None:
    """A client that never reads but keeps asking for fence replies: its small messages pile up
    behind an update that cannot drain, until ``max_pending_output``; then it is closed."""
    caplog.set_level(logging.INFO, logger=LOG)
    width, height = 1280, 720

    async def scenario() -> None:
        limit = 16 * 1024
        display = await rfb.serve(width, height, port=None, limits=rfb.Limits(max_pending_output=limit))
        display.publish(noise(width, height, seed=3))
        good_r, good_w = await _connect(display.vnc_port)
        stuck_r, stuck_w = await _connect(display.vnc_port, rcvbuf=4096)
        stuck_w.write(_fbur(False, 0, 0, width, height))  # ~3.7 MB that will never be read
        await asyncio.sleep(0.2)
        stuck = next(s for s in display.server.sessions.values() if s.peer == _peer(stuck_w))
        fence = struct.pack(">B3xIB", 248, 1 << 31, 64) + bytes(64)  # a fence request, 64-byte payload
        sent = 0
        while display.client_count == 2 and sent < 2000:
            stuck_w.write(fence * 10)
            sent += 10
            assert stuck._outbox_bytes + stuck._pseudo_bytes <= limit
            await asyncio.sleep(0.005)
        assert display.client_count == 1, "the stuck client was not closed"
        assert sent * 73 > limit
        assert display.metrics()["violations"]["output_overflow"] == 1
        warnings = _warnings(caplog)
        assert len(warnings) == 1 and _peer(stuck_w) in warnings[0] and "output_overflow" in warnings[0]
        # the other client is still served
        good_w.write(_fbur(False, 0, 0, width, height))
        assert (await asyncio.wait_for(good_r.readexactly(4), 5))[0] == 0
        for w in (good_w, stuck_w):
            w.close()
        await display.aclose()

    run_async(scenario(), timeout=60)


def test_publish_from_a_thread_coalesces() -> None:
    """A thread publishing faster than the loop runs never queues more than one frame."""

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None)
        frames = [noise(64, 48, seed=i) for i in range(8)]

        def publisher() -> None:
            for i in range(2000):
                display.publish(frames[i % 8])

        thread = threading.Thread(target=publisher)
        thread.start()
        while thread.is_alive():
            pending = display._pending_frame
            assert pending is None or isinstance(pending[0], np.ndarray)
            await asyncio.sleep(0)
        thread.join()
        await asyncio.sleep(0.05)
        assert display._pending_frame is None
        assert np.array_equal(display.frame, frames[1999 % 8])
        await display.aclose()

    run_async(scenario(), timeout=60)


class _FakeAsgi:
    """Just enough of an ASGI server to push WebSocket messages at an RfbApp."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.incoming.put_nowait(message)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.incoming.put_nowait({"type": "websocket.disconnect", "code": message.get("code", 1000)})


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [
        ({"type": "websocket.receive", "bytes": b"R" * 5000}, 1009, "limit_exceeded"),
        ({"type": "websocket.receive", "text": "RFB 003.008\n"}, 1003, "protocol_error"),
    ],
)
def test_asgi_enforces_message_size_and_binary_frames(
    caplog: pytest.LogCaptureFixture, message: dict[str, Any], code: int, kind: str
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None, vnc_port=None, limits=rfb.Limits(max_ws_message=4096))
        app = RfbApp(display)
        fake = _FakeAsgi([{"type": "websocket.connect"}, message])
        scope = {
            "type": "websocket",
            "path": "/websockify",
            "client": ("127.0.0.1", 4242),
            "subprotocols": [],
        }
        await asyncio.wait_for(app(scope, fake.receive, fake.send), 5)
        closes = [m for m in fake.sent if m["type"] == "websocket.close"]
        assert closes and closes[0]["code"] == code
        assert display.metrics()["violations"][kind] == 1
        warnings = _warnings(caplog)
        assert len(warnings) == 1 and "127.0.0.1:4242" in warnings[0]
        await display.aclose()

    run_async(scenario(), timeout=30)


def test_the_current_desktop_size_comes_last() -> None:
    """A resize between SetEncodings (which queues an ExtendedDesktopSize of that time) and the
    next update: the update ends with the current size, then pixels of that size (a race that
    made libvncclient drop "Rect too large" updates while a thread published resizes)."""

    async def scenario() -> None:
        display = await rfb.serve(64, 48, port=None)
        reader, writer = await _connect(display.vnc_port)
        writer.write(struct.pack(">BxH2i", 2, 2, 0, -308))  # Raw, ExtendedDesktopSize
        await asyncio.sleep(0.1)
        display.publish(noise(96, 80, seed=1))  # resized before the client asks for pixels
        writer.write(_fbur(False, 0, 0, 64, 48))
        count = struct.unpack(">xxH", await reader.readexactly(4))[0]
        sizes, pixels = [], []
        for _ in range(count):
            x, y, w, h, enc = struct.unpack(">HHHHi", await reader.readexactly(12))
            if enc == -308:
                screens = (await reader.readexactly(4))[0]
                await reader.readexactly(16 * screens)
                sizes.append((w, h))
            else:
                await reader.readexactly(w * h * 4)
                pixels.append((x, y, w, h))
        assert sizes[-1] == (96, 80), sizes
        assert max(x + w for x, _, w, _ in pixels) == 96 and max(y + h for _, y, _, h in pixels) == 80
        writer.close()
        await display.aclose()

    run_async(scenario(), timeout=30)
