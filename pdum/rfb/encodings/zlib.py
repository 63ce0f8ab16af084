"""Zlib encoding (6): Raw pixels through one zlib stream that lives as long as the client.

RFB requires a single deflate stream per client (the client keeps one inflater), so the
compressor sits in the client's :class:`EncodeContext` and each rectangle ends with
``Z_SYNC_FLUSH`` so the client can decode it without waiting for more data.
"""

from __future__ import annotations

import struct
import zlib
from typing import ClassVar

import numpy as np

from ..protocol.messages import Encoding
from ..protocol.pixelformat import PixelFormat
from .base import EncodeContext

_STREAM = "zlib"


class ZlibEncoder:
    max_width: ClassVar[int | None] = None
    max_area: ClassVar[int | None] = None
    encoding: ClassVar[int] = Encoding.ZLIB

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        compressor = ctx.streams.get(_STREAM)
        if compressor is None:
            # The level is fixed when the stream starts; later compress-level changes apply to
            # new streams only (a client cannot tell us to restart its inflater).
            compressor = ctx.new_compressor(ctx.compress_level)
            ctx.streams[_STREAM] = compressor
        data = compressor.compress(pixel_format.encode_bytes(rgb)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", len(data)) + data
