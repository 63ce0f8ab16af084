"""Per-client rates computed by the server (server truth), refreshed every ``stats_interval``.

Each tick turns the monotonically growing counters of every session into rates over the last
interval (frames per second, bitrate, frames skipped, mean encode time), reads the round-trip
time measured by the last Fence ping, sends the next ping, and hands the snapshot to listeners
(the notebook widgets' overlays).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger(__name__)

Listener = Callable[[dict[int, dict[str, Any]]], None]


class StatsCollector:
    def __init__(self, server: Server, interval: float) -> None:
        if interval <= 0:
            raise ValueError("stats_interval must be positive")
        self.server = server
        self.interval = interval
        self.latest: dict[int, dict[str, Any]] = {}
        self.listeners: list[Listener] = []
        self._previous: dict[int, tuple[float, int, int, int, float]] = {}

    def tick(self) -> dict[int, dict[str, Any]]:
        now = time.monotonic()
        snapshot: dict[int, dict[str, Any]] = {}
        for cid, session in list(self.server.sessions.items()):
            s = session.stats
            counters = (now, s.updates_sent, s.bytes_sent, s.frames_skipped, s.encode_seconds)
            prev = self._previous.get(cid)
            self._previous[cid] = counters
            if prev is None:
                continue
            dt = max(1e-6, now - prev[0])
            updates = s.updates_sent - prev[1]
            snapshot[cid] = {
                "client_id": cid,
                "peer": session.peer,
                "transport": session.stream.kind,
                "tag": session.tag,
                "fps": updates / dt,
                "bitrate": (s.bytes_sent - prev[2]) * 8 / dt,
                "skipped_per_s": (s.frames_skipped - prev[3]) / dt,
                "encode_ms": ((s.encode_seconds - prev[4]) * 1000 / updates) if updates else 0.0,
                "rtt_ms": s.rtt_ms,
            }
        for cid in set(self._previous) - set(self.server.sessions):
            del self._previous[cid]
        self.latest = snapshot
        self.server.ping_all()
        for listener in list(self.listeners):
            try:
                listener(snapshot)
            except Exception:  # a broken overlay must not stop the stats
                log.exception("stats listener failed")
        return snapshot

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()
