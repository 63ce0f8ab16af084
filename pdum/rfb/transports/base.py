"""The byte-stream interface every transport gives a :class:`~pdum.rfb.session.Session`.

TCP, the WebSocket bridge, the ASGI endpoint and the comm fallback differ only in how they
implement these few methods; the RFB session above them is the same code.
"""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    #: Transport name for logs and stats ("tcp", "websocket", ...).
    kind: str
    #: Printable peer address.
    peer: str
    #: Optional (default True): False when ``write`` does not wait for the peer to take the data;
    #: such streams get no continuous updates, so requests bound what is in flight.

    async def read(self) -> bytes:
        """Some bytes from the client; ``b""`` once the client has gone."""
        ...

    async def write(self, data: bytes) -> None:
        """Send bytes and wait until the transport's buffer has drained below its high-water mark."""
        ...

    def pending_bytes(self) -> int:
        """Bytes accepted by :meth:`write` that the peer has not taken yet."""
        ...

    # Optional: ``set_receiver(receiver: Callable[[bytes], None]) -> None`` hands every later chunk
    # to ``receiver`` as it arrives (``b""`` at the end, then an optional ``failure`` attribute
    # says why) instead of :meth:`read` (TCP, the WebSocket bridge).

    # Optional: ``write_now(data: bytes) -> None`` writes without waiting when ``pending_bytes()``
    # is 0 (TCP, the WebSocket bridge). Sessions then send in-step updates straight from the
    # event loop (session.py).

    async def close(self) -> None:
        """Close the connection; safe to call more than once."""
        ...
