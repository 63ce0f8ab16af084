"""Raw RFB over TCP: what native VNC viewers (TigerVNC, RealVNC, Remmina, ...) connect to."""

from __future__ import annotations

import asyncio
import contextlib
import socket

READ_CHUNK = 64 * 1024


class TcpStream:
    """:class:`~pdum.rfb.transports.base.ByteStream` over an asyncio stream pair."""

    kind = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Updates are written whole; Nagle would only add latency.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def pending_bytes(self) -> int:
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), timeout=0.5)
        except Exception:
            # A peer that stopped reading would keep the socket alive while the buffer
            # drains; drop it instead so nothing outlives the Display.
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
