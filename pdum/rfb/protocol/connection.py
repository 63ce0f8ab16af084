"""The sans-I/O server side of one RFB connection: handshake, security, then client messages.

Shaped like ``h11`` / ``websockets``: feed it bytes with :meth:`ServerConnection.receive_data`,
get back events (:class:`ClientInit` and the client-message dataclasses of
:mod:`pdum.rfb.protocol.messages`), and take the bytes to send with
:meth:`ServerConnection.data_to_send`. It never touches a socket, so tests drive it with literal
bytes. On any violation it queues whatever failure reason the negotiated protocol version has room
for and raises :class:`ProtocolError`; the caller flushes :meth:`data_to_send` and closes.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from . import security
from .errors import ProtocolError
from .messages import DEFAULT_LIMITS, ClientMessage, Limits, parse_client_message, server_init
from .pixelformat import PixelFormat
from .security import SecurityType

SERVER_VERSION = b"RFB 003.008\n"
_VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")


class AuthenticationFailed(ProtocolError):
    """The client did not prove it knows the secret."""


class State(enum.Enum):
    VERSION = "version"
    SECURITY_TYPE = "security-type"
    VNC_AUTH = "vnc-auth"
    CLIENT_INIT = "client-init"
    SERVER_INIT = "server-init"
    NORMAL = "normal"
    CLOSED = "closed"


@dataclass(frozen=True)
class ClientInit:
    """The client finished the handshake; ``shared`` False asks for exclusive access."""

    shared: bool


Event = ClientInit | ClientMessage


def negotiate_version(major: int, minor: int) -> tuple[int, int]:
    """Map the version a client announced to the one we speak with it.

    RFC 6143: a server should treat unknown 3.x versions as 3.3. 3.889 (Apple) and any
    later 3.x speak 3.8; 3.4/3.6 (UltraVNC) and 3.5 fall back to 3.3.
    """
    if major != 3 or minor < 3:
        raise ProtocolError(f"unsupported protocol version {major}.{minor}")
    if minor >= 8:
        return (3, 8)
    if minor == 7:
        return (3, 7)
    return (3, 3)


class ServerConnection:
    """Server-side RFB protocol state for one client."""

    def __init__(
        self,
        *,
        security_types: Sequence[SecurityType] = (SecurityType.NONE,),
        password: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if SecurityType.VNC_AUTH in security_types and password is None:
            raise ValueError("VncAuth needs a password")
        self.security_types = tuple(security_types)
        self.password = password
        self.limits = limits
        self.state = State.VERSION
        self.version: tuple[int, int] | None = None
        self.security_type: SecurityType | None = None
        self._inbuf = bytearray()
        self._outbuf = bytearray(SERVER_VERSION)
        self._challenge = b""
        #: Set once the server has acknowledged ExtendedMouseButtons (changes PointerEvent framing).
        self.extended_mouse = False

    # -- I/O-free interface -------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    def send(self, data: bytes) -> None:
        """Queue server-to-client bytes produced outside the handshake (updates, cut text...)."""
        self._outbuf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._inbuf)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.state is State.CLOSED:
            raise ProtocolError("connection already closed")
        self._inbuf += data
        events: list[Event] = []
        try:
            while True:
                before = len(self._inbuf), self.state
                self._step(events)
                if (len(self._inbuf), self.state) == before:
                    return events
        except ProtocolError:
            self.state = State.CLOSED
            raise

    def send_server_init(
        self, width: int, height: int, pixel_format: PixelFormat, name: bytes
    ) -> list[Event]:
        """Answer ClientInit; returns any client messages that were already pipelined behind it."""
        if self.state is not State.SERVER_INIT:
            raise RuntimeError(f"ServerInit in state {self.state}")
        self._outbuf += server_init(width, height, pixel_format, name)
        self.state = State.NORMAL
        return self.receive_data(b"")

    # -- state machine ------------------------------------------------------------------------------
    def _step(self, events: list[Event]) -> None:
        if self.state is State.VERSION:
            self._read_version()
        elif self.state is State.SECURITY_TYPE:
            self._read_security_type()
        elif self.state is State.VNC_AUTH:
            self._read_vnc_auth()
        elif self.state is State.CLIENT_INIT:
            if self._inbuf:
                shared = self._inbuf[0] != 0
                del self._inbuf[:1]
                self.state = State.SERVER_INIT
                events.append(ClientInit(shared))
        elif self.state is State.NORMAL:
            parsed = parse_client_message(self._inbuf, self.limits, extended_mouse=self.extended_mouse)
            if parsed is not None:
                message, size = parsed
                del self._inbuf[:size]
                events.append(message)
        # SERVER_INIT: wait for the application to call send_server_init().

    def _read_version(self) -> None:
        if len(self._inbuf) < 12:
            if not SERVER_VERSION.startswith(bytes(self._inbuf[:4])) and len(self._inbuf) >= 4:
                raise ProtocolError(f"not an RFB client (sent {bytes(self._inbuf[:12])!r})")
            return
        match = _VERSION_RE.fullmatch(bytes(self._inbuf[:12]))
        if match is None:
            raise ProtocolError(f"malformed ProtocolVersion {bytes(self._inbuf[:12])!r}")
        del self._inbuf[:12]
        self.version = negotiate_version(int(match.group(1)), int(match.group(2)))
        offered = [t for t in self.security_types if t in security.IMPLEMENTED]
        if self.version == (3, 3):
            # 3.3: the server chooses; prefer authentication when it is configured.
            chosen: SecurityType | None = next((t for t in offered if t is SecurityType.VNC_AUTH), None)
            if chosen is None and SecurityType.NONE in offered:
                chosen = SecurityType.NONE
            if chosen is None:
                self._fail_33("no security type available to an RFB 3.3 client")
            assert chosen is not None
            self._outbuf += struct.pack(">I", chosen)
            self._begin_security(chosen)
            return
        if not offered:
            reason = b"no security type configured"
            self._outbuf += b"\x00" + struct.pack(">I", len(reason)) + reason
            raise ProtocolError(reason.decode())
        self._outbuf += bytes([len(offered), *offered])
        self.state = State.SECURITY_TYPE

    def _fail_33(self, reason: str) -> None:
        data = reason.encode()
        self._outbuf += struct.pack(">II", 0, len(data)) + data
        raise ProtocolError(reason)

    def _read_security_type(self) -> None:
        if not self._inbuf:
            return
        requested = self._inbuf[0]
        del self._inbuf[:1]
        offered = [t for t in self.security_types if t in security.IMPLEMENTED]
        if requested not in offered:
            self._security_failure(f"security type {requested} was not offered")
        self._begin_security(SecurityType(requested))

    def _begin_security(self, chosen: SecurityType) -> None:
        self.security_type = chosen
        if chosen is SecurityType.NONE:
            if self.version == (3, 8):
                self._outbuf += struct.pack(">I", 0)
            self.state = State.CLIENT_INIT
        elif chosen is SecurityType.VNC_AUTH:
            self._challenge = security.new_challenge()
            self._outbuf += self._challenge
            self.state = State.VNC_AUTH
        else:  # pragma: no cover - guarded by IMPLEMENTED
            raise ProtocolError(f"security type {chosen} not implemented")

    def _read_vnc_auth(self) -> None:
        if len(self._inbuf) < 16:
            return
        response = bytes(self._inbuf[:16])
        del self._inbuf[:16]
        assert self.password is not None
        if not security.vnc_auth_check(self.password, self._challenge, response):
            self._security_failure("authentication failed", AuthenticationFailed)
        self._outbuf += struct.pack(">I", 0)
        self.state = State.CLIENT_INIT

    def _security_failure(self, reason: str, error: type[ProtocolError] = ProtocolError) -> None:
        """SecurityResult 'failed', with a reason string where the version has one (3.8)."""
        data = reason.encode()
        self._outbuf += struct.pack(">I", 1)
        if self.version == (3, 8):
            self._outbuf += struct.pack(">I", len(data)) + data
        raise error(reason)
