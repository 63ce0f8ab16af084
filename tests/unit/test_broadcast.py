"""Clients in step share whole updates: one encode per frame, the same bytes to each, pixel-exact.

Raw clients over TCP decode every update here (Raw directly, Zlib through each client's own
inflater, so a payload that did not continue a client's stream would fail to decode).
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.encodings.base import EncodeContext
from pdum.rfb.encodings.sharing import MAX_UPDATES, EncodeCache, Lineage, SharedStream, StreamUse
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import bouncing_box, noise, text_like
from tests.support import rfb_connect, run_async


class RawClient:
    """A 32 bpp client (the server's default format: B, G, R, x bytes) that decodes
    Raw and Zlib rects into its own screen and keeps each update's bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, w: int, h: int) -> None:
        self.reader, self.writer = reader, writer
        self.screen = np.zeros((h, w, 3), np.uint8)
        self.inflater = zlib.decompressobj()
        self.width, self.height = w, h

    def request(self, incremental: bool = True) -> None:
        self.writer.write(struct.pack(">BBHHHH", 3, incremental, 0, 0, self.width, self.height))

    async def update(self) -> bytes:
        """Read one FramebufferUpdate, apply it, return its bytes."""
        raw = await asyncio.wait_for(self.reader.readexactly(4), 10)
        assert raw[0] == 0, raw
        for _ in range(struct.unpack(">xxH", raw)[0]):
            header = await self.reader.readexactly(12)
            raw += header
            x, y, w, h, enc = struct.unpack(">HHHHi", header)
            if enc == Encoding.RAW:
                payload = await self.reader.readexactly(w * h * 4)
                raw += payload
            else:
                assert enc == Encoding.ZLIB, enc
                length = await self.reader.readexactly(4)
                data = await self.reader.readexactly(struct.unpack(">I", length)[0])
                raw += length + data
                payload = self.inflater.decompress(data)
            self.screen[y : y + h, x : x + w] = np.frombuffer(payload, np.uint8).reshape(h, w, 4)[..., 2::-1]
        return raw


async def _connect(display: Any, clients: list[RawClient], n: int, encoding: int) -> None:
    """Connect ``n`` clients using ``encoding``, each holding the current frame (appended to
    ``clients`` as they come, so the caller closes whichever got connected)."""
    width, height = display.width, display.height
    for _ in range(n):
        client = RawClient(*await rfb_connect(display.vnc_port), width, height)
        clients.append(client)
        client.writer.write(struct.pack(">BxHi", 2, 1, encoding))
        client.request(incremental=False)
        await client.update()


async def _close(display: Any, clients: list[RawClient]) -> None:
    for client in clients:
        client.writer.close()
    await display.aclose()


async def _in_step(display: Any, clients: list[RawClient]) -> None:
    """Every client has asked for the next update (so one publish reaches all of them at once)."""
    for client in clients:
        client.request()
    for _ in range(500):
        if sum(s.request is not None for s in display.server.sessions.values()) == len(clients):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("clients did not ask for updates")


def _frame(w: int, h: int, t: int) -> np.ndarray:
    frame = bouncing_box(w, h, t)
    frame[8:40, 8:72] = noise(64, 32, seed=t)
    return frame


CASES = [(Encoding.RAW, 192, 128), (Encoding.ZLIB, 192, 128), (Encoding.RAW, 640, 400)]


@pytest.mark.parametrize(("encoding", "width", "height"), CASES)
def test_clients_in_step_share_one_encode_per_frame(encoding: int, width: int, height: int) -> None:
    """Three clients in step: the same update bytes for each, every frame exact, and one encode
    per rectangle per frame (640x400 is encoded in a worker thread: the others wait for it)."""

    async def scenario() -> None:
        display = await rfb.serve(width, height, port=None, vnc_port=0)
        clients: list[RawClient] = []
        try:
            display.publish(_frame(width, height, 0))
            await _connect(display, clients, 3, encoding)
            for t in range(1, 7):
                await _in_step(display, clients)
                hits, misses = display.stats["encode_cache_hits"], display.stats["encode_cache_misses"]
                frame = _frame(width, height, t)
                display.publish(frame)
                updates = [await client.update() for client in clients]
                for client in clients:
                    assert np.array_equal(client.screen, frame)
                if t >= 3:  # Zlib: the first shared update of each client opens its stream
                    assert updates[0] == updates[1] == updates[2]
                    rects = struct.unpack(">xxH", updates[0][:4])[0]
                    assert display.stats["encode_cache_misses"] - misses == rects
                    assert display.stats["encode_cache_hits"] - hits == 2 * rects
        finally:
            await _close(display, clients)

    run_async(scenario(), timeout=60)


def test_a_client_out_of_step_gets_its_own_update() -> None:
    """A client that skipped a frame has more damage: its update differs and is still exact."""
    width, height = 256, 128
    base = bouncing_box(width, height, 0)
    frames = [base, base.copy()]
    frames[1][100:120, 200:240] = noise(40, 20, seed=1)
    frames.append(frames[1].copy())
    frames[2][0:20, 0:40] = noise(40, 20, seed=2)

    async def scenario() -> None:
        display = await rfb.serve(width, height, port=None, vnc_port=0)
        clients: list[RawClient] = []
        try:
            display.publish(frames[0])
            await _connect(display, clients, 2, Encoding.RAW)
            await _in_step(display, clients[:1])  # the second client does not ask
            display.publish(frames[1])
            await clients[0].update()
            display.publish(frames[2])
            for client in clients:
                client.request()
            first, second = await clients[0].update(), await clients[1].update()
            assert len(second) > len(first)  # the second also repaints what frame 1 changed
            for client in clients:
                assert np.array_equal(client.screen, frames[2])
        finally:
            await _close(display, clients)

    run_async(scenario(), timeout=60)


def test_clients_share_one_damage_grid_until_one_asks_for_part_of_the_screen() -> None:
    """A publish hands every clean client the same read-only damage grid; a client that asks for
    the left half only clears that half in a copy of its own, so the other client (served after
    it, from the grid they shared) still gets the whole change and the first one gets the right
    half on its next request."""
    width, height = 256, 128
    before = bouncing_box(width, height, 0)
    after = before.copy()
    after[10:30, 10:50] = noise(40, 20, seed=3)  # left half
    after[90:110, 200:240] = noise(40, 20, seed=4)  # right half

    async def scenario() -> None:
        display = await rfb.serve(width, height, port=None, vnc_port=0)
        clients: list[RawClient] = []
        try:
            display.publish(before)
            await _connect(display, clients, 2, Encoding.RAW)
            half, whole = clients
            half.writer.write(struct.pack(">BBHHHH", 3, 1, 0, 0, width // 2, height))
            whole.request()
            sessions = list(display.server.sessions.values())
            for _ in range(500):
                if all(s.request is not None for s in sessions):
                    break
                await asyncio.sleep(0.01)
            display.publish(after)
            assert sessions[0].damage is sessions[1].damage  # one grid, shared
            assert not sessions[0].damage.flags.writeable
            await half.update()
            await whole.update()
            assert np.array_equal(whole.screen, after)
            assert np.array_equal(half.screen[:, : width // 2], after[:, : width // 2])
            assert not np.array_equal(half.screen, after)  # the right half is still to come
            half.request()
            await half.update()
            assert np.array_equal(half.screen, after)
        finally:
            await _close(display, clients)

    run_async(scenario(), timeout=60)


def test_whole_update_cache_checks_streams_and_bounds() -> None:
    cache = EncodeCache()
    started, fresh, elsewhere = EncodeContext(), EncodeContext(), EncodeContext()
    lineage = Lineage(zlib.compressobj())
    started.streams["zlib"] = SharedStream(6, True, lineage)
    fresh.streams["zlib"] = SharedStream(6, started=False)
    elsewhere.streams["zlib"] = SharedStream(6, True, Lineage(zlib.compressobj()))
    uses = (StreamUse("zlib", (lineage, 0), (lineage, 1)),)
    cache.store_update(5, ("k",), b"update", uses, 3)
    assert cache.update(4, ("k",), started) is None  # another frame
    assert not lineage.retired
    assert cache.update(5, ("k",), elsewhere) is None  # another lineage: it cannot follow
    assert lineage.retired  # so the next segment starts a lineage everyone can take
    assert cache.update(5, ("k",), fresh) is None  # its inflater has not had the zlib header
    assert cache.update(5, ("k",), EncodeContext()) is None  # private streams
    assert cache.update(5, ("k",), started) == (b"update", 3) and cache.hits == 3
    assert started.streams["zlib"].position == (lineage, 1)
    assert cache.update(5, ("k",), started) is None  # it already took that segment
    cache.store_update(6, ("k",), b"newer", (), 1)
    assert cache.update(5, ("k",), started) is None and cache.update(6, ("k",), fresh) == (b"newer", 1)
    for i in range(MAX_UPDATES + 4):
        cache.store_update(6, ("other", i), b"x", (), 1)
    assert len(cache.updates) == MAX_UPDATES


def test_zlib_clients_out_of_step_converge_with_history() -> None:
    """Zlib clients in step share one compressor's history. One that skips frames gets its own
    exact update; the next frame all of them take the same bytes again (without history, once),
    and then with the history: the text repeats every other frame, and a repeat costs a fraction
    of what the history-less frame did."""
    width, height = 64, 32  # 8 KiB a frame at 32 bpp: two frames back is inside zlib's window

    def frame(t: int) -> np.ndarray:
        return text_like(width, height, seed=t % 2)

    async def step(display: Any, clients: list[RawClient], t: int) -> list[bytes]:
        await _in_step(display, clients)
        display.publish(frame(t))
        updates = [await client.update() for client in clients]
        for client in clients:
            assert np.array_equal(client.screen, frame(t))
        return updates

    async def scenario() -> None:
        display = await rfb.serve(width, height, port=None, vnc_port=0)
        clients: list[RawClient] = []
        try:
            display.publish(frame(0))
            await _connect(display, clients, 3, Encoding.ZLIB)
            for t in range(1, 6):
                updates = await step(display, clients, t)
                if t >= 2:  # each client's first shared update opened its stream
                    assert updates[0] == updates[1] == updates[2], t
            for t in (6, 7):  # client 1 does not ask
                await step(display, [clients[0], clients[2]], t)
            clients[1].request()
            await clients[1].update()  # it catches up on its own, exactly
            assert np.array_equal(clients[1].screen, frame(7))
            sizes = {}
            for t in range(8, 12):
                updates = await step(display, clients, t)
                assert updates[0] == updates[1] == updates[2], t
                sizes[t] = len(updates[0])
            assert sizes[10] < sizes[8] * 0.7 and sizes[11] <= sizes[9], sizes
        finally:
            await _close(display, clients)

    run_async(scenario(), timeout=60)
