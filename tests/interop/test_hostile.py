"""The hostile corpus beyond test_malformed.py: each attack closes only its own connection, is
counted in ``metrics()["violations"]`` and logged once at WARNING with the peer, while a
libvncclient client keeps receiving exact frames."""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.testing import noise

from ..support import LoopThread, recv_all, recv_exactly, rfb_handshake, wait_until
from .clients import VncDump, in_client_format

PF = struct.Struct(">BBBBHHHBBB3x")


def _rfb_attack(payload: bytes) -> Callable[[socket.socket], bytes]:
    def attack(sock: socket.socket) -> bytes:
        rfb_handshake(sock)
        sock.sendall(payload)
        return recv_all(sock, reset_ok=True)

    return attack


def _set_pixel_format(*fields: int) -> bytes:
    return b"\x00\x00\x00\x00" + PF.pack(*fields)


def _ws_upgrade(sock: socket.socket) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: binary\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk
        response += chunk
    assert response.startswith(b"HTTP/1.1 101")


def _ws_frame_header(opcode: int, length: int, mask: bytes) -> bytes:
    if length < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + mask


def _ws_close_code(data: bytes) -> int | None:
    """The status code of the close frame among the server's (unmasked) frames."""
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = struct.unpack(">H", data[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack(">Q", data[2:10])[0], 10
        if opcode == 8:
            return int(struct.unpack(">H", data[start : start + 2])[0])
        data = data[start + length :]
    return None


def ws_text_frame(sock: socket.socket) -> bytes:
    _ws_upgrade(sock)
    payload = b"RFB 003.008\n"
    mask = os.urandom(4)
    sock.sendall(
        _ws_frame_header(1, len(payload), mask) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )
    return recv_all(sock, reset_ok=True)


SENT_OF_HUGE_FRAME = 256 * 1024


def ws_100_mib_frame(sock: socket.socket) -> bytes:
    """The header of a 100 MiB binary frame and 256 KiB of it: the server must close at once."""
    _ws_upgrade(sock)
    sock.sendall(_ws_frame_header(2, 100 << 20, b"\0\0\0\0"))
    try:
        sock.sendall(bytes(SENT_OF_HUGE_FRAME))
    except (BrokenPipeError, ConnectionResetError):
        pass  # already closed by the server
    return recv_all(sock, reset_ok=True)


def http_on_ws_port(sock: socket.socket) -> bytes:
    sock.sendall(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
    return recv_all(sock, reset_ok=True)


def http_on_vnc_port(sock: socket.socket) -> bytes:
    sock.recv(12)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return recv_all(sock, reset_ok=True)


def stops_mid_message(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 320, 240) + b"\x02\x00\x00\x09\x00\x00\x00")
    return recv_all(sock, reset_ok=True)  # the server times the half-sent SetEncodings out


#: name -> (attack, port ("vnc" or "ws"), violation kind, text expected in the WARNING line)
CASES: dict[str, tuple[Callable[[socket.socket], bytes], str, str, str]] = {
    "pf_colour_map": (_rfb_attack(_set_pixel_format(32, 24, 0, 0, 255, 255, 255, 16, 8, 0)), "vnc",
                      "protocol_error", "colour-map"),
    "pf_zero_max": (_rfb_attack(_set_pixel_format(32, 24, 0, 1, 0, 255, 255, 16, 8, 0)), "vnc",
                    "protocol_error", "red-max is zero"),
    "pf_shift_past_bpp": (_rfb_attack(_set_pixel_format(16, 16, 0, 1, 31, 63, 31, 12, 5, 0)), "vnc",
                          "protocol_error", "does not fit 16 bpp"),
    "pf_shift_255": (_rfb_attack(_set_pixel_format(32, 24, 0, 1, 255, 255, 255, 255, 8, 0)), "vnc",
                     "protocol_error", "does not fit 32 bpp"),
    "pf_depth_0": (_rfb_attack(_set_pixel_format(32, 0, 0, 1, 255, 255, 255, 16, 8, 0)), "vnc",
                   "protocol_error", "depth 0"),
    "desktop_size_0_screens": (_rfb_attack(struct.pack(">BxHHBx", 251, 320, 240, 0)), "vnc",
                               "protocol_error", "0 screens"),
    "desktop_size_255_screens": (_rfb_attack(struct.pack(">BxHHBx", 251, 320, 240, 255) + bytes(64)), "vnc",
                                 "limit_exceeded", "255 screens"),
    "fence_payload_200": (_rfb_attack(struct.pack(">B3xIB", 248, 1 << 31, 200) + bytes(200)), "vnc",
                          "protocol_error", "Fence payload of 200"),
    "too_many_encodings": (_rfb_attack(struct.pack(">BxH", 2, 5000)), "vnc", "limit_exceeded", "5000"),
    "ws_text_frame": (ws_text_frame, "ws", "protocol_error", "text WebSocket frame"),
    "ws_100_mib_frame": (ws_100_mib_frame, "ws", "limit_exceeded", "WebSocket message over"),
    "http_garbage_on_ws_port": (http_on_ws_port, "ws", "protocol_error", "opening handshake"),
    "http_on_vnc_port": (http_on_vnc_port, "vnc", "protocol_error", "malformed ProtocolVersion"),
    "stops_mid_message": (stops_mid_message, "vnc", "message_timeout", "unfinished"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_client_is_closed_counted_and_logged_once(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.INFO)
    display = served.serve(320, 240, port=0, limits=rfb.Limits(message_timeout=0.5))
    frame = noise(320, 240, seed=71)
    served.publish(display, frame)
    good = VncDump(vncdump_exe, display.vnc_port, "zlib", 32, tmp_path)
    try:
        good.wait_for(in_client_format(frame, 32))
        attack, where, kind, expected = CASES[case]
        before = served.call(display.metrics)["violations"]
        caplog.clear()
        port = display.vnc_port if where == "vnc" else display.port
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            host, local_port = sock.getsockname()[:2]
            peer = f"{host}:{local_port}"
            reply = attack(sock)  # returns once the server has closed the connection
        elapsed = time.monotonic() - started
        # the count may land just after the client saw the close
        wait_until(lambda: served.call(display.metrics)["violations"][kind] == before[kind] + 1, timeout=3)
        after = served.call(display.metrics)["violations"]
        assert sum(after.values()) == sum(before.values()) + 1, after
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert peer in warnings[0] and kind in warnings[0] and expected in warnings[0], warnings
        if case == "ws_100_mib_frame":
            # closed from the frame header, well before 100 MiB: "message too big"
            assert _ws_close_code(reply) == 1009
            assert elapsed < 3
        if case == "ws_text_frame":
            assert _ws_close_code(reply) == 1003
        # only that client was closed: the libvncclient client still gets exact new frames
        after_frame = np.ascontiguousarray(frame[::-1, ::-1])
        served.publish(display, after_frame)
        good.wait_for(in_client_format(after_frame, 32))
        assert display.client_count == 1
    finally:
        good.close()


def test_update_requests_outside_the_framebuffer_are_clipped(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests partly or wholly outside the framebuffer are clipped, never an error."""
    caplog.set_level(logging.INFO)
    display = served.serve(320, 240)
    frame = noise(320, 240, seed=72)
    served.publish(display, frame)
    good = VncDump(vncdump_exe, display.vnc_port, "zlib", 32, tmp_path)
    try:
        good.wait_for(in_client_format(frame, 32))
        with socket.create_connection(("127.0.0.1", display.vnc_port), timeout=5) as sock:
            rfb_handshake(sock)
            sock.sendall(struct.pack(">BxH4i", 2, 4, 0, -223, -308, 0))  # Raw + DesktopSize + EDS
            for x, y, w, h in [(60000, 60000, 65535, 65535), (320, 0, 10, 10), (0, 240, 10, 10)]:
                sock.sendall(struct.pack(">BBHHHH", 3, 0, x, y, w, h))
            sock.sendall(struct.pack(">BBHHHH", 3, 0, 300, 200, 65535, 65535))  # clipped to 20x40
            # the first update may carry the ExtendedDesktopSize rectangle first
            pixels = 0
            while pixels < 20 * 40:
                count = struct.unpack(">xxH", recv_exactly(sock, 4))[0]
                for _ in range(count):
                    x, y, w, h, enc = struct.unpack(">HHHHi", recv_exactly(sock, 12))
                    if enc == 0:
                        assert x >= 300 and y >= 200 and x + w <= 320 and y + h <= 240
                        recv_exactly(sock, w * h * 4)
                        pixels += w * h
                    elif enc == -308:
                        recv_exactly(sock, 16 * recv_exactly(sock, 4)[0])
            assert pixels == 20 * 40
            assert display.client_count == 2
        assert sum(served.call(display.metrics)["violations"].values()) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        after = np.ascontiguousarray(frame[::-1])
        served.publish(display, after)
        good.wait_for(in_client_format(after, 32))
    finally:
        good.close()


def test_shift_past_depth_within_bpp_is_served(served: LoopThread) -> None:
    """Channels shifted past the depth but inside bits-per-pixel are still a valid true-colour
    format (TigerVNC accepts them too): the client gets exactly those bits."""
    display = served.serve(64, 64)
    served.publish(display, np.full((64, 64, 3), (255, 0, 0), dtype=np.uint8))
    with socket.create_connection(("127.0.0.1", display.vnc_port), timeout=5) as sock:
        rfb_handshake(sock)
        sock.sendall(_set_pixel_format(32, 8, 0, 1, 255, 255, 255, 24, 16, 8))  # depth 8, shifts to 24
        sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1))
        assert struct.unpack(">xxH", recv_exactly(sock, 4))[0] == 1
        assert struct.unpack(">HHHHi", recv_exactly(sock, 12)) == (0, 0, 1, 1, 0)
        assert struct.unpack("<I", recv_exactly(sock, 4))[0] == 0xFF << 24
    assert sum(served.call(display.metrics)["violations"].values()) == 0
