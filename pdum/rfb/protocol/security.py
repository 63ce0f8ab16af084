"""Security types and the VncAuth (DES challenge/response) primitive.

RFB security types are negotiated by the handshake in :mod:`pdum.rfb.protocol.connection`; this
module only holds the numbers and the crypto that does not depend on connection state.
"""

from __future__ import annotations

import enum
import hmac
import os

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


SECURITY_NAMES: dict[str, SecurityType] = {
    "none": SecurityType.NONE,
    "vnc": SecurityType.VNC_AUTH,
    "vncauth": SecurityType.VNC_AUTH,
}

#: The security types this build can actually perform.
IMPLEMENTED = (SecurityType.NONE, SecurityType.VNC_AUTH)


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
