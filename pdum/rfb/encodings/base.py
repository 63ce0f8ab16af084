"""The one interface every encoder implements, and the per-client state encoders may keep.

An encoder turns the RGB pixels of one rectangle into the payload that follows the rectangle
header on the wire, in the client's pixel format. Stateless encodings (Raw, Hextile) ignore the
context; stream-based ones (Zlib, ZRLE, Tight) keep their compressors in ``ctx.streams``, because
RFB requires long-lived zlib streams per client and encoding.

The session splits damaged rectangles so that none is wider than ``max_width`` or larger than
``max_area`` pixels before calling :meth:`Encoder.encode` (Tight, for instance, cannot describe a
rectangle wider than 2048 pixels).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from .._scratch import scratch as scratch  # re-exported for the encoders
from ..protocol.pixelformat import PixelFormat

DEFAULT_COMPRESS_LEVEL = 6
#: zlib memLevel of our streams: 9 (zlib's MAX_MEM_LEVEL), as libvncserver and QEMU use, not
#: Python's default 8: a hash table and a block buffer twice as large (about 128 KiB more per
#: stream), so slightly smaller output at the same level.
ZLIB_MEM_LEVEL = 9


@dataclass
class EncodeContext:
    """Per-client encoder state: levels from SetEncodings, and encoder-owned streams.

    ``quality_level`` is ``None`` until the client sends a quality pseudo-encoding (-32..-23);
    lossy encoders (Tight JPEG) must stay lossless while it is ``None``.
    """

    compress_level: int = DEFAULT_COMPRESS_LEVEL
    quality_level: int | None = None
    #: Allow Tight's gradient filter (off by default: older noVNC cannot decode it).
    tight_gradient: bool = False
    streams: dict[str, Any] = field(default_factory=dict)
    #: Streams are shared with other clients (see encodings/sharing.py).
    shared: bool = False
    #: The client's H.264 encoder and policy (an ``h264.H264State``), never shared.
    h264: Any = None

    def new_compressor(self, level: int) -> Any:
        """A new zlib stream for this client: private, or shareable once the client shares."""
        if self.shared:
            from .sharing import SharedStream

            return SharedStream(level, started=False)
        return zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, ZLIB_MEM_LEVEL)


class Encoder(Protocol):
    """Encodes one rectangle; ``rgb`` is an ``HxWx3`` uint8 view of the framebuffer."""

    encoding: ClassVar[int]
    #: Largest width / area (pixels) one rectangle of this encoding may have; None = unlimited.
    max_width: ClassVar[int | None]
    max_area: ClassVar[int | None]

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes: ...


def rgb_keys(rgb: np.ndarray, reuse: bool = False) -> np.ndarray:
    """Pack ``HxWx3`` uint8 RGB into ``HxW`` uint32 0xRRGGBB, one comparable value per colour.

    Tight uses the keys to count and index colours; the solid-area search (solid.py) to compare
    colours. Built as B, G, R, 0 bytes viewed as little-endian uint32: three byte copies, about 3x faster
    than widening each channel and shifting (contiguous input has a faster path). With ``reuse``
    the result lives in a per-thread scratch buffer (no page faults), valid only until the next
    ``reuse`` call in this thread.
    """
    h, w = rgb.shape[:2]
    n = h * w
    if rgb.flags.c_contiguous and n >= 2:
        # Contiguous pixels (a full-width rect): read each pixel's 3 bytes plus the next byte as
        # one big-endian uint32 (a stride-3 view, no copy) and drop the extra byte: one
        # vectorised pass, ~2x faster than the byte copies below. The last pixel has no next byte.
        out = scratch("rgb.keys", (n,), np.uint32) if reuse else np.empty(n, dtype=np.uint32)
        windows = np.ndarray((n - 1,), dtype=">u4", buffer=rgb.reshape(-1), strides=(3,))
        np.right_shift(windows, 8, out=out[: n - 1], casting="unsafe")
        r, g, b = (int(v) for v in rgb[-1, -1])
        out[n - 1] = (r << 16) | (g << 8) | b
        return out.reshape(h, w)
    if reuse:
        buf = scratch("rgb.keys", (h, w, 4), np.uint8)
        buf[..., 3] = 0
    else:
        buf = np.zeros((h, w, 4), dtype=np.uint8)
    buf[..., 0] = rgb[..., 2]
    buf[..., 1] = rgb[..., 1]
    buf[..., 2] = rgb[..., 0]
    return buf.view("<u4").reshape(h, w)


def split_rect(
    x: int, y: int, w: int, h: int, max_width: int | None, max_area: int | None
) -> list[tuple[int, int, int, int]]:
    """Cut a rectangle into pieces no wider than ``max_width`` and no larger than ``max_area``."""
    step_w = min(w, max_width) if max_width else w
    step_h = h
    if max_area:
        step_h = max(1, min(h, max_area // step_w))
    return [
        (x + dx, y + dy, min(step_w, w - dx), min(step_h, h - dy))
        for dy in range(0, h, step_h)
        for dx in range(0, w, step_w)
    ]
