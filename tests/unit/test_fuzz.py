"""Property-based fuzzing of the sans-I/O core: any bytes give events or a ProtocolError.

Nothing else may escape (no struct.error, IndexError, ValueError, UnicodeError...), and the
parser never buffers more than the configured limits allow.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdum.rfb.protocol import SERVER_DEFAULT, PixelFormat, ProtocolError, SecurityType, ServerConnection
from pdum.rfb.protocol import clipboard as xclip
from pdum.rfb.protocol import messages as m
from pdum.rfb.protocol.connection import State

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = m.Limits(max_cut_text=4096, max_encodings=64)


def _ready_connection() -> ServerConnection:
    c = ServerConnection(limits=LIMITS)
    c.receive_data(b"RFB 003.008\n\x01\x01")
    c.send_server_init(64, 48, SERVER_DEFAULT, b"fuzz")
    c.data_to_send()
    assert c.state is State.NORMAL
    return c


# Message-shaped inputs find more than uniform bytes: a valid type byte then anything.
message_like = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda kind, rest: bytes([kind]) + rest,
        st.sampled_from([0, 2, 3, 4, 5, 6, 150, 248, 251, 255, 1, 7, 99]),
        st.binary(max_size=120),
    ),
)


@FUZZ
@given(chunks=st.lists(message_like, max_size=8), extended_mouse=st.booleans())
def test_client_messages_never_raise_anything_else(chunks: list[bytes], extended_mouse: bool) -> None:
    c = _ready_connection()
    c.extended_mouse = extended_mouse
    try:
        for chunk in chunks:
            for event in c.receive_data(chunk):
                assert isinstance(event, m.ClientMessage)
            # the parser holds only an incomplete message, bounded by the limits
            assert c.buffered <= 8 + LIMITS.max_cut_text + 4 * LIMITS.max_encodings + 16 * LIMITS.max_screens
    except ProtocolError:
        assert c.state is State.CLOSED


@FUZZ
@given(data=st.binary(max_size=64), split=st.integers(min_value=0, max_value=64))
def test_handshake_never_raises_anything_else(data: bytes, split: int) -> None:
    for prefix in (b"", b"RFB 003.008\n", b"RFB 003.003\n", b"RFB 003.007\n"):
        c = ServerConnection(security_types=[SecurityType.VNC_AUTH, SecurityType.NONE], password="pw")
        payload = prefix + data
        try:
            c.receive_data(payload[:split])
            c.receive_data(payload[split:])
        except ProtocolError:
            pass


@FUZZ
@given(payload=st.binary(max_size=300))
def test_extended_clipboard_parse(payload: bytes) -> None:
    try:
        msg = xclip.parse(payload, 1000)
    except ProtocolError:
        return
    assert msg.text is None or len(msg.text.encode("utf-8", errors="replace")) <= 4000


@FUZZ
@given(
    flags=st.integers(min_value=0, max_value=2**32 - 1),
    body=st.binary(max_size=200),
)
def test_extended_clipboard_flags(flags: int, body: bytes) -> None:
    try:
        xclip.parse(struct.pack(">I", flags) + body, 1000)
    except ProtocolError:
        pass


@FUZZ
@given(data=st.binary(min_size=16, max_size=16))
def test_any_valid_pixel_format_encodes(data: bytes) -> None:
    pf = PixelFormat.unpack(data)
    try:
        pf.validate()
    except ProtocolError:
        return
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    out = pf.encode(rgb)
    assert out.shape == (3, 5, pf.bytes_per_pixel) and out.dtype == np.uint8
