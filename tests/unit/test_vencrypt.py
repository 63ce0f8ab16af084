"""VeNCrypt (type 19) driven with bytes: the version and subtype exchange, then TLS (Python's ssl
client on memory buffers) around VncAuth, Plain or nothing."""

from __future__ import annotations

import ssl
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdum.rfb.protocol import ClientInit, ProtocolError, SecurityType, ServerConnection, State
from pdum.rfb.protocol.connection import AuthenticationFailed
from pdum.rfb.protocol.security import Credentials, vnc_auth_response
from pdum.rfb.protocol.vencrypt import certificate_context
from tests.certs import make_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def _client_context(subtype: SecurityType, cafile: Path) -> ssl.SSLContext:
    if subtype in (SecurityType.TLS_NONE, SecurityType.TLS_VNC, SecurityType.TLS_PLAIN):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
        return context
    return ssl.create_default_context(cafile=str(cafile))


class TlsClient:
    """The client side of TLS on memory buffers, shuttling bytes with a ServerConnection."""

    def __init__(self, c: ServerConnection, context: ssl.SSLContext) -> None:
        self.c = c
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.events: list[object] = []

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.tls.do_handshake()
                self._pump()
                return
            except ssl.SSLWantReadError:
                self._pump()
        raise AssertionError("TLS handshake did not finish")

    def _pump(self) -> None:
        out = self.outgoing.read()
        if out:
            self.events += self.c.receive_data(out)
        self.incoming.write(self.c.data_to_send())

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._pump()

    def recv(self, n: int) -> bytes:
        self._pump()
        data = b""
        while len(data) < n:
            data += self.tls.read(n - len(data))
        return data


def _start(c: ServerConnection, subtype: SecurityType) -> bytes:
    """Up to the VeNCrypt subtype choice; returns the subtype list the server offered."""
    assert c.data_to_send() == b"RFB 003.008\n"
    c.receive_data(b"RFB 003.008\n")
    types = c.data_to_send()
    assert SecurityType.VENCRYPT in types[1:]
    c.receive_data(bytes([SecurityType.VENCRYPT]))
    assert c.data_to_send() == b"\x00\x02"
    c.receive_data(b"\x00\x02")
    offer = c.data_to_send()
    assert offer[0] == 0  # version accepted
    c.receive_data(struct.pack(">I", subtype))
    assert c.data_to_send() == b"\x01"
    assert c.state is State.TLS_HANDSHAKE
    return offer[2:]


def _connection(certificate: tuple[Path, Path], *types: SecurityType, **kwargs: object) -> ServerConnection:
    kwargs.setdefault("password", "s3cret")
    return ServerConnection(
        security_types=types,
        tls_context=certificate_context(*certificate),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("subtype", [SecurityType.X509_VNC, SecurityType.TLS_VNC], ids=["X509Vnc", "TLSVnc"])
def test_vnc_auth_inside_tls(certificate: tuple[Path, Path], subtype: SecurityType) -> None:
    c = _connection(certificate, subtype, SecurityType.VNC_AUTH)
    offered = _start(c, subtype)
    assert offered == struct.pack(">I", subtype)
    client = TlsClient(c, _client_context(subtype, certificate[0]))
    client.handshake()
    challenge = client.recv(16)
    client.send(vnc_auth_response("s3cret", challenge))
    assert client.recv(4) == b"\0\0\0\0"
    assert c.state is State.CLIENT_INIT and c.encrypted
    assert c.authenticated_as is subtype and c.security_type is SecurityType.VENCRYPT
    client.send(b"\x01")
    assert client.events == [ClientInit(shared=True)]
    # the session stays inside TLS
    c.send(b"x" * 100_000)
    assert client.recv(100_000) == b"x" * 100_000


def test_wrong_vnc_password_inside_tls(certificate: tuple[Path, Path]) -> None:
    c = _connection(certificate, SecurityType.X509_VNC)
    _start(c, SecurityType.X509_VNC)
    client = TlsClient(c, _client_context(SecurityType.X509_VNC, certificate[0]))
    client.handshake()
    challenge = client.recv(16)
    with pytest.raises(AuthenticationFailed):
        client.send(vnc_auth_response("nope", challenge))
    client.incoming.write(c.data_to_send())
    assert client.tls.read(100) == b"\0\0\0\x01\0\0\0\x15authentication failed"


@pytest.mark.parametrize(
    "subtype", [SecurityType.X509_PLAIN, SecurityType.TLS_PLAIN], ids=["X509Plain", "TLSPlain"]
)
def test_plain_inside_tls(certificate: tuple[Path, Path], subtype: SecurityType) -> None:
    seen: list[Credentials] = []

    def verify(credentials: Credentials) -> str:
        seen.append(credentials)
        if credentials.username == "ann" and credentials.check_password("pässword"):
            return "ann!"
        raise AuthenticationFailed("authentication failed")

    c = _connection(certificate, subtype, password=None, verify=verify)
    _start(c, subtype)
    client = TlsClient(c, _client_context(subtype, certificate[0]))
    client.handshake()
    user, password = b"ann", "pässword".encode()
    client.send(struct.pack(">II", len(user), len(password)) + user + password)
    assert client.recv(4) == b"\0\0\0\0"
    assert c.principal == "ann!"
    assert seen[0].security_type is subtype and seen[0].password == "pässword"


@pytest.mark.parametrize(
    "subtype", [SecurityType.X509_NONE, SecurityType.TLS_NONE], ids=["X509None", "TLSNone"]
)
def test_no_authentication_inside_tls(certificate: tuple[Path, Path], subtype: SecurityType) -> None:
    c = _connection(certificate, subtype, password=None)
    _start(c, subtype)
    client = TlsClient(c, _client_context(subtype, certificate[0]))
    client.handshake()
    assert client.recv(4) == b"\0\0\0\0"
    assert c.principal is None and c.state is State.CLIENT_INIT


def test_subtype_list_and_rfb_type_position(certificate: tuple[Path, Path]) -> None:
    c = _connection(certificate, SecurityType.X509_PLAIN, SecurityType.VNC_AUTH, SecurityType.TLS_VNC)
    c.data_to_send()
    c.receive_data(b"RFB 003.008\n")
    assert c.data_to_send() == bytes([2, SecurityType.VENCRYPT, SecurityType.VNC_AUTH])
    c.receive_data(bytes([SecurityType.VENCRYPT]))
    c.data_to_send()
    c.receive_data(b"\x00\x02")
    assert c.data_to_send() == b"\x00\x02" + struct.pack(">II", SecurityType.X509_PLAIN, SecurityType.TLS_VNC)


def test_bad_version_and_unoffered_subtype(certificate: tuple[Path, Path]) -> None:
    c = _connection(certificate, SecurityType.X509_VNC)
    c.data_to_send()
    c.receive_data(b"RFB 003.008\n\x13")
    c.data_to_send()
    with pytest.raises(ProtocolError, match="VeNCrypt version"):
        c.receive_data(b"\x00\x01")
    assert c.data_to_send() == b"\xff"
    c = _connection(certificate, SecurityType.X509_VNC)
    c.data_to_send()
    c.receive_data(b"RFB 003.008\n\x13\x00\x02")
    c.data_to_send()
    with pytest.raises(ProtocolError, match="not offered"):
        c.receive_data(struct.pack(">I", SecurityType.TLS_NONE))
    assert c.data_to_send()[:4] == b"\0\0\0\x01"


def test_garbage_instead_of_tls_and_oversized_plain(certificate: tuple[Path, Path]) -> None:
    c = _connection(certificate, SecurityType.X509_VNC)
    _start(c, SecurityType.X509_VNC)
    with pytest.raises(ProtocolError, match="TLS"):
        c.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c = _connection(certificate, SecurityType.TLS_PLAIN)
    _start(c, SecurityType.TLS_PLAIN)
    client = TlsClient(c, _client_context(SecurityType.TLS_PLAIN, certificate[0]))
    client.handshake()
    with pytest.raises(ProtocolError, match="too long"):
        client.send(struct.pack(">II", 5000, 1))


def test_x509_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="certificate"):
        ServerConnection(security_types=[SecurityType.X509_NONE])


_FUZZ_CONTEXT: list[ssl.SSLContext] = []


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda subtype, tail: b"\x00\x02" + struct.pack(">I", subtype) + tail,
            st.sampled_from([0, 19, 256, 257, 258, 259, 260, 261, 262, 0xFFFFFFFF]),
            st.one_of(
                st.binary(max_size=200), st.builds(lambda t: b"\x16\x03\x01" + t, st.binary(max_size=200))
            ),
        ),
    ),
    split=st.integers(min_value=0, max_value=400),
)
def test_vencrypt_never_raises_anything_else(certificate: tuple[Path, Path], data: bytes, split: int) -> None:
    if not _FUZZ_CONTEXT:
        _FUZZ_CONTEXT.append(certificate_context(*certificate))
    c = ServerConnection(
        security_types=[SecurityType.X509_VNC, SecurityType.TLS_PLAIN],
        password="pw",
        tls_context=_FUZZ_CONTEXT[0],
    )
    c.receive_data(b"RFB 003.008\n\x13")
    try:
        c.receive_data(data[:split])
        c.receive_data(data[split:])
    except ProtocolError:
        assert c.state is State.CLOSED
