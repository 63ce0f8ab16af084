"""The user-facing :class:`Display`: publish NumPy frames, read input events, close cleanly."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from .events import EventQueue, InputEvent
from .framebuffer import Framebuffer, validate_frame
from .protocol import messages as m
from .protocol.messages import DEFAULT_LIMITS, Limits
from .protocol.security import SECURITY_NAMES, SecurityType
from .server import Server, ServerConfig

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _security_types(security: Sequence[str | int] | None, password: str | None) -> tuple[SecurityType, ...]:
    if security is None:
        return (SecurityType.VNC_AUTH,) if password is not None else (SecurityType.NONE,)
    types: list[SecurityType] = []
    for item in security:
        if isinstance(item, str):
            if item.lower() not in SECURITY_NAMES:
                raise ValueError(
                    f"security type {item!r} is not available (choose from {sorted(SECURITY_NAMES)})"
                )
            types.append(SECURITY_NAMES[item.lower()])
        else:
            types.append(SecurityType(item))
    if SecurityType.VNC_AUTH in types and password is None:
        raise ValueError("security 'vnc' needs password=")
    if not types:
        raise ValueError("security must name at least one type")
    return tuple(dict.fromkeys(types))


class Display:
    """A framebuffer served over RFB. Create it with :func:`pdum.rfb.serve`.

    ``publish()`` is cheap and synchronous: it swaps the frame in and marks damaged tiles; each
    client gets the newest frame when it asks for one. It may be called from the event loop's
    thread or from any other thread (the frame is copied and handed to the loop).
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        host: str = "127.0.0.1",
        port: int | None = 8765,
        vnc_port: int | None = 0,
        password: str | None = None,
        security: Sequence[str | int] | None = None,
        name: str = "pdum.rfb",
        fps: float = 30,
        stats_interval: float | None = None,
        event_queue_size: int = 4096,
        allow_insecure: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._framebuffer = Framebuffer(width, height)
        self.host = host
        self.fps = fps
        self.stats_interval = stats_interval
        self.requested_port = port
        self.requested_vnc_port = vnc_port
        types = _security_types(security, password)
        if SecurityType.NONE in types and not _is_loopback(host) and not allow_insecure:
            raise ValueError(
                f"refusing to serve without authentication on non-loopback host {host!r}: "
                "pass password=... (or allow_insecure=True if the network is trusted)"
            )
        self._events = EventQueue(event_queue_size)
        self._server = Server(
            self._framebuffer,
            self._events,
            ServerConfig(name=name, security_types=types, password=password, limits=limits),
        )
        self._clipboard = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.vnc_port: int | None = None
        self.port: int | None = None
        self._closed = False

    async def start(self) -> Display:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.requested_vnc_port is not None:
            self.vnc_port = await self._server.listen_tcp(self.host, self.requested_vnc_port)
        log.info("serving %dx%d on %s", self.width, self.height, self.vnc_url)
        return self

    # -- frames -------------------------------------------------------------------------------------
    def publish(self, frame: np.ndarray) -> None:
        """Show ``frame`` (``HxWx3`` or ``HxWx4`` uint8; alpha is ignored) on every client.

        A frame of a new size resizes the display; clients that support DesktopSize follow.
        Raises ``TypeError``/``ValueError`` for anything that is not such an array, and
        ``RuntimeError`` once the display is closed.
        """
        frame = validate_frame(frame)
        if self._closed:
            raise RuntimeError("publish() on a closed Display")
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._publish_now(frame)
        else:
            copy = np.array(frame[..., :3], copy=True)
            self._loop.call_soon_threadsafe(self._publish_now, copy)

    def _publish_now(self, frame: np.ndarray) -> None:
        if self._closed:
            return
        damage = self._framebuffer.update(frame)
        if not damage.empty:
            self._server.broadcast_damage(damage)

    @property
    def frame(self) -> np.ndarray:
        """A read-only view of the current framebuffer (``HxWx3`` RGB)."""
        view = self._framebuffer.pixels.view()
        view.flags.writeable = False
        return view

    @property
    def width(self) -> int:
        return self._framebuffer.width

    @property
    def height(self) -> int:
        return self._framebuffer.height

    @property
    def generation(self) -> int:
        """Increments whenever a publish changes the framebuffer."""
        return self._framebuffer.generation

    # -- where to connect ---------------------------------------------------------------------------
    @property
    def vnc_url(self) -> str | None:
        if self.vnc_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"vnc://{host}:{self.vnc_port}"

    @property
    def ws_url(self) -> str | None:
        """WebSocket URL of the in-process bridge (``None`` until the bridge is enabled)."""
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/websockify"

    @property
    def client_count(self) -> int:
        return len(self._server.sessions)

    @property
    def server(self) -> Server:
        return self._server

    @property
    def stats(self) -> dict[str, Any]:
        """Server-side counters, overall and per client."""
        clients = {}
        for cid, session in self._server.sessions.items():
            s = session.stats
            clients[cid] = {
                "peer": session.peer,
                "transport": session.stream.kind,
                "updates_sent": s.updates_sent,
                "rects_sent": s.rects_sent,
                "bytes_sent": s.bytes_sent,
                "bytes_received": s.bytes_received,
                "frames_skipped": s.frames_skipped,
                "encode_ms": s.encode_seconds * 1000.0,
            }
        c = self._server.counters
        return {
            "width": self.width,
            "height": self.height,
            "generation": self.generation,
            "client_count": self.client_count,
            "connections": c.connections,
            "protocol_errors": c.protocol_errors,
            "auth_failures": c.auth_failures,
            "events_dropped": self._events.dropped,
            "clients": clients,
        }

    # -- input --------------------------------------------------------------------------------------
    def poll_events(self) -> list[InputEvent]:
        """Every input event received since the last call (oldest first), without waiting."""
        return self._events.drain()

    async def events(self) -> AsyncIterator[InputEvent]:
        """Iterate over input events as they arrive; ends when the display closes."""
        async for event in self._events:
            yield event

    @property
    def clipboard(self) -> str:
        """The server clipboard; setting it sends the text to every client."""
        return self._clipboard

    @clipboard.setter
    def clipboard(self, text: str) -> None:
        self._clipboard = str(text)
        data = self._clipboard.replace("\r\n", "\n").encode("latin-1", errors="replace")
        message = m.server_cut_text(data)
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._server.broadcast_message(message)
        else:
            self._loop.call_soon_threadsafe(self._server.broadcast_message, message)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Disconnect every client, stop listening and release every task and socket."""
        if self._closed:
            return
        self._closed = True
        self._events.close()
        await self._server.aclose()

    async def __aenter__(self) -> Display:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Display {self.width}x{self.height} vnc={self.vnc_url} clients={self.client_count}>"


async def serve(
    width: int,
    height: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = 8765,
    vnc_port: int | None = 0,
    password: str | None = None,
    security: Sequence[str | int] | None = None,
    name: str = "pdum.rfb",
    fps: float = 30,
    stats_interval: float | None = None,
    event_queue_size: int = 4096,
    allow_insecure: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Display:
    """Create a :class:`Display` of ``width`` x ``height`` and start serving it.

    ``vnc_port`` is the raw RFB TCP port (0 picks a free one, ``None`` disables it); ``port`` is
    the WebSocket/HTTP port for browser viewers. ``password`` enables VncAuth (only its first 8
    characters count: a limit of VncAuth itself). Serving a non-loopback ``host`` without a
    password raises unless ``allow_insecure=True``.
    """
    display = Display(
        width,
        height,
        host=host,
        port=port,
        vnc_port=vnc_port,
        password=password,
        security=security,
        name=name,
        fps=fps,
        stats_interval=stats_interval,
        event_queue_size=event_queue_size,
        allow_insecure=allow_insecure,
        limits=limits,
    )
    return await display.start()
