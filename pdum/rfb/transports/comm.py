"""RFB over the notebook widget's own comm channel: the fallback when no port is reachable.

Colab and VS Code notebooks render widgets in a browser that cannot open a WebSocket to the
kernel's ports. The widget's comm (the Jupyter messaging the widget already uses for its traits)
can carry binary buffers, so the RFB byte stream rides on custom messages:
``rfb-open`` / ``rfb-opened``, ``rfb-data`` (one binary buffer each way), ``rfb-close`` /
``rfb-closed``. The session above is the same as for TCP and WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

#: Messages from the browser buffered before the session reads them; a client that floods us
#: past this is disconnected rather than buffered without bound.
MAX_QUEUED_MESSAGES = 1024


class CommStream:
    """:class:`~pdum.rfb.transports.base.ByteStream` over a widget's custom comm messages."""

    kind = "comm"
    #: Writes do not wait for the peer, so the session offers no continuous updates.
    flow_controlled = False

    def __init__(
        self, send: Callable[[dict[str, Any], list[bytes] | None], None], peer: str, tag: str
    ) -> None:
        self._send = send
        self.peer = peer
        self.tag: str | None = tag
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False

    def feed(self, data: bytes) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= MAX_QUEUED_MESSAGES:
            self._closed = True
            self._queue.put_nowait(b"")
            return
        if data:
            self._queue.put_nowait(data)

    def feed_eof(self) -> None:
        self._queue.put_nowait(b"")

    async def read(self) -> bytes:
        if self._closed and self._queue.empty():
            return b""
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("comm closed")
        self._send({"type": "rfb-data"}, [data])

    def pending_bytes(self) -> int:
        return 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(b"")
        with contextlib.suppress(Exception):
            self._send({"type": "rfb-closed"}, None)
