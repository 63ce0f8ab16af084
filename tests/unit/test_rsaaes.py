"""RSA-AES (RA2, RA2ne, RA2_256, RA2ne_256) driven with bytes against an independent reference
client (tests/rsaaes_client.py), plus the record layer and the failure paths."""

from __future__ import annotations

import hashlib
import struct

import pytest
from Crypto.Cipher import PKCS1_v1_5
from Crypto.PublicKey import RSA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdum.rfb.protocol import (
    SERVER_DEFAULT,
    ClientInit,
    ProtocolError,
    SecurityType,
    ServerConnection,
    State,
    rsaaes,
)
from pdum.rfb.protocol import messages as m
from pdum.rfb.protocol.connection import AuthenticationFailed
from pdum.rfb.protocol.security import Credentials
from tests.rsaaes_client import Ra2Client, eax_open, eax_seal

ALL_TYPES = [SecurityType.RA2, SecurityType.RA2NE, SecurityType.RA2_256, SecurityType.RA2NE_256]
IDS = ["RA2", "RA2ne", "RA2_256", "RA2ne_256"]


@pytest.fixture(scope="module")
def server_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture(scope="module")
def client_key() -> RSA.RsaKey:
    return RSA.generate(1024)


def _start(security_type: SecurityType, server_key: RSA.RsaKey, **kwargs: object) -> ServerConnection:
    kwargs.setdefault("password", "s3cret")
    c = ServerConnection(security_types=[security_type], rsa_key=server_key, **kwargs)  # type: ignore[arg-type]
    assert c.data_to_send() == b"RFB 003.008\n"
    assert c.receive_data(b"RFB 003.008\n") == []
    assert c.data_to_send() == bytes([1, security_type])
    assert c.receive_data(bytes([security_type])) == []
    assert c.state is State.RSA_AES
    return c


def _exchange(c: ServerConnection, client: Ra2Client) -> list[object]:
    """Shuttle bytes until neither side has anything more to say; the server's events."""
    events: list[object] = []
    while True:
        client.feed(c.data_to_send())
        out = client.step()
        if not out:
            return events
        events += c.receive_data(out)


@pytest.mark.parametrize("security_type", ALL_TYPES, ids=IDS)
def test_handshake_and_session(
    security_type: SecurityType, server_key: RSA.RsaKey, client_key: RSA.RsaKey
) -> None:
    c = _start(security_type, server_key)
    client = Ra2Client(security_type, client_key, password="s3cret")
    # the public key message: u32 bits, modulus and exponent in ceil(bits/8) bytes each
    hello = c.data_to_send()
    assert struct.unpack(">I", hello[:4])[0] == 2048
    assert len(hello) == 4 + 2 * 256
    assert int.from_bytes(hello[4:260], "big") == server_key.n
    assert int.from_bytes(hello[260:], "big") == server_key.e
    client.feed(hello)
    c.receive_data(client.step() or b"")
    assert _exchange(c, client) == []
    assert client.subtype == 2  # password only
    assert client.result == (0, "")
    assert c.state is State.CLIENT_INIT
    assert c.encrypted is client.all_encrypted
    assert c.principal is None
    # ClientInit, ServerInit, then client messages and server messages, all through the record
    # layer for RA2/RA2_256 and in plaintext for the "ne" types
    assert c.receive_data(client.send(b"\x01")) == [ClientInit(shared=True)]
    request = struct.pack(">BBHHHH", 3, 0, 0, 0, 10, 10)
    assert c.receive_data(client.send(request)) == []
    assert c.send_server_init(10, 10, SERVER_DEFAULT, b"ra2") == [
        m.FramebufferUpdateRequest(False, 0, 0, 10, 10)
    ]
    wire = c.data_to_send()
    client.feed(wire)
    assert client.received() == m.server_init(10, 10, SERVER_DEFAULT, b"ra2")
    assert (wire == m.server_init(10, 10, SERVER_DEFAULT, b"ra2")) is not client.all_encrypted
    big = bytes(range(256)) * 1000  # spans several records
    c.send(big)
    c.send(b"second message")
    client.feed(c.data_to_send())
    assert client.received() == big + b"second message"
    # wire(): what the session's writer uses; the very same object when nothing is sealed
    wired = c.wire(big)
    assert (wired is big) is not client.all_encrypted
    client.feed(wired)
    assert client.received() == big
    # a key event split across records and fed one byte at a time
    key = struct.pack(">BBxxI", 4, 1, 0x61)
    wire = client.send(key[:3]) + client.send(key[3:])
    events: list[object] = []
    for i in range(len(wire)):
        events += c.receive_data(wire[i : i + 1])
    assert events == [m.KeyEvent(True, 0x61)]


@pytest.mark.parametrize("security_type", ALL_TYPES, ids=IDS)
def test_byte_by_byte_handshake(
    security_type: SecurityType, server_key: RSA.RsaKey, client_key: RSA.RsaKey
) -> None:
    c = _start(security_type, server_key)
    client = Ra2Client(security_type, client_key, password="s3cret")
    while client.result is None:
        client.feed(c.data_to_send())
        out = client.step() or b""
        for i in range(len(out)):
            c.receive_data(out[i : i + 1])
    assert client.result == (0, "")


@pytest.mark.parametrize("security_type", [SecurityType.RA2, SecurityType.RA2NE], ids=["RA2", "RA2ne"])
def test_wrong_password(security_type: SecurityType, server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(security_type, server_key)
    client = Ra2Client(security_type, client_key, password="wrong")
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        _exchange(c, client)
    client.feed(c.data_to_send())
    client.step()
    assert client.result == (1, "authentication failed")  # sealed for RA2, plain for RA2ne
    assert c.state is State.CLOSED


def test_username_and_verify(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    seen: list[Credentials] = []

    def verify(credentials: Credentials) -> str:
        seen.append(credentials)
        if credentials.username == "alice" and credentials.check_password("pässword"):
            return "principal-alice"
        raise AuthenticationFailed("no such user")

    c = _start(SecurityType.RA2_256, server_key, password=None, verify=verify, ask_username=True)
    client = Ra2Client(SecurityType.RA2_256, client_key, username="alice", password="pässword")
    _exchange(c, client)
    assert client.subtype == 1
    assert client.result == (0, "")
    assert c.principal == "principal-alice"
    assert seen[0].security_type is SecurityType.RA2_256 and seen[0].password == "pässword"
    assert "pässword" not in repr(seen[0])  # secrets stay out of reprs (and so of logs)
    c = _start(SecurityType.RA2_256, server_key, password=None, verify=verify, ask_username=True)
    client = Ra2Client(SecurityType.RA2_256, client_key, username="bob", password="pässword")
    with pytest.raises(AuthenticationFailed):
        _exchange(c, client)
    client.feed(c.data_to_send())
    client.step()
    assert client.result == (1, "no such user")


def test_ra2ne_hands_back_plaintext_after_the_last_record(
    server_key: RSA.RsaKey, client_key: RSA.RsaKey
) -> None:
    c = _start(SecurityType.RA2NE, server_key)
    client = Ra2Client(SecurityType.RA2NE, client_key, password="s3cret")
    client.feed(c.data_to_send())
    c.receive_data(client.step() or b"")
    client.feed(c.data_to_send())
    c.receive_data(client.step() or b"")  # client hash
    client.feed(c.data_to_send())
    credentials = client.step() or b""
    # credentials record and a (premature) plaintext ClientInit in one read
    assert c.receive_data(credentials + b"\x00") == [ClientInit(shared=False)]
    assert c.data_to_send() == b"\0\0\0\0"  # SecurityResult in plaintext


@pytest.mark.parametrize("bits, error", [(1023, "too short"), (8193, "too long")])
def test_client_key_length_is_checked(server_key: RSA.RsaKey, bits: int, error: str) -> None:
    c = _start(SecurityType.RA2, server_key)
    c.data_to_send()
    with pytest.raises(ProtocolError, match=error):
        c.receive_data(struct.pack(">I", bits))
    assert c.state is State.CLOSED


def test_client_key_inconsistent_with_its_length(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(SecurityType.RA2, server_key)
    client = Ra2Client(SecurityType.RA2, client_key, key_bits_field=1016)  # 127 bytes, modulus is 128
    client.feed(c.data_to_send())
    with pytest.raises(ProtocolError):
        c.receive_data(client.step() or b"")


def test_random_length_must_match_server_key(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(SecurityType.RA2, server_key)
    hello = c.data_to_send()
    size = (client_key.size_in_bits() + 7) // 8
    key_message = (
        struct.pack(">I", 1024) + client_key.n.to_bytes(size, "big") + client_key.e.to_bytes(size, "big")
    )
    server = RSA.construct((int.from_bytes(hello[4:260], "big"), int.from_bytes(hello[260:], "big")))
    encrypted = PKCS1_v1_5.new(server).encrypt(bytes(16))
    c.receive_data(key_message)
    with pytest.raises(ProtocolError, match="length"):
        c.receive_data(struct.pack(">H", 128) + encrypted[:128])


def test_tampered_mac_is_a_protocol_error(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(SecurityType.RA2, server_key)
    client = Ra2Client(SecurityType.RA2, client_key, password="s3cret")
    client.feed(c.data_to_send())
    c.receive_data(client.step() or b"")
    client.feed(c.data_to_send())
    sealed_hash = bytearray(client.step() or b"")
    sealed_hash[5] ^= 1
    with pytest.raises(ProtocolError, match="MAC"):
        c.receive_data(bytes(sealed_hash))
    assert c.state is State.CLOSED


def test_tampered_record_after_the_handshake(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(SecurityType.RA2, server_key)
    client = Ra2Client(SecurityType.RA2, client_key, password="s3cret")
    _exchange(c, client)
    c.receive_data(client.send(b"\x01"))
    c.send_server_init(10, 10, SERVER_DEFAULT, b"x")
    record = bytearray(client.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 10, 10)))
    record[-1] ^= 0x80  # the tag
    with pytest.raises(ProtocolError, match="MAC"):
        c.receive_data(bytes(record))
    # a replayed (old counter) record fails too
    c2 = _start(SecurityType.RA2, server_key)
    client2 = Ra2Client(SecurityType.RA2, client_key, password="s3cret")
    _exchange(c2, client2)
    init = client2.send(b"\x01")
    c2.receive_data(init)
    with pytest.raises(ProtocolError):
        c2.receive_data(init)


def test_wrong_client_hash(server_key: RSA.RsaKey, client_key: RSA.RsaKey) -> None:
    c = _start(SecurityType.RA2NE, server_key)
    client = Ra2Client(SecurityType.RA2NE, client_key, password="s3cret")
    client.feed(c.data_to_send())
    c.receive_data(client.step() or b"")
    client.feed(c.data_to_send())
    client.step()
    # a correctly sealed record holding the wrong hash (as after a man-in-the-middle key swap)
    client.send_counter = 0
    with pytest.raises(ProtocolError, match="hash"):
        c.receive_data(client.seal(hashlib.sha1(b"another key").digest()))


def test_record_layer_vectors() -> None:
    key = bytes(range(16))
    sealer, opener = rsaaes.RecordSealer(key, max_record=5), rsaaes.RecordOpener(key)
    wire = sealer.seal(b"hello world")
    assert sealer.counter == 3  # 5 + 5 + 1 bytes
    # the same records as an independent EAX over (u16 length, little-endian counter nonce)
    assert wire == eax_seal(key, 0, b"hello") + eax_seal(key, 1, b" worl") + eax_seal(key, 2, b"d")
    assert eax_open(key, 0, wire[:23]) == b"hello"
    buf = bytearray(wire[:30])
    assert opener.open(buf) == b"hello"
    assert opener.open(buf) is None  # incomplete
    buf += wire[30:]
    assert opener.open(buf) == b" worl"
    assert opener.open(buf) == b"d"
    assert not buf
    assert rsaaes.RecordSealer(key).seal(b"") == b""
    # counters carry as a 128-bit little-endian integer
    assert rsaaes._nonce(255) == b"\xff" + bytes(15)
    assert rsaaes._nonce(256) == b"\x00\x01" + bytes(14)


def test_key_loading_and_fingerprint(tmp_path: object, server_key: RSA.RsaKey) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "key.pem"
    path.write_bytes(server_key.export_key("PEM"))
    assert rsaaes.load_key(str(path)).n == server_key.n
    assert rsaaes.load_key(path).n == server_key.n
    assert rsaaes.load_key(server_key.export_key("PEM").decode()).n == server_key.n
    pkcs8 = server_key.export_key("PEM", pkcs=8)
    assert rsaaes.load_key(pkcs8).n == server_key.n
    with pytest.raises(ValueError, match="private"):
        rsaaes.load_key(server_key.public_key())
    with pytest.raises(ValueError, match="PEM"):
        rsaaes.load_key(b"-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    fp = rsaaes.fingerprint(server_key)
    expected = hashlib.sha1(rsaaes.public_key_message(server_key)).hexdigest()[:16]
    assert fp.replace("-", "") == expected and fp.count("-") == 7


def test_rsa_aes_needs_a_key_and_a_secret(server_key: RSA.RsaKey) -> None:
    with pytest.raises(ValueError, match="RSA key"):
        ServerConnection(security_types=[SecurityType.RA2], password="x")
    with pytest.raises(ValueError, match="password"):
        ServerConnection(security_types=[SecurityType.RA2NE], rsa_key=server_key)


def test_rfb_33_client_never_gets_rsa_aes(server_key: RSA.RsaKey) -> None:
    c = ServerConnection(
        security_types=[SecurityType.RA2, SecurityType.VNC_AUTH], password="pw", rsa_key=server_key
    )
    c.data_to_send()
    c.receive_data(b"RFB 003.003\n")
    assert c.data_to_send()[:4] == b"\0\0\0\x02"  # VncAuth


# -- fuzzing: any bytes give progress or a ProtocolError, nothing else ----------------------------------
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FUZZ_KEY = RSA.generate(1024)
_FUZZ_CLIENT_KEY = RSA.generate(1024)


def _key_message(bits: int, n: int, e: int) -> bytes:
    size = (bits + 7) // 8
    return struct.pack(">I", bits) + (n % (1 << (8 * size))).to_bytes(size, "big") + e.to_bytes(size, "big")


# Shaped prefixes reach the later steps: a plausible client key, then an arbitrary random message.
fuzz_input = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda n, e, tail: _key_message(1024, n, e) + tail,
        st.one_of(st.just(_FUZZ_CLIENT_KEY.n), st.integers(min_value=0, max_value=(1 << 1024) - 1)),
        st.sampled_from([0, 1, 2, 3, 65537, (1 << 1024) - 1]),
        st.one_of(
            st.binary(max_size=300),
            st.builds(lambda body: struct.pack(">H", 128) + body, st.binary(min_size=128, max_size=128)),
        ),
    ),
)


@FUZZ
@given(data=fuzz_input, split=st.integers(min_value=0, max_value=700), kind=st.sampled_from(ALL_TYPES))
def test_rsa_aes_handshake_never_raises_anything_else(data: bytes, split: int, kind: SecurityType) -> None:
    c = ServerConnection(security_types=[kind], password="pw", rsa_key=_FUZZ_KEY)
    c.receive_data(b"RFB 003.008\n" + bytes([kind]))
    try:
        c.receive_data(data[:split])
        c.receive_data(data[split:])
    except ProtocolError:
        assert c.state is State.CLOSED
