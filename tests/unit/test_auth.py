"""Authentication policy: the lockout (with an injected clock), ``authenticate`` callables,
principals and view-only sessions; the last tests run a real Display over TCP."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from Crypto.PublicKey import RSA

import pdum.rfb as rfb
from pdum.rfb.auth import (
    TOO_MANY_FAILURES,
    AuthContext,
    Authenticator,
    Lockout,
    Principal,
    is_view_only,
    peer_host,
)
from pdum.rfb.display import _security_types
from pdum.rfb.protocol import Refused, SecurityType, ServerConnection
from pdum.rfb.protocol.connection import AuthenticationFailed
from pdum.rfb.protocol.security import Credentials, vnc_auth_response
from pdum.rfb.testing import noise
from tests.rsaaes_client import Ra2Client
from tests.support import run_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_threshold_doubling_and_reset() -> None:
    clock = Clock()
    lockout = Lockout(threshold=5, timeout=10.0, clock=clock)
    for _ in range(4):
        lockout.failure("10.0.0.1")
        assert lockout.retry_after("10.0.0.1") == 0
    lockout.failure("10.0.0.1")
    assert lockout.retry_after("10.0.0.1") == 10.0
    assert lockout.retry_after("10.0.0.2") == 0  # per address
    clock.now += 9.9
    assert lockout.retry_after("10.0.0.1") == pytest.approx(0.1)
    clock.now += 0.1
    assert lockout.retry_after("10.0.0.1") == 0  # one more try after the timeout ...
    lockout.failure("10.0.0.1")
    assert lockout.retry_after("10.0.0.1") == 20.0  # ... and a failure doubles it
    clock.now += 20
    lockout.failure("10.0.0.1")
    assert lockout.retry_after("10.0.0.1") == 40.0
    clock.now += 40
    lockout.success("10.0.0.1")  # a success forgets the address
    for _ in range(4):
        lockout.failure("10.0.0.1")
    assert lockout.retry_after("10.0.0.1") == 0
    disabled = Lockout(threshold=0, clock=clock)
    for _ in range(100):
        disabled.failure("x")
    assert disabled.retry_after("x") == 0


def test_peer_host() -> None:
    assert peer_host("127.0.0.1:5900") == "127.0.0.1"
    assert peer_host("::1:40000") == "::1"
    assert peer_host("[::1]:40000") == "::1"
    assert peer_host("asgi") == "asgi"


def _vnc_auth(auth: Authenticator, peer: str, password: str) -> ServerConnection:
    """One VncAuth attempt through a ServerConnection wired like a Session wires it."""
    c = ServerConnection(
        security_types=[SecurityType.VNC_AUTH],
        password=auth.password,
        **auth.connection_options(peer, "tcp", [SecurityType.VNC_AUTH]),
    )
    c.data_to_send()
    c.receive_data(b"RFB 003.008\n")
    assert c.data_to_send() == b"\x01\x02"
    c.receive_data(b"\x02")
    challenge = c.data_to_send()
    c.receive_data(vnc_auth_response(password, challenge))
    return c


def test_sixth_wrong_password_is_refused_without_a_challenge() -> None:
    clock = Clock()
    auth = Authenticator(password="s3cret", lockout=Lockout(clock=clock))
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="authentication failed"):
            _vnc_auth(auth, "192.0.2.7:1234", "wrong")
    # the sixth connection gets an empty security-type list with the reason: no challenge
    c = ServerConnection(
        security_types=[SecurityType.VNC_AUTH],
        password="s3cret",
        **auth.connection_options("192.0.2.7:1235", "tcp", [SecurityType.VNC_AUTH]),
    )
    assert c.data_to_send() == b"RFB 003.008\n"
    with pytest.raises(Refused):
        c.receive_data(b"RFB 003.008\n")
    reason = TOO_MANY_FAILURES.encode()
    assert c.data_to_send() == b"\x00" + struct.pack(">I", len(reason)) + reason
    # RFB 3.3 clients get "security type 0" and the reason
    c = ServerConnection(password="s3cret", **auth.connection_options("192.0.2.7:1", "tcp", []))
    c.data_to_send()
    with pytest.raises(Refused):
        c.receive_data(b"RFB 003.003\n")
    assert c.data_to_send() == struct.pack(">II", 0, len(reason)) + reason
    # another address is not affected
    _vnc_auth(auth, "192.0.2.8:1", "s3cret")
    # after the timeout the right password works, and resets the count
    clock.now += 10
    assert _vnc_auth(auth, "192.0.2.7:1236", "s3cret").principal is None
    with pytest.raises(AuthenticationFailed):
        _vnc_auth(auth, "192.0.2.7:1237", "wrong")
    assert auth.refusal("192.0.2.7:1") is None


def test_connection_opened_before_the_lockout_cannot_guess() -> None:
    clock = Clock()
    auth = Authenticator(password="s3cret", lockout=Lockout(threshold=1, clock=clock))
    early = ServerConnection(
        security_types=[SecurityType.VNC_AUTH],
        password="s3cret",
        **auth.connection_options("192.0.2.9:1", "tcp", [SecurityType.VNC_AUTH]),
    )
    early.data_to_send()
    early.receive_data(b"RFB 003.008\n\x02")
    challenge = early.data_to_send()[2:]
    with pytest.raises(AuthenticationFailed):
        _vnc_auth(auth, "192.0.2.9:2", "wrong")
    # the right answer on the connection that was already open is refused without being checked
    with pytest.raises(AuthenticationFailed, match=TOO_MANY_FAILURES):
        early.receive_data(vnc_auth_response("s3cret", challenge))


def test_authenticate_callable_principals_and_view_only() -> None:
    seen: list[AuthContext] = []

    def authenticate(ctx: AuthContext) -> Any:
        seen.append(ctx)
        if ctx.check_password("full"):
            return Principal("admin")
        if ctx.check_password("look"):
            return {"name": "guest", "view_only": True}
        if ctx.check_password("yes"):
            return True
        if ctx.check_password("boom"):
            raise RuntimeError("application bug")
        return None

    clock = Clock()
    auth = Authenticator(authenticate=authenticate, lockout=Lockout(clock=clock))
    assert auth.ask_username  # RSA-AES asks for a username when authenticate decides
    assert _vnc_auth(auth, "10.1.1.1:1", "full").principal == Principal("admin")
    guest = _vnc_auth(auth, "10.1.1.1:1", "look").principal
    assert is_view_only(guest) and not is_view_only(Principal("admin")) and not is_view_only(None)
    assert _vnc_auth(auth, "10.1.1.1:1", "yes").principal is None  # True: principal = username (none)
    ctx = seen[0]
    assert (ctx.peer, ctx.transport, ctx.security, ctx.security_type) == ("10.1.1.1:1", "tcp", "vnc", 2)
    assert ctx.password is None and ctx.username is None  # VncAuth never reveals the password
    with pytest.raises(AuthenticationFailed):
        _vnc_auth(auth, "10.1.1.1:1", "boom")  # an exception refuses
    with pytest.raises(AuthenticationFailed):
        _vnc_auth(auth, "10.1.1.1:1", "nope")
    assert auth.lockout.retry_after("10.1.1.1") == 0  # 2 failures so far


def test_default_check_is_the_password_and_the_username_is_the_principal() -> None:
    auth = Authenticator(password="pw")
    verify = auth.connection_options("1.2.3.4:5", "websocket", [])["verify"]
    assert verify(Credentials(SecurityType.RA2, "carol", "pw")) == "carol"
    assert verify(Credentials(SecurityType.RA2NE, None, "pw")) is None
    with pytest.raises(AuthenticationFailed):
        verify(Credentials(SecurityType.RA2, "carol", "pw "))
    with pytest.raises(AuthenticationFailed):
        Authenticator().verify("1.2.3.4:5", "tcp", Credentials(SecurityType.RA2, None, ""))


def test_security_names() -> None:
    assert _security_types(None, None) == (SecurityType.NONE,)
    assert _security_types(None, "pw") == (SecurityType.VNC_AUTH,)
    assert _security_types(None, None, authenticate=lambda ctx: None) == (SecurityType.VNC_AUTH,)
    assert _security_types(["ra2", "RA2_256", "ra2ne", "ra2ne_256", "vnc", "none"], "pw") == (
        SecurityType.RA2,
        SecurityType.RA2_256,
        SecurityType.RA2NE,
        SecurityType.RA2NE_256,
        SecurityType.VNC_AUTH,
        SecurityType.NONE,
    )
    with pytest.raises(ValueError, match="'ra2' needs password="):
        _security_types(["ra2"], None)
    with pytest.raises(ValueError, match="not available"):
        _security_types(["ra3"], "pw")
    with pytest.raises(ValueError, match="non-loopback"):
        rfb.Display(10, 10, host="0.0.0.0", security=["ra2", "none"], password="x")
    rfb.Display(10, 10, host="0.0.0.0", security=["ra2"], password="x")  # authenticated only: fine
    with pytest.raises(TypeError, match="synchronous"):

        async def coroutine(ctx: AuthContext) -> None:
            return None

        rfb.Display(10, 10, authenticate=coroutine)


# -- a real Display over TCP -------------------------------------------------------------------------------
async def _ra2_session(port: int, security_type: int, client_key: RSA.RsaKey, **kw: str) -> tuple[Any, ...]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readexactly(12) == b"RFB 003.008\n"
    writer.write(b"RFB 003.008\n")
    count = (await reader.readexactly(1))[0]
    assert security_type in await reader.readexactly(count)
    writer.write(bytes([security_type]))
    client = Ra2Client(security_type, client_key, **kw)
    while client.result is None:
        client.feed(await reader.read(65536))
        out = client.step()
        if out:
            writer.write(out)
    return reader, writer, client


async def _read_plain(reader: asyncio.StreamReader, client: Ra2Client, n: int) -> bytes:
    data = bytearray(client.received())
    while len(data) < n:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, "server closed the connection"
        client.feed(chunk)
        data += client.received()
    return bytes(data)


@pytest.fixture(scope="module")
def client_key() -> RSA.RsaKey:
    return RSA.generate(1024)


@pytest.mark.parametrize("security_type", [5, 129, 6], ids=["RA2", "RA2_256", "RA2ne"])
def test_display_rsa_aes_frames_principal_and_view_only(security_type: int, client_key: RSA.RsaKey) -> None:
    def authenticate(ctx: AuthContext) -> Any:
        if ctx.username == "ann" and ctx.password == "full":
            return Principal("ann")
        if ctx.check_password("look"):
            return Principal(ctx.username, view_only=True)
        return None

    frame = noise(16, 8, seed=3)

    async def scenario() -> None:
        display = await rfb.serve(
            16, 8, port=None, security=["ra2", "ra2_256", "ra2ne", "vnc"], authenticate=authenticate
        )
        try:
            display.publish(frame)
            for user, password, view_only in (("ann", "full", False), ("bob", "look", True)):
                reader, writer, client = await _ra2_session(
                    display.vnc_port, security_type, client_key, username=user, password=password
                )
                assert client.subtype == 1 and client.result == (0, "")
                writer.write(client.send(b"\x01"))
                init = await _read_plain(reader, client, 24 + 8)
                assert struct.unpack(">HH", init[:4]) == (16, 8)
                # raw 32 bpp update of the whole frame, then a key press
                set_encodings = struct.pack(">BxHi", 2, 1, 0)
                request = struct.pack(">BBHHHH", 3, 0, 0, 0, 16, 8)
                key = struct.pack(">BBxxI", 4, 1, 0x61)
                writer.write(client.send(set_encodings + request + key))
                update = await _read_plain(reader, client, 4 + 12 + 16 * 8 * 4)
                pixels = update[16 : 16 + 16 * 8 * 4]
                rgb = [pixels[i : i + 3] for i in range(0, len(pixels), 4)]
                assert rgb[0] == bytes(frame[0, 0][::-1])  # server default: little-endian BGRX
                await asyncio.sleep(0.1)
                session = next(iter(display.server.sessions.values()))
                assert session.principal == Principal(user, view_only=view_only)
                assert session.view_only is view_only
                events = display.poll_events()
                if view_only:
                    assert events == []
                else:
                    assert [e.event["type"] for e in events] == ["key_down"]
                    assert events[0].principal == Principal("ann")
                writer.close()
                await asyncio.sleep(0.1)
        finally:
            await display.aclose()

    run_async(scenario())


def test_display_rsa_aes_wrong_password_sends_no_framebuffer(client_key: RSA.RsaKey) -> None:
    async def scenario() -> None:
        display = await rfb.serve(16, 8, port=None, security=["ra2"], password="s3cret")
        try:
            reader, writer, client = await _ra2_session(display.vnc_port, 5, client_key, password="guess")
            assert client.result == (1, "authentication failed")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing else sent
            assert display.stats["auth_failures"] == 1
            assert display.client_count == 0
        finally:
            await display.aclose()

    run_async(scenario())


def test_display_lockout_over_tcp() -> None:
    async def attempt(port: int, password: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readexactly(12)
        writer.write(b"RFB 003.008\n")
        count = (await reader.readexactly(1))[0]
        if count == 0:
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            reason = await reader.readexactly(length)
            writer.close()
            return b"refused: " + reason
        await reader.readexactly(count)
        writer.write(b"\x02")
        challenge = await reader.readexactly(16)
        writer.write(vnc_auth_response(password, challenge))
        result = await reader.readexactly(4)
        writer.close()
        return result

    async def scenario() -> None:
        display = await rfb.serve(16, 8, port=None, password="s3cret", lockout_timeout=0.5)
        try:
            for _ in range(5):
                assert await attempt(display.vnc_port, "wrong") == b"\0\0\0\x01"
            assert await attempt(display.vnc_port, "s3cret") == b"refused: too many security failures"
            await asyncio.sleep(0.6)
            assert await attempt(display.vnc_port, "s3cret") == b"\0\0\0\0"
            assert display.stats["auth_failures"] == 6  # five wrong passwords and one refusal
        finally:
            await display.aclose()

    run_async(scenario())
