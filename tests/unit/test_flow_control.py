"""Streams without write backpressure (widget comm, some ASGI servers) get no continuous updates,
so updates stay paced by the client's requests and nothing piles up in flight."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pdum.rfb as rfb
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import noise
from pdum.rfb.transports.comm import CommStream
from tests.support import run_async

ENCODINGS = [0, Encoding.CONTINUOUS_UPDATES, Encoding.FENCE]
CLIENT = (
    b"RFB 003.008\n\x01\x01"
    + struct.pack(f">BxH{len(ENCODINGS)}i", 2, len(ENCODINGS), *ENCODINGS)
    + struct.pack(">BBHHHH", 3, 0, 0, 0, 16, 8)
)


def _message_types(wire: bytes) -> list[int]:
    """Server message types after the handshake (Raw updates of a 16x8 display, fences, EndOfCU)."""
    name_len = struct.unpack(">I", wire[12 + 2 + 4 + 20 : 12 + 2 + 4 + 24])[0]
    pos, types = 12 + 2 + 4 + 24 + name_len, []
    while pos < len(wire):
        kind = wire[pos]
        types.append(kind)
        if kind == 0:
            (count,) = struct.unpack(">H", wire[pos + 2 : pos + 4])
            pos += 4
            for _ in range(count):
                _, _, w, h, enc = struct.unpack(">HHHHi", wire[pos : pos + 12])
                pos += 12 + (w * h * 4 if enc == 0 else 0)
        elif kind == 248:
            pos += 9 + wire[pos + 8]
        elif kind == 150:
            pos += 1
        else:
            raise AssertionError(f"unexpected server message {kind}")
    return types


def test_comm_stream_gets_no_continuous_updates_but_tcp_does() -> None:
    async def over_comm(display: rfb.Display) -> bytes:
        sent: list[bytes] = []

        def send(content: dict[str, Any], buffers: list[bytes] | None) -> None:
            sent.extend(buffers or [])

        stream = CommStream(send, peer="comm:test", tag="t")
        task = asyncio.get_running_loop().create_task(display.server.serve_stream(stream))
        stream.feed(CLIENT)
        await asyncio.sleep(0.2)
        stream.feed_eof()
        await asyncio.wait_for(task, 5)
        return b"".join(sent)

    async def over_tcp(display: rfb.Display) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", display.vnc_port)
        writer.write(CLIENT)
        await asyncio.sleep(0.2)
        writer.close()
        return await reader.read(1 << 16)

    async def scenario() -> tuple[bytes, bytes]:
        display = await rfb.serve(16, 8, port=None)
        display.publish(noise(16, 8))
        comm, tcp = await over_comm(display), await over_tcp(display)
        await display.aclose()
        return comm, tcp

    comm, tcp = run_async(scenario())
    assert 0 in _message_types(comm) and 150 not in _message_types(comm)
    assert 0 in _message_types(tcp) and 150 in _message_types(tcp)
