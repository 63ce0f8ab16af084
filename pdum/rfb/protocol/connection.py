"""The sans-I/O server side of one RFB connection: handshake, security, then client messages.

Shaped like ``h11`` / ``websockets``: feed it bytes with :meth:`ServerConnection.receive_data`,
get back events (:class:`ClientInit` and the client-message dataclasses of
:mod:`pdum.rfb.protocol.messages`), and take the bytes to send with
:meth:`ServerConnection.data_to_send`. It never touches a socket, so tests drive it with literal
bytes. On any violation it queues whatever failure reason the negotiated protocol version has room
for and raises :class:`ProtocolError`; the caller flushes :meth:`data_to_send` and closes.

Credentials are judged by a ``verify`` callable (:class:`~pdum.rfb.protocol.security.Credentials`
in, principal out, :class:`AuthenticationFailed` to refuse); without one the client must know
``password``. RSA-AES (:mod:`.rsaaes`) adds a record layer: once its keys are agreed,
:meth:`ServerConnection.receive_data` strips it from incoming bytes and :meth:`~ServerConnection.send`
/ :meth:`~ServerConnection.data_to_send` apply it to outgoing ones -- for RA2 and RA2_256 for the
rest of the connection, so the caller must send *every* server message through :meth:`send`.
VeNCrypt (:mod:`.vencrypt`) does the same with TLS (an :class:`ssl.SSLObject` on memory buffers).
"""

from __future__ import annotations

import enum
import re
import ssl
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import rsaaes, security, vencrypt
from .errors import AuthenticationFailed, ProtocolError, Refused
from .messages import (
    DEFAULT_LIMITS,
    REQUEST_SIZE,
    ClientMessage,
    ClientMessageType,
    FramebufferUpdateRequest,
    Limits,
    parse_client_message,
    parse_update_request,
    server_init,
)
from .pixelformat import PixelFormat
from .rsaaes import RecordOpener, RecordSealer, RsaAesServer, Step
from .security import Credentials, SecurityType
from .vencrypt import TlsLayer

SERVER_VERSION = b"RFB 003.008\n"
_VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

#: Judges a client's credentials: returns the principal (any object, ``None`` for anonymous) or
#: raises :class:`AuthenticationFailed` (its message is sent to RFB 3.8 clients as the reason).
Verifier = Callable[[Credentials], Any]


class State(enum.Enum):
    VERSION = "version"
    SECURITY_TYPE = "security-type"
    VNC_AUTH = "vnc-auth"
    RSA_AES = "rsa-aes"
    VENCRYPT_VERSION = "vencrypt-version"
    VENCRYPT_SUBTYPE = "vencrypt-subtype"
    TLS_HANDSHAKE = "tls-handshake"
    PLAIN_AUTH = "plain-auth"
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
        verify: Verifier | None = None,
        rsa_key: Any = None,
        ask_username: bool = False,
        refuse: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``verify`` judges credentials (default: they must match ``password``); ``rsa_key`` is
        the server's RSA private key, needed when an RSA-AES type is offered; ``ask_username``
        makes RSA-AES ask for a username too (subtype 1); ``refuse`` turns the client away with
        that reason right after the version exchange (e.g. while its address is locked out);
        ``tls_context`` holds the certificate for the VeNCrypt X509 subtypes."""
        for t in security_types:
            if t in security.AUTHENTICATED and password is None and verify is None:
                name = "VncAuth" if t is SecurityType.VNC_AUTH else SecurityType(t).name
                raise ValueError(f"{name} needs a password (or a verify callable)")
            if t in security.RSA_AES and rsa_key is None:
                raise ValueError(f"{SecurityType(t).name} needs an RSA key (rsa_key=)")
            if t in vencrypt.X509 and tls_context is None:
                raise ValueError(f"{SecurityType(t).name} needs a certificate (tls_context=)")
        self.security_types = tuple(security_types)
        self.password = password
        self.limits = limits
        self.rsa_key = rsa_key
        self.ask_username = ask_username
        self.refuse = refuse
        self.tls_context = tls_context
        self._verify = verify
        #: VeNCrypt subtypes on offer, in order (type 19 stands for them in the RFB type list).
        self.vencrypt_subtypes = tuple(t for t in self.security_types if t in vencrypt.SUBTYPES)
        self.state = State.VERSION
        self.version: tuple[int, int] | None = None
        self.security_type: SecurityType | None = None
        #: What ``verify`` returned for this client (``None`` without authentication).
        self.principal: Any = None
        self._inbuf = bytearray()  # plaintext not yet part of a complete message
        #: The last FramebufferUpdateRequest taken by :meth:`update_request`, and its bytes.
        self._last_request: tuple[bytes, FramebufferUpdateRequest] | None = None
        self._raw = bytearray()  # received bytes still under the record layer
        self._outbuf = bytearray(SERVER_VERSION)
        self._challenge = b""
        self._rsa_aes: RsaAesServer | None = None
        self._tls: TlsLayer | None = None
        self._auth_type = SecurityType.VNC_AUTH  # the type a VncAuth exchange stands for
        self._sealer: RecordSealer | TlsLayer | None = None
        self._opener: RecordOpener | TlsLayer | None = None
        #: Set once the server has acknowledged ExtendedMouseButtons (changes PointerEvent framing).
        self.extended_mouse = False

    # -- I/O-free interface -------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    def send(self, data: bytes) -> None:
        """Queue server-to-client bytes produced outside the handshake (updates, cut text...).

        Under RA2/RA2_256 they are sealed into records here, in call order, so every server
        message must go through this method (and then :meth:`data_to_send`)."""
        self._write(data)

    def wire(self, data: bytes) -> bytes:
        """:meth:`send` then :meth:`data_to_send` in one step: ``data`` (after anything still
        queued) as it goes on the wire. Without a record layer it is ``data`` itself, uncopied."""
        if self._sealer is None and not self._outbuf:
            return data
        self._write(data)
        return self.data_to_send()

    @property
    def encrypted(self) -> bool:
        """Whether bytes after the handshake go through a record layer (RA2, RA2_256, VeNCrypt)."""
        return self._sealer is not None

    @property
    def authenticated_as(self) -> SecurityType | None:
        """The type the client authenticated with: the VeNCrypt subtype when there was one."""
        return self._auth_type if self.security_type is SecurityType.VENCRYPT else self.security_type

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._inbuf) + len(self._raw)

    def update_request(self, data: bytes) -> FramebufferUpdateRequest | None:
        """``data`` as a FramebufferUpdateRequest when it is exactly one and nothing else is
        pending (no partial message before it, no record layer), else None: every client sends
        one after every update, so the server takes it without the general path. None means
        nothing was consumed; hand ``data`` to :meth:`receive_data` then."""
        if (
            len(data) != REQUEST_SIZE
            or data[0] != ClientMessageType.FRAMEBUFFER_UPDATE_REQUEST
            or self._inbuf
            or self._opener is not None
            or self.state is not State.NORMAL
        ):
            return None
        last = self._last_request
        if last is not None and last[0] == data:
            return last[1]  # clients repeat the same request: the same (immutable) message
        request = parse_update_request(data)
        self._last_request = (bytes(data), request)
        return request

    def receive_data(self, data: bytes) -> list[Event]:
        if self.state is State.CLOSED:
            raise ProtocolError("connection already closed")
        if self.state is State.NORMAL and self._opener is None:
            return self._receive_messages(data)
        if self._opener is not None:
            self._raw += data
        else:
            self._inbuf += data
        events: list[Event] = []
        try:
            while True:
                before = self._progress()
                self._step(events)
                if self._progress() != before:
                    continue
                # Stuck: open one more record, if any (one at a time, so that RA2ne can hand
                # the bytes after its last record back to the plaintext path).
                if self._opener is not None:
                    plaintext = self._opener.open(self._raw)
                    if isinstance(self._opener, TlsLayer):
                        self._outbuf += self._opener.flush()
                    if plaintext is not None:
                        self._inbuf += plaintext
                        continue
                return events
        except ProtocolError:
            self.state = State.CLOSED
            raise

    def _receive_messages(self, data: bytes) -> list[Event]:
        """:meth:`receive_data` after the handshake without a record layer: client messages one
        after the other (the general loop's result, without its per-step bookkeeping: this runs
        for every request and Fence answer of every client)."""
        inbuf = self._inbuf
        inbuf += data
        events: list[Event] = []
        try:
            while inbuf:
                parsed = parse_client_message(inbuf, self.limits, extended_mouse=self.extended_mouse)
                if parsed is None:
                    break
                message, size = parsed
                del inbuf[:size]
                events.append(message)
        except ProtocolError:
            self.state = State.CLOSED
            raise
        return events

    def _progress(self) -> tuple[int, State, Step | None]:
        return len(self._inbuf), self.state, self._rsa_aes.step if self._rsa_aes else None

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self._outbuf += self._sealer.seal(data) if self._sealer is not None else data

    def send_server_init(
        self, width: int, height: int, pixel_format: PixelFormat, name: bytes
    ) -> list[Event]:
        """Answer ClientInit; returns any client messages that were already pipelined behind it."""
        if self.state is not State.SERVER_INIT:
            raise RuntimeError(f"ServerInit in state {self.state}")
        self._write(server_init(width, height, pixel_format, name))
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
        elif self.state is State.RSA_AES:
            self._read_rsa_aes()
        elif self.state is State.VENCRYPT_VERSION:
            self._read_vencrypt_version()
        elif self.state is State.VENCRYPT_SUBTYPE:
            self._read_vencrypt_subtype()
        elif self.state is State.TLS_HANDSHAKE:
            self._read_tls_handshake()
        elif self.state is State.PLAIN_AUTH:
            self._read_plain_auth()
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
        if self.refuse is not None:
            # 3.3: "security type 0" + reason; 3.7+: an empty security-type list + reason.
            reason = self.refuse.encode()
            head = struct.pack(">I", 0) if self.version == (3, 3) else b"\x00"
            self._write(head + struct.pack(">I", len(reason)) + reason)
            raise Refused(self.refuse)
        offered = self._offered()
        if self.version == (3, 3):
            # 3.3: the server chooses; prefer authentication when it is configured.
            chosen: SecurityType | None = next((t for t in offered if t is SecurityType.VNC_AUTH), None)
            if chosen is None and SecurityType.NONE in offered:
                chosen = SecurityType.NONE
            if chosen is None:
                self._fail_33("no security type available to an RFB 3.3 client")
            assert chosen is not None
            self._write(struct.pack(">I", chosen))
            self._begin_security(chosen)
            return
        if not offered:
            reason = b"no security type configured"
            self._write(b"\x00" + struct.pack(">I", len(reason)) + reason)
            raise ProtocolError(reason.decode())
        self._write(bytes([len(offered), *offered]))
        self.state = State.SECURITY_TYPE

    def _offered(self) -> list[SecurityType]:
        """The RFB security-type list: VeNCrypt (19) where its first subtype is configured."""
        offered: list[SecurityType] = []
        for t in self.security_types:
            if t not in security.IMPLEMENTED:
                continue
            rfb_type = SecurityType.VENCRYPT if t in vencrypt.SUBTYPES else SecurityType(t)
            if rfb_type not in offered:
                offered.append(rfb_type)
        return offered

    def _fail_33(self, reason: str) -> None:
        data = reason.encode()
        self._write(struct.pack(">II", 0, len(data)) + data)
        raise ProtocolError(reason)

    def _read_security_type(self) -> None:
        if not self._inbuf:
            return
        requested = self._inbuf[0]
        del self._inbuf[:1]
        if requested not in self._offered():
            self._security_failure(f"security type {requested} was not offered")
        self._begin_security(SecurityType(requested))

    def _begin_security(self, chosen: SecurityType) -> None:
        self.security_type = chosen
        if chosen is SecurityType.NONE:
            if self.version == (3, 8):
                self._write(struct.pack(">I", 0))
            self.state = State.CLIENT_INIT
        elif chosen is SecurityType.VNC_AUTH:
            self._challenge = security.new_challenge()
            self._write(self._challenge)
            self.state = State.VNC_AUTH
        elif chosen in security.RSA_AES:
            subtype = rsaaes.SUBTYPE_USER_PASS if self.ask_username else rsaaes.SUBTYPE_PASS
            self._rsa_aes = RsaAesServer(chosen, self.rsa_key, subtype=subtype)
            self._write(self._rsa_aes.hello())
            self.state = State.RSA_AES
        elif chosen is SecurityType.VENCRYPT:
            self._write(vencrypt.VERSION)
            self.state = State.VENCRYPT_VERSION
        else:  # pragma: no cover - guarded by IMPLEMENTED
            raise ProtocolError(f"security type {chosen} not implemented")

    def _read_vnc_auth(self) -> None:
        if len(self._inbuf) < 16:
            return
        response = bytes(self._inbuf[:16])
        del self._inbuf[:16]
        self._authenticate(Credentials(self._auth_type, challenge=self._challenge, response=response))

    def _read_vencrypt_version(self) -> None:
        if len(self._inbuf) < 2:
            return
        version = bytes(self._inbuf[:2])
        del self._inbuf[:2]
        if version != vencrypt.VERSION:
            self._write(b"\xff")
            raise ProtocolError(f"unsupported VeNCrypt version {version[0]}.{version[1]}")
        subtypes = self.vencrypt_subtypes
        self._write(b"\x00" + bytes([len(subtypes)]) + b"".join(struct.pack(">I", t) for t in subtypes))
        self.state = State.VENCRYPT_SUBTYPE

    def _read_vencrypt_subtype(self) -> None:
        if len(self._inbuf) < 4:
            return
        (chosen,) = struct.unpack(">I", self._inbuf[:4])
        del self._inbuf[:4]
        if chosen not in self.vencrypt_subtypes:
            self._security_failure(f"VeNCrypt subtype {chosen} was not offered")
        self._auth_type = SecurityType(chosen)
        anonymous = self._auth_type in vencrypt.ANONYMOUS
        context = vencrypt.anonymous_context() if anonymous else self.tls_context
        assert context is not None
        self._write(b"\x01")  # go ahead with TLS
        self._tls = TlsLayer(context)
        self.state = State.TLS_HANDSHAKE

    def _read_tls_handshake(self) -> None:
        tls = self._tls
        assert tls is not None
        done = tls.handshake(bytes(self._inbuf))
        self._inbuf.clear()
        self._outbuf += tls.flush()
        if not done:
            return
        # Everything from here on, both ways, is inside TLS.
        self._sealer = self._opener = tls
        inner = vencrypt.INNER[self._auth_type]
        if inner == "none":
            self._write(struct.pack(">I", 0))
            self.state = State.CLIENT_INIT
        elif inner == "vnc":
            self._challenge = security.new_challenge()
            self._write(self._challenge)
            self.state = State.VNC_AUTH
        else:
            self.state = State.PLAIN_AUTH

    def _read_plain_auth(self) -> None:
        if len(self._inbuf) < 8:
            return
        user_len, pass_len = struct.unpack(">II", self._inbuf[:8])
        if user_len > vencrypt.MAX_PLAIN_FIELD or pass_len > vencrypt.MAX_PLAIN_FIELD:
            raise ProtocolError("Plain username or password too long")
        end = 8 + user_len + pass_len
        if len(self._inbuf) < end:
            return
        username = bytes(self._inbuf[8 : 8 + user_len]).decode("utf-8", errors="surrogateescape")
        password = bytes(self._inbuf[8 + user_len : end]).decode("utf-8", errors="surrogateescape")
        del self._inbuf[:end]
        self._authenticate(Credentials(self._auth_type, username, password))

    def _read_rsa_aes(self) -> None:
        handshake = self._rsa_aes
        assert handshake is not None
        step = handshake.step
        if step is Step.CLIENT_KEY:
            self._write(handshake.read_client_key(self._inbuf) or b"")
        elif step is Step.CLIENT_RANDOM:
            our_hash = handshake.read_client_random(self._inbuf)
            if our_hash is not None:
                # Everything the client sends from here on is sealed, including what we hold.
                self._sealer = RecordSealer(handshake.send_key)
                self._opener = RecordOpener(handshake.receive_key)
                self._raw[:0] = self._inbuf
                self._inbuf.clear()
                self._write(our_hash)
        elif step is Step.CLIENT_HASH:
            self._write(handshake.read_client_hash(self._inbuf) or b"")
        elif step is Step.CREDENTIALS:
            credentials = handshake.read_credentials(self._inbuf)
            if credentials is None:
                return
            self._rsa_aes = None
            if not handshake.all_encrypted:
                # RA2ne: the SecurityResult and everything after it are plaintext again.
                if self._inbuf:
                    raise ProtocolError("unexpected bytes after the RSA-AES credentials")
                self._inbuf += self._raw
                self._raw.clear()
                self._sealer = self._opener = None
            username, password = credentials
            self._authenticate(Credentials(handshake.security_type, username, password))

    def _authenticate(self, credentials: Credentials) -> None:
        """Let ``verify`` judge the credentials; SecurityResult OK, or failed with its reason."""
        try:
            if self._verify is not None:
                self.principal = self._verify(credentials)
            elif self.password is not None and credentials.check_password(self.password):
                self.principal = credentials.username
            else:
                raise AuthenticationFailed("authentication failed")
        except AuthenticationFailed as exc:
            self._security_failure(str(exc) or "authentication failed", AuthenticationFailed)
        self._write(struct.pack(">I", 0))
        self.state = State.CLIENT_INIT

    def _security_failure(self, reason: str, error: type[ProtocolError] = ProtocolError) -> None:
        """SecurityResult 'failed', with a reason string where the version has one (3.8)."""
        data = reason.encode()
        result = struct.pack(">I", 1)
        if self.version == (3, 8):
            result += struct.pack(">I", len(data)) + data
        self._write(result)
        raise error(reason)
