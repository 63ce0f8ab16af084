"""The in-process WebSocket bridge: websockify's convention without a second process.

Each WebSocket connection carries the raw RFB byte stream in binary frames (subprotocol
``binary`` accepted when offered), exactly what noVNC and any websockify client expect, and
becomes one RFB session of the same Display. websockify itself forks and installs signal
handlers, so it cannot run inside a Jupyter kernel; the ``websockets`` library runs on the
kernel's own event loop instead.

As over TCP (transports/tcp.py), the session takes the client's bytes as they arrive
(:meth:`WebSocketStream.set_receiver`, fed from :class:`RfbConnection.process_event`) and writes
in-step updates without waiting (:meth:`WebSocketStream.write_now`): no task wakes per request
or per update, which was most of what one more viewer cost (docs/performance.md).

The same port answers plain HTTP (see :mod:`pdum.rfb.web`): the full-page viewer, ``/health``
and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, Event
from websockets.typing import Subprotocol

from ..protocol.errors import LimitExceeded, ProtocolError
from .inbox import Inbox

log = logging.getLogger(__name__)

#: Largest WebSocket message a client may send; RFB client messages are small.
#: The Display passes ``Limits.max_ws_message`` instead.
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
_DATA_OPCODES = (Opcode.BINARY, Opcode.CONT, Opcode.TEXT)
#: Whether websockets hands each received frame to ``process_event`` (its asyncio connection
#: has since it was added); without it :class:`RfbConnection` routes nothing and streams read
#: through ``recv()``.
_ROUTABLE = callable(getattr(ServerConnection, "process_event", None))


class RfbConnection(ServerConnection):
    """websockets' server connection with its data frames fed, as they arrive, into the
    :attr:`inbox` its :class:`WebSocketStream` reads, instead of queued for ``recv()``.

    RFB is one byte stream: where the client cut it into messages or fragments means nothing, so
    each binary frame's payload (a fragment's too) is the next stretch of it. A text frame ends
    the stream with a protocol error. Ping, pong and close frames stay websockets' own. Frames
    that arrive before the stream exists wait in the inbox like any others."""

    #: The largest message the bridge lets websockets take (for the error a larger one ends with).
    max_message = DEFAULT_MAX_MESSAGE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = Inbox(self._rfb_pause, self._rfb_resume)
        self._rfb_in_text = False

    def process_event(self, event: Event) -> None:
        if (
            not _ROUTABLE
            or self.request is None
            or not isinstance(event, Frame)
            or event.opcode not in _DATA_OPCODES
        ):
            super().process_event(event)  # the opening handshake and control frames
            return
        text = event.opcode is Opcode.TEXT or (event.opcode is Opcode.CONT and self._rfb_in_text)
        self._rfb_in_text = text and not event.fin
        if text:
            self.inbox.end(ProtocolError("text WebSocket frame; RFB needs binary frames"))
        elif event.data:  # (an empty frame, a fragmented message's last one say, is not an end)
            self.inbox.feed(bytes(event.data))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        sent = self.protocol.close_sent
        too_big = sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG
        self.inbox.end(LimitExceeded(f"WebSocket message over {self.max_message} bytes") if too_big else None)

    def _rfb_pause(self) -> None:
        self.transport.pause_reading()  # type: ignore[attr-defined]

    def _rfb_resume(self) -> None:
        if not self.inbox.ended:
            self.transport.resume_reading()  # type: ignore[attr-defined]


class WebSocketStream:
    """:class:`~pdum.rfb.transports.base.ByteStream` over one WebSocket connection."""

    kind = "websocket"

    def __init__(self, connection: ServerConnection, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._ws = connection
        self._max_message = max_message
        peer = connection.remote_address
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        request = connection.request
        query = parse_qs(urlsplit(request.path).query) if request is not None else {}
        #: The notebook widget's id (``?widget=...``), so its overlay shows its own stats.
        self.tag: str | None = query.get("widget", [None])[0]
        #: Write without awaiting (see :meth:`_write_direct`), when this websockets release has
        #: what it needs; the session then sends in-step updates straight from the event loop.
        self.write_now: Callable[[bytes], None] | None = (
            self._write_direct if _can_write_direct(connection) else None
        )
        #: The connection's bytes as its frames arrive (None: read through ``recv()``).
        self._inbox = connection.inbox if _ROUTABLE and isinstance(connection, RfbConnection) else None
        #: Bytes handed over as they arrive (:meth:`Inbox.set_receiver`) when the connection routes
        #: its frames here; otherwise the session reads through ``recv()``.
        self.set_receiver: Callable[[Callable[[bytes], None]], None] | None = (
            None if self._inbox is None else self._inbox.set_receiver
        )

    # -- reading ------------------------------------------------------------------------------------
    @property
    def failure(self) -> Exception | None:
        """Why the stream ended, if not by a plain close: a text frame (ProtocolError) or a
        message over ``max_message`` (LimitExceeded). :meth:`read` raises it; after ``b""``
        from the receiver of :attr:`set_receiver` the session raises it."""
        return None if self._inbox is None else self._inbox.failure

    async def read(self) -> bytes:
        """Some bytes from the client; ``b""`` once it has gone. Raises :class:`ProtocolError`
        for a text frame and :class:`LimitExceeded` for a message over ``max_message``
        (websockets refuses it from its header, before reading the payload, and closes with
        1009); the session logs and counts both."""
        if self._inbox is None:
            return await self._recv()
        return await self._inbox.read()

    async def _recv(self) -> bytes:
        """:meth:`read` through websockets' ``recv()``, for a connection that does not route."""
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                raise LimitExceeded(f"WebSocket message over {self._max_message} bytes") from None
            return b""
        if isinstance(message, str):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(1003, "binary frames only"), timeout=0.5)
            raise ProtocolError("text WebSocket frame; RFB needs binary frames")
        return bytes(message)

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise ConnectionResetError(str(exc)) from exc

    def _write_direct(self, data: bytes) -> None:
        """Frame ``data`` as one binary message and hand it to the transport now, for a caller
        that saw ``pending_bytes()`` at 0 (what ``send()`` does, minus its task-side waiting):
        no wake-up of the session's writer task per update, which with many viewers was most of
        what each extra one cost (docs/performance.md). The next :meth:`write` waits for
        whatever the transport had to buffer."""
        ws = self._ws
        if ws.protocol.state is not OPEN or ws.send_in_progress is not None:
            raise ConnectionResetError("WebSocket not open")
        ws.protocol.send_binary(data)
        try:
            ws.send_data()
        except Exception as exc:  # what send() does too: the connection is unusable
            ws.transport.abort()
            raise ConnectionResetError(str(exc)) from exc

    def pending_bytes(self) -> int:
        transport = self._ws.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def close(self) -> None:
        """Close the WebSocket: with 1003 after a text frame (the stream's failure), else 1000."""
        code, reason = (
            (CloseCode.UNSUPPORTED_DATA, "binary frames only")
            if isinstance(self.failure, ProtocolError)
            else (CloseCode.NORMAL_CLOSURE, "")
        )
        try:
            await asyncio.wait_for(self._ws.close(code, reason), timeout=0.5)
        except Exception:
            self._ws.transport.abort()


def _can_write_direct(connection: ServerConnection) -> bool:
    """Whether ``connection`` has the sans-I/O ``protocol``, ``send_data()`` and
    ``send_in_progress`` that :meth:`WebSocketStream._write_direct` uses (websockets' asyncio
    connection has had them since it was added; if a release drops one, writes go through
    ``send()``)."""
    return all(hasattr(connection, name) for name in ("protocol", "send_data", "send_in_progress"))


HttpHandler = Callable[[str, Headers], Awaitable[tuple[int, str, bytes] | None]]


def _select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Accept ``binary`` when offered (websockify's convention); no subprotocol is fine too."""
    return Subprotocol("binary") if "binary" in offered else None


class WebSocketBridge:
    """A WebSocket + HTTP listener feeding RFB sessions to ``serve_stream``."""

    def __init__(
        self,
        serve_stream: Callable[[WebSocketStream], Awaitable[None]],
        http: HttpHandler,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        accept: Callable[[Request], str | None] | None = None,
        on_violation: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """``on_violation(peer, kind, reason)`` hears of connections whose WebSocket opening
        handshake was not valid HTTP (they are closed without reaching ``serve_stream``)."""
        self._serve_stream = serve_stream
        self._http = http
        self._max_message = max_message
        self._accept = accept
        self._on_violation = on_violation
        self._server: WsServer | None = None

    def _connection_class(self) -> type[RfbConnection]:
        on_violation = self._on_violation

        class Connection(RfbConnection):
            max_message = self._max_message

            async def handshake(self, *args: Any, **kwargs: Any) -> None:
                await super().handshake(*args, **kwargs)
                failed = self.protocol.handshake_exc
                if failed is not None and self.protocol.state is not OPEN and on_violation is not None:
                    peer = self.remote_address
                    where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
                    on_violation(where, "protocol_error", f"bad WebSocket opening handshake ({failed})")

        return Connection

    async def listen(self, host: str, port: int) -> int:
        self._server = await serve(
            self._handler,
            host,
            port,
            select_subprotocol=_select_subprotocol,
            process_request=self._process_request,
            compression=None,  # RFB payloads are already compressed; deflate would only cost CPU
            max_size=self._max_message,
            ping_interval=20,
            ping_timeout=20,
            open_timeout=10,
            server_header="pdum.rfb",
            create_connection=self._connection_class(),
        )
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._accept is not None:
            refusal = self._accept(request)
            if refusal is not None:
                peer = connection.remote_address
                where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
                if self._on_violation is not None:
                    self._on_violation(where, "forbidden", refusal)
                return connection.respond(HTTPStatus.FORBIDDEN, refusal + "\n")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        result = await self._http(request.path, request.headers)
        if result is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        status, content_type, body = result
        headers = Headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-store"
        return Response(status, HTTPStatus(status).phrase, headers, body)

    async def _handler(self, connection: ServerConnection) -> None:
        await self._serve_stream(WebSocketStream(connection, self._max_message))

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
        self._server = None
