"""Congestion control, adaptive quality and lossy-tile bookkeeping (congestion.py), on a
simulated link (no sockets, exact times), and a session whose client answers its fences or not."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb import session as session_module
from pdum.rfb.congestion import (
    INITIAL_WINDOW,
    MIN_QUALITY,
    REFRESH_DELAY,
    CongestionControl,
    LossyTiles,
    QualityController,
)
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import noise
from tests.support import rfb_connect, run_async


def simulate(
    rate: float, update_bytes: int, rtt: float, seconds: float
) -> tuple[CongestionControl, list[float]]:
    """A sender that sends whenever allowed over a link of ``rate`` bytes/s and ``rtt`` delay;
    returns the controller and, per update, the time from its sending to its delivery."""
    cc = CongestionControl()
    now = 0.0
    link_free = 0.0  # when the link has delivered everything sent so far
    pending: list[tuple[float, bytes, float]] = []  # (answer time, payload, sent at)
    delays: list[float] = []
    while now < seconds:
        for answer in [p for p in pending if p[0] <= now]:
            pending.remove(answer)
            assert cc.answered(answer[1], answer[0])
        if cc.can_send():
            payload = cc.sent_update(update_bytes, now)
            link_free = max(link_free, now) + update_bytes / rate
            delivered = link_free + rtt / 2
            pending.append((delivered + rtt / 2, payload, now))
            delays.append(delivered - now)
        now += 0.001
    return cc, delays


def test_nothing_in_flight_always_sends_and_unknown_answers_are_ignored() -> None:
    cc = CongestionControl()
    assert cc.can_send()
    payload = cc.sent_update(100_000, 0.0)
    assert cc.in_flight == 100_000 and not cc.can_send()
    assert not cc.answered(b"\x00" * 8, 0.01)  # a plain RTT ping, not ours
    assert cc.answered(payload, 0.5)
    assert cc.in_flight == 0 and cc.can_send()
    assert cc.rtt == 0.5


def test_slow_link_rate_is_measured_and_the_queue_stays_short() -> None:
    rate = 250_000.0  # 2 Mbit/s
    cc, delays = simulate(rate, 20_000, rtt=0.01, seconds=10.0)
    # Within 15 %: the measurement includes the link's idle round trips between updates.
    assert cc.bandwidth is not None and abs(cc.bandwidth - rate) / rate < 0.15
    # Each update arrives within its own transmission time plus one window's worth of queue.
    worst = (20_000 + INITIAL_WINDOW) / rate + 0.01
    assert max(delays[5:]) <= worst, (max(delays[5:]), worst)
    # ...and the link is kept busy: at least 85 % of its capacity is used.
    assert len(delays) * 20_000 >= 0.85 * rate * 10.0


def test_fast_link_pipelines() -> None:
    rate = 100e6
    cc, delays = simulate(rate, 300_000, rtt=0.02, seconds=2.0)
    assert cc.bandwidth is not None and cc.bandwidth > 50e6
    assert cc.window() > 300_000  # a high bandwidth-delay product allows several updates in flight
    assert len(delays) * 300_000 >= 0.5 * rate * 2.0


def test_reset_forgets_what_is_in_flight() -> None:
    cc = CongestionControl()
    cc.sent_update(1_000_000, 0.0)
    assert not cc.can_send()
    cc.reset()
    assert cc.in_flight == 0 and cc.can_send()


def test_quality_drops_on_a_slow_link_and_recovers() -> None:
    q = QualityController()
    q.request(6)
    now = 0.0
    while q.level is not None and q.level > MIN_QUALITY and now < 10:
        now += 0.05
        q.observe(60_000, 250_000.0, now)  # 4 updates/s at this size: too slow
    assert q.level == MIN_QUALITY and now < 3
    for _ in range(400):
        now += 0.05
        q.observe(5_000, 10e6, now)  # plenty of room
    assert q.level == 6  # never above what the client asked for


def test_no_quality_without_a_request() -> None:
    q = QualityController()
    q.request(None)
    q.observe(10**6, 1.0, 100.0)
    assert q.level is None


def test_lossy_tiles_become_due_after_the_delay_unless_damaged() -> None:
    tiles = LossyTiles((2, 3))
    assert tiles.next_due() is None
    sent = np.zeros((2, 3), dtype=bool)
    sent[0, :2] = True
    tiles.mark(sent, lossy=True, now=1.0)
    assert tiles.next_due() == 1.0 + REFRESH_DELAY
    damage = np.zeros((2, 3), dtype=bool)
    assert not tiles.due(damage, 1.0 + REFRESH_DELAY / 2).any()
    damage[0, 1] = True
    due = tiles.due(damage, 1.0 + REFRESH_DELAY)
    assert due.tolist() == [[True, False, False], [False, False, False]]
    tiles.mark(due, lossy=False, now=2.0)
    assert tiles.next_due() == 1.0 + REFRESH_DELAY  # tile (0, 1) is still lossy


# -- a session over TCP: Fence answers pace the updates --------------------------------------------
W, H = 64, 64  # one Raw update is 16 KiB: more than the initial window


async def _read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server message of a Raw/Fence/ContinuousUpdates session: (type, fence payload)."""
    kind = (await reader.readexactly(1))[0]
    if kind == 0:
        (count,) = struct.unpack(">xH", await reader.readexactly(3))
        for _ in range(count):
            _, _, w, h, enc = struct.unpack(">HHHHi", await reader.readexactly(12))
            await reader.readexactly(w * h * 4 if enc == Encoding.RAW else 0)
        return kind, b""
    if kind == 248:
        flags, length = struct.unpack(">3xIB", await reader.readexactly(8))
        return kind, struct.pack(">I", flags) + await reader.readexactly(length)
    if kind == 150:
        return kind, b""
    raise AssertionError(f"unexpected server message {kind}")


async def _updates_within(answer: bool, seconds: float) -> int:
    display = await rfb.serve(W, H, port=None)
    try:
        reader, writer = await rfb_connect(display.vnc_port or 0)
        encodings = [Encoding.RAW, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES]
        writer.write(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
        writer.write(struct.pack(">BBHHHH", 150, 1, 0, 0, W, H))  # EnableContinuousUpdates
        updates = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        n = 0
        while loop.time() < end:
            n += 1
            display.publish(noise(W, H, seed=n))
            try:
                kind, payload = await asyncio.wait_for(_read_message(reader), 0.05)
            except TimeoutError:
                continue
            updates += kind == 0
            flags = struct.unpack(">I", payload[:4])[0] if kind == 248 else 0
            if answer and flags & (1 << 31):  # a request: answer it in order, as clients must
                body = payload[4:]
                writer.write(struct.pack(">B3xIB", 248, flags & 0x7, len(body)) + body)
        writer.close()
        return updates
    finally:
        await display.aclose()


def test_fence_answers_pace_updates_and_a_silent_client_is_not_stalled_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "FENCE_ANSWER_TIMEOUT", 0.3)
    answering = run_async(_updates_within(answer=True, seconds=1.5))
    silent = run_async(_updates_within(answer=False, seconds=1.5))
    assert answering >= 10  # answered fences keep updates flowing at the publish rate
    assert 3 <= silent <= 8  # one update, then one per overdue answer (every 0.3 s)
