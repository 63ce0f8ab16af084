"""Raw encoding (0): the pixels in the client's format, row by row. Every client supports it."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..protocol.messages import Encoding
from ..protocol.pixelformat import PixelFormat
from .base import EncodeContext


class RawEncoder:
    max_width: ClassVar[int | None] = None
    max_area: ClassVar[int | None] = None
    encoding: ClassVar[int] = Encoding.RAW

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        return pixel_format.encode_bytes(rgb)
