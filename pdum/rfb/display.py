"""The user-facing :class:`Display`: publish NumPy frames, read input events, close cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import web
from .access import AccessPolicy
from .auth import AuthContext, Authenticator, Lockout
from .copyrect import Copy, parse_copies
from .cursor import CursorShape
from .encodings import tight_png
from .events import EventQueue, InputEvent
from .framebuffer import Framebuffer, validate_frame
from .protocol.messages import DEFAULT_LIMITS, Limits
from .protocol.security import (
    AUTHENTICATED,
    RSA_AES,
    SECURITY_NAMES,
    UNAUTHENTICATED,
    SecurityType,
    security_name,
)
from .protocol.vencrypt import X509 as X509_TYPES
from .server import Server, ServerConfig
from .stats import StatsCollector
from .transports.websocket import WebSocketBridge

log = logging.getLogger(__name__)

_IDENTITY_KEYS = ("client_id", "peer", "transport")
#: Scroll detection backs off after this many changed frames in a row without a scroll...
SCROLL_MISSES_BEFORE_BACKOFF = 8
#: ...to one frame in this many, until it finds a scroll again.
SCROLL_BACKOFF = 8


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _security_types(
    security: Sequence[str | int] | None,
    password: str | None,
    authenticate: Any = None,
    has_cert: bool = False,
) -> tuple[SecurityType, ...]:
    has_secret = password is not None or authenticate is not None
    if security is None:
        return (SecurityType.VNC_AUTH,) if has_secret else (SecurityType.NONE,)
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
    for t in types:
        if t in AUTHENTICATED and not has_secret:
            raise ValueError(f"security {security_name(t)!r} needs password= (or authenticate=)")
        if t in X509_TYPES and not has_cert:
            raise ValueError(f"security {security_name(t)!r} needs tls_cert= (and tls_key=)")
    if not types:
        raise ValueError("security must name at least one type")
    return tuple(dict.fromkeys(types))


class Display:
    """A framebuffer served over RFB. Create it with :func:`pdum.rfb.serve`.

    ``publish()`` is cheap and synchronous: it swaps the frame in and marks damaged tiles; each
    client gets the newest frame when it asks for one. It may be called from the event loop's
    thread or from any other thread (the frame is copied and handed to the loop).
    """

    #: Look for vertical scrolling in frames published without ``copies`` and send it as CopyRect
    #: to clients that announced it. Every candidate is verified against the pixels; it runs only
    #: while such a client is connected (about 3 ms on a scrolled 1080p frame, ~1% of Zlib-encoding
    #: it, and ~1 ms when nothing scrolled). After 8 frames in a row without a scroll it looks at
    #: one frame in 8 until it finds one again (content that never scrolls stops paying for it;
    #: a missed scroll is only sent as pixels).
    detect_scroll: bool = True
    #: How often (seconds) live widgets' ``snapshot`` trait follows the frame, for notebooks saved
    #: with widget state; stretched so PNG encoding (in a worker thread) stays under ~5% of a core.
    #: ``None``: widgets keep the frame they were created with.
    snapshot_interval: float | None = 1.0

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
        resize_policy: str = "reject",
        lossy: bool = False,
        tight_gradient: bool = False,
        authenticate: Callable[[AuthContext], Any] | None = None,
        rsa_key: Any = None,
        lockout_threshold: int = 5,
        lockout_timeout: float = 10.0,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        origins: Sequence[str] | None = None,
    ) -> None:
        #: Token and origin checks for the WebSocket bridge, /metrics and the ASGI app.
        self.access = AccessPolicy.build(token, origins)
        self._framebuffer = Framebuffer(width, height)
        self.host = host
        self.fps = fps
        self.stats_interval = stats_interval
        self.requested_port = port
        self.requested_vnc_port = vnc_port
        types = _security_types(security, password, authenticate, has_cert=tls_cert is not None)
        if any(t in UNAUTHENTICATED for t in types) and not _is_loopback(host) and not allow_insecure:
            raise ValueError(
                f"refusing to serve without authentication on non-loopback host {host!r}: "
                "pass password=... (or allow_insecure=True if the network is trusted)"
            )
        self._events = EventQueue(event_queue_size)
        self._server = Server(
            self._framebuffer,
            self._events,
            ServerConfig(
                name=name,
                security_types=types,
                password=password,
                limits=limits,
                resize_policy=resize_policy,
                lossy=lossy,
                tight_gradient=tight_gradient,
                auth=Authenticator(
                    password=password,
                    authenticate=authenticate,
                    lockout=Lockout(lockout_threshold, lockout_timeout),
                    rsa_key=rsa_key,
                    tls_cert=tls_cert,
                    tls_key=tls_key,
                ),
            ),
        )
        self._clipboard = ""
        self._bridge: WebSocketBridge | None = None
        self._stats = StatsCollector(self._server, stats_interval) if stats_interval else None
        self._stats_task: asyncio.Task[None] | None = None
        self._widgets: weakref.WeakSet[Any] = weakref.WeakSet()
        self._snapshot_task: asyncio.Task[None] | None = None
        #: Scroll detection's backoff (see ``detect_scroll``): frames seen, misses in a row.
        self._scroll_frames = 0
        self._scroll_misses = 0
        self._snapshot_cache: tuple[int, bytes] | None = None  # (generation, PNG)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        #: A frame published from another thread, waiting for the loop (at most one).
        self._pending_frame: tuple[np.ndarray, tuple[Copy, ...]] | None = None
        self._pending_lock = threading.Lock()
        self.vnc_port: int | None = None
        self.port: int | None = None
        self._closed = False

    async def start(self) -> Display:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if any(t in RSA_AES for t in self._server.config.security_types):
            # Generate the RSA key (if none was given) off the loop before anyone connects.
            await asyncio.to_thread(self._server.auth.server_key)
        try:
            if self.requested_vnc_port is not None:
                self.vnc_port = await self._server.listen_tcp(self.host, self.requested_vnc_port)
            if self.requested_port is not None:
                self._bridge = WebSocketBridge(
                    self._server.serve_stream,
                    self._http,
                    max_message=self._server.config.limits.max_ws_message,
                    on_violation=self._server.note_violation,
                    accept=self._accept_request,
                )
                self.port = await self._bridge.listen(self.host, self.requested_port)
        except BaseException:
            await self.aclose()
            raise
        if self._stats is not None:
            self._stats_task = self._loop.create_task(self._stats.run(), name="pdum-rfb-stats")
        log.info("serving %dx%d: vnc %s, websocket %s", self.width, self.height, self.vnc_url, self.ws_url)
        return self

    def _accept_request(self, request: Any) -> str | None:
        """Token and origin checks for the bridge (see :mod:`pdum.rfb.access`)."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            offered = [
                p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
            ]
            return self.access.check_websocket(request.path, request.headers, offered)
        return self.access.check_http(request.path)

    async def _http(self, path: str, headers: Any) -> tuple[int, str, bytes] | None:
        return web.route(path, self.name, self.metrics())

    # -- frames -------------------------------------------------------------------------------------
    def publish(self, frame: np.ndarray, copies: Iterable[Sequence[int]] | None = None) -> None:
        """Show ``frame`` (``HxWx3`` or ``HxWx4`` uint8; alpha is ignored) on every client.

        A frame of a new size resizes the display; clients that support DesktopSize follow.
        Raises ``TypeError``/``ValueError`` for anything that is not such an array, and
        ``RuntimeError`` once the display is closed.

        ``copies`` lists ``(src_x, src_y, width, height, dst_x, dst_y)`` regions of the previous
        frame that reappear moved in this one (scrolling, dragging), applied in that order. Clients
        that support CopyRect then get a 16-byte copy instead of the pixels. Each is checked
        against the pixels and quietly sent as pixels when it does not hold; a copy outside the
        frame raises ``ValueError``, and a resize ignores them.
        """
        frame = validate_frame(frame)
        moves = parse_copies(copies, frame.shape[1], frame.shape[0]) if copies is not None else ()
        if self._closed:
            raise RuntimeError("publish() on a closed Display")
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._publish_now(frame, moves)
        else:
            # Latest frame wins here too: a thread publishing faster than the loop runs replaces
            # the frame still waiting instead of queueing copies without bound.
            copy = np.array(frame[..., :3], copy=True)
            with self._pending_lock:
                scheduled = self._pending_frame is not None
                self._pending_frame = (copy, moves)
            if not scheduled:
                try:
                    self._loop.call_soon_threadsafe(self._publish_pending)
                except RuntimeError:
                    with self._pending_lock:
                        self._pending_frame = None
                    raise

    def _publish_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending_frame = self._pending_frame, None
        if pending is not None:
            self._publish_now(*pending)

    def _publish_now(self, frame: np.ndarray, copies: tuple[Copy, ...] = ()) -> None:
        if self._closed:
            return
        # Scroll detection only pays off for clients that can take CopyRect.
        detect = self.detect_scroll and not copies and self._server.copyrect_clients()
        if detect:
            self._scroll_frames += 1
            backing_off = self._scroll_misses >= SCROLL_MISSES_BEFORE_BACKOFF
            detect = not backing_off or self._scroll_frames % SCROLL_BACKOFF == 0
        damage = self._framebuffer.update(frame, copies, detect)
        if detect and not damage.empty:
            self._scroll_misses = 0 if damage.copies else self._scroll_misses + 1
        if not damage.empty:
            self._server.broadcast_damage(damage)

    @property
    def frame(self) -> np.ndarray:
        """A read-only view of the current framebuffer (``HxWx3`` RGB)."""
        view = self._framebuffer.pixels.view()
        view.flags.writeable = False
        return view

    def snapshot(self) -> bytes:
        """The current frame as a PNG file (8-bit RGB), e.g. to save it or embed it in a page.

        The widget puts it in its output, so a saved or converted notebook (nbconvert, GitHub, a
        docs page) still shows the picture without a kernel. It is written by the PNG encoder
        TightPNG already uses (no imaging library needed) and cached per :attr:`generation`, so
        asking again for an unchanged frame costs nothing; a new 1080p frame takes ~0.2-0.3 s.

        The framebuffer belongs to the event loop. On the loop's thread (notebook cells,
        ``publish_loop``) the frame is read directly; from another thread the frame is copied on
        the loop (this waits for it, so never call it from a thread the loop itself is waiting on)
        and encoded in the calling thread.
        """
        loop = self._loop
        elsewhere = threading.get_ident() != self._loop_thread and not self._closed
        if loop is not None and elsewhere and loop.is_running():
            pixels, generation = asyncio.run_coroutine_threadsafe(self._copy_frame(), loop).result()
        else:
            pixels, generation = self._framebuffer.pixels, self._framebuffer.generation
        return self._encode_snapshot(pixels, generation)

    async def _copy_frame(self) -> tuple[np.ndarray, int]:
        return self._framebuffer.pixels.copy(), self._framebuffer.generation

    def _encode_snapshot(self, pixels: np.ndarray, generation: int) -> bytes:
        """PNG of ``pixels`` (the frame of ``generation``), through the per-generation cache."""
        cached = self._snapshot_cache
        if cached is not None and cached[0] == generation:
            return cached[1]
        png = tight_png.encode_rgb(pixels, 6)
        self._snapshot_cache = (generation, png)
        return png

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
        """WebSocket URL a browser on this host uses (``None`` when ``port=None``)."""
        if self.port is None:
            return None
        return f"ws://{self._browser_host}:{self.port}/websockify"

    @property
    def http_url(self) -> str | None:
        """The full-page viewer served on the WebSocket port."""
        if self.port is None:
            return None
        return f"http://{self._browser_host}:{self.port}/"

    @property
    def _browser_host(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def client_count(self) -> int:
        return len(self._server.sessions)

    @property
    def server(self) -> Server:
        return self._server

    @property
    def stats(self) -> dict[str, Any]:
        """Server-truth statistics, overall and per client.

        Always: lifetime counters per client. With ``stats_interval``: also per-second rates over
        the last interval (``fps``, ``bitrate`` in bit/s, ``skipped_per_s``, ``encode_ms`` per
        update) and ``rtt_ms`` from Fence round trips (clients that support Fence), with the
        delivery rate estimated from them (``bandwidth``, bytes/s), ``bytes_in_flight`` and the
        JPEG ``quality_level`` adaptive quality chose for the client.
        """
        rates = self._stats.latest if self._stats is not None else {}
        clients: dict[int, dict[str, Any]] = {}
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
                "copyrects_sent": s.copyrects_sent,
                "encode_ms_total": s.encode_seconds * 1000.0,
                "rtt_ms": s.rtt_ms,
                # Congestion control (congestion.py), for clients that support Fence.
                "bandwidth": session.congestion.bandwidth,
                "bytes_in_flight": session.congestion.in_flight,
                "quality_level": session.quality.level,
                **{k: v for k, v in rates.get(cid, {}).items() if k not in _IDENTITY_KEYS},
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
            "refused": c.refused,
            "violations": dict(c.violations),
            "events_dropped": self._events.dropped,
            "encode_cache_hits": self._server.encode_cache.hits,
            "encode_cache_misses": self._server.encode_cache.misses,
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
        self._clipboard = str(text).replace("\r\n", "\n")
        self._on_loop(self._server.set_clipboard, self._clipboard)

    @property
    def name(self) -> str:
        """The desktop name; setting it updates clients that support DesktopName."""
        return self._server.name_bytes.decode("utf-8")

    @name.setter
    def name(self, name: str) -> None:
        self._on_loop(self._server.set_name, str(name))

    def set_cursor(self, rgba: np.ndarray, hotspot: tuple[int, int] = (0, 0)) -> None:
        """Cursor shape drawn by clients that support the Cursor pseudo-encoding.

        ``rgba`` is an ``HxWx4`` uint8 array (alpha >= 128 is visible); ``hotspot`` is ``(x, y)``.
        """
        shape = CursorShape.from_user(rgba, hotspot)
        self._on_loop(self._server.set_cursor, shape)

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # -- lifecycle ----------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """What ``/metrics`` serves: :attr:`stats` plus where to connect."""
        return {**self.stats, "vnc_url": self.vnc_url, "ws_url": self.ws_url, "name": self.name}

    # -- notebook -----------------------------------------------------------------------------------
    def widget(
        self,
        *,
        fit: bool = True,
        height: int = 480,
        show_toolbar: bool = True,
        show_stats: bool = True,
        base_path: str | None = None,
        password: str | None = None,
        transport: str = "auto",
    ) -> Any:
        """A live Jupyter view of this display (needs the ``anywidget`` extra).

        With ``base_path`` the viewer connects same-origin through that prefix (an ASGI mount or
        jupyter-server-proxy) instead of to :attr:`ws_url`. ``transport`` is ``"auto"`` (the
        WebSocket, falling back to the widget's own comm channel when the socket cannot be opened,
        e.g. on Colab or in VS Code), ``"websocket"`` or ``"comm"``.
        """
        from .widget import RfbViewer

        if base_path is None and self.ws_url is None and transport != "comm":
            raise RuntimeError(
                "this Display has no WebSocket port (serve(..., port=None)): "
                "pass base_path= or transport='comm'"
            )
        view = RfbViewer(
            self,
            transport=transport,
            url="" if base_path is not None else (self.ws_url or ""),
            base_path=base_path,
            fit=fit,
            height=height,
            show_toolbar=show_toolbar,
            show_stats=show_stats,
            password=password or "",
            token=self.access.token or "",
        )
        self._widgets.add(view)
        if self.snapshot_interval is not None:
            self._on_loop(self._start_snapshot_refresh)
        if self._stats is not None and self._push_stats not in self._stats.listeners:
            self._stats.listeners.append(self._push_stats)
        return view

    def _start_snapshot_refresh(self) -> None:
        from .widget import refresh_snapshots

        running = self._snapshot_task is not None and not self._snapshot_task.done()
        if not running and not self._closed and self._loop is not None and self._loop.is_running():
            self._snapshot_task = self._loop.create_task(refresh_snapshots(self), name="pdum-rfb-snapshots")

    def _push_stats(self, snapshot: dict[int, dict[str, Any]]) -> None:
        for view in list(self._widgets):
            mine = [c for c in snapshot.values() if c.get("tag") == view.widget_id]
            view.stats = mine[0] if mine else {}

    async def aclose(self) -> None:
        """Disconnect every client, stop listening and release every task and socket."""
        if self._closed:
            return
        self._closed = True
        self._events.close()
        for task in (self._stats_task, self._snapshot_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._widgets:  # saved notebooks show the frame the display ended with
            from .widget import push_snapshot

            await push_snapshot(self)
        if self._bridge is not None:
            await self._bridge.aclose()
        await self._server.aclose()

    async def __aenter__(self) -> Display:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Display {self.width}x{self.height} vnc={self.vnc_url} clients={self.client_count}>"


async def serve(width: int, height: int, **options: Any) -> Display:
    """Create a :class:`Display` of ``width`` x ``height`` and start serving it.

    ``options`` are :class:`Display`'s keyword arguments (one list, kept in one place): ``host``,
    ``port``, ``vnc_port``, ``password``, ``security``, ``name``, ``fps``, ``stats_interval``,
    ``event_queue_size``, ``allow_insecure``, ``limits``, ``resize_policy``, ``lossy``,
    ``tight_gradient``, ``authenticate``, ``rsa_key``, ``lockout_threshold``, ``lockout_timeout``,
    ``tls_cert``, ``tls_key``, ``token``, ``origins``.

    ``vnc_port`` is the raw RFB TCP port (0 picks a free one, ``None`` disables it); ``port`` is
    the WebSocket/HTTP port for browser viewers. ``password`` enables VncAuth (only its first 8
    characters count: a limit of VncAuth itself). Serving a non-loopback ``host`` without a
    password raises unless ``allow_insecure=True``. ``lossy=True`` lets clients that announce a
    JPEG quality level get Tight JPEG (fewer bytes); by default every client gets exact pixels.
    ``tight_gradient=True`` enables Tight's gradient filter (noVNC before 1.5 cannot decode it).
    ``resize_policy`` decides what a client's SetDesktopSize does ("reject" or "accept"); either
    way it arrives as a ``resize`` event. ``limits`` (:class:`pdum.rfb.Limits`) bounds what one
    client may make the server hold or wait for: clipboard and WebSocket message sizes, queued
    output, handshake/idle/message timeouts and ``max_clients`` (docs/reliability.md).

    Security (docs/security.md): ``security`` lists the types to offer, in order of preference,
    by name: "ra2", "ra2_256", "ra2ne", "ra2ne_256" (RSA-AES, TigerVNC 1.13+ and noVNC's
    "ra2ne"), "x509plain", "x509vnc", "x509none" (VeNCrypt: TLS with the certificate
    ``tls_cert``/``tls_key``), "tlsplain", "tlsvnc", "tlsnone" (VeNCrypt, anonymous TLS), "vnc"
    (VncAuth) and "none"; the default is "vnc" with a password (or ``authenticate``) and "none"
    without. ``rsa_key`` is the RSA-AES server key (a PEM path or
    text); without it a 2048-bit key is generated per Display. ``authenticate(ctx: AuthContext)``
    replaces the password check and returns the principal (``None`` refuses; a principal with
    ``view_only`` true only watches). ``lockout_threshold`` failures in a row lock a peer address
    out for ``lockout_timeout`` seconds, doubling each time (0 disables it).

    Browser-facing endpoints (docs/security.md): with ``token`` the WebSocket URL must carry
    ``?token=...`` (the widget and viewer page add it) and ``/metrics`` needs it too; ``origins``
    is an allow-list for browsers' ``Origin`` header (stops other web sites from opening the
    WebSocket). Both apply to the in-process bridge and to :class:`pdum.rfb.asgi.RfbApp`.
    """
    return await Display(width, height, **options).start()
