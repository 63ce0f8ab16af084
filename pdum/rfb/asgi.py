"""An ASGI app serving Displays (WebSocket + viewer page) inside an existing web server.

Hosted notebooks (JupyterHub, Binder) and web apps often expose one origin only. Mount
:class:`RfbApp` under a prefix of that origin and the viewer connects same-origin:

    app = RfbApp(display)                       # /websockify, /, /health, /metrics, /static/...
    app = RfbApp({"left": d1, "right": d2})     # a hub: /left/websockify, /right/, ...

In a notebook, ``display.widget(base_path="/prefix/")`` (or ``"/prefix/left/"`` for a hub) makes
the widget connect through the mount. The app must run on the event loop the Displays were
created on (the usual case: one process, one loop); it refuses connections otherwise.

Plain ASGI 3, no framework needed; any ASGI server (uvicorn, hypercorn) or framework mount
(Starlette ``Mount``, FastAPI ``app.mount``) works.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import web
from .display import Display
from .protocol.errors import LimitExceeded, ProtocolError
from .protocol.messages import DEFAULT_LIMITS

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AsgiWebSocketStream:
    """:class:`~pdum.rfb.transports.base.ByteStream` over an ASGI WebSocket connection."""

    kind = "asgi"
    #: Writes do not wait for the peer, so the session offers no continuous updates.
    flow_controlled = False

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, max_message: int = DEFAULT_LIMITS.max_ws_message
    ) -> None:
        self._receive = receive
        self._send = send
        #: ``Limits.max_ws_message``; the ASGI server has already read the message by then, so
        #: also cap it there (uvicorn: ``ws_max_size``) to avoid buffering huge ones at all.
        self._max_message = max_message
        client = scope.get("client")
        self.peer = f"{client[0]}:{client[1]}" if client else "asgi"
        query = scope.get("query_string", b"").decode("latin-1")
        self.tag: str | None = None
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "widget":
                self.tag = value
        self._closed = False

    async def read(self) -> bytes:
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._closed = True
                return b""
            if kind != "websocket.receive":
                continue
            data = message.get("bytes")
            if data is not None:
                if len(data) > self._max_message:
                    await self.close(1009)
                    raise LimitExceeded(f"WebSocket message of {len(data)} bytes (limit {self._max_message})")
                return bytes(data)
            await self.close(1003)
            raise ProtocolError("text WebSocket frame; RFB needs binary frames")

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("websocket closed")
        try:
            await self._send({"type": "websocket.send", "bytes": data})
        except Exception as exc:  # servers raise their own "disconnected" errors
            self._closed = True
            raise ConnectionResetError(str(exc)) from exc

    def pending_bytes(self) -> int:
        return 0

    async def close(self, code: int = 1000) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": code})
        except Exception:
            pass


class RfbApp:
    """ASGI application for one :class:`Display` or a hub of named Displays."""

    def __init__(self, displays: Display | Mapping[str, Display]) -> None:
        if isinstance(displays, Display):
            self._single: Display | None = displays
            self._hub: dict[str, Display] = {}
        else:
            self._single = None
            self._hub = dict(displays)
            for name in self._hub:
                if not name or "/" in name:
                    raise ValueError(f"display name {name!r} must be a non-empty path segment")

    def add(self, name: str, display: Display) -> None:
        """Add (or replace) a named display in a hub."""
        if self._single is not None:
            raise TypeError("this app serves a single Display")
        self._hub[name] = display

    def remove(self, name: str) -> None:
        self._hub.pop(name, None)

    def _resolve(self, path: str) -> tuple[Display | None, str]:
        if self._single is not None:
            return self._single, path
        name, _, rest = path.lstrip("/").partition("/")
        display = self._hub.get(name)
        return display, "/" + rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        display, rest = self._resolve(path)
        if kind == "http":
            await self._http(display, rest, scope.get("query_string", b"").decode("latin-1"), send)
        elif kind == "websocket":
            await self._websocket(display, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, display: Display | None, path: str, query: str, send: Send) -> None:
        if display is None:
            if self._single is None and path in ("", "/"):
                listing = {"displays": sorted(self._hub)}
                await _respond(send, 200, "application/json", json.dumps(listing).encode())
                return
            await _respond(send, 404, "text/plain", b"not found\n")
            return
        refusal = display.access.check_http(f"{path}?{query}" if query else path)
        if refusal is not None:
            await _respond(send, 403, "text/plain", (refusal + "\n").encode())
            return
        result = web.route(path, display.name, display.metrics())
        if result is None:
            await _respond(send, 404, "text/plain", b"not found\n")
            return
        await _respond(send, *result)

    async def _websocket(self, display: Display | None, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if display is None or display._closed:
            await send({"type": "websocket.close", "code": 4404})
            return
        if display._loop is not asyncio.get_running_loop():
            log.error("ASGI app runs on another event loop than the Display; refusing the WebSocket")
            await send({"type": "websocket.close", "code": 1011})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode("latin-1")
        refusal = display.access.check_websocket(f"/?{query}", headers, scope.get("subprotocols", []))
        if refusal is not None:
            client = scope.get("client")
            display.server.note_violation(
                f"{client[0]}:{client[1]}" if client else "asgi", "forbidden", refusal
            )
            await send({"type": "websocket.close", "code": 4403})  # before accept: HTTP 403
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if "binary" in scope.get("subprotocols", []):
            accept["subprotocol"] = "binary"
        await send(accept)
        limit = display.server.config.limits.max_ws_message
        await display.server.serve_stream(AsgiWebSocketStream(scope, receive, send, limit))


async def _respond(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
