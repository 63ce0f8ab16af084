"""Hostile or broken clients are closed with a log line; a real client keeps getting frames."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pdum.rfb.testing import noise

from ..support import LoopThread, recv_all, rfb_handshake
from .clients import VncDump, in_client_format


def wrong_version(sock: socket.socket) -> bytes:
    sock.recv(12)
    sock.sendall(b"HELLO WORLD\n")
    return recv_all(sock)


def version_2(sock: socket.socket) -> bytes:
    sock.recv(12)
    sock.sendall(b"RFB 002.000\n")
    return recv_all(sock)


def unknown_security_type(sock: socket.socket) -> bytes:
    sock.recv(12)
    sock.sendall(b"RFB 003.008\n")
    count = sock.recv(1)[0]
    sock.recv(count)
    sock.sendall(b"\x63")  # 99: never offered
    return recv_all(sock)


def truncated_version(sock: socket.socket) -> bytes:
    sock.recv(12)
    sock.sendall(b"RFB 003.0")
    sock.shutdown(socket.SHUT_WR)
    return recv_all(sock)


def truncated_message(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(b"\x00\x00\x00")  # SetPixelFormat cut short
    sock.shutdown(socket.SHUT_WR)
    return recv_all(sock)


def unknown_message_type(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(b"\x77" + b"\0" * 20)
    return recv_all(sock)


def bad_pixel_format(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(b"\x00\x00\x00\x00" + struct.pack(">BBBBHHHBBB3x", 7, 7, 0, 1, 3, 3, 1, 0, 2, 4))
    return recv_all(sock)


def colour_map_format(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(b"\x00\x00\x00\x00" + struct.pack(">BBBBHHHBBB3x", 8, 8, 0, 0, 0, 0, 0, 0, 0, 0))
    return recv_all(sock)


def huge_cut_text(sock: socket.socket) -> bytes:
    rfb_handshake(sock)
    sock.sendall(struct.pack(">B3xI", 6, 2**31) + b"x" * 100)
    return recv_all(sock)


CASES: dict[str, tuple[Callable[[socket.socket], bytes], str]] = {
    "wrong_version": (wrong_version, "ProtocolVersion"),
    "version_2": (version_2, "unsupported protocol version"),
    "unknown_security_type": (unknown_security_type, "was not offered"),
    "truncated_version": (truncated_version, "left during the handshake"),
    "truncated_message": (truncated_message, ""),
    "unknown_message_type": (unknown_message_type, "unknown client message type"),
    "bad_pixel_format": (bad_pixel_format, "bits-per-pixel 7"),
    "colour_map_format": (colour_map_format, "colour-map"),
    "huge_cut_text": (huge_cut_text, "ClientCutText of 2147483648 bytes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_client_is_closed_and_others_go_on(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.INFO, logger="pdum.rfb")
    display = served.serve(320, 240)
    frame = noise(320, 240, seed=61)
    served.publish(display, frame)
    good = VncDump(vncdump_exe, display.vnc_port, "zlib", 32, tmp_path)
    try:
        good.wait_for(in_client_format(frame, 32))
        attack, expected_log = CASES[case]
        with socket.create_connection(("127.0.0.1", display.vnc_port), timeout=5) as sock:
            reply = attack(sock)  # returns only once the server has closed the connection
        if case == "unknown_security_type":
            # RFB 3.8: SecurityResult "failed" with a reason string
            assert reply[:4] == b"\0\0\0\x01" and b"was not offered" in reply
        if expected_log:
            assert any(expected_log in r.getMessage() for r in caplog.records), [
                r.getMessage() for r in caplog.records
            ]
        # the well-behaved client still gets new frames
        after = np.ascontiguousarray(frame[::-1, ::-1])
        served.publish(display, after)
        good.wait_for(in_client_format(after, 32))
        assert display.client_count == 1
    finally:
        good.close()
