"""The one interface every encoder implements, and the per-client state encoders may keep.

An encoder turns the RGB pixels of one rectangle into the payload that follows the rectangle
header on the wire, in the client's pixel format. Stateless encodings (Raw) ignore the context;
stream-based ones (Zlib, ZRLE, Tight) keep their compressors in it, because RFB requires one
long-lived zlib stream per client and encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from ..protocol.pixelformat import PixelFormat

DEFAULT_COMPRESS_LEVEL = 6


@dataclass
class EncodeContext:
    """Per-client encoder state: levels from SetEncodings, and encoder-owned streams."""

    compress_level: int = DEFAULT_COMPRESS_LEVEL
    quality_level: int | None = None
    streams: dict[str, Any] = field(default_factory=dict)


class Encoder(Protocol):
    """Encodes one rectangle; ``rgb`` is an ``HxWx3`` uint8 view of the framebuffer."""

    encoding: ClassVar[int]

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes: ...
