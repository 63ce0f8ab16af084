"""What a client sent until its session takes it: one buffer for the TCP and WebSocket streams.

During the handshake the session pulls bytes with :meth:`Inbox.read`; after it, it takes them
as they arrive (:meth:`Inbox.set_receiver`), straight from the transport's callback, so a
FramebufferUpdateRequest wakes no task. While bytes wait for :meth:`Inbox.read`, more than
:data:`READ_LIMIT` of them pause the socket's reading (backpressure for a client that sends
faster than the session parses).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

#: Bytes buffered for :meth:`Inbox.read` before the socket stops being read.
READ_LIMIT = 128 * 1024


class Inbox:
    """A client's incoming bytes; ``pause``/``resume`` stop and restart reading its socket."""

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause, self._resume = pause, resume
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self.ended = False
        #: Why the stream ended, if not by a plain close (the WebSocket stream's text frames and
        #: oversized messages); :meth:`read` raises it once the bytes before it are read.
        self.failure: Exception | None = None

    async def read(self) -> bytes:
        """Some bytes from the client; ``b""`` once it has gone (or :attr:`failure`)."""
        while not self._chunks:
            if self.ended:
                if self.failure is not None:
                    raise self.failure
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._take()

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        """From now on hand every chunk to ``receiver`` as it arrives (``b""`` at the end, then
        :attr:`failure` says why if it was not a plain close), starting with anything
        :meth:`read` has not returned yet."""
        self._receiver = receiver
        if self._chunks:
            receiver(self._take())
        if self.ended:
            receiver(b"")

    def feed(self, data: bytes) -> None:
        """Bytes from the socket (never empty)."""
        if self.ended:
            return
        if self._receiver is not None:
            self._receiver(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_LIMIT and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def end(self, failure: Exception | None = None) -> None:
        """The client has gone, or (``failure``) must be closed: the first end counts."""
        if self.ended:
            return
        self.ended = True
        self.failure = failure
        if self._receiver is not None:
            self._receiver(b"")
        self._wake()

    def _take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._resume()
        return data

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
