"""Extended clipboard (pseudo-encoding 0xC0A1E5CE): UTF-8 text between server and clients.

Plain ClientCutText/ServerCutText is Latin-1 only. The extended variant (TigerVNC, noVNC) carries
UTF-8 and negotiates with five actions: Caps, Request, Peek, Notify, Provide. A cut-text message
with a *negative* length carries a 4-byte flags word (formats in the low 16 bits, actions in the
high 8) and an action-specific body. Provide's body is one complete zlib stream holding, for each
format flagged, a 4-byte big-endian size and the data (text: UTF-8, CRLF line ends, NUL-terminated).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import ProtocolError

FORMAT_TEXT = 1 << 0
ACTION_CAPS = 1 << 24
ACTION_REQUEST = 1 << 25
ACTION_PEEK = 1 << 26
ACTION_NOTIFY = 1 << 27
ACTION_PROVIDE = 1 << 28
ACTIONS_MASK = 0xFF000000
FORMATS_MASK = 0x0000FFFF

SERVER_ACTIONS = ACTION_CAPS | ACTION_REQUEST | ACTION_PEEK | ACTION_NOTIFY | ACTION_PROVIDE


@dataclass(frozen=True)
class ClipboardMessage:
    """One extended clipboard message from a client."""

    action: int  # one of the ACTION_* flags (Caps may be combined with nothing else)
    formats: int
    text: str | None = None  # Provide with text
    sizes: tuple[int, ...] = ()  # Caps: max sizes per format
    dropped: int = 0  # Provide: size of a text over the limit, dropped unread


def caps(max_text_size: int) -> bytes:
    """The server's Caps body: text only, all actions, and the largest text we accept."""
    return struct.pack(">II", SERVER_ACTIONS | FORMAT_TEXT, max_text_size)


def notify(has_text: bool) -> bytes:
    return struct.pack(">I", ACTION_NOTIFY | (FORMAT_TEXT if has_text else 0))


def request() -> bytes:
    return struct.pack(">I", ACTION_REQUEST | FORMAT_TEXT)


def provide(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8") + b"\0"
    return struct.pack(">I", ACTION_PROVIDE | FORMAT_TEXT) + zlib.compress(
        struct.pack(">I", len(data)) + data
    )


def parse(payload: bytes, max_text_size: int) -> ClipboardMessage:
    """Parse the body of an extended ClientCutText; decompressed text is bounded by ``max_text_size``."""
    if len(payload) < 4:
        raise ProtocolError("extended clipboard message shorter than its flags")
    (flags,) = struct.unpack_from(">I", payload)
    formats, actions = flags & FORMATS_MASK, flags & ACTIONS_MASK
    if actions & ACTION_CAPS:
        count = bin(formats).count("1")
        if len(payload) < 4 + 4 * count:
            raise ProtocolError("extended clipboard Caps too short")
        sizes = struct.unpack_from(f">{count}I", payload, 4)
        return ClipboardMessage(ACTION_CAPS, formats, sizes=sizes)
    if actions not in (ACTION_REQUEST, ACTION_PEEK, ACTION_NOTIFY, ACTION_PROVIDE):
        raise ProtocolError(f"extended clipboard message with actions {actions:#x}")
    if actions != ACTION_PROVIDE:
        return ClipboardMessage(actions, formats)
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload[4:], max_text_size + 4 * 16 + 1)
    except zlib.error as exc:
        raise ProtocolError(f"extended clipboard Provide: bad zlib data ({exc})") from None
    text: str | None = None
    offset = 0
    for bit in range(16):
        if not formats & (1 << bit):
            continue
        if offset + 4 > len(data):
            raise ProtocolError("extended clipboard Provide truncated")
        (size,) = struct.unpack_from(">I", data, offset)
        offset += 4
        if size > max_text_size:
            # Dropped unread, not fatal (TigerVNC's server drops it too): Caps' size limit only binds
            # unsolicited Provides, and a client may answer our Request with more (noVNC always does).
            dropped = size if 1 << bit == FORMAT_TEXT else 0
            return ClipboardMessage(ACTION_PROVIDE, formats, text=text, dropped=dropped)
        chunk = data[offset : offset + size]
        if len(chunk) < size:
            raise ProtocolError("extended clipboard Provide truncated")
        offset += size
        if 1 << bit == FORMAT_TEXT:
            text = chunk.rstrip(b"\0").decode("utf-8", errors="replace").replace("\r\n", "\n")
    return ClipboardMessage(ACTION_PROVIDE, formats, text=text)
