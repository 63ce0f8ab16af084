"""WebSocket viewers (noVNC, the widget) are served like TCP clients: their bytes reach the session
as frames arrive (no reader task wake-up per request) and in-step updates are written straight
from the event loop; with a websockets release that lacks what either needs, the same bytes go
through ``recv()`` and ``send()``. Text frames and oversized messages still close the viewer with
1003 and 1009, counted as violations."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
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


def _served_and_watched(frames: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`_watch` on a fresh WebSocket-only display, closed afterwards."""

    async def scenario() -> list[np.ndarray]:
        display = await rfb.serve(W, H, port=0, vnc_port=None)
        try:
            return await _watch(display, frames)
        finally:
            await display.aclose()

    return run_async(scenario())


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

    screens = _served_and_watched(FRAMES)
    for screen in screens:
        np.testing.assert_array_equal(screen, FRAMES[-1])
    # Every published frame reached both viewers through the direct write, whole (header + rect).
    assert direct.count(4 + 12 + W * H * 4) >= 2 * len(FRAMES)


def test_without_websockets_internals_bytes_go_through_recv_and_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_transport, "_can_write_direct", lambda connection: False)
    monkeypatch.setattr(ws_transport, "_ROUTABLE", False)
    streams: list[WebSocketStream] = []
    original_init = WebSocketStream.__init__

    def recording_init(self: WebSocketStream, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        streams.append(self)

    monkeypatch.setattr(WebSocketStream, "__init__", recording_init)

    screens = _served_and_watched(FRAMES)
    assert len(streams) == 2
    assert all(stream.write_now is None and stream.set_receiver is None for stream in streams)
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


def test_requests_after_the_handshake_do_not_wake_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the RFB handshake (one read per client message) the session gets the viewer's bytes
    from the connection's frame callback: no more reads however many requests follow."""
    reads: dict[int, int] = {}
    original = WebSocketStream.read

    async def counting(self: WebSocketStream) -> bytes:
        reads[id(self)] = reads.get(id(self), 0) + 1
        return await original(self)

    monkeypatch.setattr(WebSocketStream, "read", counting)

    screens = _served_and_watched(FRAMES * 3)
    for screen in screens:
        np.testing.assert_array_equal(screen, FRAMES[-1])
    # version, security type, ClientInit; then SetEncodings and 10 requests went past read()
    assert len(reads) == 2 and max(reads.values()) <= 3, reads


async def _handshaken(display: rfb.Display, stack: contextlib.AsyncExitStack, viewers: int) -> WsRfbClient:
    """One more viewer through the RFB handshake, once the server holds ``viewers`` ready ones."""
    ws = await stack.enter_async_context(connect(display.ws_url, subprotocols=["binary"]))
    client = WsRfbClient(ws)  # type: ignore[arg-type]
    await client.handshake()
    for _ in range(500):
        if display.client_count == viewers and all(s.ready for s in display.server.sessions.values()):
            return client
        await asyncio.sleep(0.01)
    raise AssertionError("the viewer's session did not get ready")


def test_messages_split_and_fragmented_anywhere_are_one_byte_stream() -> None:
    """RFB does not care where a viewer cuts its bytes into WebSocket messages or fragments."""
    full = struct.pack(">BBHHHH", 3, 0, 0, 0, W, H)
    incremental = struct.pack(">BBHHHH", 3, 1, 0, 0, W, H)
    frames = [noise(W, H, 9), noise(W, H, 10)]

    async def scenario() -> list[np.ndarray]:
        display = await rfb.serve(W, H, port=0, vnc_port=None)
        display.publish(frames[0])
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await _handshaken(display, stack, 1)
                screens = [np.zeros((H, W, 3), dtype=np.uint8) for _ in frames]
                await client.ws.send(full[:3])  # a message, then the rest as fragments
                await client.ws.send([full[3:5], full[5:]])
                await client.update_into(screens[0])
                await client.ws.send([incremental[:1], incremental[1:4]])  # fragments, then a message
                await client.ws.send(incremental[4:])
                await _until_asked(display, 1)
                display.publish(frames[1])
                await client.update_into(screens[1])
                return screens
        finally:
            await display.aclose()

    for screen, frame in zip(run_async(scenario()), frames, strict=True):
        np.testing.assert_array_equal(screen, frame)


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [("RFB text", 1003, "protocol_error"), (b"\0" * 2048, 1009, "limit_exceeded")],
)
def test_a_bad_frame_after_the_handshake_closes_that_viewer_with_its_code(
    message: str | bytes, code: int, kind: str
) -> None:
    frame = noise(W, H, 10)

    async def scenario() -> tuple[int | None, dict[str, int], int, np.ndarray]:
        display = await rfb.serve(W, H, port=0, vnc_port=None, limits=rfb.Limits(max_ws_message=1024))
        display.publish(frame)
        try:
            async with contextlib.AsyncExitStack() as stack:
                good = await _handshaken(display, stack, 1)
                bad = await _handshaken(display, stack, 2)
                await bad.ws.send(message)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(bad.ws.recv(), 5)
                received = closed.value.rcvd.code if closed.value.rcvd is not None else None
                for _ in range(300):
                    if display.client_count == 1:
                        break
                    await asyncio.sleep(0.01)
                screen = np.zeros((H, W, 3), dtype=np.uint8)  # the other viewer goes on
                await good.request(incremental=False)
                await good.update_into(screen)
                return received, display.metrics()["violations"], display.client_count, screen
        finally:
            await display.aclose()

    received, violations, clients, screen = run_async(scenario())
    assert received == code
    assert violations.get(kind) == 1 and sum(violations.values()) == 1, violations
    assert clients == 1
    np.testing.assert_array_equal(screen, frame)


def test_bytes_sent_before_the_session_starts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer that pipelines its whole handshake before the server's session exists (frames
    reach the connection before its stream does) is served as if it had waited."""
    original = ws_transport.WebSocketBridge._handler

    async def late(self: ws_transport.WebSocketBridge, connection: Any) -> None:
        await asyncio.sleep(0.3)  # the viewer's frames arrive meanwhile
        await original(self, connection)

    monkeypatch.setattr(ws_transport.WebSocketBridge, "_handler", late)
    frame = noise(W, H, 11)

    async def scenario() -> np.ndarray:
        display = await rfb.serve(W, H, port=0, vnc_port=None)
        display.publish(frame)
        try:
            async with connect(display.ws_url, subprotocols=["binary"]) as ws:
                for message in (b"RFB 003.008\n", b"\x01", b"\x01", struct.pack(">BxHi", 2, 1, 0),
                                struct.pack(">BBHHHH", 3, 0, 0, 0, W, H)):  # fmt: skip
                    await ws.send(message)
                client = WsRfbClient(ws)
                assert await client.read(12) == b"RFB 003.008\n"
                await client.read((await client.read(1))[0])
                assert await client.read(4) == b"\0\0\0\0"
                header = await client.read(24)
                await client.read(int.from_bytes(header[20:24], "big"))
                screen = np.zeros((H, W, 3), dtype=np.uint8)
                await client.update_into(screen)
                return screen
        finally:
            await display.aclose()

    np.testing.assert_array_equal(run_async(scenario()), frame)
