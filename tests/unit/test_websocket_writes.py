"""WebSocket viewers (noVNC, the widget) get in-step updates written straight from the event loop,
like TCP clients, and exactly the same bytes when this websockets release lacks what that needs."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import OPEN, State

import pdum.rfb as rfb
from pdum.rfb.testing import noise
from pdum.rfb.transports import websocket as ws_transport
from pdum.rfb.transports.websocket import WebSocketStream
from tests.support import run_async

W, H = 24, 16


class WsRfbClient:
    """A websockify-style RFB 3.8 client (security None, Raw only) over one WebSocket: the
    server's binary messages are one byte stream, cut anywhere."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer = b""

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = await asyncio.wait_for(self.ws.recv(), 5)
            assert isinstance(message, bytes)
            self.buffer += message
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def handshake(self) -> None:
        assert await self.read(12) == b"RFB 003.008\n"
        await self.ws.send(b"RFB 003.008\n")
        await self.read((await self.read(1))[0])
        await self.ws.send(b"\x01")
        assert await self.read(4) == b"\0\0\0\0"
        await self.ws.send(b"\x01")
        header = await self.read(24)
        await self.read(int.from_bytes(header[20:24], "big"))
        await self.ws.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw only

    async def request(self, incremental: bool) -> None:
        await self.ws.send(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, W, H))

    async def update_into(self, screen: np.ndarray) -> None:
        """Read one FramebufferUpdate of Raw rects (the server's default 32 bpp format: red shift 16,
        little-endian, so B, G, R, X in memory) into ``screen``."""
        kind, _, count = struct.unpack(">BBH", await self.read(4))
        assert kind == 0
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self.read(12))
            assert encoding == 0
            pixels = np.frombuffer(await self.read(w * h * 4), dtype=np.uint8).reshape(h, w, 4)
            screen[y : y + h, x : x + w] = pixels[..., 2::-1]


async def _watch(display: rfb.Display, frames: list[np.ndarray], viewers: int = 2) -> list[np.ndarray]:
    """``viewers`` WebSocket clients in step; every frame published once they all asked for it.
    Returns what each client's screen shows after the last frame."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            WsRfbClient(await stack.enter_async_context(connect(display.ws_url, subprotocols=["binary"])))  # type: ignore[list-item]
            for _ in range(viewers)
        ]
        screens = [np.zeros((H, W, 3), dtype=np.uint8) for _ in clients]
        for client in clients:
            await client.handshake()
            await client.request(incremental=False)
        for client, screen in zip(clients, screens, strict=True):
            await client.update_into(screen)
        for frame in frames:
            for client in clients:
                await client.request(incremental=True)
            await _until_asked(display, viewers)
            display.publish(frame)
            for client, screen in zip(clients, screens, strict=True):
                await client.update_into(screen)
        return screens


async def _until_asked(display: rfb.Display, viewers: int) -> None:
    """Wait until every session holds a pending request (so the publish meets them all asleep)."""
    for _ in range(500):
        sessions = list(display.server.sessions.values())
        if len(sessions) == viewers and all(s.request is not None and s._parked for s in sessions):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the viewers' requests did not arrive")


FRAMES = [noise(W, H, seed) for seed in range(1, 4)]


def test_in_step_websocket_viewers_get_updates_written_from_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    direct: list[int] = []
    original = WebSocketStream._write_direct

    def counting(self: WebSocketStream, data: bytes) -> None:
        direct.append(len(data))
        original(self, data)

    monkeypatch.setattr(WebSocketStream, "_write_direct", counting)

    async def scenario() -> list[np.ndarray]:
        display = await rfb.serve(W, H, port=0, vnc_port=None)
        try:
            return await _watch(display, FRAMES)
        finally:
            await display.aclose()

    screens = run_async(scenario())
    for screen in screens:
        np.testing.assert_array_equal(screen, FRAMES[-1])
    # Every published frame reached both viewers through the direct write, whole (header + rect).
    assert direct.count(4 + 12 + W * H * 4) >= 2 * len(FRAMES)


def test_without_the_websockets_internals_updates_go_through_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_transport, "_can_write_direct", lambda connection: False)
    streams: list[WebSocketStream] = []
    original_init = WebSocketStream.__init__

    def recording_init(self: WebSocketStream, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        streams.append(self)

    monkeypatch.setattr(WebSocketStream, "__init__", recording_init)

    async def scenario() -> list[np.ndarray]:
        display = await rfb.serve(W, H, port=0, vnc_port=None)
        try:
            return await _watch(display, FRAMES)
        finally:
            await display.aclose()

    screens = run_async(scenario())
    assert len(streams) == 2 and all(stream.write_now is None for stream in streams)
    for screen in screens:
        np.testing.assert_array_equal(screen, FRAMES[-1])


def _fake_connection(state: State, send_data: Any) -> Any:
    protocol = SimpleNamespace(state=state, sent=[], send_binary=lambda data: protocol.sent.append(data))
    transport = SimpleNamespace(aborted=False)
    transport.abort = lambda: setattr(transport, "aborted", True)
    request = SimpleNamespace(path="/websockify")
    return SimpleNamespace(
        protocol=protocol,
        transport=transport,
        send_data=send_data,
        send_in_progress=None,
        remote_address=("127.0.0.1", 1),
        request=request,
    )


def test_direct_write_refuses_a_closing_connection_and_aborts_on_a_failed_write() -> None:
    closing = _fake_connection(State.CLOSING, lambda: None)
    stream = WebSocketStream(closing)
    assert stream.write_now is not None
    with pytest.raises(ConnectionResetError):
        stream.write_now(b"update")
    assert closing.protocol.sent == []

    def broken() -> None:
        raise OSError("broken pipe")

    failing = _fake_connection(OPEN, broken)
    stream = WebSocketStream(failing)
    assert stream.write_now is not None
    with pytest.raises(ConnectionResetError):
        stream.write_now(b"update")
    assert failing.protocol.sent == [b"update"] and failing.transport.aborted
