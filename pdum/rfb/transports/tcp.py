"""Raw RFB over TCP: what native VNC viewers (TigerVNC, RealVNC, Remmina, ...) connect to.

A small :class:`asyncio.Protocol` instead of asyncio's stream pair, for one reason: after the
handshake the session takes incoming bytes through :meth:`TcpStream.set_receiver`, called
straight from the transport's callback. Every FramebufferUpdateRequest or Fence answer is then
handled without waking the session's reader task, which was a large part of what each extra
client cost (see docs/performance.md). The handshake still uses :meth:`TcpStream.read`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

from .inbox import Inbox

#: Seconds :meth:`TcpStream.close` waits for the buffered output to go out before aborting.
CLOSE_TIMEOUT = 0.5


class TcpStream:
    """:class:`~pdum.rfb.transports.base.ByteStream` over one accepted TCP connection."""

    kind = "tcp"

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Updates are written whole; Nagle would only add latency.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._inbox = Inbox(self._pause_reading, self._resume_reading)
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost = False
        self._closed = self._loop.create_future()

    # -- reading ------------------------------------------------------------------------------------
    async def read(self) -> bytes:
        """Some bytes from the client; ``b""`` once it has gone."""
        return await self._inbox.read()

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        """From now on hand every chunk to ``receiver`` as it arrives (``b""`` at the end),
        starting with anything :meth:`read` has not returned yet."""
        self._inbox.set_receiver(receiver)

    def _data_received(self, data: bytes) -> None:
        self._inbox.feed(data)

    def _eof_received(self) -> None:
        self._inbox.end()

    def _pause_reading(self) -> None:
        if not self._lost:
            self._transport.pause_reading()  # type: ignore[attr-defined]

    def _resume_reading(self) -> None:
        if not self._lost:
            self._transport.resume_reading()  # type: ignore[attr-defined]

    # -- writing ------------------------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        """Send ``data`` and wait while the transport's buffer is above its high-water mark."""
        self.write_now(data)
        while self._write_paused and not self._lost:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._lost:
            raise ConnectionResetError("connection lost")

    def write_now(self, data: bytes) -> None:
        """Hand ``data`` to the socket without waiting, for a caller that saw ``pending_bytes()``
        at 0: the kernel takes it at once or the transport buffers the rest, and the next
        :meth:`write` waits for that to drain."""
        if self._lost or self._transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._transport.write(data)

    def pending_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def _set_write_paused(self, paused: bool) -> None:
        self._write_paused = paused
        if not paused:
            self._release_writers()

    def _release_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- closing ------------------------------------------------------------------------------------
    def _connection_lost(self) -> None:
        self._lost = True
        self._release_writers()
        self._eof_received()
        if not self._closed.done():
            self._closed.set_result(None)

    async def close(self) -> None:
        """Close the connection, giving buffered output :data:`CLOSE_TIMEOUT` to leave; a peer
        that stopped reading is aborted instead, so nothing outlives the Display."""
        if not self._transport.is_closing():
            self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout=CLOSE_TIMEOUT)
        except TimeoutError:
            self._transport.abort()


class TcpProtocol(asyncio.Protocol):
    """Feeds one connection's events to its :class:`TcpStream` and starts its session."""

    def __init__(self, serve: Callable[[TcpStream], Awaitable[None]]) -> None:
        self._serve = serve
        self.stream: TcpStream | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.stream = TcpStream(transport)
        self.task = asyncio.get_running_loop().create_task(self._run(self.stream))

    async def _run(self, stream: TcpStream) -> None:
        await self._serve(stream)

    def data_received(self, data: bytes) -> None:
        assert self.stream is not None
        self.stream._data_received(data)

    def eof_received(self) -> bool:
        assert self.stream is not None
        self.stream._eof_received()
        return True  # keep our side open: the session may still have a reason to send, then closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream._connection_lost()

    def pause_writing(self) -> None:
        assert self.stream is not None
        self.stream._set_write_paused(True)

    def resume_writing(self) -> None:
        assert self.stream is not None
        self.stream._set_write_paused(False)
