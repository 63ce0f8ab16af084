"""RFB pixel formats and the vectorised translation from our RGB framebuffer into them.

The framebuffer is always stored as ``HxWx3`` uint8 RGB. Each client may ask (SetPixelFormat) for any
true-colour layout: 8, 16 or 32 bits per pixel, either endianness, arbitrary channel maxima and shifts.
Translation is done with NumPy lookup tables so that it costs a few array operations per rectangle,
never a Python loop per pixel.

Down-conversion of an 8-bit channel to a channel with maximum ``m`` rounds to nearest,
``(v * m + 128) // 255``: the same rule TigerVNC uses, so a 16 bpp client sees what it would see from
a TigerVNC server.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._scratch import scratch
from .errors import ProtocolError

_PIXEL_FORMAT = struct.Struct(">BBBBHHHBBB3x")
PIXEL_FORMAT_SIZE = _PIXEL_FORMAT.size  # 16


class UnsupportedPixelFormat(ProtocolError):
    """The client asked for a pixel format we cannot (or must not) produce."""


@dataclass(frozen=True)
class PixelFormat:
    """One RFB PIXEL_FORMAT structure (RFC 6143 section 7.4)."""

    bits_per_pixel: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    def __hash__(self) -> int:
        return hash(self.wire)  # computed once (see wire)

    # -- wire ---------------------------------------------------------------------------------------
    @cached_property
    def wire(self) -> bytes:
        """:meth:`pack`, computed once: the pixel format's part of the keys clients' updates are
        shared under (bytes hash and compare in C; a dataclass would run Python code each time)."""
        return self.pack()

    def pack(self) -> bytes:
        return _PIXEL_FORMAT.pack(
            self.bits_per_pixel,
            self.depth,
            int(self.big_endian),
            int(self.true_colour),
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        bpp, depth, be, tc, rmax, gmax, bmax, rs, gs, bs = _PIXEL_FORMAT.unpack(data)
        return cls(bpp, depth, be != 0, tc != 0, rmax, gmax, bmax, rs, gs, bs)

    # -- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`UnsupportedPixelFormat` unless we can encode pixels in this format.

        Colour-map formats are refused: a NumPy RGB framebuffer has no palette to offer, and
        modern clients never need one.
        """
        if self.bits_per_pixel not in (8, 16, 32):
            raise UnsupportedPixelFormat(f"bits-per-pixel {self.bits_per_pixel} is not 8, 16 or 32")
        if not self.true_colour:
            raise UnsupportedPixelFormat("colour-map pixel formats are not supported")
        if not 1 <= self.depth <= self.bits_per_pixel:
            raise UnsupportedPixelFormat(f"depth {self.depth} does not fit {self.bits_per_pixel} bpp")
        for name, mx, shift in (
            ("red", self.red_max, self.red_shift),
            ("green", self.green_max, self.green_shift),
            ("blue", self.blue_max, self.blue_shift),
        ):
            if mx == 0:
                raise UnsupportedPixelFormat(f"{name}-max is zero")
            if shift + mx.bit_length() > self.bits_per_pixel:
                raise UnsupportedPixelFormat(
                    f"{name} channel (max {mx}, shift {shift}) does not fit {self.bits_per_pixel} bpp"
                )

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    @cached_property
    def _is_byte_aligned_rgb888(self) -> bool:
        return (
            self.bits_per_pixel == 32
            and self.red_max == self.green_max == self.blue_max == 255
            and all(s % 8 == 0 for s in (self.red_shift, self.green_shift, self.blue_shift))
            and len({self.red_shift, self.green_shift, self.blue_shift}) == 3
        )

    @cached_property
    def _luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = np.arange(256, dtype=np.uint32)

        def lut(mx: int, shift: int) -> np.ndarray:
            return (((v * mx + 128) // 255) << shift).astype(np.uint32)

        return (
            lut(self.red_max, self.red_shift),
            lut(self.green_max, self.green_shift),
            lut(self.blue_max, self.blue_shift),
        )

    @cached_property
    def _dtype(self) -> np.dtype:
        order = ">" if self.big_endian else "<"
        return np.dtype({8: "u1", 16: f"{order}u2", 32: f"{order}u4"}[self.bits_per_pixel])

    def to_values(self, rgb: np.ndarray) -> np.ndarray:
        """Return the pixel values (uint32, HxW) of an RGB array, before byte-order packing."""
        lr, lg, lb = self._luts
        return lr[rgb[..., 0]] | lg[rgb[..., 1]] | lb[rgb[..., 2]]

    def encode(self, rgb: np.ndarray, reuse: str | None = None) -> np.ndarray:
        """Translate an ``HxWx3`` uint8 RGB array into an ``HxWxBpp`` uint8 array in this format.

        With ``reuse`` (a scratch-buffer name, see :func:`pdum.rfb._scratch.scratch`) the
        byte-aligned 32 bpp result is built in a reused per-thread buffer: the caller must be
        done with it before the next call with the same name in this thread.
        """
        h, w = rgb.shape[:2]
        if self._is_byte_aligned_rgb888:
            if reuse is None:
                out = np.zeros((h, w, 4), dtype=np.uint8)
            else:
                out = scratch(reuse, (h, w, 4), np.uint8)
                out[..., self._pad_index] = 0
            for channel, index in enumerate(self._channel_indices):
                out[..., index] = rgb[..., channel]
            return out
        values = self.to_values(rgb).astype(self._dtype)
        return values.view(np.uint8).reshape(h, w, self.bytes_per_pixel)

    def encode_bytes(self, rgb: np.ndarray) -> bytes:
        """:meth:`encode` as bytes, built in a reused buffer (``tobytes`` copies it anyway): a fresh
        frame-sized array per call costs page faults (docs/performance.md)."""
        return self.encode(rgb, reuse="pixelformat.encode_bytes").tobytes()

    @cached_property
    def _channel_indices(self) -> tuple[int, int, int]:
        """Byte offsets of R, G and B within a byte-aligned 32 bpp pixel."""
        shifts = (self.red_shift, self.green_shift, self.blue_shift)
        return tuple(3 - s // 8 if self.big_endian else s // 8 for s in shifts)  # type: ignore[return-value]

    @cached_property
    def _pad_index(self) -> int:
        """Byte offset of the unused byte of a byte-aligned 32 bpp pixel."""
        return ({0, 1, 2, 3} - set(self._channel_indices)).pop()


#: What we announce in ServerInit: 32 bpp little-endian xRGB, depth 24 (what every client handles).
SERVER_DEFAULT = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
RGB565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
