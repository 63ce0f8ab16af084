"""VeNCrypt (security type 19): TLS around VncAuth, Plain (username + password) or nothing, sans-I/O.

The server half, as TigerVNC's SSecurityVeNCrypt / SSecurityTLS / SSecurityPlain speak it:

1. server -> client: version ``0, 2``; client -> server: the version it takes (only 0.2 is
   accepted); server -> client: ``0`` (OK) or ``0xff`` (refused);
2. server -> client: ``u8 count`` and ``count`` ``u32`` subtypes; client -> server: ``u32`` choice;
3. server -> client: ``1``, then the TLS handshake: anonymous (Diffie-Hellman without a
   certificate, TLS 1.2) for TLSNone/TLSVnc/TLSPlain, with the server certificate for
   X509None/X509Vnc/X509Plain;
4. inside TLS, the inner authentication: nothing, VncAuth's challenge and response, or Plain's
   ``u32 ulen, u32 plen, username, password``; then the SecurityResult and the whole session.

TLS runs on :class:`ssl.SSLObject` over a pair of :class:`ssl.MemoryBIO`, so no socket is involved:
:class:`TlsLayer` is a record layer like RSA-AES's, for :class:`ServerConnection`.

Anonymous TLS encrypts but does not authenticate the server (a man in the middle can sit in
between); the X509 types do, when the client checks the certificate.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from .errors import ProtocolError
from .security import SecurityType

VERSION = b"\x00\x02"
#: Longest username / password a Plain client may send (TigerVNC's server limit).
MAX_PLAIN_FIELD = 1023

ANONYMOUS = (SecurityType.TLS_NONE, SecurityType.TLS_VNC, SecurityType.TLS_PLAIN)
X509 = (SecurityType.X509_NONE, SecurityType.X509_VNC, SecurityType.X509_PLAIN)
SUBTYPES = ANONYMOUS + X509

#: The authentication that runs inside TLS for each subtype.
INNER: dict[SecurityType, str] = {
    SecurityType.TLS_NONE: "none",
    SecurityType.X509_NONE: "none",
    SecurityType.TLS_VNC: "vnc",
    SecurityType.X509_VNC: "vnc",
    SecurityType.TLS_PLAIN: "plain",
    SecurityType.X509_PLAIN: "plain",
}


@functools.cache
def anonymous_context() -> ssl.SSLContext:
    """Server context for the TLS* subtypes: anonymous (EC)DH key exchange, which needs TLS 1.2
    and OpenSSL security level 0 (GnuTLS clients offer ANON-ECDH / ANON-DH for them)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
    return context


def certificate_context(cert: str | Path, key: str | Path | None = None) -> ssl.SSLContext:
    """Server context for the X509* subtypes from a PEM certificate (chain) and private key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: TigerVNC 1.12 (GnuTLS) hangs when a ticket arrives in the same
    # read as the first application data, and we never resume sessions anyway.
    context.num_tickets = 0
    context.options |= ssl.OP_NO_TICKET
    context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


class TlsLayer:
    """Server-side TLS over memory buffers: the handshake, then sealing and opening records."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    def handshake(self, data: bytes) -> bool:
        """Feed handshake bytes; True once the handshake is complete (then :meth:`flush`)."""
        if data:
            self._incoming.write(data)
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise ProtocolError(f"TLS handshake failed: {exc.reason or exc}") from None
        return True

    @property
    def version(self) -> str | None:
        return self._tls.version()

    @property
    def cipher(self) -> str | None:
        cipher = self._tls.cipher()
        return cipher[0] if cipher else None

    def flush(self) -> bytes:
        """TLS bytes waiting to go to the client (handshake messages, tickets, ...)."""
        return self._outgoing.read()

    def seal(self, data: bytes) -> bytes:
        if data:
            try:
                self._tls.write(data)
            except ssl.SSLError as exc:
                raise ProtocolError(f"TLS write failed: {exc.reason or exc}") from None
        return self._outgoing.read()

    def open(self, buffer: bytearray) -> bytes | None:
        """Take every received byte in ``buffer``; the plaintext it completes, or ``None``."""
        if buffer:
            self._incoming.write(bytes(buffer))
            buffer.clear()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise ProtocolError("the client closed the TLS session") from None
            except ssl.SSLError as exc:
                raise ProtocolError(f"TLS error: {exc.reason or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks) or None
