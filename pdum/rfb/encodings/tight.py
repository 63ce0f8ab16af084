"""Tight encoding (7) and TightPNG (-260).

Tight picks a method per rectangle from how many colours it has:

- one colour: **fill**, a single pixel;
- 2..256 colours (2 only at 8 bpp, where an index byte is no smaller than a pixel): the
  **palette** filter, 1 bit per pixel for two colours, otherwise one index byte per pixel;
- many colours: **JPEG** when ``ctx.quality_level`` is set (the session sets it only when the
  client sent a quality level and the Display allows lossy output) and the client's format is
  16 or 32 bpp, as the spec requires; else the **gradient** filter when it compresses clearly
  better and the client's pixel is the 3-byte TPIXEL; else plain **copy**.

Basic (copy/palette/gradient) data goes through one of four zlib streams that live as long as
the client: each rectangle ends with ``Z_SYNC_FLUSH`` so the client can decode it at once. A
stream we (re)create is announced with its reset bit in the compression-control byte, so the
client restarts its inflater in step with us (a fresh client ignores it).

Where the references disagree we take the narrowest common ground:

- TPIXEL is 3 bytes (R, G, B) for 32 bpp, depth 24, true colour with all maxima 255, as the spec
  and libvncclient say; TigerVNC also wants byte-aligned shifts, which every real 24-in-32
  format has.
- The gradient filter is off unless ``ctx.tight_gradient`` (``serve(tight_gradient=True)``):
  noVNC before 1.5 (Debian's 1.3, for one) throws "Gradient filter not implemented" and RFB
  has no way for a client to say whether it decodes it; TigerVNC's and libvncserver's servers
  never send it either. When on, it is only used with the 3-byte TPIXEL: the spec allows it for any 16/32 bpp
  format, but TigerVNC's decoder gets other formats wrong (it indexes the input by pixel, not
  byte, and predicts in 8-bit space) and noVNC assumes 3-byte pixels.
- TightPNG (noVNC, libvncserver) replaces basic compression by PNG: its rectangles are only
  fill, JPEG or PNG (noVNC refuses basic rectangles there), so it needs no zlib streams.

Everything per pixel is NumPy; the only Python-level work is per rectangle.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import simplejpeg

from ..protocol.messages import Encoding
from ..protocol.pixelformat import PixelFormat
from . import tight_png
from .base import EncodeContext, rgb_keys

#: Tight cannot describe wider rectangles (clients reject them). The area limit (TightVNC's and
#: libvncserver's) keeps one rect's data far below the 22-bit compact length, and a 16 bpp JPEG
#: rect (decoded as 3 bytes a pixel) inside libvncclient's fixed 640x480-byte buffer.
MAX_WIDTH = 2048
MAX_AREA = 65536

# compression-control byte, high nibble
FILL = 0x80
JPEG = 0x90
PNG = 0xA0
EXPLICIT_FILTER = 0x40
# filter ids
FILTER_COPY = 0
FILTER_PALETTE = 1
FILTER_GRADIENT = 2
# zlib stream ids: one per kind of data, so each stream's dictionary sees similar bytes
STREAM_COPY = 0
STREAM_MONO = 1
STREAM_INDEXED = 2
STREAM_GRADIENT = 3

#: Filtered data shorter than this is sent without zlib (and without a length): fixed by the spec.
MIN_TO_COMPRESS = 12
MAX_COMPACT_LENGTH = (1 << 22) - 1

#: zlib level of the (copy and gradient, mono, indexed) streams for compress levels 0-9:
#: TigerVNC's table, tuned by the VirtualGL project on real session captures.
_ZLIB_LEVELS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (1, 1, 1), (2, 3, 3), (2, 5, 5), (3, 7, 6),
    (4, 8, 7), (5, 8, 7), (6, 9, 8), (7, 9, 9), (9, 9, 9),
)  # fmt: skip

#: JPEG quality and chroma subsampling for quality levels 0-9 (TigerVNC's/VirtualGL's table:
#: level 8 is quality 92 without subsampling, "perceptually lossless").
JPEG_SETTINGS: tuple[tuple[int, str], ...] = (
    (15, "420"), (29, "420"), (41, "420"), (42, "422"), (62, "422"),
    (77, "422"), (79, "444"), (86, "444"), (92, "444"), (100, "444"),
)  # fmt: skip

#: Below this many pixels JPEG's headers (~600 bytes) outweigh what it saves: stay lossless.
JPEG_MIN_AREA = 256

#: Sample that decides between the gradient and copy filters: about this many pixels, in
#: this many bands of whole rows spread over the rect.
_SAMPLE_PIXELS = 8192
_SAMPLE_BANDS = 4

#: Pixels sampled (evenly) before the exact colour count, to reject many-colour rects cheaply.
_COLOUR_SAMPLE = 1024


def compact_length(n: int) -> bytes:
    """Tight's 1-3 byte length: 7 bits per byte, low bits first, high bit = more follows."""
    if n < 0 or n > MAX_COMPACT_LENGTH:
        raise ValueError(f"length {n} does not fit Tight's compact representation")
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))


def read_compact_length(read: Callable[[int], bytes]) -> int:
    """The inverse of :func:`compact_length`, for readers of Tight (the benchmark's clients):
    ``read(1)`` gives the next byte. The third byte, if any, carries 8 bits."""
    first = read(1)[0]
    if not first & 0x80:
        return first
    second = read(1)[0]
    if not second & 0x80:
        return (first & 0x7F) | second << 7
    return (first & 0x7F) | (second & 0x7F) << 7 | read(1)[0] << 14


def is_tpixel24(pf: PixelFormat) -> bool:
    """True when a TPIXEL is the 3 bytes R, G, B instead of a pixel in the client's format."""
    return (
        pf.true_colour
        and pf.bits_per_pixel == 32
        and pf.depth == 24
        and pf.red_max == pf.green_max == pf.blue_max == 255
    )


def _client_dtype(pf: PixelFormat) -> np.dtype[Any]:
    order = ">" if pf.big_endian else "<"
    return np.dtype({8: "u1", 16: f"{order}u2", 32: f"{order}u4"}[pf.bits_per_pixel])


def _sample_colours(rgb: np.ndarray) -> np.ndarray | None:
    """The distinct colour keys (ascending) of an evenly spread sample of ``rgb`` (about
    :data:`_COLOUR_SAMPLE` pixels), or None for a rect too small to sample. Read from the RGB
    pixels, so that a rect whose sample already has too many colours (photo-like) never pays
    for the keys of every pixel. Any subset of the pixels is a valid sample (more colours in it
    than a palette holds means more in the rect; fewer is checked on every pixel), so it is a
    strided view: every n-th pixel of a contiguous rect, every n-th row and column of one cut
    from a wider frame (fancy indexing those cost 3 to 4 times more)."""
    h, w = rgb.shape[:2]
    if h * w <= 4 * _COLOUR_SAMPLE:
        return None
    if rgb.flags.c_contiguous:
        picked = rgb.reshape(1, -1, 3)[:, :: (h * w) // _COLOUR_SAMPLE]
    else:
        step = max(1, math.isqrt((h * w) // _COLOUR_SAMPLE))
        picked = rgb[::step, ::step]
    return _distinct(rgb_keys(picked).ravel())


def _tpixels(keys: np.ndarray, pf: PixelFormat, tpixel24: bool) -> bytes:
    """TPIXEL bytes for colour keys (0xRRGGBB when ``tpixel24``, else client pixel values)."""
    if tpixel24:  # 0xRRGGBB as big-endian words, less their zero top byte
        return keys.astype(">u4").view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()
    return keys.astype(_client_dtype(pf)).tobytes()


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of ``values``, ascending (``np.unique`` without its wrapper)."""
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _palette(
    keys: np.ndarray, limit: int, sample_colours: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(colours, indices)`` if ``keys`` has at most ``limit`` distinct values, else None.

    Colours come most frequent first (so index 0 is the background, which zlib likes);
    ``indices`` is an ``HxW`` uint8 map into them, None for a solid rectangle. Sorting plus
    ``searchsorted`` is about twice as fast as ``np.unique(return_inverse=True)`` here; rects
    with at most :data:`_FEW` colours (the common UI case) skip the sort altogether.
    ``sample_colours`` is :func:`_sample_colours` of the same pixels, when the caller has it.
    """
    flat = keys.ravel()
    first = flat[0]
    if np.all(flat == first):
        return flat[:1].copy(), None
    if limit < 2:
        return None
    if flat.size > 4 * _COLOUR_SAMPLE:
        if sample_colours is None:
            sample_colours = _distinct(flat[:: flat.size // _COLOUR_SAMPLE])
        if sample_colours.size > limit:
            return None  # an evenly spread sample already has too many colours: no full sort needed
        if sample_colours.size <= _FEW:
            few = _covering(flat, sample_colours) or _few_colours(flat, min(limit, _FEW))
            if few is not None:
                colours, counts = few
                return _ranked(colours, counts, flat, keys.shape, few=True)
    ordered = np.sort(flat)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if starts.size > limit:
        return None
    colours = ordered[starts]
    counts = np.diff(np.append(starts, flat.size))
    return _ranked(colours, counts, flat, keys.shape, few=False)


def _covering(flat: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(colours, counts)`` when the sample's ``colours`` (distinct, ascending) are every colour
    of ``flat``, else None: one comparison and one count per colour, where peeling them off one
    by one (:func:`_few_colours`) takes twice as many array operations."""
    counts = [int(np.count_nonzero(flat == colour)) for colour in colours]
    if sum(counts) != flat.size:
        return None  # the sample missed a colour
    return colours, np.asarray(counts, dtype=np.intp)


#: Rects whose sample shows at most this many colours try :func:`_few_colours` before sorting.
_FEW = 4


def _few_colours(flat: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Distinct values of ``flat`` (ascending) and their counts, by peeling one colour off per
    pass, or None when there are more than ``limit``: a few comparisons instead of a sort."""
    colours: list[int] = []
    counts: list[int] = []
    c = flat[0]
    other = flat != c
    n_other = int(np.count_nonzero(other))
    if n_other and limit >= 2:
        # Two colours (the common case) without extracting the other pixels: the first pixel
        # that differs names the second colour; if it accounts for all of them, done.
        c2 = flat[int(np.argmax(other))]
        if int(np.count_nonzero(flat == c2)) == n_other:
            pair = np.array([c, c2], dtype=flat.dtype)
            counts2 = np.array([flat.size - n_other, n_other], dtype=np.intp)
            order = np.argsort(pair)
            return pair[order], counts2[order]
    rest = flat
    while rest.size:
        if len(colours) == limit:
            return None
        c = rest[0]
        other = rest != c
        n_other = int(np.count_nonzero(other))
        colours.append(int(c))
        counts.append(rest.size - n_other)
        rest = rest[other] if n_other else rest[:0]
    order = np.argsort(np.asarray(colours, dtype=np.uint64))
    return np.asarray(colours, dtype=flat.dtype)[order], np.asarray(counts, dtype=np.intp)[order]


def _ranked(colours: np.ndarray, counts: np.ndarray, flat: np.ndarray, shape: tuple[int, ...],
            few: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Colours most frequent first (ties: lower value first) and the uint8 index map."""
    by_frequency = np.argsort(-counts, kind="stable")
    ranked = colours[by_frequency]
    if few:
        indices = (flat != ranked[0]).view(np.uint8)
        for i in range(2, ranked.size):
            indices[flat == ranked[i]] = i
        return ranked, indices.reshape(shape)
    rank = np.empty(colours.size, dtype=np.uint8)
    rank[by_frequency] = np.arange(colours.size)
    return ranked, rank[np.searchsorted(colours, flat)].reshape(shape)


def _gradient_residuals(rgb: np.ndarray) -> np.ndarray:
    """The gradient filter of an RGB rect: ``V - clamp(left + up - upleft, 0, 255)`` mod 256.

    The prediction uses the original neighbours (zero outside the rect), which the decoder has
    already reconstructed exactly, so it vectorises over the whole rect.
    """
    h, w = rgb.shape[:2]
    pad = np.zeros((h + 1, w + 1, 3), dtype=np.int16)
    pad[1:, 1:] = rgb
    predicted = np.clip(pad[1:, :-1] + pad[:-1, 1:] - pad[:-1, :-1], 0, 255)
    return (pad[1:, 1:] - predicted).astype(np.uint8)


def _gradient_pays(rgb: np.ndarray, residuals: np.ndarray) -> bool:
    """Whether the gradient filter compresses clearly better than copy, judged on a sample.

    Compressing a few bands of rows both ways at zlib level 1 is cheap and, unlike statistics
    of the residuals, sees what zlib sees: smooth areas favour gradient, repeated sharp patterns
    favour copy, noise is a tie (which goes to copy, cheaper for the client to decode).
    """
    h, w = rgb.shape[:2]
    band = max(2, _SAMPLE_PIXELS // (_SAMPLE_BANDS * w))
    if h > band * _SAMPLE_BANDS:
        starts = np.linspace(0, h - band, _SAMPLE_BANDS).astype(np.intp)
        rows = (starts[:, None] + np.arange(band)).ravel()
        rgb, residuals = rgb[rows], residuals[rows]
    copy = len(zlib.compress(np.ascontiguousarray(rgb).tobytes(), 1))
    gradient = len(zlib.compress(residuals.tobytes(), 1))
    return gradient < 0.9 * copy


def _jpeg_allowed(pf: PixelFormat, ctx: EncodeContext, area: int) -> bool:
    """JPEG only when the client asked for a quality level and has a 16/32 bpp format (spec)."""
    return ctx.quality_level is not None and pf.bits_per_pixel in (16, 32) and area >= JPEG_MIN_AREA


def _jpeg_rect(rgb: np.ndarray, quality_level: int) -> bytes:
    quality, subsampling = JPEG_SETTINGS[max(0, min(9, quality_level))]
    data = simplejpeg.encode_jpeg(
        np.ascontiguousarray(rgb), quality=quality, colorspace="RGB", colorsubsampling=subsampling
    )
    return bytes((JPEG,)) + compact_length(len(data)) + data


def _fill_rect(rgb: np.ndarray, pf: PixelFormat, tpixel24: bool) -> bytes:
    pixel = rgb[:1, :1]
    return bytes((FILL,)) + (pixel.tobytes() if tpixel24 else pf.encode_bytes(pixel))


class TightFill:
    """A rectangle already known to be one colour (``encodings/solid.py``) as a Tight fill: one
    pixel read, no colour analysis. No area limit: a fill carries no data (libvncserver and
    TigerVNC send solid areas whole too); the width limit stays for decoders that check it for
    every rectangle."""

    encoding: ClassVar[int] = Encoding.TIGHT
    max_width: ClassVar[int | None] = MAX_WIDTH
    max_area: ClassVar[int | None] = None

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        return _fill_rect(rgb, pixel_format, is_tpixel24(pixel_format))


class TightPngFill(TightFill):
    """:class:`TightFill` for TightPNG, whose fill rectangles are Tight's."""

    encoding: ClassVar[int] = Encoding.TIGHT_PNG


class TightEncoder:
    """Tight (7): fill, palette, gradient or copy through four zlib streams, or JPEG."""

    encoding: ClassVar[int] = Encoding.TIGHT
    max_width: ClassVar[int | None] = MAX_WIDTH
    max_area: ClassVar[int | None] = MAX_AREA
    #: The session cuts large solid areas out of damaged rects (encodings/solid.py) and sends
    #: them with this encoder.
    solid_fill: ClassVar[TightFill] = TightFill()

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        pf = pixel_format
        h, w = rgb.shape[:2]
        tpixel24 = is_tpixel24(pf)
        # At 8 bpp an index byte is as big as the pixel itself, so only the 1-bit palette pays.
        # Elsewhere the palette's TPIXELs come on top of the indices: with at most one colour
        # per two pixels that stays smaller than copying the pixels.
        limit = 2 if pf.bits_per_pixel == 8 else min(256, max(2, (w * h) // 2))
        sample = _sample_colours(rgb) if tpixel24 else None
        if sample is not None and sample.size > limit:
            found = None  # photo-like: skip building the keys of the whole rect
        else:
            keys = rgb_keys(rgb, reuse=True) if tpixel24 else pf.to_values(rgb)
            found = _palette(keys, limit, sample)
        if found is not None:
            colours, indices = found
            if indices is None:
                return _fill_rect(rgb, pf, tpixel24)
            return self._palette_rect(colours, indices, pf, tpixel24, ctx)
        if ctx.quality_level is not None and _jpeg_allowed(pf, ctx, w * h):
            return _jpeg_rect(rgb, ctx.quality_level)
        if tpixel24:
            if ctx.tight_gradient:
                residuals = _gradient_residuals(rgb)
                if _gradient_pays(rgb, residuals):
                    return self._basic(STREAM_GRADIENT, FILTER_GRADIENT, b"", residuals.tobytes(), ctx)
            return self._basic(STREAM_COPY, None, b"", np.ascontiguousarray(rgb).tobytes(), ctx)
        return self._basic(STREAM_COPY, None, b"", pf.encode_bytes(rgb), ctx)

    def _palette_rect(self, colours: np.ndarray, indices: np.ndarray, pf: PixelFormat, tpixel24: bool,
                      ctx: EncodeContext) -> bytes:  # fmt: skip
        header = bytes((len(colours) - 1,)) + _tpixels(colours, pf, tpixel24)
        if len(colours) == 2:
            # 1 bit per pixel, leftmost pixel in the most significant bit, rows padded to a byte.
            data = np.packbits(indices, axis=1).tobytes()
            return self._basic(STREAM_MONO, FILTER_PALETTE, header, data, ctx)
        return self._basic(STREAM_INDEXED, FILTER_PALETTE, header, indices.tobytes(), ctx)

    def _basic(self, stream_id: int, filter_id: int | None, header: bytes, data: bytes,
               ctx: EncodeContext) -> bytes:  # fmt: skip
        """A basic-compression rect: control byte, optional filter id, ``header``, then data."""
        control = stream_id << 4
        prefix = b""
        if filter_id is not None:
            control |= EXPLICIT_FILTER
            prefix = bytes((filter_id,))
        if len(data) < MIN_TO_COMPRESS:
            return bytes((control,)) + prefix + header + data
        compressor, reset = self._stream(ctx, stream_id)
        if reset:
            control |= 1 << stream_id
        body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return bytes((control,)) + prefix + header + compact_length(len(body)) + body

    @staticmethod
    def _stream(ctx: EncodeContext, stream_id: int) -> tuple[Any, bool]:
        """This client's compressor for ``stream_id``, and whether the client must reset its inflater.

        Python's compressors cannot change level mid-stream, so a new compress level starts a new
        stream (announced by the reset bit) instead of being ignored until reconnect.
        """
        conf = _ZLIB_LEVELS[max(0, min(9, ctx.compress_level))]
        level = {STREAM_COPY: conf[0], STREAM_GRADIENT: conf[0], STREAM_MONO: conf[1]}.get(stream_id, conf[2])
        key = f"tight{stream_id}"
        current = ctx.streams.get(key)
        if current is not None and current[0] == level:
            return current[1], False
        compressor = ctx.new_compressor(level)
        ctx.streams[key] = (level, compressor)
        return compressor, True


class TightPngEncoder:
    """TightPNG (-260): Tight's fill and JPEG, with PNG images instead of basic compression.

    PNG is used at every bpp: libvncserver falls back to basic compression at 8 bpp, which
    noVNC (the one TightPNG client) refuses, while a PNG of RGB is valid for any client format.
    """

    encoding: ClassVar[int] = Encoding.TIGHT_PNG
    max_width: ClassVar[int | None] = MAX_WIDTH
    max_area: ClassVar[int | None] = MAX_AREA
    solid_fill: ClassVar[TightFill] = TightPngFill()

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        pf = pixel_format
        h, w = rgb.shape[:2]
        found = None
        sample = _sample_colours(rgb)
        if sample is None or sample.size <= 256:
            found = _palette(rgb_keys(rgb, reuse=True), 256, sample)
        if found is not None and found[1] is None:
            return _fill_rect(rgb, pf, is_tpixel24(pf))
        if found is None and ctx.quality_level is not None and _jpeg_allowed(pf, ctx, w * h):
            return _jpeg_rect(rgb, ctx.quality_level)
        # The PNG carries 24-bit RGB whatever the client's format: the client converts, as it
        # does for JPEG. compress level 0-9 is the zlib level, as in libvncserver.
        level = max(0, min(9, ctx.compress_level))
        if found is not None:
            colours, indices = found
            assert indices is not None
            palette = np.stack([(colours >> 16) & 0xFF, (colours >> 8) & 0xFF, colours & 0xFF], axis=-1)
            png = tight_png.encode_indexed(indices, palette.astype(np.uint8), level)
        else:
            png = tight_png.encode_rgb(rgb, level)
        return bytes((PNG,)) + compact_length(len(png)) + png
