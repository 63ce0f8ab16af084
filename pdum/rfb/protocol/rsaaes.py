"""RSA-AES security (RA2, RA2ne, RA2_256, RA2ne_256) as TigerVNC defines it, sans-I/O.

The server half of the handshake, after the client picked one of the four types:

1. server -> client: public key ``u32 bits, modulus, exponent`` (both padded to ``ceil(bits/8)``);
2. client -> server: its public key in the same form (1024..8192 bits), then ``u16 length`` and
   its random (16 bytes for RA2/RA2ne, 32 for the ``_256`` types) encrypted to our key with
   RSAES-PKCS1-v1_5;
3. server -> client: our random, encrypted the same way to the client's key;
4. both derive the session keys: ``H(server_random + client_random)`` decrypts what the client
   sends, ``H(client_random + server_random)`` encrypts what we send (H is SHA-1 truncated to
   16 bytes for 128-bit AES, SHA-256 for the ``_256`` types); from here on the handshake runs
   over the record layer (:class:`RecordSealer` / :class:`RecordOpener`);
5. both send ``H(own key message + peer key message)`` and check the other's (this binds the
   session to both public keys);
6. server -> client: the subtype, 1 (username and password) or 2 (password only);
7. client -> server: ``u8 len, username, u8 len, password`` (username empty for subtype 2).

The SecurityResult follows. For RA2 and RA2_256 every byte after step 4, in both directions and
for the rest of the connection, goes through the record layer; for RA2ne and RA2ne_256 only the
steps 5 to 7 do. A record is ``u16 length`` (also the EAX associated data), the AES-EAX
ciphertext and a 16-byte tag; the nonce is a 16-byte little-endian counter per direction that
starts at zero and counts records.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES, PKCS1_v1_5
from Crypto.PublicKey import RSA

from .errors import ProtocolError
from .security import SecurityType

#: Client key sizes the handshake accepts (TigerVNC's limits).
MIN_KEY_BITS = 1024
MAX_KEY_BITS = 8192
#: The size of the key a Display generates when it is not given one.
DEFAULT_KEY_BITS = 2048

SUBTYPE_USER_PASS = 1
SUBTYPE_PASS = 2

MAC_SIZE = 16
#: Largest record payload we send. The length field allows 65535; TigerVNC's reader takes any
#: length (it sends 8192 itself), and fewer, larger records cost less to seal.
MAX_RECORD = 65535

#: Security type -> (AES key bits, whole session encrypted?)
TYPES: dict[SecurityType, tuple[int, bool]] = {
    SecurityType.RA2: (128, True),
    SecurityType.RA2NE: (128, False),
    SecurityType.RA2_256: (256, True),
    SecurityType.RA2NE_256: (256, False),
}


# -- keys ----------------------------------------------------------------------------------------------
def generate_key(bits: int = DEFAULT_KEY_BITS) -> RSA.RsaKey:
    """A fresh RSA key for the server (takes a fraction of a second for 2048 bits)."""
    return RSA.generate(bits)


def load_key(source: str | bytes | Path | RSA.RsaKey) -> RSA.RsaKey:
    """An RSA private key from a PEM file path, PEM text/bytes, or a pycryptodome key."""
    if isinstance(source, RSA.RsaKey):
        key = source
    else:
        if isinstance(source, Path) or (isinstance(source, str) and "-----BEGIN" not in source):
            data = Path(source).read_bytes()
        else:
            data = source.encode() if isinstance(source, str) else bytes(source)
        try:
            key = RSA.import_key(data)
        except (ValueError, IndexError, TypeError) as exc:
            raise ValueError(f"rsa_key is not an RSA private key in PEM form: {exc}") from None
    if not key.has_private():
        raise ValueError("rsa_key must be a private key")
    if not MIN_KEY_BITS <= key.size_in_bits() <= MAX_KEY_BITS:
        raise ValueError(f"rsa_key must have {MIN_KEY_BITS}..{MAX_KEY_BITS} bits, not {key.size_in_bits()}")
    return key


def public_key_message(key: Any) -> bytes:
    """``u32 bits`` + modulus + exponent, each big-endian in ``ceil(bits / 8)`` bytes."""
    bits = key.size_in_bits()
    size = (bits + 7) // 8
    return struct.pack(">I", bits) + int(key.n).to_bytes(size, "big") + int(key.e).to_bytes(size, "big")


def fingerprint(key: Any) -> str:
    """The fingerprint TigerVNC (and RealVNC) show for a server key: ``xx-xx-...`` (8 bytes)."""
    digest = hashlib.sha1(public_key_message(key)).digest()[:8]
    return "-".join(f"{b:02x}" for b in digest)


def session_hash(key_bits: int, first: bytes, second: bytes) -> bytes:
    """SHA-1 (128-bit types) or SHA-256 (``_256`` types) of two concatenated messages."""
    return (hashlib.sha1 if key_bits == 128 else hashlib.sha256)(first + second).digest()


def session_key(key_bits: int, first_random: bytes, second_random: bytes) -> bytes:
    """An AES key: the session hash of two randoms, truncated to the AES key size."""
    return session_hash(key_bits, first_random, second_random)[: key_bits // 8]


# -- record layer ------------------------------------------------------------------------------------------
def _nonce(counter: int) -> bytes:
    return (counter % (1 << 128)).to_bytes(16, "little")


class RecordSealer:
    """Encrypts outgoing bytes into AES-EAX records (``u16 length, ciphertext, 16-byte tag``)."""

    def __init__(self, key: bytes, max_record: int = MAX_RECORD) -> None:
        if len(key) not in (16, 32):
            raise ValueError("AES key must be 16 or 32 bytes")
        if not 1 <= max_record <= 65535:
            raise ValueError("max_record must be 1..65535")
        self._key = key
        self.counter = 0
        self.max_record = max_record

    def seal(self, data: bytes) -> bytes:
        """``data`` as one or more records (none for empty data)."""
        out = bytearray()
        view = memoryview(data)
        for start in range(0, len(view), self.max_record):
            chunk = view[start : start + self.max_record]
            header = struct.pack(">H", len(chunk))
            cipher = AES.new(self._key, AES.MODE_EAX, nonce=_nonce(self.counter), mac_len=MAC_SIZE)
            cipher.update(header)
            ciphertext, tag = cipher.encrypt_and_digest(chunk)
            out += header + ciphertext + tag
            self.counter += 1
        return bytes(out)


class RecordOpener:
    """Decrypts incoming AES-EAX records; a bad tag raises :class:`ProtocolError`."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 32):
            raise ValueError("AES key must be 16 or 32 bytes")
        self._key = key
        self.counter = 0

    def open(self, buffer: bytearray) -> bytes | None:
        """Remove one complete record from the front of ``buffer`` and return its plaintext,
        or return ``None`` (leaving ``buffer`` alone) until a whole record has arrived."""
        if len(buffer) < 2:
            return None
        (length,) = struct.unpack_from(">H", buffer)
        end = 2 + length + MAC_SIZE
        if len(buffer) < end:
            return None
        header = bytes(buffer[:2])
        ciphertext = bytes(buffer[2 : 2 + length])
        tag = bytes(buffer[2 + length : end])
        cipher = AES.new(self._key, AES.MODE_EAX, nonce=_nonce(self.counter), mac_len=MAC_SIZE)
        cipher.update(header)
        try:
            plaintext = cipher.decrypt_and_verify(ciphertext, tag)
        except ValueError:
            raise ProtocolError("corrupted RSA-AES record (bad MAC)") from None
        del buffer[:end]
        self.counter += 1
        return plaintext


# -- the server side of the handshake ------------------------------------------------------------------
class Step(enum.Enum):
    CLIENT_KEY = "client-key"
    CLIENT_RANDOM = "client-random"
    CLIENT_HASH = "client-hash"
    CREDENTIALS = "credentials"
    DONE = "done"


class RsaAesServer:
    """The server half of one RSA-AES handshake, driven by :class:`ServerConnection`.

    Each ``read_*`` method takes what it needs from the front of a plaintext buffer (the
    connection has already removed the record layer where there is one), returns ``None`` while
    bytes are missing, and otherwise the bytes to send next (before the record layer is on:
    plaintext; after: the connection seals them). After :meth:`read_client_random` the
    connection turns the record layer on with :attr:`send_key` / :attr:`receive_key`.
    """

    def __init__(
        self,
        security_type: SecurityType,
        server_key: Any,
        *,
        subtype: int = SUBTYPE_PASS,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if security_type not in TYPES:
            raise ValueError(f"{security_type!r} is not an RSA-AES type")
        if subtype not in (SUBTYPE_USER_PASS, SUBTYPE_PASS):
            raise ValueError("subtype must be 1 (username and password) or 2 (password)")
        self.security_type = security_type
        self.key_bits, self.all_encrypted = TYPES[security_type]
        self.subtype = subtype
        self._server_key = server_key
        self._random = random
        self._server_key_message = public_key_message(server_key)
        self._server_key_size = (server_key.size_in_bits() + 7) // 8
        self._client_key: RSA.RsaKey | None = None
        self._client_key_message = b""
        self._server_random = b""
        self.send_key = b""
        self.receive_key = b""
        self.step = Step.CLIENT_KEY

    @property
    def random_size(self) -> int:
        return self.key_bits // 8

    def hello(self) -> bytes:
        """The first message: our public key."""
        return self._server_key_message

    def read_client_key(self, buf: bytearray) -> bytes | None:
        """Client public key -> our random encrypted to it (``u16 length`` + ciphertext)."""
        assert self.step is Step.CLIENT_KEY
        if len(buf) < 4:
            return None
        (bits,) = struct.unpack_from(">I", buf)
        if bits < MIN_KEY_BITS:
            raise ProtocolError("client RSA key is too short")
        if bits > MAX_KEY_BITS:
            raise ProtocolError("client RSA key is too long")
        size = (bits + 7) // 8
        if len(buf) < 4 + 2 * size:
            return None
        message = bytes(buf[: 4 + 2 * size])
        del buf[: 4 + 2 * size]
        n = int.from_bytes(message[4 : 4 + size], "big")
        e = int.from_bytes(message[4 + size :], "big")
        if n.bit_length() != bits or e < 3 or e % 2 == 0 or e >= n:
            raise ProtocolError("client RSA key is invalid")
        try:
            self._client_key = RSA.construct((n, e))
        except ValueError:
            raise ProtocolError("client RSA key is invalid") from None
        self._client_key_message = message
        self._server_random = self._random(self.random_size)
        encrypted = PKCS1_v1_5.new(self._client_key).encrypt(self._server_random)
        self.step = Step.CLIENT_RANDOM
        return struct.pack(">H", len(encrypted)) + encrypted

    def read_client_random(self, buf: bytearray) -> bytes | None:
        """The client's encrypted random -> our hash (to be sent sealed).

        Sets :attr:`send_key` and :attr:`receive_key`; everything after this is sealed.
        """
        assert self.step is Step.CLIENT_RANDOM
        if len(buf) < 2:
            return None
        (length,) = struct.unpack_from(">H", buf)
        if length != self._server_key_size:
            raise ProtocolError("RSA-AES random does not match the server key length")
        if len(buf) < 2 + length:
            return None
        encrypted = bytes(buf[2 : 2 + length])
        del buf[: 2 + length]
        # Implicit rejection: bad padding yields a pseudo-random value instead of an error, so the
        # handshake fails later at the hash check without telling an attacker why (no oracle).
        cipher = PKCS1_v1_5.new(self._server_key)
        try:
            client_random = cipher.decrypt(encrypted, expected_pt_len=self.random_size)
        except ValueError:  # not below the modulus: public knowledge, no oracle in saying so
            raise ProtocolError("RSA-AES random is not an RSA ciphertext for our key") from None
        self.receive_key = session_key(self.key_bits, self._server_random, client_random)
        self.send_key = session_key(self.key_bits, client_random, self._server_random)
        self.step = Step.CLIENT_HASH
        return session_hash(self.key_bits, self._server_key_message, self._client_key_message)

    def read_client_hash(self, buf: bytearray) -> bytes | None:
        """The client's hash of both keys -> the subtype byte (to be sent sealed)."""
        assert self.step is Step.CLIENT_HASH
        size = 20 if self.key_bits == 128 else 32
        if len(buf) < size:
            return None
        received = bytes(buf[:size])
        del buf[:size]
        expected = session_hash(self.key_bits, self._client_key_message, self._server_key_message)
        if not hmac.compare_digest(received, expected):
            raise ProtocolError("RSA-AES hash mismatch (wrong key or tampered handshake)")
        # The keys and randoms are no longer needed.
        self._client_key = None
        self._server_random = b""
        self.step = Step.CREDENTIALS
        return bytes([self.subtype])

    def read_credentials(self, buf: bytearray) -> tuple[str | None, str] | None:
        """``u8 len, username, u8 len, password`` -> (username or None, password)."""
        assert self.step is Step.CREDENTIALS
        if len(buf) < 1:
            return None
        user_len = buf[0]
        if len(buf) < 2 + user_len:
            return None
        pass_len = buf[1 + user_len]
        end = 2 + user_len + pass_len
        if len(buf) < end:
            return None
        # surrogateescape: bytes that are not UTF-8 still compare exactly (see Credentials)
        username = bytes(buf[1 : 1 + user_len]).decode("utf-8", errors="surrogateescape")
        password = bytes(buf[2 + user_len : end]).decode("utf-8", errors="surrogateescape")
        del buf[:end]
        self.step = Step.DONE
        if self.subtype == SUBTYPE_PASS:
            return None, password
        return username, password
