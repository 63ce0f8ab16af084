"""Cursor, DesktopName, QEMU-key and ExtendedMouseButtons pseudo-rectangles on the wire."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.cursor import CursorShape, default_cursor
from pdum.rfb.protocol import SERVER_DEFAULT
from pdum.rfb.protocol.messages import Encoding
from tests.support import run_async


def test_cursor_rect_layout() -> None:
    rgba = np.zeros((2, 9, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[1, 8] = (0, 0, 255, 200)
    data = CursorShape.from_user(rgba, (8, 1)).rect(SERVER_DEFAULT)
    x, y, w, h, enc = struct.unpack(">HHHHi", data[:12])
    assert (x, y, w, h, enc) == (8, 1, 9, 2, Encoding.CURSOR)
    pixels, mask = data[12 : 12 + 9 * 2 * 4], data[12 + 72 :]
    assert pixels[:4] == bytes([0, 0, 255, 0])  # red in xRGB little-endian
    assert mask == bytes([0b10000000, 0, 0, 0b10000000])  # rows padded to 2 bytes, MSB first
    with pytest.raises(ValueError):
        CursorShape.from_user(rgba, (9, 0))
    arrow, hotspot = default_cursor()
    assert arrow[..., 3].any() and hotspot == (0, 0)


async def _read_update(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """One FramebufferUpdate: (encoding, header+payload) for each pseudo rect; data rects skipped."""
    header = await asyncio.wait_for(reader.readexactly(4), 5)
    assert header[0] == 0
    rects = []
    for _ in range(struct.unpack(">xxH", header)[0]):
        head = await reader.readexactly(12)
        x, y, w, h, enc = struct.unpack(">HHHHi", head)
        if enc == Encoding.RAW:
            await reader.readexactly(w * h * 4)
        elif enc == Encoding.CURSOR:
            body = await reader.readexactly(w * h * 4 + (w + 7) // 8 * h)
            rects.append((enc, head + body))
        elif enc == Encoding.DESKTOP_NAME:
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            rects.append((enc, head + await reader.readexactly(n)))
        elif enc == Encoding.EXTENDED_DESKTOP_SIZE:
            count = (await reader.readexactly(4))[0]
            await reader.readexactly(16 * count)
            rects.append((enc, head))
        else:
            rects.append((enc, head))
    return rects


def test_pseudo_rects_on_announce_and_change() -> None:
    async def scenario() -> None:
        display = await rfb.serve(16, 8, port=None, name="first")
        display.publish(np.zeros((8, 16, 3), dtype=np.uint8))
        reader, writer = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        await reader.readexactly(12)
        writer.write(b"RFB 003.008\n\x01\x01")
        await reader.readexactly(2 + 4 + 24 + len("first"))
        encodings = [0, Encoding.CURSOR, Encoding.DESKTOP_NAME, Encoding.QEMU_EXTENDED_KEY,
                     Encoding.EXTENDED_MOUSE_BUTTONS]  # fmt: skip
        writer.write(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
        writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, 16, 8))
        first = dict(await _read_update(reader))
        assert set(first) == {Encoding.CURSOR, Encoding.DESKTOP_NAME, Encoding.QEMU_EXTENDED_KEY,
                              Encoding.EXTENDED_MOUSE_BUTTONS}  # fmt: skip
        assert first[Encoding.DESKTOP_NAME].endswith(b"first")
        # a name change and a new cursor arrive with the next update
        display.name = "second"
        display.set_cursor(np.full((3, 5, 4), 255, dtype=np.uint8), (2, 1))
        writer.write(struct.pack(">BBHHHH", 3, 1, 0, 0, 16, 8))
        second = dict(await _read_update(reader))
        assert second[Encoding.DESKTOP_NAME].endswith(b"second")
        assert struct.unpack(">HHHHi", second[Encoding.CURSOR][:12]) == (2, 1, 5, 3, Encoding.CURSOR)
        # with ExtendedMouseButtons acknowledged, a 7-byte pointer event carries back/forward
        writer.write(struct.pack(">BBHHB", 5, 0x80, 3, 4, 0x01))  # button 8 (back) down
        await asyncio.sleep(0.1)
        events = [e.event for e in display.poll_events()]
        assert {"type": "pointer_down", "x": 3, "y": 4, "button": 3, "buttons": 8, "modifiers": []} in events
        writer.close()
        await display.aclose()

    run_async(scenario())
