"""Encode once for many clients: a per-frame cache of rectangle payloads, and zlib streams that
make stream-based encodings (Zlib, ZRLE, Tight) shareable.

RFB gives every client its own long-lived zlib streams, so normally the same rectangle must be
compressed once per client. Two facts make one compressed payload valid for several clients:

* A segment ended with ``Z_SYNC_FLUSH`` is byte-aligned, and a compressor only refers back to
  data it compressed itself. So a segment from a *new* compressor (no history) continues any
  client's stream, whatever that client's inflater decoded before.
* Clients whose inflaters all took the same segments of one compressor since it started (a
  :class:`Lineage`) can all take its next segment too: its back-references reach only into those
  segments, which sit at the same distances in every one of their windows.

So clients in step follow one lineage and get payloads compressed with the full history, as
compact as a lone client's private stream. A client that falls out of step (it skipped a frame,
its damage differs, it just joined) cannot take the lineage's next segment; it compresses its
own, starting a lineage of its own, and marks the one it could not follow *retired*: the next
segment anyone compresses on a retired lineage starts a new lineage instead, with no history, which
every client can take. One frame without history, and the clients are in one lineage again.

Only the 2-byte zlib header that opens a stream is per client: it is sent inside the first
rectangle of each stream, and that rectangle is encoded for that client alone. A lone client keeps
its private streams; it switches to shared ones (:func:`make_shared`, for good) once another
client has the same settings (:func:`sharing_key`), its private compressor becoming a lineage of
its own.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..protocol.pixelformat import PixelFormat
from .base import ZLIB_MEM_LEVEL, EncodeContext

#: A valid zlib stream header (deflate, 32 KiB window); the level bits are informational only.
ZLIB_HEADER = b"\x78\x9c"

#: Encodings whose payload depends on the rectangle and settings only (no client stream state).
STATELESS = frozenset({0, 5, -260})  # Raw, Hextile, TightPNG

#: Guards claims on lineages: clients encode from the event loop and from worker threads.
_CLAIMS = threading.Lock()


class Lineage:
    """One zlib compressor whose segments the inflaters of one or more clients follow in step."""

    __slots__ = ("busy", "compressor", "retired", "tip")

    def __init__(self, compressor: Any) -> None:
        self.compressor = compressor
        #: Segments compressed so far; a client that took all of them can take the next.
        self.tip = 0
        #: A client is compressing the next segment right now (another thread must not).
        self.busy = False
        #: A client with the same settings could not follow: start a new lineage next time.
        self.retired = False


#: Where a client's inflater stands in a lineage: ``(lineage, segments taken)``.
Position = tuple[Lineage, int]


@dataclass(frozen=True, slots=True)
class StreamUse:
    """What a payload does to one stream: the position a client must hold to take it (None: its
    first segment has no history, so any client can) and the position it leaves."""

    name: str
    requires: Position | None
    after: Position


class SharedStream:
    """Drop-in for a ``zlib.compressobj`` whose flushes any client at the same position can take."""

    def __init__(self, level: int, started: bool, lineage: Lineage | None = None) -> None:
        self.level = level
        #: Whether this client's inflater has had its zlib header already.
        self.started = started
        #: Where this client's inflater stands (None until its first segment).
        self.position: Position | None = None if lineage is None else (lineage, lineage.tip)
        #: Set when a flush emitted the header (that payload is this client's alone).
        self.emitted_header = False
        #: Whether a flush happened since :meth:`begin`, and the position its first one required.
        self.used = False
        self.requires: Position | None = None
        self._pending: list[bytes] = []

    def begin(self) -> None:
        """Start recording what the next payload does to this stream."""
        self.used = self.emitted_header = False
        self.requires = None

    def compress(self, data: bytes) -> bytes:
        self._pending.append(bytes(data))
        return b""

    def flush(self, mode: int = zlib.Z_SYNC_FLUSH) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        requires = self._claim()
        if requires is None:
            lineage = Lineage(zlib.compressobj(self.level, zlib.DEFLATED, -15, ZLIB_MEM_LEVEL))
            serial = 0
        else:
            lineage, serial = requires
        try:
            out = lineage.compressor.compress(data) + lineage.compressor.flush(zlib.Z_SYNC_FLUSH)
        except BaseException:
            with _CLAIMS:  # its state is unknown now: nobody continues it
                lineage.retired = True
                lineage.busy = False
            raise
        with _CLAIMS:
            lineage.tip = serial + 1
            lineage.busy = False
        if not self.used:
            self.used = True
            self.requires = requires
        self.position = (lineage, serial + 1)
        if not self.started:
            self.started = True
            self.emitted_header = True
            return ZLIB_HEADER + out
        return out

    def _claim(self) -> Position | None:
        """This client's position when it may compress the lineage's next segment, else None
        (the segment then starts a new lineage without history)."""
        position = self.position
        if position is None or not self.started:
            return None
        lineage, serial = position
        with _CLAIMS:
            if lineage.tip != serial or lineage.busy or lineage.retired:
                return None
            lineage.busy = True
        return position


def make_shared(ctx: EncodeContext) -> None:
    """Switch a client's streams to shared ones, for good (see the module docstring); each
    private compressor goes on as a lineage only this client follows, so nothing is lost."""
    if ctx.shared:
        return
    ctx.shared = True
    for key, value in list(ctx.streams.items()):
        if isinstance(value, tuple):  # Tight keeps (level, compressor)
            level, compressor = value
            if not isinstance(compressor, SharedStream):
                ctx.streams[key] = (level, SharedStream(level, True, Lineage(compressor)))
        elif not isinstance(value, SharedStream):
            ctx.streams[key] = SharedStream(ctx.compress_level, True, Lineage(value))


def _shared_stream(ctx: EncodeContext, name: str) -> SharedStream | None:
    """The client's stream ``name`` if it is a shared one (Tight keeps ``(level, stream)``)."""
    value = ctx.streams.get(name)
    candidate = value[1] if isinstance(value, tuple) else value
    return candidate if isinstance(candidate, SharedStream) else None


def _shared_streams(ctx: EncodeContext) -> dict[str, SharedStream]:
    """All of the client's shared streams, by name."""
    return {name: stream for name in ctx.streams if (stream := _shared_stream(ctx, name)) is not None}


def private_streams(encoding: int, ctx: EncodeContext) -> bool:
    """Whether this client's payloads continue zlib streams of its own (a stream-based encoding
    before :func:`make_shared`): then nothing it encodes can go to another client."""
    return encoding not in STATELESS and not ctx.shared


def sharing_key(encoding: int, ctx: EncodeContext, pixel_format: PixelFormat) -> tuple[Any, ...]:
    """Clients with equal keys get byte-identical payloads for the same rectangle."""
    return (encoding, pixel_format.wire, ctx.compress_level, ctx.quality_level, ctx.tight_gradient)


def merge_uses(
    before: dict[str, StreamUse] | None, uses: tuple[StreamUse, ...] | None
) -> dict[str, StreamUse] | None:
    """What two payloads sent one after the other do to the streams (None: not shareable)."""
    if before is None or uses is None:
        return None
    for use in uses:
        first = before.get(use.name)
        before[use.name] = use if first is None else StreamUse(use.name, first.requires, use.after)
    return before


#: One cached payload or update: its bytes, what it does to the streams, how many rectangles.
_Entry = tuple[bytes, tuple[StreamUse, ...], int]


@dataclass
class EncodeCache:
    """Payloads of the current frame, shared by clients with the same settings.

    Two levels: single rectangles keyed by rectangle and :func:`sharing_key` (clients whose damage
    differs still share the rectangles they have in common), and whole updates keyed by the
    session's ``update_key`` (clients that are in step, the common case, share the entire update:
    one lookup instead of one per rectangle, no planning of rectangles). Taking a payload moves the
    client's streams to where the payload leaves them.
    """

    generation: int = -1
    #: Rectangles: ``key -> payloads`` (one per lineage that produced it, a few at most).
    entries: dict[tuple[Any, ...], list[_Entry]] = field(default_factory=dict)
    #: Whole updates: ``update_key -> (bytes, stream uses, rectangles in them)``.
    updates: dict[tuple[Any, ...], _Entry] = field(default_factory=dict)
    #: Rectangles served from the cache (a whole-update hit counts each of its rectangles).
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _roll(self, generation: int) -> None:
        """Forget the previous frame's payloads once a newer frame is encoded (lock held)."""
        if generation > self.generation:
            self.generation = generation
            self.entries.clear()
            self.updates.clear()

    def payload(
        self, generation: int, key: tuple[Any, ...], encoding: int, ctx: EncodeContext, produce: Any
    ) -> tuple[bytes, tuple[StreamUse, ...] | None]:
        """The payload for ``key`` (from the cache when this client can take it, else
        ``produce()``) and what it does to the streams, or None when the payload is this client's
        alone (private streams, or it opened a stream with the zlib header).

        Sessions call this from the event loop and from encode threads: the lock covers the
        bookkeeping (never ``produce()``), and a payload of an older frame is never stored.
        """
        if private_streams(encoding, ctx):
            return bytes(produce()), None  # nothing to share
        with self._lock:
            self._roll(generation)
            found = self.entries.get(key) if generation == self.generation else None
            for entry in found or ():
                if _take(entry[1], ctx):
                    self.hits += 1
                    return entry[0], entry[1]
            self.misses += 1
        if found:
            _retire(found)
        shared = _shared_streams(ctx)
        for stream in shared.values():
            stream.begin()
        payload = bytes(produce())
        shared = _shared_streams(ctx)  # includes streams the encoder opened just now
        if any(stream.emitted_header for stream in shared.values()):
            return payload, None
        uses = tuple(
            StreamUse(name, stream.requires, stream.position)  # type: ignore[arg-type]
            for name, stream in shared.items()
            if stream.used
        )
        with self._lock:
            if generation == self.generation:
                kept = self.entries.setdefault(key, [])
                if len(kept) < MAX_PAYLOADS_PER_RECT:
                    kept.append((payload, uses, 1))
        return payload, uses

    def update(self, generation: int, key: tuple[Any, ...], ctx: EncodeContext) -> tuple[bytes, int] | None:
        """A whole update stored under ``key`` that this client can take, and its rectangle count.

        Event loop only, and without the lock: one dict read is atomic, and a store racing with
        it at most makes this client encode the update itself.
        """
        entry = self.updates.get(key) if generation == self.generation else None
        if entry is None:
            return None
        if not _take(entry[1], ctx):
            _retire([entry])
            return None
        self.hits += entry[2]
        return entry[0], entry[2]

    def store_update(
        self, generation: int, key: tuple[Any, ...], update: bytes, uses: tuple[StreamUse, ...], count: int
    ) -> None:
        """Keep a whole update of the current frame for the next client in step with this one."""
        with self._lock:
            self._roll(generation)
            held = sum(len(entry[0]) for entry in self.updates.values())
            if generation == self.generation and len(self.updates) < MAX_UPDATES and held < MAX_UPDATE_BYTES:
                self.updates[key] = (update, uses, count)


#: Whole updates kept per frame (one per group of clients in step with each other), and the
#: bytes they may hold: a bound for many groups of clients at large frame sizes.
MAX_UPDATES = 16
MAX_UPDATE_BYTES = 64 << 20
#: Payloads kept per rectangle and frame: one per lineage that encoded it (clients out of step).
MAX_PAYLOADS_PER_RECT = 4


def _take(uses: tuple[StreamUse, ...], ctx: EncodeContext) -> bool:
    """Whether this client can take a payload that does ``uses`` (each stream is a shared one whose
    zlib header its inflater has had, at the position the payload requires); if so, move its
    streams to where the payload leaves them."""
    streams = []
    for use in uses:
        stream = _shared_stream(ctx, use.name)
        if stream is None or not stream.started:
            return False
        if use.requires is not None and stream.position != use.requires:
            return False
        streams.append(stream)
    for stream, use in zip(streams, uses, strict=True):
        stream.position = use.after
    return True


def _retire(entries: list[_Entry]) -> None:
    """A client with these settings could not follow the lineages these payloads continue:
    their next segments start new lineages that everyone can take (see the module docstring)."""
    for entry in entries:
        for use in entry[1]:
            if use.requires is not None:
                use.requires[0].retired = True
