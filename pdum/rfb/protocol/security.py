"""Security types and the VncAuth (DES challenge/response) primitive.

RFB security types are negotiated by the handshake in :mod:`pdum.rfb.protocol.connection`; this
module only holds the numbers and the crypto that does not depend on connection state.
"""

from __future__ import annotations

import enum
import hmac
import os
from dataclasses import dataclass, field

from Crypto.Cipher import DES


class SecurityType(enum.IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2
    RA2 = 5
    RA2NE = 6
    TIGHT = 16
    VENCRYPT = 19
    RA2_256 = 129
    RA2NE_256 = 130
    # VeNCrypt subtypes (u32 on the wire, offered inside type 19, never in the RFB type list)
    TLS_NONE = 257
    TLS_VNC = 258
    TLS_PLAIN = 259
    X509_NONE = 260
    X509_VNC = 261
    X509_PLAIN = 262


SECURITY_NAMES: dict[str, SecurityType] = {
    "none": SecurityType.NONE,
    "vnc": SecurityType.VNC_AUTH,
    "vncauth": SecurityType.VNC_AUTH,
    "ra2": SecurityType.RA2,
    "ra2ne": SecurityType.RA2NE,
    "ra2_256": SecurityType.RA2_256,
    "ra2ne_256": SecurityType.RA2NE_256,
    "tlsnone": SecurityType.TLS_NONE,
    "tlsvnc": SecurityType.TLS_VNC,
    "tlsplain": SecurityType.TLS_PLAIN,
    "x509none": SecurityType.X509_NONE,
    "x509vnc": SecurityType.X509_VNC,
    "x509plain": SecurityType.X509_PLAIN,
}

#: The security types this build can actually perform.
IMPLEMENTED = (
    SecurityType.NONE,
    SecurityType.VNC_AUTH,
    SecurityType.RA2,
    SecurityType.RA2NE,
    SecurityType.RA2_256,
    SecurityType.RA2NE_256,
    SecurityType.TLS_NONE,
    SecurityType.TLS_VNC,
    SecurityType.TLS_PLAIN,
    SecurityType.X509_NONE,
    SecurityType.X509_VNC,
    SecurityType.X509_PLAIN,
)

#: Types that let a client in without any secret (the TLS ones still encrypt).
UNAUTHENTICATED = (SecurityType.NONE, SecurityType.TLS_NONE, SecurityType.X509_NONE)

#: Types whose client must present a secret (a password, or a username and password).
AUTHENTICATED = tuple(t for t in IMPLEMENTED if t not in UNAUTHENTICATED)

#: Types that prove the password with VncAuth's DES challenge-response (bare or inside TLS).
VNC_AUTH_LIKE = (SecurityType.VNC_AUTH, SecurityType.TLS_VNC, SecurityType.X509_VNC)

#: The RSA-AES family (TigerVNC): the server needs an RSA key for these.
RSA_AES = (SecurityType.RA2, SecurityType.RA2NE, SecurityType.RA2_256, SecurityType.RA2NE_256)


def security_name(security_type: int) -> str:
    """The lower-case name ``serve(security=...)`` uses for a type ("vnc", "ra2", ...)."""
    for name, value in SECURITY_NAMES.items():
        if value == security_type and name != "vncauth":
            return name
    return str(int(security_type))


def _utf8(text: str) -> bytes:
    # surrogateescape round-trips bytes that were not valid UTF-8 on the wire
    return text.encode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class Credentials:
    """What a client presented during the security handshake. Never logged: the secrets are
    left out of ``repr``.

    ``password`` is the cleartext a client sent under RSA-AES (or TLS); VncAuth never reveals the
    password, only a DES response to our challenge, so there it is ``None`` and
    :meth:`check_password` tests a candidate against the response instead.
    """

    security_type: SecurityType
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    challenge: bytes = field(default=b"", repr=False)
    response: bytes = field(default=b"", repr=False)

    def check_password(self, candidate: str) -> bool:
        """Whether the client proved it knows ``candidate`` (constant time)."""
        if self.security_type in VNC_AUTH_LIKE:
            return len(self.challenge) == 16 and vnc_auth_check(candidate, self.challenge, self.response)
        if self.password is None:
            return False
        return hmac.compare_digest(_utf8(self.password), _utf8(candidate))


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_key(password: str) -> bytes:
    """The DES key VncAuth derives from a password.

    Only the first 8 bytes of the (UTF-8) password count -- a limit of the protocol itself,
    documented for users -- and each key byte is bit-reversed, as every VNC implementation does.
    """
    raw = password.encode("utf-8")[:8].ljust(8, b"\0")
    return bytes(_reverse_bits(b) for b in raw)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """What a client that knows ``password`` answers to a 16-byte ``challenge``."""
    return DES.new(vnc_auth_key(password), DES.MODE_ECB).encrypt(challenge)


def new_challenge() -> bytes:
    return os.urandom(16)


def vnc_auth_check(password: str, challenge: bytes, response: bytes) -> bool:
    """Constant-time check of a VncAuth response."""
    return hmac.compare_digest(vnc_auth_response(password, challenge), response)
