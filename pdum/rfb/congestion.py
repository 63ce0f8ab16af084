"""Per-client congestion control and adaptive quality, driven by Fence round trips.

Why: a socket write "completes" as soon as the kernel takes the bytes, and between us and a slow
client there can be megabytes of buffers (our send buffer, a proxy's, the WebSocket bridge's).
Latest-frame-wins only helps if updates are not queued in those buffers, so, like TigerVNC's
congestion control, we follow every update with a Fence request: the client answers it once it
has read everything before it, which tells us how many bytes are still *in flight*. A new update
is built only while what is in flight would drain within a small delay budget at the measured
delivery rate, so a client on a slow link skips frames instead of falling seconds behind, and a
fast client on the same Display is never held back (each session has its own controller).

For clients that take JPEG (Tight with a quality level), :class:`QualityController` lowers the
quality level while the link cannot carry the frame rate, and raises it back when it can; tiles
sent lossily are refreshed losslessly once they stop changing (:class:`LossyTiles`).

This module is sans-I/O: the session calls it with byte counts and times.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

#: Fence payloads of our congestion pings start with this tag (other pings use 8 bytes).
PING_TAG = b"pdcc"
_PING = struct.Struct(">4sQ")

#: Bytes that may always be in flight (before the first delivery-rate sample, and on slow links).
INITIAL_WINDOW = 8 * 1024
#: How much queueing delay (seconds), beyond the base round trip, the bytes in flight may add.
TARGET_DELAY = 0.02
WINDOW_GAIN = 2.0
#: The base round trip is the smallest of this many recent ones (paths change).
RTT_SAMPLES = 16
#: How many recent delivery-rate samples the bandwidth estimate takes the maximum of.
RATE_SAMPLES = 8
#: Deliveries smaller than this say little about the link's rate (bursts, timer granularity).
MIN_SAMPLE_BYTES = 4096
#: At most this many congestion pings outstanding; beyond it an update waits for an answer.
MAX_PINGS = 32


@dataclass
class _Ping:
    seq: int
    position: int  # bytes of updates sent when the ping went out
    sent_at: float
    acked_at_send: int  # bytes known delivered when the ping went out
    ack_time_at_send: float


class CongestionControl:
    """Bytes in flight, round-trip time and delivery rate of one client, from Fence answers."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self._ack_time = 0.0
        self._seq = 0
        self._pings: deque[_Ping] = deque()
        self._rates: deque[tuple[int, float]] = deque(maxlen=RATE_SAMPLES)
        self.rtt: float | None = None
        self._rtts: deque[float] = deque(maxlen=RTT_SAMPLES)

    @property
    def in_flight(self) -> int:
        """Bytes of updates sent that the client has not confirmed reading."""
        return self.sent - self.acked

    @property
    def bandwidth(self) -> float | None:
        """Estimated delivery rate in bytes per second over the recent samples, if any.

        Bytes over time summed across samples, not the best sample: a link with a token bucket
        (or a Wi-Fi burst) delivers a small update much faster than it sustains.
        """
        if not self._rates:
            return None
        return sum(d for d, _ in self._rates) / sum(t for _, t in self._rates)

    @property
    def base_rtt(self) -> float | None:
        """The path's round trip without our own queue: the smallest recent round trip once the
        time to deliver the bytes queued ahead of each ping is taken off."""
        return min(self._rtts) if self._rtts else None

    def window(self) -> float:
        """How many bytes may be in flight: twice what the link delivers in one base round trip
        plus the delay budget, never below the initial window.

        The factor 2 (BBR's cwnd gain) lets a second update start while the first is delivered:
        without it a rate measured while sending one update at a time could never grow.
        """
        rate = self.bandwidth
        if rate is None:
            return INITIAL_WINDOW
        return max(INITIAL_WINDOW, WINDOW_GAIN * rate * ((self.base_rtt or 0.0) + TARGET_DELAY))

    def can_send(self) -> bool:
        """Whether a new update may go out now (nothing in flight always allows one)."""
        if self.in_flight <= 0:
            return True
        if len(self._pings) >= MAX_PINGS:
            return False
        return self.in_flight < self.window()

    def sent_update(self, nbytes: int, now: float) -> bytes:
        """Account ``nbytes`` just written; returns the Fence payload to send right after them."""
        if not self._pings and self.in_flight <= 0:
            # The link was idle: measure the next rate from now, not from the last answer.
            self._ack_time = now
        self.sent += nbytes
        self._seq += 1
        self._pings.append(_Ping(self._seq, self.sent, now, self.acked, self._ack_time))
        return _PING.pack(PING_TAG, self._seq)

    def answered(self, payload: bytes, now: float) -> bool:
        """Feed a Fence answer; returns False if ``payload`` is not one of our pings."""
        if len(payload) != _PING.size or not payload.startswith(PING_TAG):
            return False
        (_tag, seq) = _PING.unpack(payload)
        while self._pings and self._pings[0].seq < seq:
            self._pings.popleft()  # answers come in order; an older one was lost to a reset
        if not self._pings or self._pings[0].seq != seq:
            return True
        ping = self._pings.popleft()
        rtt = now - ping.sent_at
        self.rtt = rtt
        delivered = ping.position - ping.acked_at_send
        interval = now - ping.ack_time_at_send
        if delivered >= MIN_SAMPLE_BYTES and interval > 0:
            self._rates.append((delivered, interval))
        rate = self.bandwidth
        self._rtts.append(max(0.0, rtt - delivered / rate) if rate else rtt)
        self.acked = ping.position
        self._ack_time = now
        return True

    def oldest_unanswered(self) -> float | None:
        """When the oldest ping still waiting for its answer was sent, if any."""
        return self._pings[0].sent_at if self._pings else None

    def reset(self) -> None:
        """Forget what is in flight (e.g. after the client stopped answering fences)."""
        self.acked = self.sent
        self._pings.clear()


#: Lowest quality level adaptive quality goes down to (TigerVNC's level 0 is very blocky).
MIN_QUALITY = 1
#: Updates per second a lossy client's link should carry at the chosen quality: each update then
#: takes at most 1/TARGET_FPS s to arrive, which bounds how far behind the client can be.
TARGET_FPS = 12.0
#: Seconds between two quality changes (down / up).
DOWN_INTERVAL = 0.25
UP_INTERVAL = 2.0


class QualityController:
    """The JPEG quality level actually used for one client: its own request, lowered while its
    link cannot carry ``TARGET_FPS`` updates of the current size, raised again when it can."""

    def __init__(self) -> None:
        self.level: int | None = None
        self._requested: int | None = None
        self._update_bytes: float | None = None
        self._changed_at = 0.0

    def request(self, level: int | None) -> None:
        """The client's quality level from SetEncodings (None: no JPEG at all)."""
        self._requested = level
        self.level = level

    def observe(self, nbytes: int, bandwidth: float | None, now: float) -> None:
        """Record one lossy update's size and adjust the level against the delivery rate."""
        if self.level is None or self._requested is None:
            return
        size = float(nbytes)
        self._update_bytes = size if self._update_bytes is None else 0.7 * self._update_bytes + 0.3 * size
        if bandwidth is None or bandwidth <= 0:
            return
        fps = bandwidth / max(self._update_bytes, 1.0)
        if fps < TARGET_FPS and self.level > MIN_QUALITY and now - self._changed_at >= DOWN_INTERVAL:
            step = 2 if fps < TARGET_FPS / 2 else 1  # far off: get there in fewer steps
            self.level = max(MIN_QUALITY, self.level - step)
            self._changed_at = now
            self._update_bytes = None  # the next sizes are at the new level
        elif fps > 3 * TARGET_FPS and self.level < self._requested and now - self._changed_at >= UP_INTERVAL:
            self.level += 1
            self._changed_at = now


#: Seconds a lossily sent tile must stay unchanged before it is refreshed losslessly (TigerVNC
#: waits ~50 ms of idle; a little longer avoids refreshing what is about to change again).
REFRESH_DELAY = 0.1


class LossyTiles:
    """Which damage tiles a client holds only lossily, and since when."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.sent_at = np.full(shape, np.inf)
        #: Whether any tile may be lossy: lossless clients skip all the array work per update.
        self.any = False

    def reshape(self, shape: tuple[int, int]) -> None:
        self.sent_at = np.full(shape, np.inf)
        self.any = False

    def mark(self, tiles: np.ndarray, lossy: bool, now: float) -> None:
        """Tiles just sent: lossily (remember when) or losslessly (forget them)."""
        if lossy:
            self.sent_at[tiles] = now
            self.any = True
        elif self.any:
            self.sent_at[tiles] = np.inf

    def due(self, damage: np.ndarray, now: float) -> np.ndarray:
        """Lossy tiles unchanged for ``REFRESH_DELAY`` that are not about to be sent anyway."""
        return (self.sent_at + REFRESH_DELAY <= now) & ~damage

    def next_due(self) -> float | None:
        """When the earliest lossy tile becomes due, or None if there is none."""
        earliest = float(self.sent_at.min()) if self.any and self.sent_at.size else np.inf
        if earliest == np.inf:
            self.any = False
            return None
        return earliest + REFRESH_DELAY
