from __future__ import annotations

import struct
import zlib

import pytest

from pdum.rfb.protocol import ProtocolError
from pdum.rfb.protocol import clipboard as xclip
from pdum.rfb.protocol import messages as m


def test_provide_roundtrip_utf8_and_line_ends() -> None:
    payload = xclip.provide("a\nb ☃")
    (flags,) = struct.unpack(">I", payload[:4])
    assert flags == xclip.ACTION_PROVIDE | xclip.FORMAT_TEXT
    inner = zlib.decompress(payload[4:])
    assert inner == struct.pack(">I", 9) + "a\r\nb ☃".encode() + b"\0"
    msg = xclip.parse(payload, 1 << 20)
    assert msg.action == xclip.ACTION_PROVIDE and msg.text == "a\nb ☃"


def test_caps_and_simple_actions() -> None:
    msg = xclip.parse(
        struct.pack(">II", xclip.ACTION_CAPS | xclip.FORMAT_TEXT | xclip.ACTION_NOTIFY, 5000), 100
    )
    assert msg.action == xclip.ACTION_CAPS and msg.sizes == (5000,)
    assert xclip.parse(xclip.request(), 100).action == xclip.ACTION_REQUEST
    assert xclip.parse(xclip.notify(True), 100).formats == xclip.FORMAT_TEXT


def test_provide_bomb_is_bounded() -> None:
    bomb = struct.pack(">I", xclip.ACTION_PROVIDE | xclip.FORMAT_TEXT) + zlib.compress(
        struct.pack(">I", 50_000_000) + b"a" * 50_000_000
    )
    msg = xclip.parse(bomb, 1 << 20)  # inflates at most the limit, then drops the text
    assert msg.action == xclip.ACTION_PROVIDE and msg.text is None and msg.dropped == 50_000_000


def test_oversize_provide_is_dropped_not_fatal() -> None:
    # noVNC answers our Request with the whole clipboard, whatever size our Caps announced.
    msg = xclip.parse(xclip.provide("x" * 101), 100)
    assert msg.action == xclip.ACTION_PROVIDE and msg.text is None and msg.dropped == 102
    assert xclip.parse(xclip.provide("x" * 99), 100).text == "x" * 99


@pytest.mark.parametrize("data", [b"", b"\0\0", struct.pack(">I", xclip.ACTION_CAPS | 0xFFFF)])
def test_malformed(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        xclip.parse(data, 100)


def test_extended_mouse_buttons_framing() -> None:
    msg = struct.pack(">BBHHB", 5, 0x80 | 0x01, 3, 4, 0x01)
    assert m.parse_client_message(msg[:6], extended_mouse=True) is None
    assert m.parse_client_message(msg, extended_mouse=True) == (m.PointerEvent(0x81, 3, 4), 7)
    assert m.parse_client_message(msg, extended_mouse=False) == (m.PointerEvent(0x81, 3, 4), 6)
