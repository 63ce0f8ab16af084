"""RFB wire constants, client-message parsing and server-message serialisation.

Everything here works on bytes alone (no sockets, no asyncio), so it is unit-tested and fuzzed
with plain byte strings. :func:`parse_client_message` is incremental: it returns ``None`` until a
whole message is buffered and raises :class:`ProtocolError` as soon as the bytes can no longer be
a valid message (unknown type, a length over the configured limit, ...), so a hostile client is
dropped before it makes us allocate anything large.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .errors import LimitExceeded, ProtocolError
from .pixelformat import PIXEL_FORMAT_SIZE, PixelFormat


class ClientMessageType(enum.IntEnum):
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    ENABLE_CONTINUOUS_UPDATES = 150
    FENCE = 248
    SET_DESKTOP_SIZE = 251
    QEMU = 255


class ServerMessageType(enum.IntEnum):
    FRAMEBUFFER_UPDATE = 0
    SET_COLOUR_MAP_ENTRIES = 1
    BELL = 2
    SERVER_CUT_TEXT = 3
    END_OF_CONTINUOUS_UPDATES = 150
    FENCE = 248


class Encoding(enum.IntEnum):
    """Encodings and pseudo-encodings (rfbproto numbering)."""

    RAW = 0
    COPY_RECT = 1
    RRE = 2
    HEXTILE = 5
    ZLIB = 6
    TIGHT = 7
    ZRLE = 16
    H264 = 50
    TIGHT_PNG = -260
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    QEMU_EXTENDED_KEY = -258
    DESKTOP_NAME = -307
    EXTENDED_DESKTOP_SIZE = -308
    FENCE = -312
    CONTINUOUS_UPDATES = -313
    EXTENDED_MOUSE_BUTTONS = -316
    EXTENDED_CLIPBOARD = -1063131698  # 0xC0A1E5CE as a signed 32-bit number


#: Quality-level pseudo-encodings -32 (level 0) .. -23 (level 9).
QUALITY_LEVEL_0 = -32
QUALITY_LEVEL_9 = -23
#: Compression-level pseudo-encodings -256 (level 0) .. -247 (level 9).
COMPRESS_LEVEL_0 = -256
COMPRESS_LEVEL_9 = -247


# -- client messages ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetPixelFormat:
    pixel_format: PixelFormat


@dataclass(frozen=True)
class SetEncodings:
    encodings: tuple[int, ...]


@dataclass(frozen=True)
class FramebufferUpdateRequest:
    incremental: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class KeyEvent:
    down: bool
    keysym: int


@dataclass(frozen=True)
class PointerEvent:
    button_mask: int
    x: int
    y: int


@dataclass(frozen=True)
class ClientCutText:
    """Plain (Latin-1) cut text, or an extended-clipboard payload when ``extended`` is true."""

    data: bytes
    extended: bool = False


@dataclass(frozen=True)
class EnableContinuousUpdates:
    enable: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Fence:
    flags: int
    payload: bytes


@dataclass(frozen=True)
class Screen:
    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int


@dataclass(frozen=True)
class SetDesktopSize:
    width: int
    height: int
    screens: tuple[Screen, ...]


@dataclass(frozen=True)
class QemuExtendedKeyEvent:
    down: bool
    keysym: int
    keycode: int


ClientMessage = (
    SetPixelFormat
    | SetEncodings
    | FramebufferUpdateRequest
    | KeyEvent
    | PointerEvent
    | ClientCutText
    | EnableContinuousUpdates
    | Fence
    | SetDesktopSize
    | QemuExtendedKeyEvent
)


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold or wait for (``serve(..., limits=Limits(...))``).

    The first three are applied while parsing, so no client can make us buffer without bound;
    the others are enforced by the session and the transports. A client that breaks one is
    disconnected with one WARNING log line and counted in ``display.metrics()["violations"]``;
    every other client goes on. ``None`` turns a timeout off. docs/reliability.md has the details.
    """

    #: Largest ClientCutText (plain or extended clipboard), in bytes.
    max_cut_text: int = 1 << 20
    #: Most encodings in one SetEncodings.
    max_encodings: int = 1024
    #: Most screens in one SetDesktopSize.
    max_screens: int = 16
    #: Bytes of small server messages (fence replies, clipboard, pseudo-rectangles) that may wait
    #: behind an update the client has not drained yet. Updates themselves never queue: one is
    #: built only after the previous one was written, so a slow client skips frames instead.
    max_pending_output: int = 4 << 20
    #: Seconds to finish the handshake (version, security, ClientInit).
    handshake_timeout: float | None = 30.0
    #: Seconds after the handshake within which a client must ask for pixels
    #: (FramebufferUpdateRequest or EnableContinuousUpdates).
    idle_timeout: float | None = 60.0
    #: Seconds a client may leave a message half-sent (a stalled or slowloris client).
    message_timeout: float | None = 30.0
    #: Most clients at once, handshaking or not; more are refused.
    max_clients: int = 64
    #: Largest WebSocket message a browser client may send (bridge and ASGI), in bytes.
    max_ws_message: int = 4 << 20


DEFAULT_LIMITS = Limits()
#: Bytes of a FramebufferUpdateRequest (type, incremental, x, y, width, height).
REQUEST_SIZE = 10

_U16x4 = struct.Struct(">HHHH")
_S32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_SCREEN = struct.Struct(">IHHHHI")
_QEMU_KEY = struct.Struct(">HII")


def parse_update_request(buf: bytes | bytearray | memoryview) -> FramebufferUpdateRequest:
    """The FramebufferUpdateRequest at the start of ``buf`` (at least :data:`REQUEST_SIZE` bytes,
    the first one its type)."""
    x, y, w, h = _U16x4.unpack_from(buf, 2)
    return FramebufferUpdateRequest(buf[1] != 0, x, y, w, h)


def parse_client_message(
    buf: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS, *, extended_mouse: bool = False
) -> tuple[ClientMessage, int] | None:
    """Parse one client message from the start of ``buf``.

    Returns ``(message, bytes_consumed)``, or ``None`` if more bytes are needed.
    Raises :class:`ProtocolError` for anything that cannot become a valid message.
    ``extended_mouse`` is true once the server has acknowledged ExtendedMouseButtons: then a
    PointerEvent whose mask has bit 7 set carries one more byte with buttons 8..15.
    """
    n = len(buf)
    if n < 1:
        return None
    kind = buf[0]
    if kind == ClientMessageType.SET_PIXEL_FORMAT:
        if n < 4 + PIXEL_FORMAT_SIZE:
            return None
        return SetPixelFormat(PixelFormat.unpack(bytes(buf[4 : 4 + PIXEL_FORMAT_SIZE]))), 20
    if kind == ClientMessageType.SET_ENCODINGS:
        if n < 4:
            return None
        (count,) = _U16.unpack_from(buf, 2)
        if count > limits.max_encodings:
            raise LimitExceeded(f"SetEncodings with {count} encodings (limit {limits.max_encodings})")
        size = 4 + 4 * count
        if n < size:
            return None
        encodings = struct.unpack_from(f">{count}i", buf, 4)
        return SetEncodings(tuple(encodings)), size
    if kind == ClientMessageType.FRAMEBUFFER_UPDATE_REQUEST:
        if n < REQUEST_SIZE:
            return None
        return parse_update_request(buf), REQUEST_SIZE
    if kind == ClientMessageType.KEY_EVENT:
        if n < 8:
            return None
        (keysym,) = _U32.unpack_from(buf, 4)
        return KeyEvent(buf[1] != 0, keysym), 8
    if kind == ClientMessageType.POINTER_EVENT:
        if n < 6:
            return None
        x, y = struct.unpack_from(">HH", buf, 2)
        mask = buf[1]
        if extended_mouse and mask & 0x80:
            if n < 7:
                return None
            return PointerEvent((mask & 0x7F) | (buf[6] << 7), x, y), 7
        return PointerEvent(mask, x, y), 6
    if kind == ClientMessageType.CLIENT_CUT_TEXT:
        if n < 8:
            return None
        (length,) = _S32.unpack_from(buf, 4)
        extended = length < 0
        size = -length if extended else length
        if size > limits.max_cut_text:
            raise LimitExceeded(f"ClientCutText of {size} bytes (limit {limits.max_cut_text})")
        if n < 8 + size:
            return None
        return ClientCutText(bytes(buf[8 : 8 + size]), extended), 8 + size
    if kind == ClientMessageType.ENABLE_CONTINUOUS_UPDATES:
        if n < 10:
            return None
        x, y, w, h = _U16x4.unpack_from(buf, 2)
        return EnableContinuousUpdates(buf[1] != 0, x, y, w, h), 10
    if kind == ClientMessageType.FENCE:
        if n < 9:
            return None
        (flags,) = _U32.unpack_from(buf, 4)
        length = buf[8]
        if length > 64:
            raise ProtocolError(f"Fence payload of {length} bytes (limit 64)")
        if n < 9 + length:
            return None
        return Fence(flags, bytes(buf[9 : 9 + length])), 9 + length
    if kind == ClientMessageType.SET_DESKTOP_SIZE:
        if n < 8:
            return None
        w, h = struct.unpack_from(">HH", buf, 2)
        count = buf[6]
        if count == 0:
            raise ProtocolError("SetDesktopSize with 0 screens")
        if count > limits.max_screens:
            raise LimitExceeded(f"SetDesktopSize with {count} screens (limit {limits.max_screens})")
        size = 8 + 16 * count
        if n < size:
            return None
        screens = tuple(Screen(*_SCREEN.unpack_from(buf, 8 + 16 * i)) for i in range(count))
        return SetDesktopSize(w, h, screens), size
    if kind == ClientMessageType.QEMU:
        if n < 2:
            return None
        if buf[1] != 0:
            raise ProtocolError(f"unsupported QEMU client sub-message {buf[1]}")
        if n < 12:
            return None
        down, keysym, keycode = _QEMU_KEY.unpack_from(buf, 2)
        return QemuExtendedKeyEvent(down != 0, keysym, keycode), 12
    raise ProtocolError(f"unknown client message type {kind}")


# -- server messages ---------------------------------------------------------------------------------
_RECT_HEADER = struct.Struct(">HHHHi")
_FBU_HEADER = struct.Struct(">BxH")


def framebuffer_update_header(rect_count: int) -> bytes:
    """FramebufferUpdate header; ``rect_count`` 0xFFFF means "until a LastRect rectangle"."""
    return _FBU_HEADER.pack(ServerMessageType.FRAMEBUFFER_UPDATE, rect_count)


def rect_header(x: int, y: int, width: int, height: int, encoding: int) -> bytes:
    return _RECT_HEADER.pack(x, y, width, height, encoding)


def server_cut_text(text: bytes) -> bytes:
    return struct.pack(">B3xI", ServerMessageType.SERVER_CUT_TEXT, len(text)) + text


def server_cut_text_extended(payload: bytes) -> bytes:
    return struct.pack(">B3xi", ServerMessageType.SERVER_CUT_TEXT, -len(payload)) + payload


def bell() -> bytes:
    return bytes([ServerMessageType.BELL])


def server_fence(flags: int, payload: bytes = b"") -> bytes:
    if len(payload) > 64:
        raise ValueError("fence payload is at most 64 bytes")
    return struct.pack(">B3xIB", ServerMessageType.FENCE, flags, len(payload)) + payload


def end_of_continuous_updates() -> bytes:
    return bytes([ServerMessageType.END_OF_CONTINUOUS_UPDATES])


def server_init(width: int, height: int, pixel_format: PixelFormat, name: bytes) -> bytes:
    return struct.pack(">HH", width, height) + pixel_format.pack() + _U32.pack(len(name)) + name
