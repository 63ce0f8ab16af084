"""CopyRect: the user's copies (validation, pixel verification), scroll detection, the per-client
rule (which copies a client that skipped frames may still get), and the bytes on the wire, with
small RFB clients written here that apply Raw and CopyRect rectangles to a NumPy framebuffer."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.copyrect import (
    Copy,
    detect_vertical_scroll,
    find_copies,
    parse_copies,
    tiles_outside,
    usable_copies,
)
from pdum.rfb.encodings import ENCODERS, EncodeContext
from pdum.rfb.encodings.copyrect import copyrect_rect
from pdum.rfb.framebuffer import Damage, Framebuffer, changed_pixels
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.protocol.pixelformat import SERVER_DEFAULT
from pdum.rfb.testing import noise, solid
from tests.scrolling import scrolling_steps
from tests.support import run_async


def scrolled(frame: np.ndarray, d: int, seed: int) -> np.ndarray:
    """``frame``'s content moved up by ``d`` rows (down if negative), new noise where it uncovers."""
    h, w = frame.shape[:2]
    out = noise(w, h, seed)
    if d >= 0:
        out[: h - d] = frame[d:]
    else:
        out[-d:] = frame[: h + d]
    return out


# -- the wire format ---------------------------------------------------------------------------------
def test_copyrect_rect_bytes() -> None:
    # header x=5 y=6 w=3 h=4 encoding 1, then src-x=1 src-y=2
    assert copyrect_rect(1, 2, 3, 4, 5, 6) == bytes.fromhex("0005 0006 0003 0004 00000001 0001 0002")
    assert copyrect_rect(*Copy(640, 0, 16, 8, 0, 480))[-4:] == b"\x02\x80\x00\x00"


# -- 1. validation -----------------------------------------------------------------------------------
def test_parse_copies() -> None:
    assert parse_copies([(0, 10, 100, 20, 0, 0), [np.int64(1), 2, 3, 4, 5, 6]], 100, 50) == (  # type: ignore[list-item]
        Copy(0, 10, 100, 20, 0, 0),
        Copy(1, 2, 3, 4, 5, 6),
    )
    # empty and onto-itself copies mean nothing
    assert parse_copies([(0, 0, 0, 5, 1, 1), (3, 3, 5, 5, 3, 3)], 100, 50) == ()
    with pytest.raises(ValueError, match="source is outside the 100x50 frame"):
        parse_copies([(0, 40, 10, 11, 0, 0)], 100, 50)
    with pytest.raises(ValueError, match="destination is outside"):
        parse_copies([(0, 0, 10, 10, 95, 0)], 100, 50)
    with pytest.raises(ValueError, match="negative"):
        parse_copies([(0, -1, 10, 10, 0, 0)], 100, 50)
    with pytest.raises(ValueError, match="src_x, src_y, width, height, dst_x, dst_y"):
        parse_copies([(0, 0, 10, 10)], 100, 50)
    with pytest.raises(TypeError, match="integers"):
        parse_copies([(0, 0.5, 10, 10, 0, 0)], 100, 50)  # type: ignore[list-item]


# -- 2. verification and detection -------------------------------------------------------------------
def test_find_copies_keeps_only_what_holds() -> None:
    old = noise(200, 150, seed=1)
    new = scrolled(old, 30, seed=2)
    diff = changed_pixels(old, new)
    good = Copy(0, 30, 200, 120, 0, 0)
    wrong = Copy(0, 31, 200, 119, 0, 0)  # off by one row
    assert find_copies(old, new, diff, [good], False) == (good,)
    assert find_copies(old, new, diff, [wrong], False) == ()
    # a copy whose destination did not change at all is useless
    same = noise(200, 150, seed=1)
    assert find_copies(old, same, changed_pixels(old, same), [good], False) == ()
    # the second copy reads rows the first one writes: applied in order it would read new pixels
    top, bottom = Copy(0, 30, 200, 30, 0, 0), Copy(0, 60, 200, 60, 0, 30)
    assert find_copies(old, new, diff, [bottom, top], False) == (bottom,)  # top reads rows 30..60
    assert find_copies(old, new, diff, [top, bottom], False) == (top, bottom)


@pytest.mark.parametrize("d", [1, 7, 64, 100, -1, -13, -64, -120])
def test_detect_vertical_scroll(d: int) -> None:
    old = noise(300, 200, seed=3)
    old[:20] = 40  # a static solid header: not part of the scroll
    new = old.copy()
    new[20:] = scrolled(old[20:], d, seed=4)
    found = detect_vertical_scroll(old, new, changed_pixels(old, new))
    rows = 180 - abs(d)
    assert found == [Copy(0, 20 + max(d, 0), 300, rows, 0, 20 + max(-d, 0))]
    assert find_copies(old, new, changed_pixels(old, new), (), True) == tuple(found)


def test_detect_finds_nothing_in_unrelated_frames() -> None:
    old, new = noise(300, 200, seed=5), noise(300, 200, seed=6)
    assert detect_vertical_scroll(old, new, changed_pixels(old, new)) == []
    flat, flat2 = solid(300, 200, (1, 2, 3)), solid(300, 200, (3, 2, 1))
    assert detect_vertical_scroll(flat, flat2, changed_pixels(flat, flat2)) == []


def test_detection_is_cheap_next_to_an_encode() -> None:
    """Detection on a scrolled 1280x720 frame costs a small fraction of a Zlib encode of it."""
    old = noise(1280, 720, seed=7)
    new = scrolled(old, 17, seed=8)
    diff = changed_pixels(old, new)

    def best(fn: Callable[[], object], n: int = 3) -> float:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    detect = best(lambda: find_copies(old, new, diff, (), True))
    encode = best(lambda: ENCODERS[Encoding.ZLIB].encode(new, SERVER_DEFAULT, EncodeContext()), 2)
    assert find_copies(old, new, diff, (), True)
    assert detect < encode / 5, (detect, encode)


# -- 3. the per-client rule --------------------------------------------------------------------------
def test_usable_copies_cut_to_clean_source_rows() -> None:
    copy = Copy(10, 40, 100, 150, 10, 20)  # source rows 40..190: tile rows 0..2
    dirty = np.zeros((4, 3), dtype=bool)
    assert usable_copies([copy], dirty) == (copy,)
    dirty[1, 2] = True  # right of the source (columns 10..110 are tile columns 0..1)
    assert usable_copies([copy], dirty) == (copy,)
    dirty[1, 1] = True  # a dirty tile in source tile row 1 (rows 64..128)
    assert usable_copies([copy], dirty) == (Copy(10, 40, 100, 24, 10, 20), Copy(10, 128, 100, 62, 10, 108))
    # moving down: the lower band goes first, so it does not read what the upper one wrote
    down = Copy(10, 20, 100, 150, 10, 40)  # source rows 20..170
    assert usable_copies([down], dirty) == (Copy(10, 128, 100, 42, 10, 148), Copy(10, 20, 100, 44, 10, 40))
    dirty[:, 0] = True  # every source tile row dirty
    assert usable_copies([copy], dirty) == ()
    # a copy reading what an earlier one wrote is left out (find_copies already prevents this;
    # usable_copies checks again because the client applies exactly this list in order)
    first, second = Copy(0, 64, 64, 64, 0, 0), Copy(0, 0, 64, 64, 64, 0)
    assert usable_copies([first, second], np.zeros((2, 2), dtype=bool)) == (first,)


def test_tiles_outside_keeps_other_damage_in_the_same_tiles() -> None:
    old = noise(128, 128, seed=9)
    new = scrolled(old, 64, seed=10)  # rows 0..64 are old rows 64..128; rows 64..128 are new
    fb = Framebuffer(128, 128)
    fb.update(old)
    whole = parse_copies([(0, 64, 128, 64, 0, 0)], 128, 128)
    damage = fb.update(new, whole)
    assert damage.copies == whole
    assert damage.tiles.tolist() == [[True, True], [True, True]]
    assert tiles_outside(damage, damage.copies).tolist() == [[False, False], [True, True]]
    # a narrower copy: the changed pixels right of it still dirty the tile they share with it
    fb.update(old)
    partial = parse_copies([(0, 64, 100, 64, 0, 0)], 128, 128)
    damage = fb.update(new, partial)
    assert tiles_outside(damage, damage.copies).tolist() == [[False, True], [True, True]]
    # one pixel that differs from its source breaks the copy
    fb.update(old)
    broken = new.copy()
    broken[0, 100] = 255 - old[64, 100]
    assert fb.update(broken, whole).copies == ()


# -- the session, over a socket ----------------------------------------------------------------------
class MiniClient:
    """An RFB 3.8 client announcing ``encodings`` that applies Raw and CopyRect rectangles."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.fb = np.zeros((0, 0, 3), dtype=np.uint8)
        self.rects: list[tuple[int, int, int, int, int]] = []  # every rect header received
        self.raw_bytes: list[bytes] = []  # every update, as received

    @classmethod
    async def connect(cls, port: int | None, encodings: Sequence[int]) -> MiniClient:
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readexactly(12) == b"RFB 003.008\n"
        writer.write(b"RFB 003.008\n")
        await reader.readexactly((await reader.readexactly(1))[0])
        writer.write(b"\x01")
        assert await reader.readexactly(4) == b"\0\0\0\0"
        writer.write(b"\x01")
        header = await reader.readexactly(24)
        await reader.readexactly(struct.unpack(">I", header[20:])[0])
        client = cls(reader, writer)
        w, h = struct.unpack(">HH", header[:4])
        client.fb = np.zeros((h, w, 3), dtype=np.uint8)
        writer.write(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
        return client

    def request(self, incremental: bool = True) -> None:
        h, w = self.fb.shape[:2]
        self.writer.write(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, w, h))

    async def read_update(self) -> list[tuple[int, int, int, int, int]]:
        """Read and apply one FramebufferUpdate; return its rect headers (x, y, w, h, encoding)."""
        head = await self.reader.readexactly(4)
        assert head[0] == 0, head
        data = [head]
        rects = []
        for _ in range(struct.unpack(">xxH", head)[0]):
            raw = await self.reader.readexactly(12)
            x, y, w, h, enc = struct.unpack(">HHHHi", raw)
            data.append(raw)
            if enc == Encoding.COPY_RECT:
                src = await self.reader.readexactly(4)
                data.append(src)
                sx, sy = struct.unpack(">HH", src)
                self.fb[y : y + h, x : x + w] = self.fb[sy : sy + h, sx : sx + w].copy()
            else:
                assert enc == Encoding.RAW, enc
                pixels = await self.reader.readexactly(w * h * 4)
                data.append(pixels)
                bgrx = np.frombuffer(pixels, dtype=np.uint8).reshape(h, w, 4)
                self.fb[y : y + h, x : x + w] = bgrx[..., 2::-1]
            rects.append((x, y, w, h, enc))
        self.rects.extend(rects)
        self.raw_bytes.append(b"".join(data))
        return rects

    async def update(self, incremental: bool = True) -> list[tuple[int, int, int, int, int]]:
        self.request(incremental)
        return await asyncio.wait_for(self.read_update(), 5)

    def close(self) -> None:
        self.writer.close()


def test_update_bytes_copy_first_then_the_rest() -> None:
    async def scenario() -> None:
        display = await rfb.serve(128, 128, port=None)
        frame0 = noise(128, 128, seed=11)
        display.publish(frame0)
        a = await MiniClient.connect(display.vnc_port, [Encoding.COPY_RECT, Encoding.RAW])
        b = await MiniClient.connect(display.vnc_port, [Encoding.COPY_RECT, Encoding.RAW])
        plain = await MiniClient.connect(display.vnc_port, [Encoding.RAW])
        for c in (a, b, plain):
            assert await c.update(incremental=False) == [(0, 0, 128, 128, 0)]
        frame1 = scrolled(frame0, 64, seed=12)
        display.publish(frame1, copies=[(0, 64, 128, 64, 0, 0)])
        update = await a.update()
        assert update == [(0, 0, 128, 64, 1), (0, 64, 128, 64, 0)]
        assert a.raw_bytes[-1][:20] == bytes.fromhex("00000002 0000 0000 0080 0040 00000001 0000 0040")
        assert np.array_equal(a.fb, frame1)
        # no CopyRect for a client that did not announce it: the destination is plain damage
        assert await plain.update() == [(0, 0, 128, 128, 0)]
        assert np.array_equal(plain.fb, frame1)
        # b skipped frame1: it has frame1's copy queued, and rows 64..128 of frame1 never reached
        # it, so frame2's copy (which reads them) is refused and its destination sent as pixels.
        frame2 = scrolled(frame1, 64, seed=13)
        display.publish(frame2, copies=[(0, 64, 128, 64, 0, 0)])
        assert await b.update() == [(0, 0, 128, 64, 1), (0, 0, 128, 128, 0)]
        assert np.array_equal(b.fb, frame2)
        assert await a.update() == [(0, 0, 128, 64, 1), (0, 64, 128, 64, 0)]
        assert np.array_equal(a.fb, frame2)
        stats = display.stats["clients"]
        assert [stats[i]["copyrects_sent"] for i in sorted(stats)] == [2, 1, 0]
        for c in (a, b, plain):
            c.close()
        await display.aclose()

    run_async(scenario())


def test_skipping_client_gets_the_clean_part_of_later_copies() -> None:
    """A client that skipped a scroll still gets the parts of the next copy it holds the source of."""

    async def scenario() -> None:
        display = await rfb.serve(256, 256, port=None)
        frame0 = noise(256, 256, seed=14)
        display.publish(frame0)
        slow = await MiniClient.connect(display.vnc_port, [Encoding.COPY_RECT, Encoding.RAW])
        await slow.update(incremental=False)
        frame1 = scrolled(frame0, 10, seed=15)
        display.publish(frame1, copies=[(0, 10, 256, 246, 0, 0)])
        frame2 = scrolled(frame1, 10, seed=16)
        display.publish(frame2, copies=[(0, 10, 256, 246, 0, 0)])
        # frame1's new rows 246..256 sit in tile row 3, which slow never got: frame2's copy is cut
        # to source rows 10..192 (clean tile rows 0..2); destination rows 182..246 are pixels.
        assert await slow.update() == [
            (0, 0, 256, 246, 1),
            (0, 0, 256, 182, 1),
            (0, 128, 256, 128, 0),
        ]
        assert np.array_equal(slow.fb, frame2)
        slow.close()
        await display.aclose()

    run_async(scenario())


def test_resize_and_wrong_copies() -> None:
    async def scenario() -> None:
        display = await rfb.serve(128, 96, port=None)
        frame0 = noise(128, 96, seed=17)
        display.publish(frame0)
        client = await MiniClient.connect(display.vnc_port, [Encoding.COPY_RECT, Encoding.RAW])
        await client.update(incremental=False)
        with pytest.raises(ValueError, match="outside the 128x96 frame"):
            display.publish(frame0, copies=[(0, 0, 128, 96, 0, 1)])
        # a lie is dropped: the client still ends exact, without a CopyRect
        frame1 = scrolled(frame0, 5, seed=18)
        display.publish(frame1, copies=[(0, 6, 128, 90, 0, 0)])
        assert all(enc == 0 for *_, enc in await client.update())
        assert np.array_equal(client.fb, frame1)
        # a resize ignores copies (inside the new frame, so they pass validation)
        display.publish(noise(64, 48, seed=19), copies=[(0, 5, 64, 40, 0, 0)])
        assert display.server.sessions[1].copies == []
        assert display.stats["clients"][1]["copyrects_sent"] == 0
        client.close()
        await display.aclose()

    run_async(scenario())


def frame_key(frame: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).digest()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_schedules_every_update_is_exact(seed: int) -> None:
    """Model check: clients that ask at random paces (so some skip many frames, with copies queued
    across several publishes) hold, after every update, exactly a frame the server published."""

    async def scenario() -> None:
        rng = np.random.default_rng(seed)
        width, height = 200, 150
        steps = scrolling_steps(width, height, seed=seed) * 3
        display = await rfb.serve(width, height, port=None)
        display.publish(steps[0].frame)
        published = {frame_key(steps[0].frame)}
        encodings = [[Encoding.COPY_RECT, Encoding.RAW]] * 3 + [[Encoding.RAW]]
        clients = [await MiniClient.connect(display.vnc_port, e) for e in encodings]
        paces = [0.0, 0.002, 0.02, 0.005]  # seconds between an update and the next request
        stop = asyncio.Event()
        checked = [0] * len(clients)

        async def run_client(i: int) -> None:
            c = clients[i]
            await c.update(incremental=False)
            while not stop.is_set():
                await c.update()
                assert frame_key(c.fb) in published, f"client {i} holds a frame never published"
                checked[i] += 1
                await asyncio.sleep(paces[i] * rng.random())

        tasks = [asyncio.create_task(run_client(i)) for i in range(len(clients))]
        for n, step in enumerate(steps[1:]):
            frame = step.frame.copy()
            frame[:8, :16] = n % 256  # every frame differs: the clients' requests always get an answer
            published.add(frame_key(frame))
            choice = rng.integers(0, 3)  # the honest copies, scroll detection, or neither
            display.detect_scroll = choice == 1
            display.publish(frame, copies=step.copies if choice == 0 else None)
            await asyncio.sleep(0.004 * rng.random())
            if any(t.done() for t in tasks):
                break
        stop.set()
        final = steps[-1].frame.copy()
        final[:8, :16] = 255
        published.add(frame_key(final))
        display.publish(final)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for c in clients:
            if not np.array_equal(c.fb, final):
                await c.update()
            assert np.array_equal(c.fb, final)
        stats = display.stats["clients"]
        copyrects = [stats[i]["copyrects_sent"] for i in sorted(stats)]
        skipped = [stats[i]["frames_skipped"] for i in sorted(stats)]
        assert all(n > 0 for n in copyrects[:3]) and copyrects[3] == 0, copyrects
        assert skipped[2] > 0, skipped  # the slow one really skipped frames
        assert min(checked) > 0
        for c in clients:
            c.close()
        await display.aclose()

    run_async(scenario())


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_random_skips_each_update_equals_the_current_frame(seed: int) -> None:
    """Deterministic model check: after each publish every client asks with its own probability
    (the slow ones skip many frames and queue copies over several publishes), and every update
    leaves it holding exactly the current frame."""

    async def scenario() -> None:
        rng = np.random.default_rng(seed)
        width, height = 160, 320  # five tile rows: room for clean tiles next to dirty ones
        steps = scrolling_steps(width, height, seed=seed) * 4
        display = await rfb.serve(width, height, port=None)
        display.publish(steps[0].frame)
        with_copyrect = [Encoding.COPY_RECT, Encoding.RAW]
        clients = [
            await MiniClient.connect(display.vnc_port, e) for e in [with_copyrect] * 3 + [[Encoding.RAW]]
        ]
        odds = [1.0, 0.5, 0.15, 0.3]
        for c in clients:
            await c.update(incremental=False)
        for n, step in enumerate(steps[1:]):
            frame = step.frame  # each differs from the one before, so every request gets an answer
            choice = rng.integers(0, 3)  # the honest copies, scroll detection, or neither
            display.detect_scroll = choice == 1
            display.publish(frame, copies=step.copies if choice == 0 else None)
            for i, c in enumerate(clients):
                if rng.random() < odds[i] or n == len(steps) - 2:
                    await c.update()
                    assert np.array_equal(c.fb, frame), f"client {i} at step {n}"
        stats = display.stats["clients"]
        copyrects = [stats[i]["copyrects_sent"] for i in sorted(stats)]
        assert all(n > 0 for n in copyrects[:3]) and copyrects[3] == 0, copyrects
        for c in clients:
            c.close()
        await display.aclose()

    run_async(scenario())


def test_scroll_detection_backs_off_when_nothing_scrolls_and_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Content that never scrolls stops paying for detection (8 misses, then 1 frame in 8); the
    first scroll found brings detection back on every frame."""
    document = noise(64, 1000, seed=5)

    async def scenario() -> list[tuple[bool, bool]]:
        display = await rfb.serve(64, 128, port=None)
        calls: list[tuple[bool, bool]] = []  # (detection ran, a copy was found) per publish
        original = display._framebuffer.update

        def spy(frame: np.ndarray, copies: Sequence[Copy] = (), detect_scroll: bool = False) -> Damage:
            damage = original(frame, copies, detect_scroll)
            calls.append((detect_scroll, bool(damage.copies)))
            return damage

        monkeypatch.setattr(display._server, "copyrect_clients", lambda: True)
        monkeypatch.setattr(display._framebuffer, "update", spy)
        for i in range(24):  # unrelated frames: nothing to find
            display.publish(noise(64, 128, seed=100 + i))
        for k in range(20):  # a document scrolling by 4 rows a frame
            display.publish(document[4 * k : 4 * k + 128])
        await display.aclose()
        return calls

    calls = run_async(scenario())
    ran = [r for r, _ in calls]
    assert ran[:8] == [True] * 8  # before the backoff
    assert sum(ran[8:24]) == 2  # then one frame in 8
    first_hit = next(i for i, (r, found) in enumerate(calls) if found)
    assert 24 < first_hit <= 24 + 8  # the scroll is found at the next frame detection looks at
    assert all(r for r, _ in calls[first_hit:])  # ...and from then on every frame is looked at
    assert all(found for _, found in calls[first_hit:])
