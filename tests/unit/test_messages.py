from __future__ import annotations

import struct

import pytest

from pdum.rfb.protocol import SERVER_DEFAULT, ProtocolError
from pdum.rfb.protocol import messages as m


def parse_all(data: bytes) -> list[object]:
    out = []
    buf = bytearray(data)
    while buf:
        parsed = m.parse_client_message(buf)
        assert parsed is not None, "incomplete"
        msg, size = parsed
        del buf[:size]
        out.append(msg)
    return out


def test_every_client_message() -> None:
    data = (
        b"\x00\x00\x00\x00" + SERVER_DEFAULT.pack()
        + struct.pack(">BxHiii", 2, 3, 6, 0, -223)
        + struct.pack(">BBHHHH", 3, 1, 1, 2, 30, 40)
        + struct.pack(">BBxxI", 4, 1, 0x61)
        + struct.pack(">BBHH", 5, 0b101, 10, 20)
        + struct.pack(">BxxxI", 6, 5) + b"hello"
        + struct.pack(">BxxxiI", 6, -4, 0x10000001)[:8] + b"\x10\x00\x00\x01"
        + struct.pack(">BBHHHH", 150, 1, 0, 0, 320, 240)
        + struct.pack(">BxxxIB", 248, 0x80000000, 2) + b"ab"
        + struct.pack(">BxHHBx", 251, 640, 480, 1) + struct.pack(">IHHHHI", 7, 0, 0, 640, 480, 0)
        + struct.pack(">BBHII", 255, 0, 1, 0x61, 0x1E)
    )  # fmt: skip
    msgs = parse_all(data)
    assert msgs == [
        m.SetPixelFormat(SERVER_DEFAULT),
        m.SetEncodings((6, 0, -223)),
        m.FramebufferUpdateRequest(True, 1, 2, 30, 40),
        m.KeyEvent(True, 0x61),
        m.PointerEvent(5, 10, 20),
        m.ClientCutText(b"hello"),
        m.ClientCutText(b"\x10\x00\x00\x01", extended=True),
        m.EnableContinuousUpdates(True, 0, 0, 320, 240),
        m.Fence(0x80000000, b"ab"),
        m.SetDesktopSize(640, 480, (m.Screen(7, 0, 0, 640, 480, 0),)),
        m.QemuExtendedKeyEvent(True, 0x61, 0x1E),
    ]


def test_incremental_parse_needs_whole_message() -> None:
    data = struct.pack(">BxHiii", 2, 3, 6, 0, -223)
    for cut in range(len(data)):
        assert m.parse_client_message(data[:cut]) is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x09", "unknown client message type 9"),
        (struct.pack(">BxH", 2, 65535) + b"\0\0\0\0", "65535 encodings"),
        (struct.pack(">BxxxI", 6, 2**31 - 1), "ClientCutText"),
        (struct.pack(">BxxxIB", 248, 0, 65), "Fence payload"),
        (struct.pack(">BxHHBx", 251, 640, 480, 0), "0 screens"),
        (struct.pack(">BxHHBx", 251, 640, 480, 255), "255 screens"),
        (b"\xff\x01", "QEMU"),
    ],
)
def test_hostile_messages_rejected_early(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        m.parse_client_message(data)


def test_server_messages() -> None:
    assert m.framebuffer_update_header(2) == b"\x00\x00\x00\x02"
    assert m.rect_header(1, 2, 3, 4, -223) == struct.pack(">HHHHi", 1, 2, 3, 4, -223)
    assert m.server_cut_text(b"hi") == b"\x03\0\0\0\0\0\0\x02hi"
    assert m.bell() == b"\x02"
    assert m.server_fence(1, b"x") == b"\xf8\0\0\0\0\0\0\x01\x01x"
    assert (
        m.server_init(2, 3, SERVER_DEFAULT, b"n") == b"\0\x02\0\x03" + SERVER_DEFAULT.pack() + b"\0\0\0\x01n"
    )
