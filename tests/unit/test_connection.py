"""The handshake, driven with literal bytes (RFC 6143 section 7.1-7.3)."""

from __future__ import annotations

import struct

import pytest

from pdum.rfb.protocol import SERVER_DEFAULT, ClientInit, ProtocolError, SecurityType, ServerConnection, State
from pdum.rfb.protocol import messages as m
from pdum.rfb.protocol.connection import AuthenticationFailed, negotiate_version
from pdum.rfb.protocol.security import vnc_auth_response


def test_rfb_38_none() -> None:
    c = ServerConnection()
    assert c.data_to_send() == b"RFB 003.008\n"
    assert c.receive_data(b"RFB 003.008\n") == []
    assert c.data_to_send() == b"\x01\x01"
    assert c.receive_data(b"\x01") == []
    assert c.data_to_send() == b"\0\0\0\0"  # SecurityResult OK (3.8 always sends it)
    assert c.receive_data(b"\x01") == [ClientInit(shared=True)]
    # messages pipelined behind ServerInit are returned by send_server_init
    c.receive_data(struct.pack(">BBHHHH", 3, 0, 0, 0, 10, 10))
    events = c.send_server_init(10, 10, SERVER_DEFAULT, b"x")
    assert events == [m.FramebufferUpdateRequest(False, 0, 0, 10, 10)]
    assert c.data_to_send() == m.server_init(10, 10, SERVER_DEFAULT, b"x")
    assert c.state is State.NORMAL


def test_rfb_37_none_has_no_security_result() -> None:
    c = ServerConnection()
    c.data_to_send()
    c.receive_data(b"RFB 003.007\n")
    assert c.data_to_send() == b"\x01\x01"
    c.receive_data(b"\x01")
    assert c.data_to_send() == b""
    assert c.receive_data(b"\x00") == [ClientInit(shared=False)]


def test_rfb_33_server_chooses() -> None:
    c = ServerConnection()
    c.data_to_send()
    events = c.receive_data(b"RFB 003.003\n\x01")
    assert c.data_to_send() == b"\0\0\0\x01"
    assert events == [ClientInit(shared=True)]


def test_rfb_33_vnc_auth() -> None:
    c = ServerConnection(security_types=[SecurityType.VNC_AUTH], password="secret")
    c.data_to_send()
    c.receive_data(b"RFB 003.003\n")
    out = c.data_to_send()
    assert out[:4] == b"\0\0\0\x02"
    challenge = out[4:]
    assert len(challenge) == 16
    c.receive_data(vnc_auth_response("secret", challenge))
    assert c.data_to_send() == b"\0\0\0\0"


def test_vnc_auth_wrong_password_38_has_reason() -> None:
    c = ServerConnection(security_types=[SecurityType.VNC_AUTH], password="secret")
    c.data_to_send()
    c.receive_data(b"RFB 003.008\n")
    assert c.data_to_send() == b"\x01\x02"
    c.receive_data(b"\x02")
    challenge = c.data_to_send()
    with pytest.raises(AuthenticationFailed):
        c.receive_data(vnc_auth_response("wrong", challenge))
    out = c.data_to_send()
    assert out[:4] == b"\0\0\0\x01"
    (length,) = struct.unpack(">I", out[4:8])
    assert out[8 : 8 + length] == b"authentication failed"


def test_vnc_auth_known_vector() -> None:
    # password "password", all-zero challenge: the value libvncclient's rfbClientEncryptBytes gives
    assert vnc_auth_response("password", bytes(16)).hex() == "ff97502e9422f089ff97502e9422f089"


@pytest.mark.parametrize("version, expected", [((3, 3), (3, 3)), ((3, 5), (3, 3)), ((3, 7), (3, 7)),
                                               ((3, 8), (3, 8)), ((3, 889), (3, 8))])  # fmt: skip
def test_version_negotiation(version: tuple[int, int], expected: tuple[int, int]) -> None:
    assert negotiate_version(*version) == expected


@pytest.mark.parametrize(
    "data", [b"GET / HTTP/1.1\r\n", b"RFB 003.00x\n", b"RFB 004.000\n", b"RFB 002.002\n"]
)
def test_bad_versions(data: bytes) -> None:
    c = ServerConnection()
    with pytest.raises(ProtocolError):
        c.receive_data(data)
    assert c.state is State.CLOSED


def test_unknown_security_type_37_closes_without_reason() -> None:
    c = ServerConnection()
    c.data_to_send()
    c.receive_data(b"RFB 003.007\n")
    c.data_to_send()
    with pytest.raises(ProtocolError):
        c.receive_data(b"\x05")
    assert c.data_to_send() == b"\0\0\0\x01"


def _normal() -> ServerConnection:
    """A connection past ServerInit (RFB 3.8, security None)."""
    c = ServerConnection()
    c.receive_data(b"RFB 003.008\n")
    c.receive_data(b"\x01")
    c.receive_data(b"\x01")
    c.send_server_init(10, 10, SERVER_DEFAULT, b"x")
    c.data_to_send()
    return c


def test_update_request_shortcut_takes_exactly_one_whole_request() -> None:
    """The shortcut the session uses for the usual message: one whole FramebufferUpdateRequest
    and nothing pending; anything else is left, unconsumed, to receive_data."""
    request = struct.pack(">BBHHHH", 3, 1, 2, 3, 40, 50)
    assert ServerConnection().update_request(request) is None  # still in the handshake
    c = _normal()
    assert c.update_request(request) == m.FramebufferUpdateRequest(True, 2, 3, 40, 50)
    assert c.update_request(struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1)) == m.FramebufferUpdateRequest(
        False, 0, 0, 1, 1
    )
    assert c.buffered == 0
    assert c.update_request(request + request) is None  # two messages: the general path
    assert c.update_request(bytes([4]) + bytes(9)) is None  # ten bytes, but a key event first
    assert c.receive_data(request[:4]) == []  # a partial message is pending ...
    assert c.update_request(request) is None  # ... so these bytes belong after it
    assert c.receive_data(request[4:]) == [m.FramebufferUpdateRequest(True, 2, 3, 40, 50)]
    assert c.update_request(request) == m.FramebufferUpdateRequest(True, 2, 3, 40, 50)
