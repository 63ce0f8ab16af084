"""Listeners, the client registry, fan-out of damage and input, and lifecycle.

The server owns every asyncio task it starts (one per connection, plus each session's writer) and
cancels them all in :meth:`Server.aclose`, so nothing outlives the Display.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .auth import Authenticator
from .cursor import CursorShape, default_cursor
from .encodings.sharing import EncodeCache
from .events import EventQueue, InputEvent
from .framebuffer import Damage, Framebuffer
from .protocol.messages import DEFAULT_LIMITS, Encoding, Limits
from .protocol.security import SecurityType
from .session import Session
from .transports.base import ByteStream
from .transports.tcp import TcpProtocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    name: str = "pdum.rfb"
    security_types: tuple[SecurityType, ...] = (SecurityType.NONE,)
    password: str | None = None
    #: Sizes, timeouts and client counts (protocol/messages.py, docs/reliability.md).
    limits: Limits = DEFAULT_LIMITS
    #: What a client's SetDesktopSize does: "reject" (answer "prohibited") or "accept" (resize the
    #: framebuffer, keeping its top-left content). Either way a ``resize`` event reaches the user.
    resize_policy: str = "reject"
    #: Honour clients' JPEG quality levels (Tight JPEG). Off by default: every client gets exact pixels.
    lossy: bool = False
    #: Let Tight use its gradient filter (smaller lossless photos; noVNC < 1.5 cannot decode it).
    tight_gradient: bool = False
    #: Credential checks, principals, RSA key and lockout (default: ``password`` must match).
    auth: Authenticator | None = None

    def __post_init__(self) -> None:
        if self.resize_policy not in ("reject", "accept"):
            raise ValueError(f"resize_policy must be 'reject' or 'accept', not {self.resize_policy!r}")


#: Kinds of client misbehaviour counted in ``metrics()["violations"]`` (docs/reliability.md).
VIOLATIONS = (
    "protocol_error",
    "limit_exceeded",
    "output_overflow",
    "handshake_timeout",
    "idle_timeout",
    "message_timeout",
    "auth_failure",
    "max_clients",
    "clipboard_dropped",  # an extended-clipboard text over max_cut_text: dropped, client kept
)


@dataclass
class Counters:
    connections: int = 0
    protocol_errors: int = 0
    auth_failures: int = 0
    refused: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    #: One count per closed misbehaving client, by kind (see :data:`VIOLATIONS`).
    violations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATIONS, 0))


class Server:
    """Serves one :class:`Framebuffer` to any number of RFB sessions."""

    def __init__(self, framebuffer: Framebuffer, events: EventQueue, config: ServerConfig) -> None:
        self.framebuffer = framebuffer
        self.events = events
        self.config = config
        self.auth = config.auth if config.auth is not None else Authenticator(password=config.password)
        self.name_bytes = config.name.encode("utf-8")
        self.sessions: dict[int, Session] = {}
        self.counters = Counters()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Every open client stream, handshaking or not, so aclose() can close them all.
        self._streams: set[ByteStream] = set()
        self._listeners: list[asyncio.Server] = []
        self._closed = False
        self.clipboard = ""
        self.cursor = CursorShape(*default_cursor())
        #: Encoded rectangles of the current frame, shared by clients with the same settings.
        self.encode_cache = EncodeCache()
        #: The pending call that sends the last publish's updates (see broadcast_damage).
        self._kick_handle: asyncio.Handle | None = None
        #: Whole updates being encoded in a thread, by (generation, update key): clients in step
        #: wait for them instead of encoding the same update again (session.py).
        self.encodes_in_flight: dict[tuple[Any, ...], asyncio.Future[bytes]] = {}
        #: A copy of the current frame for encode threads, made once per frame (publish() writes
        #: the framebuffer in place while a thread may still read it).
        self._frame_copy: tuple[int, np.ndarray] | None = None
        #: Threads for large updates (session.py); owned here and joined by :meth:`aclose`.
        self.encode_executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="pdum-rfb-encode"
        )

    # -- listeners ----------------------------------------------------------------------------------
    async def listen_tcp(self, host: str, port: int) -> int:
        """Start the raw-RFB TCP listener; returns the bound port."""
        loop = asyncio.get_running_loop()
        factory = partial(TcpProtocol, self.serve_stream)
        listener = await loop.create_server(factory, host, port, reuse_address=True)
        self._listeners.append(listener)
        return int(listener.sockets[0].getsockname()[1])

    async def serve_stream(self, stream: ByteStream) -> None:
        """Run one RFB session over ``stream`` until it ends (transports call this)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._streams.add(stream)
        try:
            if self._closed:
                await stream.close()
                return
            if len(self._streams) > self.config.limits.max_clients:
                self.counters.refused += 1
                limit = self.config.limits.max_clients
                self.note_violation(stream.peer, "max_clients", f"refused: max_clients={limit} reached")
                await stream.close()
                return
            self.counters.connections += 1
            session = Session(self, stream, next(self._ids))
            await session.run()
        finally:
            self._streams.discard(stream)
            if task is not None:
                self._tasks.discard(task)

    # -- registry -----------------------------------------------------------------------------------
    def register(self, session: Session) -> None:
        self.sessions[session.client_id] = session

    def unregister(self, session: Session) -> None:
        self.sessions.pop(session.client_id, None)

    def disconnect_others(self, keep: Session) -> None:
        """An exclusive (non-shared) ClientInit: close every other client, as RFC 6143 says."""
        for session in list(self.sessions.values()):
            if session is not keep:
                log.info("closing client %s: %s asked for exclusive access", session.peer, keep.peer)
                self.spawn(session.close())

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task the server owns (cancelled by :meth:`aclose`)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- fan-out ------------------------------------------------------------------------------------
    def broadcast_damage(self, damage: Damage) -> None:
        """Give every client a publish's damage; their updates go out once the caller yields
        (frames published back to back without yielding make one update: latest frame wins).
        Its tile grid becomes read-only: clients in step share it (``Session.add_damage``)."""
        damage.tiles.flags.writeable = False
        for session in self.sessions.values():
            session.add_damage(damage)
        if self.sessions and self._kick_handle is None:
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick_all)

    def _kick_all(self) -> None:
        self._kick_handle = None
        for session in list(self.sessions.values()):
            try:
                session.kick()
            except Exception:  # a bug in one client's update must not starve the others
                log.exception("client %s: update failed; closing it", session.peer)
                self.spawn(session.close())

    def frame_copy(self) -> np.ndarray:
        """The current frame's pixels as a copy that publish() will not overwrite."""
        fb = self.framebuffer
        if self._frame_copy is None or self._frame_copy[0] != fb.generation:
            self._frame_copy = (fb.generation, fb.pixels.copy())
        return self._frame_copy[1]

    def sharing_peers(self, session: Session) -> bool:
        """Whether another client currently takes updates with ``session``'s settings."""
        key = session.share_key
        return any(other is not session and other.share_key == key for other in self.sessions.values())

    def copyrect_clients(self) -> bool:
        """Whether any client announced CopyRect (else looking for copies is wasted work)."""
        return any(session.supports(Encoding.COPY_RECT) for session in self.sessions.values())

    def set_clipboard(self, text: str) -> None:
        self.clipboard = text
        for session in self.sessions.values():
            session.send_clipboard(text)

    def set_name(self, name: str) -> None:
        self.name_bytes = name.encode("utf-8")
        for session in self.sessions.values():
            session.name_changed()

    def set_cursor(self, cursor: CursorShape) -> None:
        self.cursor = cursor
        for session in self.sessions.values():
            session.cursor_changed()

    def resize(self, width: int, height: int) -> None:
        """Resize the framebuffer (a client's accepted SetDesktopSize); content stays top-left."""
        old = self.framebuffer.pixels
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        h, w = min(height, old.shape[0]), min(width, old.shape[1])
        frame[:h, :w] = old[:h, :w]
        self.broadcast_damage(self.framebuffer.update(frame))

    def ping_all(self) -> None:
        for session in self.sessions.values():
            session.ping()

    def emit(self, session: Session, event: dict[str, Any]) -> None:
        self.events.put(InputEvent(session.client_id, session.principal, event))

    def note_violation(self, peer: str, kind: str, message: str) -> None:
        """Count one misbehaving client and log it: the one WARNING line per violation."""
        counts = self.counters.violations
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "protocol_error":
            self.counters.protocol_errors += 1
        elif kind == "auth_failure":
            self.counters.auth_failures += 1
        log.warning("client %s: %s: %s; closing it", peer, kind, message)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop listening, close every client, and wait (briefly) for all tasks to finish.

        Closing the streams (all at once) makes every session's reader see the end and finish on
        its own; only tasks still running after that are cancelled, so the usual shutdown logs
        nothing. Each stream close is bounded (a peer that stopped reading is aborted).
        """
        self._closed = True
        if self._kick_handle is not None:
            self._kick_handle.cancel()
            self._kick_handle = None
        for listener in self._listeners:
            listener.close()
        current = asyncio.current_task()
        await asyncio.gather(
            *(session.close() for session in list(self.sessions.values())),
            *(stream.close() for stream in list(self._streams)),
            return_exceptions=True,
        )
        tasks = [t for t in self._tasks if t is not current]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=0.5)
            for task in pending:
                log.debug("cancelling %r: still running after its stream closed", task)
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.5)
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), timeout=0.5)
        self._listeners.clear()
        if self.encode_executor is not None:
            # Sessions are gone; an encode still running is one update's worth of work.
            self.encode_executor.shutdown(wait=True, cancel_futures=True)
            self.encode_executor = None
