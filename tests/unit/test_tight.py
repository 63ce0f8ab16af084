"""Tight (7) and TightPNG (-260): our encoder's output decoded by an independent reference decoder.

The decoder below follows the rfbproto "Tight Encoding" section (and noVNC/libvncclient where it
is silent): per-stream inflaters kept across rectangles, reset bits, compact lengths, fill, copy,
palette (1-bit and 8-bit) and gradient filters. It converts 3-byte TPIXELs to the client format
with its own shifts, so the comparison with ``pixel_format.encode(rgb)`` is exact and
independent. JPEG is judged by PSNR, PNG is decoded with Pillow.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pdum.rfb.encodings import ENCODERS
from pdum.rfb.encodings.base import EncodeContext, split_rect
from pdum.rfb.encodings.tight import (
    JPEG_MIN_AREA,
    MAX_AREA,
    MAX_WIDTH,
    TightEncoder,
    TightPngEncoder,
    compact_length,
    read_compact_length,
)
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.protocol.pixelformat import BGR233, RGB565, SERVER_DEFAULT, PixelFormat
from pdum.rfb.testing import checkerboard, gradient, noise, solid, text_like

RGBX_BIG = PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16)  # 3-byte TPIXEL, big endian
BGR565_BIG = PixelFormat(16, 16, True, True, 31, 63, 31, 0, 5, 11)
RGB30 = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)  # 32 bpp, 4-byte TPIXEL
FORMATS = {
    "rgb888": SERVER_DEFAULT,
    "rgbx-be": RGBX_BIG,
    "rgb565": RGB565,
    "bgr565-be": BGR565_BIG,
    "bgr233": BGR233,
    "rgb30": RGB30,
}


# -- frames ------------------------------------------------------------------------------------------
def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves plus blurred noise: many colours, no exact repeats, like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            128 + 90 * np.sin(x / 37 + y / 53),
            128 + 80 * np.cos(x / 29 - y / 41),
            128 + 70 * np.sin((x + y) / 61),
        ],
        axis=-1,
    )
    grain = rng.normal(0.0, 30.0, (height + 8, width + 8, 3))
    kernel = np.ones(9) / 9  # separable 9x9 box blur
    grain = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 0, grain)
    grain = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, grain)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def few_colours(width: int, height: int, n: int, seed: int = 0) -> np.ndarray:
    """4x4 blocks of exactly ``n`` distinct RGB colours (for small ``n`` distinct at 8 bpp too)."""
    rng = np.random.default_rng(seed)
    palette = np.array([((i * 53) % 256, (i * 97 + 40) % 256, 255 - (i * 71) % 256) for i in range(n)])
    palette[:, 0] = np.arange(n) * (255 // max(1, n - 1))  # red alone keeps them distinct
    idx = rng.integers(0, n, (-(-height // 4), -(-width // 4)))
    idx.flat[:n] = np.arange(n)
    idx = np.repeat(np.repeat(idx, 4, axis=0), 4, axis=1)[:height, :width]
    return palette[idx].astype(np.uint8)


def rects_for_test() -> list[tuple[str, np.ndarray]]:
    """A sequence of rects that exercises every method and the edge sizes, sharing streams."""
    return [
        ("noise", noise(64, 48, seed=1)),
        ("gradient", gradient(80, 60)),
        ("solid", solid(40, 30, (200, 10, 70))),
        ("two-colour", checkerboard(53, 21, 4, ((0, 0, 0), (250, 250, 250)))),  # odd width: row padding
        ("five-colour", few_colours(45, 33, 5, seed=2)),
        ("text", text_like(120, 64, seed=3)),
        ("photo", photo_like(96, 64, seed=4)),
        ("1x1", noise(1, 1, seed=5)),
        ("3x1 raw", noise(3, 1, seed=6)),  # copy data under 12 bytes: sent without zlib
        ("8x2 mono raw", checkerboard(8, 2, 1)),  # 2 bytes of mono bits: no zlib
        ("wide", np.ascontiguousarray(np.tile(gradient(256, 8), (1, 8, 1)))),  # 2048 wide
        ("256 colours", few_colours(64, 64, 256, seed=7)),
        ("noise again", noise(64, 48, seed=1)),  # the copy stream now has history
        ("text again", text_like(120, 64, seed=8)),
    ]


# -- reference decoder -------------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "rect payload is truncated"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.read(1)[0]

    def compact(self) -> int:
        b = self.u8()
        n = b & 0x7F
        if b & 0x80:
            b = self.u8()
            n |= (b & 0x7F) << 7
            if b & 0x80:
                n |= self.u8() << 14
        return n


@dataclass
class Decoded:
    pixels: np.ndarray  # HxWxBpp in the client format
    method: str
    control: int
    stream: int | None = None
    compressed: bool = False


@dataclass
class TightDecoder:
    """Decodes Tight rects for one client; keeps the four inflaters between rects as a client does."""

    pf: PixelFormat
    inflaters: list[zlib._Decompress] = field(
        default_factory=lambda: [zlib.decompressobj() for _ in range(4)]
    )
    compressed: bool = False  # whether the last basic rect's data went through zlib

    @property
    def tpixel24(self) -> bool:
        pf = self.pf
        return (
            pf.bits_per_pixel == 32
            and pf.depth == 24
            and (pf.red_max, pf.green_max, pf.blue_max)
            == (
                255,
                255,
                255,
            )
        )

    @property
    def tpixel_size(self) -> int:
        return 3 if self.tpixel24 else self.pf.bits_per_pixel // 8

    def from_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """``...x3`` uint8 RGB from 3-byte TPIXELs into client pixels (8-bit channels: shifts only)."""
        pf = self.pf
        r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
        value = (r << pf.red_shift) | (g << pf.green_shift) | (b << pf.blue_shift)
        dtype = ">u4" if pf.big_endian else "<u4"
        return value.astype(dtype).view(np.uint8).reshape(rgb.shape[:-1] + (4,))

    def tpixels(self, raw: bytes, count: int) -> np.ndarray:
        """``count`` TPIXELs as client pixels, shape ``count x Bpp``."""
        if self.tpixel24:
            return self.from_rgb(np.frombuffer(raw, np.uint8).reshape(count, 3))
        return np.frombuffer(raw, np.uint8).reshape(count, self.pf.bits_per_pixel // 8)

    def data(self, reader: Reader, size: int, stream: int) -> bytes:
        self.compressed = size >= 12
        if size < 12:
            return reader.read(size)
        length = reader.compact()
        out = self.inflaters[stream].decompress(reader.read(length))
        assert len(out) == size, f"inflated {len(out)} bytes, expected {size}"
        return out

    def decode(self, payload: bytes, width: int, height: int) -> Decoded:
        reader = Reader(payload)
        control = reader.u8()
        for i in range(4):
            if control & (1 << i):
                self.inflaters[i] = zlib.decompressobj()
        kind = control >> 4
        if kind == 0x8:
            pixel = self.tpixels(reader.read(self.tpixel_size), 1)
            out = np.broadcast_to(pixel, (height, width, pixel.shape[-1])).copy()
            result = Decoded(out, "fill", control)
        elif kind == 0x9:
            jpeg = reader.read(reader.compact())
            assert self.pf.bits_per_pixel in (16, 32), "JPEG is only allowed at 16 and 32 bpp"
            rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
            assert rgb.shape == (height, width, 3)
            result = Decoded(rgb, "jpeg", control)
        else:
            assert kind < 0x8, f"invalid Tight compression control {control:#x}"
            stream = kind & 0x3
            filter_id = reader.u8() if kind & 0x4 else 0
            if filter_id == 1:
                n = reader.u8() + 1
                assert 2 <= n <= 256
                palette = self.tpixels(reader.read(n * self.tpixel_size), n)
                if n == 2:
                    row = (width + 7) // 8
                    bits = np.frombuffer(self.data(reader, row * height, stream), np.uint8)
                    idx = np.unpackbits(bits.reshape(height, row), axis=1)[:, :width]
                else:
                    idx = np.frombuffer(self.data(reader, width * height, stream), np.uint8)
                    idx = idx.reshape(height, width)
                    assert idx.max() < n
                result = Decoded(palette[idx], "palette2" if n == 2 else "paletteN", control, stream)
            elif filter_id == 2:
                assert self.tpixel24, "gradient is only used with 3-byte TPIXELs"
                raw = self.data(reader, width * height * 3, stream)
                result = Decoded(
                    self.from_rgb(self.ungradient(raw, width, height)), "gradient", control, stream
                )
            else:
                assert filter_id == 0, f"unknown filter {filter_id}"
                size = width * height * self.tpixel_size
                pix = self.tpixels(self.data(reader, size, stream), width * height)
                result = Decoded(pix.reshape(height, width, -1), "copy", control, stream)
            result.compressed = self.compressed
        assert reader.pos == len(payload), f"{len(payload) - reader.pos} trailing bytes"
        return result

    @staticmethod
    def ungradient(raw: bytes, width: int, height: int) -> np.ndarray:
        """Undo the gradient filter pixel by pixel, exactly as the spec's pseudo-code reads."""
        d = list(raw)
        v = [0] * (width * height * 3)
        for y in range(height):
            for x in range(width):
                for c in range(3):
                    i = (y * width + x) * 3 + c
                    left = v[i - 3] if x > 0 else 0
                    up = v[i - width * 3] if y > 0 else 0
                    upleft = v[i - width * 3 - 3] if x > 0 and y > 0 else 0
                    p = min(255, max(0, left + up - upleft))
                    v[i] = (d[i] + p) & 0xFF
        return np.array(v, dtype=np.uint8).reshape(height, width, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- Tight: lossless ---------------------------------------------------------------------------------
EXPECTED_METHOD = {
    "noise": "copy",
    "solid": "fill",
    "two-colour": "palette2",
    "five-colour": "paletteN",
    "text": "paletteN",
    "1x1": "fill",
    "8x2 mono raw": "palette2",
    "256 colours": "paletteN",
}


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_lossless_sequence_decodes_exactly(fmt: str, level: int) -> None:
    pf = FORMATS[fmt]
    encoder, ctx, decoder = (
        TightEncoder(),
        EncodeContext(tight_gradient=True, compress_level=level),
        TightDecoder(pf),
    )
    for name, rgb in rects_for_test():
        h, w = rgb.shape[:2]
        payload = encoder.encode(rgb, pf, ctx)
        got = decoder.decode(payload, w, h)
        assert got.method != "jpeg"
        np.testing.assert_array_equal(got.pixels, pf.encode(rgb), err_msg=f"{fmt} {name}")
        expected = EXPECTED_METHOD.get(name)
        if pf.bits_per_pixel == 8 and expected == "paletteN":
            expected = "copy"  # an index byte is no smaller than an 8 bpp pixel
        if expected is not None:
            assert got.method == expected, f"{fmt} {name}: {got.method}"
        if name in ("gradient", "photo", "wide"):
            assert got.method == ("gradient" if decoder.tpixel24 else "copy"), f"{fmt} {name}"


def test_one_stream_per_kind_of_data_reset_on_first_use() -> None:
    """Each kind of data has its own stream; only a stream's first use carries its reset bit."""
    encoder, ctx, decoder = TightEncoder(), EncodeContext(tight_gradient=True), TightDecoder(SERVER_DEFAULT)
    seen: dict[str, int] = {}
    first_use: set[int] = set()
    for name, rgb in rects_for_test():
        payload = encoder.encode(rgb, SERVER_DEFAULT, ctx)
        got = decoder.decode(payload, rgb.shape[1], rgb.shape[0])
        resets = got.control & 0x0F
        if got.compressed:
            assert got.stream is not None
            seen[got.method] = got.stream
            expect_reset = got.stream not in first_use
            first_use.add(got.stream)
            assert resets == ((1 << got.stream) if expect_reset else 0), name
        else:
            assert resets == 0, name
    assert seen == {"copy": 0, "palette2": 1, "paletteN": 2, "gradient": 3}


def test_new_context_and_level_change_reset_the_client_streams() -> None:
    """A client keeps its inflaters; a fresh context or a new compress level must reset them."""
    decoder = TightDecoder(SERVER_DEFAULT)
    frames = [text_like(96, 48, seed=s) for s in range(3)] + [noise(40, 40, seed=9)]
    for ctx in (
        EncodeContext(tight_gradient=True, compress_level=6),
        EncodeContext(tight_gradient=True, compress_level=6),
    ):
        for rgb in frames:
            h, w = rgb.shape[:2]
            got = decoder.decode(TightEncoder().encode(rgb, SERVER_DEFAULT, ctx), w, h)
            np.testing.assert_array_equal(got.pixels, SERVER_DEFAULT.encode(rgb))
        ctx.compress_level = 1
        rgb = text_like(96, 48, seed=11)
        got = decoder.decode(TightEncoder().encode(rgb, SERVER_DEFAULT, ctx), 96, 48)
        assert got.control & 0x0F == 1 << 2  # the indexed stream restarted at the new level
        np.testing.assert_array_equal(got.pixels, SERVER_DEFAULT.encode(rgb))


def test_rects_split_by_the_session_limits_decode() -> None:
    """A frame wider than 2048 pixels, cut with the encoder's own limits as the session does."""
    frame = np.concatenate([gradient(1200, 40), noise(1000, 40, seed=3)], axis=1)
    encoder, ctx, decoder = TightEncoder(), EncodeContext(tight_gradient=True), TightDecoder(SERVER_DEFAULT)
    pieces = split_rect(0, 0, 2200, 40, encoder.max_width, encoder.max_area)
    assert {p[2] for p in pieces} == {2048, 152}
    assert all(w * h <= MAX_AREA for _, _, w, h in pieces)
    for x, y, w, h in pieces:
        rgb = frame[y : y + h, x : x + w]  # a strided view, as the session passes
        got = decoder.decode(encoder.encode(rgb, SERVER_DEFAULT, ctx), w, h)
        np.testing.assert_array_equal(got.pixels, SERVER_DEFAULT.encode(rgb))


def test_palette_prefers_copy_when_palette_would_be_bigger() -> None:
    rgb = noise(4, 2, seed=1)  # 8 colours in 8 pixels: a palette would cost more
    assert len(np.unique(RGB565.to_values(rgb))) == 8
    got = TightDecoder(RGB565).decode(
        TightEncoder().encode(rgb, RGB565, EncodeContext(tight_gradient=True)), 4, 2
    )
    assert got.method == "copy"
    np.testing.assert_array_equal(got.pixels, RGB565.encode(rgb))


def test_colours_that_merge_in_the_client_format_use_a_smaller_palette() -> None:
    # Two RGB values that round to the same BGR233 pixel: one colour for the client, so fill.
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[::2] = (1, 1, 1)
    got = TightDecoder(BGR233).decode(
        TightEncoder().encode(rgb, BGR233, EncodeContext(tight_gradient=True)), 10, 10
    )
    assert got.method == "fill"
    np.testing.assert_array_equal(got.pixels, BGR233.encode(rgb))


# -- Tight: JPEG -------------------------------------------------------------------------------------
def test_jpeg_quality_8_psnr() -> None:
    rgb = photo_like(256, 192, seed=1)
    ctx = EncodeContext(tight_gradient=True, quality_level=8)
    got = TightDecoder(SERVER_DEFAULT).decode(TightEncoder().encode(rgb, SERVER_DEFAULT, ctx), 256, 192)
    assert got.method == "jpeg"
    assert got.control == 0x90
    assert psnr(got.pixels, rgb) >= 35.0


def test_jpeg_levels_trade_size_for_quality() -> None:
    rgb = photo_like(160, 120, seed=2)
    sizes, scores = [], []
    for level in range(10):
        payload = TightEncoder().encode(
            rgb, SERVER_DEFAULT, EncodeContext(tight_gradient=True, quality_level=level)
        )
        got = TightDecoder(SERVER_DEFAULT).decode(payload, 160, 120)
        assert got.method == "jpeg"
        sizes.append(len(payload))
        scores.append(psnr(got.pixels, rgb))
    assert sizes[0] < sizes[5] < sizes[9]
    assert scores[0] < scores[5] < scores[8] < scores[9]


def test_never_jpeg_without_a_quality_level() -> None:
    rgb = photo_like(128, 96, seed=3)
    for pf in FORMATS.values():
        got = TightDecoder(pf).decode(
            TightEncoder().encode(rgb, pf, EncodeContext(tight_gradient=True)), 128, 96
        )
        assert got.method in ("gradient", "copy")
        np.testing.assert_array_equal(got.pixels, pf.encode(rgb))


def test_jpeg_only_at_16_and_32_bpp_and_only_for_many_colours() -> None:
    photo = photo_like(64, 64, seed=4)
    ctx = EncodeContext(tight_gradient=True, quality_level=6)
    got = TightDecoder(RGB565).decode(TightEncoder().encode(photo, RGB565, ctx), 64, 64)
    assert got.method == "jpeg"
    got = TightDecoder(BGR233).decode(TightEncoder().encode(photo, BGR233, ctx), 64, 64)
    assert got.method == "copy"
    np.testing.assert_array_equal(got.pixels, BGR233.encode(photo))
    for rgb in (text_like(64, 64), solid(64, 64, (1, 2, 3)), photo[:8, : JPEG_MIN_AREA // 8 - 1]):
        h, w = rgb.shape[:2]
        got = TightDecoder(SERVER_DEFAULT).decode(TightEncoder().encode(rgb, SERVER_DEFAULT, ctx), w, h)
        assert got.method != "jpeg"
        np.testing.assert_array_equal(got.pixels, SERVER_DEFAULT.encode(rgb))


# -- TightPNG ----------------------------------------------------------------------------------------
def decode_tight_png(
    payload: bytes, pf: PixelFormat, width: int, height: int
) -> tuple[str, np.ndarray, bytes]:
    """(method, RGB or client pixels, image bytes) of one TightPNG rect."""
    reader = Reader(payload)
    control = reader.u8()
    assert control in (0x80, 0x90, 0xA0), f"TightPNG rect with control {control:#x}"
    if control == 0x80:
        decoder = TightDecoder(pf)
        pixel = decoder.tpixels(reader.read(decoder.tpixel_size), 1)
        assert reader.pos == len(payload)
        return "fill", np.broadcast_to(pixel, (height, width, pixel.shape[-1])), b""
    image = reader.read(reader.compact())
    assert reader.pos == len(payload)
    if control == 0x90:
        return "jpeg", simplejpeg.decode_jpeg(image, colorspace="RGB"), image
    with Image.open(io.BytesIO(image)) as img:
        img.load()
        assert img.format == "PNG"
        return "png", np.asarray(img.convert("RGB")), image


def png_bit_depth(png: bytes) -> int:
    assert png[12:16] == b"IHDR"
    return png[24]


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("fmt", ["rgb888", "rgb565", "bgr233"])
def test_tight_png_is_fill_or_exact_png(fmt: str, level: int) -> None:
    pf = FORMATS[fmt]
    encoder, ctx = TightPngEncoder(), EncodeContext(tight_gradient=True, compress_level=level)
    for name, rgb in rects_for_test():
        h, w = rgb.shape[:2]
        method, pixels, image = decode_tight_png(encoder.encode(rgb, pf, ctx), pf, w, h)
        if name in ("solid", "1x1"):
            assert method == "fill"
            np.testing.assert_array_equal(pixels, pf.encode(rgb))
        else:
            assert method == "png", name
            np.testing.assert_array_equal(pixels, rgb, err_msg=name)  # PNG carries the original RGB


@pytest.mark.parametrize(("colours", "depth"), [(2, 1), (3, 2), (4, 2), (5, 4), (16, 4), (17, 8), (256, 8)])
def test_tight_png_palette_bit_depths(colours: int, depth: int) -> None:
    rgb = few_colours(37, 11, colours, seed=colours)  # odd width: packed rows need padding
    method, pixels, image = decode_tight_png(TightPngEncoder().encode(rgb, SERVER_DEFAULT, EncodeContext()),
                                             SERVER_DEFAULT, 37, 11)  # fmt: skip
    assert method == "png"
    assert png_bit_depth(image) == depth
    np.testing.assert_array_equal(pixels, rgb)


def test_tight_png_truecolour_png_is_exact_and_uses_jpeg_when_asked() -> None:
    rgb = photo_like(200, 150, seed=5)
    method, pixels, image = decode_tight_png(TightPngEncoder().encode(rgb, SERVER_DEFAULT, EncodeContext()),
                                             SERVER_DEFAULT, 200, 150)  # fmt: skip
    assert method == "png" and png_bit_depth(image) == 8
    np.testing.assert_array_equal(pixels, rgb)
    ctx = EncodeContext(tight_gradient=True, quality_level=8)
    method, pixels, _ = decode_tight_png(TightPngEncoder().encode(rgb, SERVER_DEFAULT, ctx), SERVER_DEFAULT,
                                         200, 150)  # fmt: skip
    assert method == "jpeg"
    assert psnr(pixels, rgb) >= 35.0
    method, _, _ = decode_tight_png(TightPngEncoder().encode(rgb, BGR233, ctx), BGR233, 200, 150)
    assert method == "png"  # no JPEG at 8 bpp


# -- wire details ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "wire"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (10000, b"\x90\x4e"), (16383, b"\xff\x7f"),
     (16384, b"\x80\x80\x01"), (4194303, b"\xff\xff\xff")],
)  # fmt: skip
def test_compact_length(n: int, wire: bytes) -> None:
    assert compact_length(n) == wire
    assert Reader(wire).compact() == n
    rest = io.BytesIO(wire + b"next")
    assert read_compact_length(rest.read) == n and rest.read() == b"next"  # (the benchmark's reader)


def test_compact_length_limit() -> None:
    with pytest.raises(ValueError):
        compact_length(1 << 22)


def test_registered_with_limits() -> None:
    assert isinstance(ENCODERS[Encoding.TIGHT], TightEncoder)
    assert isinstance(ENCODERS[Encoding.TIGHT_PNG], TightPngEncoder)
    for enc in (TightEncoder, TightPngEncoder):
        assert enc.max_width == MAX_WIDTH == 2048
        assert enc.max_area == MAX_AREA
    # The largest rect's worst case (incompressible 3-byte pixels) fits a compact length.
    assert MAX_AREA * 4 + 1024 < (1 << 22)


def test_compresses_well_against_raw() -> None:
    ctx = EncodeContext(tight_gradient=True)
    for rgb, most in ((text_like(256, 256), 0.05), (gradient(256, 256), 0.01), (solid(256, 256), 0.001)):
        payload = TightEncoder().encode(rgb, SERVER_DEFAULT, ctx)
        assert len(payload) < most * SERVER_DEFAULT.bytes_per_pixel * rgb.shape[0] * rgb.shape[1]


def test_gradient_filter_is_off_by_default() -> None:
    """Older noVNC (< 1.5) throws on the gradient filter, so only tight_gradient=True uses it."""
    rgb = gradient(128, 96)
    got = TightDecoder(SERVER_DEFAULT).decode(
        TightEncoder().encode(rgb, SERVER_DEFAULT, EncodeContext()), 128, 96
    )
    assert got.method == "copy"
    assert np.array_equal(got.pixels, SERVER_DEFAULT.encode(rgb))
    on = EncodeContext(tight_gradient=True)
    assert TightDecoder(SERVER_DEFAULT).decode(
        TightEncoder().encode(rgb, SERVER_DEFAULT, on), 128, 96
    ).method == ("gradient")


def test_colour_sample_of_contiguous_and_cut_out_rects() -> None:
    """The sample is a strided view: for a rect cut from a wider frame and for a contiguous one
    it sees the rect's few colours (never more), and enough of a noisy rect to rule a palette out."""
    from pdum.rfb.encodings.tight import _sample_colours
    from pdum.rfb.testing import bouncing_box, noise

    frame = bouncing_box(320, 240, 11)
    for rgb in (frame[0:128, 64:128], np.ascontiguousarray(frame[0:128, 64:128]), frame[:, :]):
        real = len(np.unique(rgb.reshape(-1, 3), axis=0))
        sampled = _sample_colours(rgb)
        assert sampled is not None and 1 <= sampled.size <= real
        assert list(sampled) == sorted(set(sampled.tolist()))  # distinct, ascending
    wide = noise(320, 240, seed=5)
    for rgb in (wide[10:200, 30:300], np.ascontiguousarray(wide)):
        sampled = _sample_colours(rgb)
        assert sampled is not None and sampled.size > 256
    assert _sample_colours(wide[:40, :50]) is None  # too small to sample: the full count decides


def test_palette_from_a_sample_that_missed_a_colour_is_still_exact() -> None:
    """A few-colour rect whose sample misses a colour (a one-pixel dot) falls back to the exact
    count: the palette holds every colour, most frequent first."""
    from pdum.rfb.encodings.base import rgb_keys
    from pdum.rfb.encodings.tight import _palette, _sample_colours

    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[:, 64:] = (200, 10, 10)
    rgb[33, 77] = (1, 2, 3)  # off every sampled pixel
    sample = _sample_colours(rgb)
    assert sample is not None and sample.size == 2
    found = _palette(rgb_keys(rgb), 256, sample)
    assert found is not None and found[1] is not None
    colours, indices = found
    assert colours.tolist() == [0x000000, 0xC80A0A, 0x010203]
    assert int(indices[33, 77]) == 2 and int(indices[0, 0]) == 0 and int(indices[0, 100]) == 1
