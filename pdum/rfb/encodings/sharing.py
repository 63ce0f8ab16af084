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

from .base import EncodeContext

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
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15)
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
    """Payloads of the current frame's rectangles, keyed by rectangle and :func:`sharing_key`."""

    generation: int = -1
    entries: dict[tuple[Any, ...], tuple[bytes, frozenset[str]]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _lookup(self, key: tuple[Any, ...], ctx: EncodeContext) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        payload, streams = entry
        # Usable only if every stream it continues already has this client's zlib header.
        mine = _compressors(ctx)
        if any(name not in mine or not mine[name].started for name in streams):
            return None
        self.hits += 1
        return payload

    def encode(
        self, generation: int, key: tuple[Any, ...], encoding: int, ctx: EncodeContext, produce: Any
    ) -> bytes:
        """The payload for ``key``: from the cache when this client can use it, else ``produce()``.

        Sessions call this from the event loop and from encode threads: the lock covers the
        bookkeeping (never ``produce()``), and a payload of an older frame is never stored.
        """
        if encoding not in STATELESS and not ctx.shared:
            return bytes(produce())  # private streams: nothing to share
        with self._lock:
            if generation > self.generation:  # only the current frame's payloads are kept
                self.generation = generation
                self.entries.clear()
            cached = self._lookup(key, ctx) if generation == self.generation else None
            if cached is not None:
                return cached
            self.misses += 1
        for c in _compressors(ctx).values():
            c.used = c.emitted_header = False
        payload = bytes(produce())
        after = _compressors(ctx)  # includes streams the encoder opened just now
        if not any(c.emitted_header for c in after.values()):
            with self._lock:
                if generation == self.generation:
                    self.entries[key] = (payload, frozenset(name for name, c in after.items() if c.used))
        return payload
