"""A reference client for TigerVNC's RSA-AES security types, for the tests.

Written from TigerVNC's CSecurityRSAAES.cxx / rdr/AESInStream.cxx / AESOutStream.cxx and noVNC's
core/ra2.js, independently of ``pdum.rfb.protocol.rsaaes``: it shares no code with the server, so
a misreading of the protocol on one side shows up as a failure instead of cancelling out.

It is incremental: feed it what the server sent with :meth:`feed`, then call :meth:`step`, which
returns the bytes to send next or ``None`` while it needs more input.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable

from Crypto.Cipher import AES, PKCS1_v1_5
from Crypto.PublicKey import RSA

# type -> (AES bits, whole session encrypted)
TYPES = {5: (128, True), 6: (128, False), 129: (256, True), 130: (256, False)}


def eax_seal(key: bytes, counter: int, data: bytes) -> bytes:
    header = struct.pack(">H", len(data))
    cipher = AES.new(key, AES.MODE_EAX, nonce=counter.to_bytes(16, "little"), mac_len=16)
    cipher.update(header)
    body, tag = cipher.encrypt_and_digest(data)
    return header + body + tag


def eax_open(key: bytes, counter: int, record: bytes) -> bytes:
    (length,) = struct.unpack(">H", record[:2])
    assert len(record) == 2 + length + 16
    cipher = AES.new(key, AES.MODE_EAX, nonce=counter.to_bytes(16, "little"), mac_len=16)
    cipher.update(record[:2])
    return cipher.decrypt_and_verify(record[2 : 2 + length], record[2 + length :])


class Ra2Client:
    """The client half after it has chosen ``security_type`` (5, 6, 129 or 130)."""

    def __init__(
        self,
        security_type: int,
        client_key: RSA.RsaKey,
        *,
        password: str = "",
        username: str = "",
        random: Callable[[int], bytes] = os.urandom,
        key_bits_field: int | None = None,
    ) -> None:
        self.security_type = security_type
        self.aes_bits, self.all_encrypted = TYPES[security_type]
        self.hash = hashlib.sha1 if self.aes_bits == 128 else hashlib.sha256
        self.client_key = client_key
        self.password = password
        self.username = username
        self.random = random
        bits = client_key.size_in_bits() if key_bits_field is None else key_bits_field
        size = (client_key.size_in_bits() + 7) // 8
        self.client_key_message = (
            struct.pack(">I", bits) + client_key.n.to_bytes(size, "big") + client_key.e.to_bytes(size, "big")
        )
        self.raw = bytearray()
        self.plain = bytearray()
        self.state = "server-key"
        self.server_key_message = b""
        self.server_public: RSA.RsaKey | None = None
        self.client_random = b""
        self.send_key = self.recv_key = b""
        self.send_counter = self.recv_counter = 0
        self.subtype: int | None = None
        self.result: tuple[int, str] | None = None
        #: Bytes the server sent (decrypted under RA2) after the SecurityResult.
        self.after = bytearray()

    # -- plumbing ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.raw += data

    def seal(self, data: bytes) -> bytes:
        record = eax_seal(self.send_key, self.send_counter, data)
        self.send_counter += 1
        return record

    def _open_one(self) -> bool:
        if len(self.raw) < 2:
            return False
        (length,) = struct.unpack(">H", self.raw[:2])
        if len(self.raw) < 2 + length + 16:
            return False
        record = bytes(self.raw[: 2 + length + 16])
        del self.raw[: 2 + length + 16]
        self.plain += eax_open(self.recv_key, self.recv_counter, record)
        self.recv_counter += 1
        return True

    def _take(self, n: int, sealed: bool) -> bytes | None:
        if sealed:
            while len(self.plain) < n and self._open_one():
                pass
            buf = self.plain
        else:
            assert not self.plain, "plaintext left over from a record"
            buf = self.raw
        if len(buf) < n:
            return None
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def _peek(self, n: int, sealed: bool) -> bytes | None:
        data = self._take(n, sealed)
        if data is not None:
            buf = self.plain if sealed else self.raw
            buf[:0] = data
        return data

    # -- the handshake --------------------------------------------------------------------------------
    def step(self) -> bytes | None:
        """Advance as far as the buffered input allows; the bytes to send (maybe empty) or None."""
        out = bytearray()
        progressed = False
        while True:
            before = self.state
            data = getattr(self, "_" + self.state.replace("-", "_"))()
            if data is None or self.state == before:
                break
            out += data
            progressed = True
        return bytes(out) if progressed else None

    def _server_key(self) -> bytes | None:
        head = self._peek(4, False)
        if head is None:
            return None
        (bits,) = struct.unpack(">I", head)
        size = (bits + 7) // 8
        message = self._take(4 + 2 * size, False)
        if message is None:
            return None
        self.server_key_message = message
        n = int.from_bytes(message[4 : 4 + size], "big")
        e = int.from_bytes(message[4 + size :], "big")
        self.server_public = RSA.construct((n, e))
        self.client_random = self.random(self.aes_bits // 8)
        encrypted = PKCS1_v1_5.new(self.server_public).encrypt(self.client_random)
        self.state = "server-random"
        return self.client_key_message + struct.pack(">H", len(encrypted)) + encrypted

    def _server_random(self) -> bytes | None:
        head = self._peek(2, False)
        if head is None:
            return None
        (length,) = struct.unpack(">H", head)
        message = self._take(2 + length, False)
        if message is None:
            return None
        server_random = PKCS1_v1_5.new(self.client_key).decrypt(message[2:], None)
        assert server_random is not None and len(server_random) == self.aes_bits // 8
        k = self.aes_bits // 8
        # TigerVNC's client: it decrypts with H(client + server), encrypts with H(server + client).
        self.recv_key = self.hash(self.client_random + server_random).digest()[:k]
        self.send_key = self.hash(server_random + self.client_random).digest()[:k]
        self.state = "server-hash"
        return self.seal(self.hash(self.client_key_message + self.server_key_message).digest())

    def _server_hash(self) -> bytes | None:
        size = self.hash().digest_size
        received = self._take(size, True)
        if received is None:
            return None
        expected = self.hash(self.server_key_message + self.client_key_message).digest()
        assert received == expected, "server hash mismatch"
        self.state = "subtype"
        return b""

    def _subtype(self) -> bytes | None:
        data = self._take(1, True)
        if data is None:
            return None
        self.subtype = data[0]
        assert self.subtype in (1, 2)
        user = self.username.encode() if self.subtype == 1 else b""
        password = self.password.encode()
        self.state = "result"
        return self.seal(bytes([len(user)]) + user + bytes([len(password)]) + password)

    def _result(self) -> bytes | None:
        sealed = self.all_encrypted
        head = self._peek(4, sealed)
        if head is None:
            return None
        (status,) = struct.unpack(">I", head)
        if status == 0:
            self._take(4, sealed)
            self.result = (0, "")
        else:
            lengths = self._peek(8, sealed)
            if lengths is None:
                return None
            (length,) = struct.unpack(">I", lengths[4:])
            message = self._take(8 + length, sealed)
            if message is None:
                return None
            self.result = (status, message[8:].decode())
        self.state = "done"
        return b""

    def _done(self) -> bytes | None:
        if self.all_encrypted:
            while self._open_one():
                pass
            self.after += self.plain
            self.plain.clear()
        else:
            self.after += self.raw
            self.raw.clear()
        return None

    # -- after the handshake --------------------------------------------------------------------------
    def send(self, data: bytes) -> bytes:
        """Client bytes as they go on the wire after the handshake."""
        return self.seal(data) if self.all_encrypted else data

    def received(self) -> bytes:
        """Everything the server sent after the SecurityResult, decrypted; clears it."""
        self._done()
        data = bytes(self.after)
        self.after.clear()
        return data
