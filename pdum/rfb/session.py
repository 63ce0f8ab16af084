"""One client's RFB session over any byte transport.

The session is a thin asyncio shell around the sans-I/O :class:`ServerConnection`: a reader loop
feeds it bytes and reacts to the messages it yields, and one writer task owns every write so
updates and other server messages never interleave. The update scheduler follows "latest frame
wins": publishing only ORs damaged tiles into :attr:`Session.damage`; an update is built from the
*current* framebuffer when the client wants one (an outstanding FramebufferUpdateRequest, or
continuous updates) and its socket has drained, so a slow client skips frames instead of
queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import copyrect
from .auth import is_view_only
from .congestion import CongestionControl, LossyTiles, QualityController
from .encodings import ENCODERS, EncodeContext, h264
from .encodings.copyrect import copyrect_rect
from .encodings.sharing import EncodeCache, StreamUse, make_shared, merge_uses, private_streams, sharing_key
from .encodings.solid import encode_order
from .events import InputTranslator
from .framebuffer import MAX_DIMENSION, TILE, Damage, any_tile, clean_tiles, tile_grid_shape, tiles_to_rects
from .protocol import clipboard as xclip
from .protocol import messages as m
from .protocol.connection import AuthenticationFailed, ClientInit, ServerConnection
from .protocol.errors import LimitExceeded, ProtocolError
from .protocol.messages import Encoding
from .protocol.pixelformat import SERVER_DEFAULT, PixelFormat
from .transports.base import ByteStream

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

#: The id of our single screen in ExtendedDesktopSize rectangles.
#: Not 0: libvncclient ignores screens whose id is 0.
SCREEN_ID = 1

FENCE_REQUEST = 1 << 31
FENCE_BLOCK_BEFORE = 1 << 0
FENCE_BLOCK_AFTER = 1 << 1
FENCE_SYNC_NEXT = 1 << 2
#: Fence flags we honour: every message is handled in order, so the block flags hold trivially.
FENCE_SUPPORTED = FENCE_BLOCK_BEFORE | FENCE_BLOCK_AFTER | FENCE_SYNC_NEXT

# ExtendedDesktopSize reasons and status codes (rfbproto)
EDS_REASON_SERVER = 0
EDS_REASON_CLIENT = 1
EDS_STATUS_OK = 0
EDS_STATUS_PROHIBITED = 1
EDS_STATUS_INVALID = 3

#: Client messages dropped for a view-only principal.
_INPUT_MESSAGES = (m.KeyEvent, m.QemuExtendedKeyEvent, m.PointerEvent, m.ClientCutText, m.SetDesktopSize)


#: Updates covering at least this many pixels are encoded in a worker thread; smaller ones cost
#: less inline than the hop to a thread.
THREAD_MIN_PIXELS = 200_000
#: Seconds without an answer to our Fence before the bytes in flight are written off (a client
#: that announced Fence but never answers would otherwise get no more updates). Generous: a big
#: update on a slow link legitimately takes seconds.
FENCE_ANSWER_TIMEOUT = 30.0
#: What one lossless 64x64 refresh tile is assumed to cost on the wire, to pace refreshes.
REFRESH_TILE_BYTES = 8 * 1024


@dataclass
class EncodeJob:
    """Rectangles to encode with one encoder and a snapshot of the client's settings."""

    encoder: Any
    ctx: EncodeContext
    pixel_format: PixelFormat
    share_key: tuple[Any, ...]
    #: The damaged rects; cut to the encoders' limits (and for Tight, solid areas cut out as
    #: fills, encodings/solid.py) when encoding, which may be in a worker thread: the search for
    #: solid areas reads every pixel.
    rects: list[tuple[int, int, int, int]]


@dataclass
class UpdatePlan:
    """One FramebufferUpdate decided on the event loop; :meth:`encode` may run in a thread."""

    parts: list[bytes]  # pseudo-rectangles and CopyRects, ready to send
    jobs: list[EncodeJob]
    pixels: np.ndarray
    generation: int
    lossy: bool  # whether damaged rects went out lossily (JPEG)
    threaded: bool  # encode in the server's worker threads (``pixels`` and settings are copies)
    #: Key under which every client in step with this one gets the same bytes (None: this
    #: update is the client's own, e.g. it carries pseudo-rectangles).
    update_key: tuple[Any, ...] | None = None
    #: The update's bytes when another client's identical update was in the cache.
    ready: bytes | None = None

    def encode(self, cache: EncodeCache) -> bytes:
        if self.ready is not None:
            return self.ready
        parts = [b"", *self.parts]  # the header, with the count, comes last
        count = len(self.parts)
        uses: dict[str, StreamUse] | None = {} if self.update_key is not None else None
        for job in self.jobs:
            for encoder, pieces in encode_order(job.encoder, self.pixels, job.rects):
                # A lone client's private streams: nothing to look up or share (EncodeCache.payload
                # would only call the encoder), so the rects go straight to it.
                private = private_streams(encoder.encoding, job.ctx)
                if private and pieces:
                    uses = None
                for x, y, w, h in pieces:
                    rgb = self.pixels[y : y + h, x : x + w]
                    parts.append(m.rect_header(x, y, w, h, encoder.encoding))
                    count += 1
                    if private:
                        parts.append(bytes(encoder.encode(rgb, job.pixel_format, job.ctx)))
                        continue
                    produce = partial(encoder.encode, rgb, job.pixel_format, job.ctx)
                    key = (x, y, w, h, *job.share_key)
                    payload, used = cache.payload(self.generation, key, encoder.encoding, job.ctx, produce)
                    parts.append(payload)
                    uses = merge_uses(uses, used)
        parts[0] = m.framebuffer_update_header(count)
        update = b"".join(parts)
        if self.update_key is not None and uses is not None:
            cache.store_update(self.generation, self.update_key, update, tuple(uses.values()), count)
        return update


@dataclass
class SessionStats:
    """Counters the server keeps for each client (server truth, not client reports)."""

    connected_at: float = 0.0
    updates_sent: int = 0
    rects_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    frames_skipped: int = 0
    encode_seconds: float = 0.0
    last_generation_sent: int = -1
    copyrects_sent: int = 0
    rtt_ms: float | None = None


class Session:
    """Server side of one RFB client connection."""

    def __init__(self, server: Server, stream: ByteStream, client_id: int) -> None:
        self.server = server
        self.stream = stream
        self.client_id = client_id
        self.principal: Any = None
        #: Transport-supplied label, e.g. the id of the notebook widget behind a WebSocket.
        self.tag: str | None = getattr(stream, "tag", None)
        self.connection = ServerConnection(
            security_types=server.config.security_types,
            password=server.config.password,
            limits=server.config.limits,
            **server.auth.connection_options(stream.peer, stream.kind, server.config.security_types),
        )
        #: True when the principal may only watch: its input messages are dropped.
        self.view_only = False
        self.pixel_format: PixelFormat = SERVER_DEFAULT
        self.encodings: tuple[int, ...] = ()
        self._encoding_set: frozenset[int] = frozenset()
        #: The first encoding of the client's list that we have an encoder for (else Raw).
        self._encoder: Any = ENCODERS[Encoding.RAW]
        self.encode_context = EncodeContext(tight_gradient=server.config.tight_gradient)
        self.input = InputTranslator()
        self.stats = SessionStats(connected_at=time.time())
        self.shared = True
        self.ready = False  # True once ServerInit is sent
        # Update scheduling state
        fb = server.framebuffer
        self.client_size = (fb.width, fb.height)
        #: Tiles the client does not hold exactly. Copy-on-write: clients in step all point at
        #: one read-only grid (a publish's damage, or :func:`clean_tiles` once sent), so a publish
        #: and a full clear cost an assignment each; :meth:`_own_damage` copies before a change.
        self.damage = clean_tiles(tile_grid_shape(fb.width, fb.height))
        self.resize_pending = False
        #: CopyRects accepted for this client and not sent yet; the next update sends them first.
        #: With ``damage`` they keep the invariant in copyrect.py's docstring.
        self.copies: list[copyrect.Copy] = []
        self.request: m.FramebufferUpdateRequest | None = None
        self.continuous: tuple[int, int, int, int] | None = None
        self._pseudo: list[bytes] = []  # pseudo-rectangles for the next update
        self._cursor_pending = False
        self._outbox: list[bytes] = []
        #: Bytes waiting in ``_outbox`` and ``_pseudo``, bounded by ``Limits.max_pending_output``.
        self._outbox_bytes = 0
        self._pseudo_bytes = 0
        #: Whether the client asked for pixels yet (else ``Limits.idle_timeout`` applies).
        self._asked = False
        self._violated = False
        self._wake = asyncio.Event()
        self._closing = False
        self._writer_task: asyncio.Task[None] | None = None
        self._ping_sent: dict[bytes, int] = {}
        self.clipboard_caps: xclip.ClipboardMessage | None = None
        self.requested_quality: int | None = None
        #: Bytes in flight and delivery rate from Fence answers (clients that support Fence).
        self.congestion = CongestionControl()
        #: The JPEG quality level actually used, adapted to the link (congestion.py).
        self.quality = QualityController()
        #: Tiles this client holds only lossily, refreshed losslessly once they stop changing.
        self.lossy_tiles = LossyTiles(self.damage.shape)
        #: Whether the writer should wake for lossless refreshes (off after one found nothing due).
        self._refresh_armed = True
        #: Whether the writer is holding an update back until a Fence answer (congestion.py).
        self._held = False
        #: Whether an overdue Fence answer was logged already (once per client at WARNING).
        self._fence_overdue = False
        #: Settings of this client's last update (clients with equal keys share encoded rects).
        self.share_key: tuple[Any, ...] | None = None
        #: Whether the writer sleeps in :meth:`_wait_for_work` (then :meth:`kick` may write for it),
        #: and the time it will wake up on its own (None: only when woken).
        self._parked = False
        self._parked_until: float | None = None
        #: A plan made by :meth:`kick` that the writer must encode (in a thread) and send.
        self._handoff: UpdatePlan | None = None
        self._clip_memo: tuple[Any, Any] | None = None
        #: The transport's write-without-waiting, if it has one (TcpStream, WebSocketStream).
        self._write_now: Callable[[bytes], None] | None = getattr(stream, "write_now", None)
        # Push-mode reading (_read_pushed): what the transport's callback tells the reader task.
        self._pushed = asyncio.Event()
        self._push_error: Exception | None = None
        self._push_ended = False
        self._push_completed = 0

    # -- properties ---------------------------------------------------------------------------------
    @property
    def peer(self) -> str:
        return self.stream.peer

    def supports(self, encoding: int) -> bool:
        return encoding in self._encoding_set

    def __repr__(self) -> str:
        return f"<Session {self.client_id} {self.stream.kind} {self.peer}>"

    # -- lifecycle ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the client until it leaves, misbehaves or the server closes."""
        limits = self.server.config.limits
        try:
            await self._flush_handshake()
            async with asyncio.timeout(limits.handshake_timeout):
                while not self.ready:
                    data = await self.stream.read()
                    if not data:
                        log.info("client %s left during the handshake", self.peer)
                        return
                    await self._receive(data)
            self._writer_task = asyncio.create_task(self._writer_loop(), name=f"rfb-writer-{self.client_id}")
            await self._read_messages()
        except TimeoutError:
            self._violation("handshake_timeout", f"no handshake within {limits.handshake_timeout:g} s")
        except AuthenticationFailed as exc:
            await self._flush_handshake()
            self._violation("auth_failure", str(exc))
        except LimitExceeded as exc:
            await self._flush_handshake()
            self._violation("limit_exceeded", str(exc))
        except ProtocolError as exc:
            await self._flush_handshake()
            self._violation("protocol_error", str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("client %s: connection lost: %s", self.peer, exc)
        finally:
            await self.close()

    async def _read_messages(self) -> None:
        """The reader loop after the handshake, with the idle and unfinished-message timeouts."""
        set_receiver = getattr(self.stream, "set_receiver", None)
        if set_receiver is not None:
            await self._read_pushed(set_receiver)
            return
        limits = self.server.config.limits
        loop = asyncio.get_running_loop()
        idle_deadline = None if limits.idle_timeout is None else loop.time() + limits.idle_timeout
        partial_since: float | None = None
        while not self._closing:
            deadline, kind, partial_since = self._read_deadline(idle_deadline, partial_since, loop.time())
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self.stream.read()
            except TimeoutError:
                self._timed_out(kind)
                return
            if not data:
                if self.connection.buffered and not self._closing:
                    raise self._left_mid_message()
                return
            if await self._receive(data):
                partial_since = None  # a message completed: the next one gets its own time

    def _read_deadline(
        self, idle_deadline: float | None, partial_since: float | None, now: float
    ) -> tuple[float | None, str, float | None]:
        """When the reader gives up and why: the idle timeout until the first request, the
        unfinished-message timeout while part of a message is buffered (counted from
        ``partial_since``, which starts now if unset and is returned, reset when nothing is)."""
        limits = self.server.config.limits
        deadline: float | None = None
        kind = "idle_timeout"
        if not self._asked and idle_deadline is not None:
            deadline = idle_deadline
        if self.connection.buffered and limits.message_timeout is not None:
            partial_since = now if partial_since is None else partial_since
            if deadline is None or partial_since + limits.message_timeout < deadline:
                deadline, kind = partial_since + limits.message_timeout, "message_timeout"
        else:
            partial_since = None
        return deadline, kind, partial_since

    def _left_mid_message(self) -> ProtocolError:
        return ProtocolError(f"left in the middle of a message ({self.connection.buffered} bytes)")

    async def _read_pushed(self, set_receiver: Callable[[Callable[[bytes], None]], None]) -> None:
        """:meth:`_read_messages` for streams that hand over bytes as they arrive (TCP): each
        chunk is handled in :meth:`_on_pushed`, right in the transport's callback, and this task
        only sleeps until a timeout, an error or the end. It wakes up only when a timeout may
        change (a message left unfinished, the first request), never per message."""
        limits = self.server.config.limits
        loop = asyncio.get_running_loop()
        idle_deadline = None if limits.idle_timeout is None else loop.time() + limits.idle_timeout
        partial_since: float | None = None
        seen = 0
        set_receiver(self._on_pushed)
        while not self._closing:
            if self._push_error is not None:
                raise self._push_error
            if self._push_ended:
                failure = getattr(self.stream, "failure", None)  # why a WebSocket stream ended
                if failure is not None:
                    raise failure
                if self.connection.buffered:
                    raise self._left_mid_message()
                return
            if self._push_completed != seen:  # a message completed: the next one gets its own time
                seen, partial_since = self._push_completed, None
            deadline, kind, partial_since = self._read_deadline(idle_deadline, partial_since, loop.time())
            try:
                async with asyncio.timeout_at(deadline):
                    await self._pushed.wait()
            except TimeoutError:
                self._timed_out(kind)
                return
            self._pushed.clear()

    def _on_pushed(self, data: bytes) -> None:
        """Handle bytes as the transport receives them (``b""``: the client has gone). Errors
        go to :meth:`_read_pushed`, which raises them in the session's task as the pull loop would."""
        if self._push_error is not None or self._push_ended:
            return
        if not data:
            self._push_ended = True
            self._pushed.set()
            return
        was_buffered, was_asked = self.connection.buffered, self._asked
        try:
            request = self.connection.update_request(data)
            if request is not None:  # the usual message, parsed without the general path
                self.stats.bytes_received += len(data)
                self._handlers[m.FramebufferUpdateRequest](self, request)  # (not input: no view-only check)
                self._push_completed += 1
            elif self._receive_now(data):
                self._push_completed += 1
        except Exception as exc:  # re-raised by _read_pushed
            self._push_error = exc
            self._pushed.set()
            return
        if self.connection.buffered or was_buffered or self._asked != was_asked:
            self._pushed.set()

    def _timed_out(self, kind: str) -> None:
        limits = self.server.config.limits
        if kind == "idle_timeout":
            reason = f"no FramebufferUpdateRequest within {limits.idle_timeout:g} s of the handshake"
        else:
            reason = f"a message left unfinished for {limits.message_timeout:g} s"
        self._violation(kind, reason)

    def _violation(self, kind: str, reason: str) -> None:
        """Count and log (once) why this client is being closed."""
        if not self._violated:
            self._violated = True
            self.server.note_violation(self.peer, kind, reason)

    async def close(self) -> None:
        """Stop this session's writer and close its transport; idempotent."""
        self._closing = True
        self._wake.set()
        task = self._writer_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.server.unregister(self)
        h264.close(self.encode_context)
        await self.stream.close()

    async def _flush_handshake(self) -> None:
        data = self.connection.data_to_send()
        if data:
            with contextlib.suppress(ConnectionError, OSError):
                await self.stream.write(data)
                self.stats.bytes_sent += len(data)

    # -- incoming -----------------------------------------------------------------------------------
    def _receive_now(self, data: bytes) -> int:
        """:meth:`_receive` after the handshake, when nothing needs awaiting."""
        self.stats.bytes_received += len(data)
        events = self.connection.receive_data(data)
        for event in events:
            self._handle(event)
        return len(events)

    async def _receive(self, data: bytes) -> int:
        """Feed ``data`` to the protocol and act on it; returns how many events it completed."""
        if self.ready:
            return self._receive_now(data)
        self.stats.bytes_received += len(data)
        events = self.connection.receive_data(data)
        if not self.ready:
            await self._flush_handshake()
        for event in events:
            if isinstance(event, ClientInit):
                events_after = self._on_client_init(event)
                await self._flush_handshake()
                for later in events_after:
                    self._handle(later)
            else:
                self._handle(event)
        return len(events)

    def _on_client_init(self, event: ClientInit) -> list[Any]:
        self.principal = self.connection.principal
        self.view_only = is_view_only(self.principal)
        self.shared = event.shared
        if not event.shared:
            self.server.disconnect_others(self)
        fb = self.server.framebuffer
        self.client_size = (fb.width, fb.height)
        # All dirty: the client holds no pixels yet (CopyRect relies on clean tiles being exact).
        self.damage = np.ones(tile_grid_shape(fb.width, fb.height), dtype=bool)
        self.lossy_tiles.reshape(self.damage.shape)
        pending = self.connection.send_server_init(
            fb.width, fb.height, SERVER_DEFAULT, self.server.name_bytes
        )
        self.ready = True
        self.server.register(self)
        log.info(
            "client %s connected (%s, RFB %d.%d, %s)",
            self.peer,
            self.stream.kind,
            *(self.connection.version or (0, 0)),
            "shared" if event.shared else "exclusive",
        )
        return pending

    def _handle(self, msg: Any) -> None:
        handler: Callable[[Session, Any], None] | None = self._handlers.get(type(msg))
        if handler is None:  # pragma: no cover - every parsed message type has a handler
            log.debug("client %s: ignoring %s", self.peer, type(msg).__name__)
            return
        if self.view_only and isinstance(msg, _INPUT_MESSAGES):
            if isinstance(msg, m.SetDesktopSize):  # answer, so the client stops waiting
                fb = self.server.framebuffer
                rect = self._extended_desktop_size(
                    EDS_REASON_CLIENT, EDS_STATUS_PROHIBITED, fb.width, fb.height
                )
                self._queue_pseudo(rect)
            return
        handler(self, msg)

    def _on_set_pixel_format(self, msg: m.SetPixelFormat) -> None:
        msg.pixel_format.validate()
        self.pixel_format = msg.pixel_format
        # Encoder streams stay (the client keeps its inflaters), but palettes etc. are per format.
        if self.supports(Encoding.CURSOR):
            self._cursor_pending = True

    def _on_set_encodings(self, msg: m.SetEncodings) -> None:
        before = self._encoding_set
        self.encodings = msg.encodings
        self._encoding_set = frozenset(msg.encodings)
        self._encoder = self._choose_encoder()
        added = self._encoding_set - before
        if self.copies and not self.supports(Encoding.COPY_RECT):
            self._drop_copies()
        for enc in msg.encodings:
            if m.COMPRESS_LEVEL_0 <= enc <= m.COMPRESS_LEVEL_9:
                self.encode_context.compress_level = enc - m.COMPRESS_LEVEL_0
                break
        quality = [enc for enc in msg.encodings if m.QUALITY_LEVEL_0 <= enc <= m.QUALITY_LEVEL_9]
        # JPEG only when the client asked for a quality level *and* the Display allows lossy output.
        self.requested_quality = quality[0] - m.QUALITY_LEVEL_0 if quality else None
        self.quality.request(self.requested_quality if self.server.config.lossy else None)
        self.encode_context.quality_level = self.quality.level
        ctx = self.encode_context
        ctx.h264 = h264.configure(ctx.h264, self.supports(Encoding.H264) and self.server.config.lossy)
        if Encoding.EXTENDED_DESKTOP_SIZE in added:
            # Tells the client our screen layout; TigerVNC only offers SetDesktopSize after it.
            fb = self.server.framebuffer
            self._queue_pseudo(
                self._extended_desktop_size(EDS_REASON_SERVER, EDS_STATUS_OK, fb.width, fb.height)
            )
        if Encoding.QEMU_EXTENDED_KEY in added:
            self._queue_pseudo(m.rect_header(0, 0, 0, 0, Encoding.QEMU_EXTENDED_KEY))
        if Encoding.EXTENDED_MOUSE_BUTTONS in added:
            self._queue_pseudo(m.rect_header(0, 0, 0, 0, Encoding.EXTENDED_MOUSE_BUTTONS))
            self.connection.extended_mouse = True
        if Encoding.CURSOR in added:
            self._cursor_pending = True
        if Encoding.DESKTOP_NAME in added:
            self._queue_pseudo(self._desktop_name_rect())
        if Encoding.CONTINUOUS_UPDATES in added and getattr(self.stream, "flow_controlled", True):
            # An unsolicited EndOfContinuousUpdates is how a server says it supports them. Only
            # offered where writes wait for the peer (TCP, our WebSocket): over the comm channel
            # or an ASGI server without backpressure, requests pace the updates instead, which
            # keeps what is in flight to one update.
            self.send_message(m.end_of_continuous_updates())
        if Encoding.FENCE in added:
            self.ping()
        if Encoding.EXTENDED_CLIPBOARD in added:
            self.send_message(m.server_cut_text_extended(xclip.caps(self.server.config.limits.max_cut_text)))
        self._wake.set()

    def _on_update_request(self, msg: m.FramebufferUpdateRequest) -> None:
        if not msg.incremental:
            self._mark_region(msg.x, msg.y, msg.width, msg.height)
            if self.encode_context.h264 is not None:
                self.encode_context.h264.request_keyframe()
        self.request = msg
        self._asked = True
        if self._has_work():  # else the next publish (or message) wakes the writer anyway
            self.kick()

    def _on_enable_continuous(self, msg: m.EnableContinuousUpdates) -> None:
        if msg.enable:
            self.continuous = (msg.x, msg.y, msg.width, msg.height)
            self._asked = True
            self._wake.set()
        else:
            self.continuous = None
            self.send_message(m.end_of_continuous_updates())

    def _on_fence(self, msg: m.Fence) -> None:
        if msg.flags & FENCE_REQUEST:
            # Answer in order with the flags we honour and the same payload.
            self.send_message(m.server_fence(msg.flags & FENCE_SUPPORTED, msg.payload))
            return
        if self.congestion.answered(msg.payload, time.monotonic()):
            if self.congestion.rtt is not None:
                self.stats.rtt_ms = self.congestion.rtt * 1e3
            if self._held:  # an update was waiting for the link to drain
                self._wake.set()
            return
        sent = self._ping_sent.pop(msg.payload, None)
        if sent is not None:
            self.stats.rtt_ms = (time.monotonic_ns() - sent) / 1e6

    def ping(self) -> None:
        """Send a Fence request to measure the round-trip time (clients that support Fence)."""
        if not self.supports(Encoding.FENCE) or not self.ready or len(self._ping_sent) >= 4:
            return
        now = time.monotonic_ns()
        payload = struct.pack(">Q", now)
        self._ping_sent[payload] = now
        self.send_message(m.server_fence(FENCE_REQUEST, payload))

    def _on_set_desktop_size(self, msg: m.SetDesktopSize) -> None:
        policy = self.server.config.resize_policy
        valid = 1 <= msg.width <= MAX_DIMENSION and 1 <= msg.height <= MAX_DIMENSION
        accepted = valid and policy == "accept"
        self.server.emit(
            self, {"type": "resize", "width": msg.width, "height": msg.height, "accepted": accepted}
        )
        if not valid:
            status = EDS_STATUS_INVALID
        elif not accepted:
            status = EDS_STATUS_PROHIBITED
        else:
            status = EDS_STATUS_OK
        fb = self.server.framebuffer
        if accepted:
            self.server.resize(msg.width, msg.height)
        self._queue_pseudo(self._extended_desktop_size(EDS_REASON_CLIENT, status, fb.width, fb.height))

    def _on_key(self, msg: m.KeyEvent) -> None:
        self.server.emit(self, self.input.key(msg.down, msg.keysym))

    def _on_qemu_key(self, msg: m.QemuExtendedKeyEvent) -> None:
        self.server.emit(self, self.input.key(msg.down, msg.keysym, msg.keycode))

    def _on_pointer(self, msg: m.PointerEvent) -> None:
        for event in self.input.pointer(msg.button_mask, msg.x, msg.y):
            self.server.emit(self, event)

    def _on_cut_text(self, msg: m.ClientCutText) -> None:
        if not msg.extended:
            text = msg.data.decode("latin-1").replace("\r\n", "\n")
            self.server.emit(self, {"type": "clipboard", "text": text})
            return
        limit = self.server.config.limits.max_cut_text
        message = xclip.parse(msg.data, limit)
        if message.action == xclip.ACTION_CAPS:
            self.clipboard_caps = message
        elif message.action == xclip.ACTION_NOTIFY and message.formats & xclip.FORMAT_TEXT:
            self.send_message(m.server_cut_text_extended(xclip.request()))
        elif message.action == xclip.ACTION_PROVIDE and message.text is not None:
            self.server.emit(self, {"type": "clipboard", "text": message.text})
        elif message.action == xclip.ACTION_PROVIDE and message.dropped:
            log.warning("client %s: %d-byte clipboard dropped (limit %d)", self.peer, message.dropped, limit)
            self.server.counters.violations["clipboard_dropped"] += 1  # dropped, the client stays
        elif message.action == xclip.ACTION_REQUEST and message.formats & xclip.FORMAT_TEXT:
            self.send_message(m.server_cut_text_extended(xclip.provide(self.server.clipboard)))
        elif message.action == xclip.ACTION_PEEK:
            self.send_message(m.server_cut_text_extended(xclip.notify(bool(self.server.clipboard))))

    _handlers: dict[type, Callable[[Session, Any], None]] = {
        m.SetPixelFormat: _on_set_pixel_format,
        m.SetEncodings: _on_set_encodings,
        m.FramebufferUpdateRequest: _on_update_request,
        m.KeyEvent: _on_key,
        m.QemuExtendedKeyEvent: _on_qemu_key,
        m.PointerEvent: _on_pointer,
        m.ClientCutText: _on_cut_text,
        m.EnableContinuousUpdates: _on_enable_continuous,
        m.Fence: _on_fence,
        m.SetDesktopSize: _on_set_desktop_size,
    }

    # -- fan-out from the server --------------------------------------------------------------------
    def add_damage(self, damage: Damage) -> None:
        """Called on every publish; cheap: OR the tiles in (:meth:`kick` follows)."""
        if damage.resized:
            self.damage = damage.tiles.copy()
            self.lossy_tiles.reshape(self.damage.shape)
            self.resize_pending = True
            self.copies.clear()  # everything is sent again after a resize
        elif damage.tiles.shape == self.damage.shape:
            tiles = self._take_copies(damage)
            if self.damage is clean_tiles(tiles.shape):
                # The common case: share the (read-only) grid with every client in step.
                self.damage = tiles if not tiles.flags.writeable else tiles.copy()
            else:
                if any_tile(self.damage):  # the previous frame was never sent: latest frame wins
                    self.stats.frames_skipped += 1
                self.damage = self.damage | tiles
        # No wake-up here: the server calls kick() once every client has the damage.

    def _take_copies(self, damage: Damage) -> np.ndarray:
        """Queue the copies this client can apply (copyrect.py says why it is safe); return the
        tiles it still needs as pixels. Must run before ``damage`` is OR-ed into ``self.damage``."""
        fb = self.server.framebuffer
        if (
            not damage.copies
            or not self.supports(Encoding.COPY_RECT)
            or self.resize_pending
            or self.client_size != (fb.width, fb.height)
            or len(self.copies) >= copyrect.MAX_PENDING_COPIES
        ):
            return damage.tiles
        accepted = copyrect.usable_copies(damage.copies, self.damage)
        if not accepted:
            return damage.tiles
        self.copies.extend(accepted)
        return copyrect.tiles_outside(damage, accepted)

    def _drop_copies(self) -> None:
        """Forget queued copies; their destinations become ordinary damage."""
        for copy in self.copies:
            self._mark_region(copy.dst_x, copy.dst_y, copy.width, copy.height)
        self.copies.clear()

    def send_message(self, data: bytes) -> None:
        """Queue a non-update server message (cut text, fence, ...) for the writer task."""
        if self._closing:
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._check_queued()
        self._wake.set()

    def _queue_pseudo(self, rect: bytes) -> None:
        """Queue a pseudo-rectangle for the next update."""
        if self._closing:
            return
        self._pseudo.append(rect)
        self._pseudo_bytes += len(rect)
        self._check_queued()
        self._wake.set()

    def _check_queued(self) -> None:
        """Disconnect a client that lets small messages pile up past ``max_pending_output``."""
        limit = self.server.config.limits.max_pending_output
        queued = self._outbox_bytes + self._pseudo_bytes
        if queued > limit and not self._closing:
            self._violation("output_overflow", f"{queued} bytes of messages not taken (limit {limit})")
            self._closing = True
            self._outbox.clear()
            self._pseudo.clear()
            self._outbox_bytes = self._pseudo_bytes = 0
            self.server.spawn(self.close())

    def send_clipboard(self, text: str) -> None:
        """Offer the server clipboard: extended clients get Notify (and ask), others Latin-1 text."""
        if self.supports(Encoding.EXTENDED_CLIPBOARD) and self.clipboard_caps is not None:
            self.send_message(m.server_cut_text_extended(xclip.notify(bool(text))))
        else:
            self.send_message(m.server_cut_text(text.encode("latin-1", errors="replace")))

    def name_changed(self) -> None:
        if self.supports(Encoding.DESKTOP_NAME):
            self._queue_pseudo(self._desktop_name_rect())

    def cursor_changed(self) -> None:
        if self.supports(Encoding.CURSOR):
            self._cursor_pending = True
            self._wake.set()

    def _tile_range(self, x: int, y: int, w: int, h: int) -> tuple[slice, slice]:
        """The damage tiles a region of the framebuffer touches, clipped to the grid (an empty
        range for a region outside it)."""
        th, tw = self.damage.shape
        x0, y0 = max(0, x) // TILE, max(0, y) // TILE
        x1, y1 = max(x0, min(tw, -(-(x + w) // TILE))), max(y0, min(th, -(-(y + h) // TILE)))
        return slice(y0, y1), slice(x0, x1)

    def _mark_region(self, x: int, y: int, w: int, h: int) -> None:
        self._own_damage()[self._tile_range(x, y, w, h)] = True

    def _own_damage(self) -> np.ndarray:
        """``damage``, first copied if it is a shared read-only grid, so it may be changed in place."""
        if not self.damage.flags.writeable:
            self.damage = self.damage.copy()
        return self.damage

    def _clear_damage(self, clip_tiles: tuple[slice, slice]) -> None:
        """Mark the tiles in ``clip_tiles`` clean (they were just sent); a clip covering the whole
        grid, the usual request, points ``damage`` at the shared clean grid instead of writing."""
        rows, cols = clip_tiles
        shape = self.damage.shape
        if rows.start == 0 and cols.start == 0 and rows.stop >= shape[0] and cols.stop >= shape[1]:
            self.damage = clean_tiles(shape)
        else:
            self._own_damage()[clip_tiles] = False

    # -- outgoing -----------------------------------------------------------------------------------
    async def _writer_loop(self) -> None:
        try:
            while not self._closing:
                await self._wait_for_work()
                if self._outbox:
                    data = self._wire(b"".join(self._outbox))
                    self._outbox.clear()
                    self._outbox_bytes = 0
                    await self.stream.write(data)
                    self.stats.bytes_sent += len(data)
                plan, self._handoff = self._handoff, None
                if plan is None and (self.request is not None or self.continuous is not None):
                    # Held back until a Fence answer says the link has room (congestion.py).
                    self._held = not self.congestion.can_send()
                    plan = None if self._held else self._plan_update()
                if plan is not None:
                    self.request = None
                    update = await self._encode(plan)
                    await self.stream.write(self._finish_update(update, plan.lossy, len(plan.parts)))
        except (ConnectionError, OSError) as exc:
            log.info("client %s: write failed: %s", self.peer, exc)
            self._closing = True
            await self.stream.close()
        except ProtocolError as exc:  # pragma: no cover - encoder refusing a format
            self._violation("protocol_error", str(exc))
            self._closing = True
            await self.stream.close()

    async def _wait_for_work(self) -> None:
        """Sleep until woken, until lossily sent tiles are due for their lossless refresh, or
        until a Fence answer is overdue (then what is in flight is forgotten, with a log line,
        so a client that announced Fence but never answers still gets updates)."""
        deadline, overdue = self._deadlines()
        self._parked, self._parked_until = True, deadline
        try:
            if deadline is None:
                await self._wake.wait()
            else:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._wake.wait()
        except TimeoutError:
            if overdue is not None and time.monotonic() >= overdue:
                log.log(
                    logging.DEBUG if self._fence_overdue else logging.WARNING,
                    "client %s: no Fence answer for %g s; not waiting for it",
                    self.peer,
                    FENCE_ANSWER_TIMEOUT,
                )
                self._fence_overdue = True
                self.congestion.reset()
            else:
                # Refresh once; if nothing in the clip is due, sleep until something else happens.
                self._refresh_armed = False
        finally:
            self._parked = False
        self._wake.clear()

    def _deadlines(self) -> tuple[float | None, float | None]:
        """When the writer must wake up on its own (the earlier of the two), and when the oldest
        Fence answer is overdue (None: not waiting for one)."""
        deadline = None
        if self._refresh_armed and (self.request is not None or self.continuous is not None):
            deadline = self.lossy_tiles.next_due()
        sent_at = self.congestion.oldest_unanswered()
        overdue = None if sent_at is None else sent_at + FENCE_ANSWER_TIMEOUT
        if overdue is not None and (deadline is None or overdue < deadline):
            deadline = overdue
        return deadline, overdue

    def kick(self) -> None:
        """Send the update due now straight from the event loop when nothing can come between:
        the writer is asleep with nothing queued, and the transport takes bytes without waiting
        (TCP with an empty buffer). Otherwise wake the writer, as before.

        The server kicks every client once per publish (after all of them have the damage), so
        in-step clients get an update whose bytes the first of them encoded (encodings/sharing.py)
        without a task switch each: at 16 clients that was most of the per-client cost.
        """
        if not self._send_now():
            self._wake.set()

    def _send_now(self) -> bool:
        """:meth:`kick`'s direct path; False when the writer has to do it."""
        write_now = self._write_now
        if (
            write_now is None
            or not self._parked
            or self._wake.is_set()
            or self._closing
            or self._outbox
            or (self.request is None and self.continuous is None)
            or self.stream.pending_bytes()
            or (self.supports(Encoding.FENCE) and not self.congestion.can_send())
        ):
            return False
        try:
            shared, key = self._take_shared()
            if shared is not None:  # the common case with clients in step: no plan at all
                self.request = None
                write_now(self._finish_update(shared, False, 0))
            elif (plan := self._plan_own(key)) is not None:
                self.request = None
                if plan.threaded and self.server.encode_executor is not None:
                    self._handoff = plan  # the writer encodes it in a thread (keeps the loop free)
                    return False
                started = time.perf_counter()
                update = plan.encode(self.server.encode_cache)
                self.stats.encode_seconds += time.perf_counter() - started
                write_now(self._finish_update(update, plan.lossy, len(plan.parts)))
        except (ConnectionError, OSError) as exc:
            log.info("client %s: write failed: %s", self.peer, exc)
            self._abandon()
            return True
        except ProtocolError as exc:  # pragma: no cover - encoder refusing a format
            self._violation("protocol_error", str(exc))
            self._abandon()
            return True
        if not self.supports(Encoding.FENCE) and not self.lossy_tiles.any:
            return True  # no timer to move: nothing waits for a refresh or a Fence answer
        deadline = self._deadlines()[0]
        if deadline is not None and (self._parked_until is None or deadline < self._parked_until):
            # The writer's timer must fire earlier: a Fence answer is now awaited, or a request
            # came in while lossy tiles wait for their refresh.
            self._wake.set()
        return True

    def _abandon(self) -> None:
        """Stop after a failed direct write: the writer and the reader end, the stream closes."""
        self._closing = True
        self.server.spawn(self.close())

    async def _encode(self, plan: UpdatePlan) -> bytes:
        """Encode a plan: inline when small, else in the server's worker threads (zlib, JPEG and
        NumPy release the GIL, so the event loop and the encoder use both cores)."""
        started = time.perf_counter()
        executor, cache = self.server.encode_executor, self.server.encode_cache
        if plan.threaded and executor is not None:
            update = await self._encode_in_thread(plan, executor, cache)
        else:
            update = plan.encode(cache)
        self.stats.encode_seconds += time.perf_counter() - started
        return update

    async def _encode_in_thread(self, plan: UpdatePlan, executor: Any, cache: EncodeCache) -> bytes:
        """Encode in a worker thread; a client in step with one whose identical update is being
        encoded right now waits for that one instead of encoding it a second time."""
        key = None if plan.update_key is None else (plan.generation, plan.update_key)
        inflight = self.server.encodes_in_flight
        if key is not None and (running := inflight.get(key)) is not None:
            await asyncio.wait([running])  # never raises: its client may have gone meanwhile
            cached = cache.update(plan.generation, plan.update_key, self.encode_context)  # type: ignore[arg-type]
            if cached is not None:
                return cached[0]
        future = asyncio.get_running_loop().run_in_executor(executor, plan.encode, cache)
        if key is not None and key not in inflight:
            inflight[key] = future
            future.add_done_callback(lambda _: inflight.pop(key, None))
        return await future

    def _finish_update(self, update: bytes, lossy: bool, extra: int) -> bytes:
        """One update as it goes on the wire, followed by a Fence request that tells us when the
        client has read it (congestion.py); adapts the JPEG quality to the link after lossy
        updates. Called just before the bytes are written. ``extra``: how many of its rectangles
        are pseudo-rectangles or CopyRects (not counted as pixel rects)."""
        self.stats.rects_sent += struct.unpack_from(">H", update, 2)[0] - extra
        if self.supports(Encoding.FENCE):
            payload = self.congestion.sent_update(len(update), time.monotonic())
            update += m.server_fence(FENCE_REQUEST | FENCE_BLOCK_BEFORE, payload)
        data = self._wire(update)
        self.stats.bytes_sent += len(data)
        self.stats.updates_sent += 1
        self._refresh_armed = True
        if lossy:
            self.quality.observe(len(update), self.congestion.bandwidth, time.monotonic())
            self.encode_context.quality_level = self.quality.level
        return data

    def _wire(self, data: bytes) -> bytes:
        """Server messages as they go on the wire (sealed under RA2/RA2_256/VeNCrypt), in call order."""
        return self.connection.wire(data)

    def _choose_encoder(self) -> Any:
        for enc in self.encodings:
            encoder = ENCODERS.get(enc)
            if encoder is not None:
                return encoder
        return ENCODERS[Encoding.RAW]

    def _is_lossy(self, encoder: Any, ctx: EncodeContext) -> bool:
        """Whether ``encoder`` with ``ctx`` may send pixels that are not exact (Tight's JPEG)."""
        return ctx.quality_level is not None and encoder.encoding in (Encoding.TIGHT, Encoding.TIGHT_PNG)

    def _refresh_tiles(self, clip_tiles: tuple[slice, slice], now: float) -> np.ndarray:
        """Lossy tiles due for a lossless refresh, as many as the link takes in one update (all of
        them for clients without Fence: we know nothing of their link, and their requests pace
        the updates anyway)."""
        due = np.zeros_like(self.damage)
        due[clip_tiles] = self.lossy_tiles.due(self.damage, now)[clip_tiles]
        if not self.supports(Encoding.FENCE):
            return due
        budget = max(1, int((self.congestion.window() - self.congestion.in_flight) // REFRESH_TILE_BYTES))
        if int(due.sum()) > budget:
            flat = due.ravel()
            flat[np.flatnonzero(flat)[budget:]] = False
        return due

    def _has_work(self) -> bool:
        """Whether an update could carry anything now. False is the common case of a request
        arriving before the next frame: no wake-up, no planning."""
        pending = self._pseudo or self.resize_pending or self._cursor_pending or self.copies
        return bool(pending or self.lossy_tiles.any or self._outbox or any_tile(self.damage))

    def _requested(self) -> tuple[int, int, int, int]:
        """The region the client wants: its pending request's, else its continuous updates'."""
        if self.request is not None:
            r = self.request
            return (r.x, r.y, r.width, r.height)
        assert self.continuous is not None
        return self.continuous

    def _take_shared(self) -> tuple[bytes | None, tuple[Any, ...] | None]:
        """The update another client in step with this one was sent for this frame, with the
        bookkeeping :meth:`_plan_own` would have done, and its key; ``(None, key)`` when there is
        none yet (``key`` is None when this update is the client's own, see :meth:`_update_key`)."""
        fb = self.server.framebuffer
        clip_rect, clip_tiles = self._clip(self._requested())
        key = self._update_key(clip_rect, self._encoder, self.encode_context)
        if key is None:
            return None, None
        cached = self.server.encode_cache.update(fb.generation, key, self.encode_context)
        if cached is None:
            return None, key
        update = cached[0]  # (only updates with rectangles are kept)
        self._clear_damage(clip_tiles)
        self.share_key = key[1]
        self.stats.last_generation_sent = fb.generation
        return update, key

    def _plan_update(self) -> UpdatePlan | None:
        """Decide what the client gets now from the current frame, or ``None`` if nothing."""
        shared, key = self._take_shared()
        if shared is not None:
            fb = self.server.framebuffer
            return UpdatePlan([], [], fb.pixels, fb.generation, False, False, key, shared)
        return self._plan_own(key)

    def _plan_own(self, update_key: tuple[Any, ...] | None) -> UpdatePlan | None:
        """:meth:`_plan_update` when no shared update fits: plan this client's own rectangles
        (kept under ``update_key`` for the clients in step with it, if not None)."""
        if not self._has_work():
            return None
        fb = self.server.framebuffer
        clip = self._requested()
        encoder = self._encoder
        ctx = self.encode_context
        parts: list[bytes] = []
        if self._pseudo:
            # Before the resize below: an ExtendedDesktopSize queued here carries the size of its
            # time, and when the framebuffer was resized since, the current size must come last.
            parts.extend(self._pseudo)
            self._pseudo.clear()
            self._pseudo_bytes = 0
        if self.resize_pending:
            self.resize_pending = False
            if self.supports(Encoding.EXTENDED_DESKTOP_SIZE) or self.supports(Encoding.DESKTOP_SIZE):
                parts.append(self._desktop_size_rect(fb.width, fb.height))
                self.client_size = (fb.width, fb.height)
                clip = (0, 0, fb.width, fb.height)
        if self._cursor_pending:
            self._cursor_pending = False
            parts.append(self.server.cursor.rect(self.pixel_format))
        copies = len(self.copies)
        if copies:
            # Queued CopyRects go before every pixel rect: they read client pixels that the rects
            # below may overwrite. Sent whatever the requested region, as copyrect.py assumes.
            parts.extend(copyrect_rect(*copy) for copy in self.copies)
            self.copies.clear()
            self.stats.copyrects_sent += copies
        clip_rect, clip_tiles = self._clip(clip)
        rects = tiles_to_rects(self.damage, fb.width, fb.height, clip_rect)
        now = time.monotonic()
        h264_job = self._h264_job(rects, clip_rect)  # it repaints all the damage (encodings/h264.py)
        lossy = h264_job is not None or self._is_lossy(encoder, ctx)
        refresh = self._refresh_tiles(clip_tiles, now) if self.lossy_tiles.next_due() is not None else None
        if h264_job is not None and refresh is not None:  # the H.264 frame repaints them anyway
            refresh &= ~self._rect_tiles(h264_job.rects[0])
        refresh_rects = tiles_to_rects(refresh, fb.width, fb.height, clip_rect) if refresh is not None else []
        if not rects and not parts and not refresh_rects:
            return None
        if lossy or self.lossy_tiles.any:  # which tiles the client now holds lossily, or exactly
            sent = np.zeros_like(self.damage)
            sent[clip_tiles] = self.damage[clip_tiles]
            if h264_job is not None:  # it repaints its whole rectangle lossily, damaged or not
                sent |= self._rect_tiles(h264_job.rects[0])
            self.lossy_tiles.mark(sent, lossy, now)
        self._clear_damage(clip_tiles)
        if refresh is not None:
            self.lossy_tiles.mark(refresh, False, now)
        # Encode once for clients with the same settings (encodings/sharing.py).
        self.share_key = sharing_key(encoder.encoding, ctx, self.pixel_format)
        if private_streams(encoder.encoding, ctx) and self.server.sharing_peers(self):
            make_shared(ctx)
        jobs = [h264_job] if h264_job is not None else []
        for job_rects, lossless in (([] if h264_job is not None else rects, False), (refresh_rects, True)):
            if not job_rects:
                continue
            if lossless:
                job_ctx = replace(ctx, quality_level=None)
                key = sharing_key(encoder.encoding, job_ctx, self.pixel_format)
            else:
                job_ctx, key = ctx, self.share_key
            jobs.append(EncodeJob(encoder, job_ctx, self.pixel_format, key, job_rects))
        area = sum(w * h for job in jobs for _, _, w, h in job.rects)
        threaded = area >= THREAD_MIN_PIXELS and self.server.encode_executor is not None
        pixels = fb.pixels
        if threaded:
            # A thread will encode: publish() writes the framebuffer in place, and the client may
            # change its settings meanwhile, so the thread gets copies of both.
            pixels = self.server.frame_copy()
            jobs = [replace(job, ctx=replace(job.ctx)) if job.ctx is ctx else job for job in jobs]
        if jobs or copies:
            self.stats.last_generation_sent = fb.generation
        lossy_rects = lossy and bool(rects)
        return UpdatePlan(parts, jobs, pixels, fb.generation, lossy_rects, threaded, update_key)

    def _clip(self, clip: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], tuple[slice, slice]]:
        """The requested region cut to the framebuffer and the client's size, and the damage
        tiles wholly inside it (those are clean once sent; partly clipped tiles stay damaged).
        Remembered: clients ask for the same region again and again."""
        fb = self.server.framebuffer
        memo_key = (clip, self.client_size, fb.pixels.shape, self.damage.shape)
        if self._clip_memo is not None and self._clip_memo[0] == memo_key:
            return self._clip_memo[1]
        result = self._clip_region(clip)
        self._clip_memo = (memo_key, result)
        return result

    def _clip_region(
        self, clip: tuple[int, int, int, int]
    ) -> tuple[tuple[int, int, int, int], tuple[slice, slice]]:
        fb = self.server.framebuffer
        cw, ch = self.client_size
        cx0, cy0 = max(0, clip[0]), max(0, clip[1])
        cx1, cy1 = min(cw, fb.width, clip[0] + clip[2]), min(ch, fb.height, clip[1] + clip[3])
        tx0, ty0 = -(-cx0 // TILE), -(-cy0 // TILE)
        full_x1 = cx1 // TILE if cx1 < fb.width else self.damage.shape[1]
        full_y1 = cy1 // TILE if cy1 < fb.height else self.damage.shape[0]
        return (cx0, cy0, cx1 - cx0, cy1 - cy0), (slice(ty0, full_y1), slice(tx0, full_x1))

    def _update_key(
        self, clip_rect: tuple[int, int, int, int], encoder: Any, ctx: EncodeContext
    ) -> tuple[Any, ...] | None:
        """What decides this update's bytes when it is only pixels, losslessly encoded with
        payloads any client with the same settings can take; None when it is this client's own
        (pseudo-rectangles, CopyRects, a resize, lossy tiles to track, H.264, private streams).
        With the frame's generation, equal keys mean byte-identical updates."""
        if self._pseudo or self.resize_pending or self._cursor_pending or self.copies:
            return None
        if ctx.h264 is not None or self.lossy_tiles.any or self._is_lossy(encoder, ctx):
            return None
        if private_streams(encoder.encoding, ctx):
            return None
        share_key = sharing_key(encoder.encoding, ctx, self.pixel_format)
        return (clip_rect, share_key, self.damage.shape, self.damage.tobytes())

    def _rect_tiles(self, rect: tuple[int, int, int, int]) -> np.ndarray:
        """The damage tiles a rectangle touches, as a mask."""
        tiles = np.zeros_like(self.damage)
        tiles[self._tile_range(*rect)] = True
        return tiles

    def _h264_job(
        self, rects: list[tuple[int, int, int, int]], clip: tuple[int, int, int, int]
    ) -> EncodeJob | None:
        """The damage as one H.264 rectangle, when the policy in encodings/h264.py says it pays off."""
        state = self.encode_context.h264
        if state is None:
            return None
        if state.lost is not None:  # an H.264 encode failed after its header went out
            self._mark_region(*state.lost)
            state.lost = None
        fb = self.server.framebuffer
        rect = state.choose(rects, clip, (fb.width, fb.height))
        if rect is None:
            return None
        # Per client (its stream state): never shared, so the share key is this client's alone.
        job = h264.H264Job(state, rect, self.requested_quality)
        return EncodeJob(job, self.encode_context, self.pixel_format, ("h264", id(state)), [rect])

    def _extended_desktop_size(self, reason: int, status: int, width: int, height: int) -> bytes:
        screen = struct.pack(">B3x", 1) + m._SCREEN.pack(SCREEN_ID, 0, 0, width, height, 0)
        return m.rect_header(reason, status, width, height, Encoding.EXTENDED_DESKTOP_SIZE) + screen

    def _desktop_size_rect(self, width: int, height: int) -> bytes:
        if self.supports(Encoding.EXTENDED_DESKTOP_SIZE):
            return self._extended_desktop_size(EDS_REASON_SERVER, EDS_STATUS_OK, width, height)
        return m.rect_header(0, 0, width, height, Encoding.DESKTOP_SIZE)

    def _desktop_name_rect(self) -> bytes:
        name = self.server.name_bytes
        return m.rect_header(0, 0, 0, 0, Encoding.DESKTOP_NAME) + struct.pack(">I", len(name)) + name
