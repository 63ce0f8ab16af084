"""Encode once for many clients: a per-frame cache of rectangle payloads, and zlib streams that
make stream-based encodings (Zlib, ZRLE, Tight) shareable.

RFB gives every client its own long-lived zlib streams, so normally the same rectangle must be
compressed once per client. The way around it: compress each rectangle with a *fresh* raw-deflate
compressor and end it with ``Z_SYNC_FLUSH``. Such a segment holds no back-reference to earlier
data, so any client's inflater accepts it as the continuation of its stream, whatever it decoded
before; only the 2-byte zlib header that opens a stream is per client, and it is sent inside the
first rectangle of each stream (that rectangle is encoded for that client alone).

The price is the dictionary: a fresh compressor cannot refer to the previous rectangle. So a
client uses shared streams only while another client has the same settings
(:func:`sharing_key`); a lone client keeps its private, better-compressing streams. A client that
switched stays switched: its private compressor's history no longer matches its inflater.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from .base import ZLIB_MEM_LEVEL, EncodeContext

#: A valid zlib stream header (deflate, 32 KiB window); the level bits are informational only.
ZLIB_HEADER = b"\x78\x9c"

#: Encodings whose payload depends on the rectangle and settings only (no client stream state).
STATELESS = frozenset({0, 5, -260})  # Raw, Hextile, TightPNG


class FreshDeflate:
    """Drop-in for a ``zlib.compressobj`` whose every flush is an independent raw-deflate segment."""

    def __init__(self, level: int, started: bool) -> None:
        self.level = level
        #: Whether this client's inflater has had its zlib header already.
        self.started = started
        #: Set when a flush emitted the header (that payload is this client's alone).
        self.emitted_header = False
        self.used = False
        self._pending: list[bytes] = []

    def compress(self, data: bytes) -> bytes:
        self._pending.append(bytes(data))
        return b""

    def flush(self, mode: int = zlib.Z_SYNC_FLUSH) -> bytes:
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15, ZLIB_MEM_LEVEL)
        out = compressor.compress(b"".join(self._pending)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._pending.clear()
        self.used = True
        if not self.started:
            self.started = True
            self.emitted_header = True
            return ZLIB_HEADER + out
        return out


def make_shared(ctx: EncodeContext) -> None:
    """Switch a client's streams to fresh-deflate segments, for good (see the module docstring)."""
    if ctx.shared:
        return
    ctx.shared = True
    for key, value in list(ctx.streams.items()):
        if isinstance(value, tuple):  # Tight keeps (level, compressor)
            level, compressor = value
            if not isinstance(compressor, FreshDeflate):
                ctx.streams[key] = (level, FreshDeflate(level, started=True))
        elif not isinstance(value, FreshDeflate):
            ctx.streams[key] = FreshDeflate(ctx.compress_level, started=True)


def _compressors(ctx: EncodeContext) -> dict[str, FreshDeflate]:
    found = {}
    for name, value in ctx.streams.items():
        candidate = value[1] if isinstance(value, tuple) else value
        if isinstance(candidate, FreshDeflate):
            found[name] = candidate
    return found


def sharing_key(encoding: int, ctx: EncodeContext, pixel_format: Any) -> tuple[Any, ...]:
    """Clients with equal keys get byte-identical payloads for the same rectangle."""
    return (encoding, pixel_format, ctx.compress_level, ctx.quality_level, ctx.tight_gradient)


@dataclass
class EncodeCache:
    """Payloads of the current frame, shared by clients with the same settings.

    Two levels: single rectangles keyed by rectangle and :func:`sharing_key` (clients whose damage
    differs still share the rectangles they have in common), and whole updates keyed by the
    session's ``update_key`` (clients that are in step, the common case, share the entire update:
    one lookup instead of one per rectangle, no planning of rectangles).
    """

    generation: int = -1
    entries: dict[tuple[Any, ...], tuple[bytes, frozenset[str]]] = field(default_factory=dict)
    #: Whole updates: ``update_key -> (bytes, streams they continue, rectangles in them)``.
    updates: dict[tuple[Any, ...], tuple[bytes, frozenset[str], int]] = field(default_factory=dict)
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
    ) -> tuple[bytes, frozenset[str] | None]:
        """The payload for ``key`` (from the cache when this client can use it, else
        ``produce()``) and the streams it continues, or None when the payload is this client's
        alone (private streams, or it opened a stream with the zlib header).

        Sessions call this from the event loop and from encode threads: the lock covers the
        bookkeeping (never ``produce()``), and a payload of an older frame is never stored.
        """
        if encoding not in STATELESS and not ctx.shared:
            return bytes(produce()), None  # private streams: nothing to share
        with self._lock:
            self._roll(generation)
            entry = self.entries.get(key) if generation == self.generation else None
            if entry is not None and _continues(entry[1], ctx):
                self.hits += 1
                return entry
            self.misses += 1
        for c in _compressors(ctx).values():
            c.used = c.emitted_header = False
        payload = bytes(produce())
        after = _compressors(ctx)  # includes streams the encoder opened just now
        if any(c.emitted_header for c in after.values()):
            return payload, None
        streams = frozenset(name for name, c in after.items() if c.used)
        with self._lock:
            if generation == self.generation:
                self.entries[key] = (payload, streams)
        return payload, streams

    def update(self, generation: int, key: tuple[Any, ...], ctx: EncodeContext) -> tuple[bytes, int] | None:
        """A whole update stored under ``key`` that this client can take, and its rectangle count.

        Event loop only, and without the lock: one dict read is atomic, and a store racing with
        it at most makes this client encode the update itself.
        """
        entry = self.updates.get(key) if generation == self.generation else None
        if entry is None or not _continues(entry[1], ctx):
            return None
        self.hits += entry[2]
        return entry[0], entry[2]

    def store_update(
        self, generation: int, key: tuple[Any, ...], update: bytes, streams: frozenset[str], count: int
    ) -> None:
        """Keep a whole update of the current frame for the next client in step with this one."""
        with self._lock:
            self._roll(generation)
            held = sum(len(entry[0]) for entry in self.updates.values())
            if generation == self.generation and len(self.updates) < MAX_UPDATES and held < MAX_UPDATE_BYTES:
                self.updates[key] = (update, streams, count)


#: Whole updates kept per frame (one per group of clients in step with each other), and the
#: bytes they may hold: a bound for many groups of clients at large frame sizes.
MAX_UPDATES = 16
MAX_UPDATE_BYTES = 64 << 20


def _continues(streams: frozenset[str], ctx: EncodeContext) -> bool:
    """Whether a payload that continues ``streams`` suits this client: each of them is a shared
    stream whose zlib header this client's inflater has had already."""
    for name in streams:
        value = ctx.streams.get(name)
        compressor = value[1] if isinstance(value, tuple) else value
        if not isinstance(compressor, FreshDeflate) or not compressor.started:
            return False
    return True
