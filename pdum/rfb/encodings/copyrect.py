"""CopyRect encoding (1) on the wire: a rectangle header at the destination, then src-x and src-y.

Not an :class:`~pdum.rfb.encodings.base.Encoder` (it carries no pixels, so it is not in
``ENCODERS``): the session emits these rectangles first in an update, for the copies that
``pdum.rfb.copyrect`` found safe for that client.
"""

from __future__ import annotations

import struct

from ..protocol import messages as m
from ..protocol.messages import Encoding

_SOURCE = struct.Struct(">HH")


def copyrect_rect(src_x: int, src_y: int, width: int, height: int, dst_x: int, dst_y: int) -> bytes:
    """One CopyRect rectangle (16 bytes); the argument order is that of ``copyrect.Copy``."""
    return m.rect_header(dst_x, dst_y, width, height, Encoding.COPY_RECT) + _SOURCE.pack(src_x, src_y)
