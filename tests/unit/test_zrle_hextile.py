"""ZRLE and Hextile: our encoders decoded by small, strict reference decoders written here from
rfbproto (not from our encoder code), compared pixel-exact with ``PixelFormat.encode``.

The decoders refuse anything the spec forbids or leaves to chance: a background or foreground used
when it may not carry over, SubrectsColoured together with ForegroundSpecified, subrectangles
outside their tile, runs overflowing a tile, palette indices out of range, trailing bytes, and a
ZRLE rectangle that cannot be inflated without the next one (missing Z_SYNC_FLUSH).
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdum.rfb.encodings import ENCODERS, EncodeContext, hextile
from pdum.rfb.encodings.hextile import HextileEncoder
from pdum.rfb.encodings.zrle import ZRLEEncoder
from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.protocol.pixelformat import BGR233, RGB565, SERVER_DEFAULT, PixelFormat
from pdum.rfb.testing import checkerboard, gradient, noise, solid, text_like

BE32 = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
# Colour bits in the most significant three bytes: CPIXEL is those bytes.
LE32_HIGH = PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8)
BE32_HIGH = PixelFormat(32, 24, True, True, 255, 255, 255, 24, 16, 8)
# Depth over 24 (or 10-bit channels): CPIXEL is the whole 4-byte pixel.
LE32_DEPTH32 = PixelFormat(32, 32, False, True, 255, 255, 255, 16, 8, 0)
BE32_TEN_BIT = PixelFormat(32, 30, True, True, 1023, 1023, 1023, 20, 10, 0)

# libvncclient's and noVNC's default: R, G, B, x bytes (ZRLE reads these without converting).
LE32_RGBX = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)

FORMATS = {
    "32le": SERVER_DEFAULT,
    "32le-rgbx": LE32_RGBX,
    "32be": BE32,
    "rgb565": RGB565,
    "bgr233": BGR233,
    "32le-high": LE32_HIGH,
    "32be-high": BE32_HIGH,
    "32le-depth32": LE32_DEPTH32,
    "32be-10bit": BE32_TEN_BIT,
}
SIZES = [(130, 70), (1, 1), (64, 64), (65, 17), (200, 131)]


# -- test frames ------------------------------------------------------------------------------------
def n_colour_blocks(width: int, height: int, n: int, block: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` colours in ``block``-sized squares, placed at random."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    cells = rng.integers(0, n, (-(-height // block), -(-width // block)))
    index = np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:height, :width]
    return palette[index]


def noise_pairs(width: int, height: int) -> np.ndarray:
    """Noise with each colour twice in a row: too many colours for a palette, runs of two."""
    return np.repeat(noise(-(-width // 2), height, seed=3), 2, axis=1)[:, :width].copy()


def bands(width: int, height: int) -> np.ndarray:
    """Two colours in horizontal halves: long runs (over 255 pixels) in palette RLE."""
    frame = solid(width, height, (250, 250, 250))
    frame[height // 2 :] = (10, 20, 200)
    return frame


def row_colours(width: int, height: int) -> np.ndarray:
    """A different colour on every row (many colours, one run per row)."""
    rows = noise(1, height, seed=11)
    return np.repeat(rows, width, axis=1)


FRAMES: dict[str, Callable[[int, int], np.ndarray]] = {
    "noise": lambda w, h: noise(w, h, seed=1),
    "gradient": gradient,
    "solid": lambda w, h: solid(w, h, (12, 200, 34)),
    "two": lambda w, h: checkerboard(w, h, 3, ((0, 0, 0), (255, 255, 255))),
    "five": lambda w, h: n_colour_blocks(w, h, 5),
    "twenty": lambda w, h: n_colour_blocks(w, h, 20, block=2),
    "text": text_like,
    "pairs": noise_pairs,
    "bands": bands,
    "rows": row_colours,
}


# -- reference decoders ---------------------------------------------------------------------------------
def cpixel_to_pixel(pf: PixelFormat) -> tuple[int, Callable[[bytes], bytes]]:
    """rfbproto: a CPIXEL is 3 bytes for 32 bpp true colour, depth <= 24, when every colour bit is in
    the three least (preferred) or most significant bytes of the pixel value."""
    size = pf.bits_per_pixel // 8
    if pf.bits_per_pixel == 32 and pf.true_colour and pf.depth <= 24:
        used = (
            (pf.red_max << pf.red_shift) | (pf.green_max << pf.green_shift) | (pf.blue_max << pf.blue_shift)
        )
        if used <= 0xFFFFFF:  # low bytes: first on the wire if little-endian
            return 3, (lambda c: b"\0" + c) if pf.big_endian else (lambda c: c + b"\0")
        if used & 0xFF == 0:  # high bytes
            return 3, (lambda c: c + b"\0") if pf.big_endian else (lambda c: b"\0" + c)
    return size, lambda c: c


class ZrleDecoder:
    """One client's ZRLE state: a single inflater for every rectangle, as rfbproto requires."""

    def __init__(self, pf: PixelFormat) -> None:
        self.pf = pf
        self.inflater = zlib.decompressobj()
        self.cp, self.to_pixel = cpixel_to_pixel(pf)
        self.subencodings: Counter[int] = Counter()
        self.longest_run = 0

    def decode(self, payload: bytes, width: int, height: int) -> np.ndarray:
        (length,) = struct.unpack(">I", payload[:4])
        assert len(payload) == 4 + length
        assert payload.endswith(b"\x00\x00\xff\xff"), "rectangle must end with a zlib sync flush"
        data = self.inflater.decompress(payload[4:])
        assert not self.inflater.unconsumed_tail
        bpp = self.pf.bits_per_pixel // 8
        out = np.full((height, width, bpp), 0xAA, dtype=np.uint8)
        pos = 0

        def cpixel() -> bytes:
            nonlocal pos
            c = data[pos : pos + self.cp]
            assert len(c) == self.cp, "truncated"
            pos += self.cp
            return self.to_pixel(c)

        def run_length() -> int:
            nonlocal pos
            n = 1
            while data[pos] == 255:
                n += 255
                pos += 1
            n += data[pos]
            pos += 1
            self.longest_run = max(self.longest_run, n)
            return n

        for ty in range(0, height, 64):
            for tx in range(0, width, 64):
                tw, th = min(64, width - tx), min(64, height - ty)
                kind = data[pos]
                pos += 1
                self.subencodings[kind] += 1
                pixels: list[bytes] = []
                if kind == 0:
                    pixels = [cpixel() for _ in range(tw * th)]
                elif kind == 1:
                    pixels = [cpixel()] * (tw * th)
                elif 2 <= kind <= 16:
                    palette = [cpixel() for _ in range(kind)]
                    bits = 1 if kind == 2 else 2 if kind <= 4 else 4
                    row_bytes = (tw * bits + 7) // 8
                    for _ in range(th):
                        for x in range(tw):
                            byte = data[pos + x * bits // 8]
                            index = (byte >> (8 - bits - (x * bits) % 8)) & ((1 << bits) - 1)
                            assert index < kind, "packed index outside the palette"
                            pixels.append(palette[index])
                        pos += row_bytes
                elif kind == 128:
                    while len(pixels) < tw * th:
                        colour = cpixel()
                        pixels.extend([colour] * run_length())
                elif kind >= 130:
                    palette = [cpixel() for _ in range(kind - 128)]
                    while len(pixels) < tw * th:
                        head = data[pos]
                        pos += 1
                        assert head & 0x7F < len(palette), "RLE index outside the palette"
                        pixels.extend([palette[head & 0x7F]] * (run_length() if head & 0x80 else 1))
                else:
                    raise AssertionError(f"invalid ZRLE sub-encoding {kind}")
                assert len(pixels) == tw * th, "run overflows the tile"
                tile = np.frombuffer(b"".join(pixels), dtype=np.uint8).reshape(th, tw, bpp)
                out[ty : ty + th, tx : tx + tw] = tile
        assert pos == len(data), "trailing bytes after the last tile"
        return out


class HextileDecoder:
    """Strict rfbproto Hextile decoder; counts which tile kinds it saw."""

    def __init__(self, pf: PixelFormat) -> None:
        self.pf = pf
        self.kinds: Counter[str] = Counter()

    def decode(self, payload: bytes, width: int, height: int) -> np.ndarray:
        bpp = self.pf.bits_per_pixel // 8
        out = np.full((height, width, bpp), 0xAA, dtype=np.uint8)
        pos = 0
        bg: bytes | None = None  # None: may not carry over
        fg: bytes | None = None

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = payload[pos : pos + n]
            assert len(chunk) == n, "truncated"
            pos += n
            return chunk

        for ty in range(0, height, 16):
            for tx in range(0, width, 16):
                tw, th = min(16, width - tx), min(16, height - ty)
                mask = read(1)[0]
                assert mask < 32, f"unknown subencoding bits {mask:#x}"
                if mask & 1:
                    assert mask == 1, "raw tile with other bits set"
                    tile = np.frombuffer(read(tw * th * bpp), dtype=np.uint8).reshape(th, tw, bpp)
                    out[ty : ty + th, tx : tx + tw] = tile
                    bg = fg = None
                    self.kinds["raw"] += 1
                    continue
                if mask & 2:
                    bg = read(bpp)
                    self.kinds["bg"] += 1
                else:
                    assert bg is not None, "background carried over when it may not be"
                    self.kinds["bg-carried"] += 1
                colour_rects = bool(mask & 16)
                if mask & 4:
                    assert not colour_rects, "ForegroundSpecified with SubrectsColoured"
                    fg = read(bpp)
                    self.kinds["fg"] += 1
                tile = np.frombuffer(bg * (tw * th), dtype=np.uint8).reshape(th, tw, bpp).copy()
                if mask & 8:
                    count = read(1)[0]
                    assert count > 0
                    self.kinds["coloured" if colour_rects else "mono"] += 1
                    if not colour_rects and not mask & 4:
                        assert fg is not None, "foreground carried over when it may not be"
                        self.kinds["fg-carried"] += 1
                    for _ in range(count):
                        colour = read(bpp) if colour_rects else fg
                        assert colour is not None
                        xy, wh = read(2)
                        x, y, w, h = xy >> 4, xy & 15, (wh >> 4) + 1, (wh & 15) + 1
                        assert x + w <= tw and y + h <= th, "subrect outside its tile"
                        tile[y : y + h, x : x + w] = np.frombuffer(colour, dtype=np.uint8)
                    if colour_rects:
                        fg = None
                else:
                    assert not colour_rects
                    self.kinds["solid"] += 1
                out[ty : ty + th, tx : tx + tw] = tile
        assert pos == len(payload), "trailing bytes after the last tile"
        return out


# -- tests ----------------------------------------------------------------------------------------------
def test_registered() -> None:
    assert isinstance(ENCODERS[Encoding.ZRLE], ZRLEEncoder)
    assert isinstance(ENCODERS[Encoding.HEXTILE], HextileEncoder)
    for encoder in (ZRLEEncoder, HextileEncoder):
        assert encoder.max_width is None and encoder.max_area is None


@pytest.mark.parametrize("pf", FORMATS.values(), ids=FORMATS.keys())
def test_zrle_round_trip_over_one_stream(pf: PixelFormat) -> None:
    """Every frame and size, in turn, through one client's stream (and one inflater)."""
    pf.validate()
    ctx = EncodeContext()
    decoder = ZrleDecoder(pf)
    encoder = ZRLEEncoder()
    for width, height in SIZES:
        for name, make in FRAMES.items():
            frame = make(width, height)
            got = decoder.decode(encoder.encode(frame, pf, ctx), width, height)
            assert np.array_equal(got, pf.encode(frame)), (name, width, height)
    assert set(ctx.streams) == {"zrle"}


@pytest.mark.parametrize("pf", FORMATS.values(), ids=FORMATS.keys())
def test_hextile_round_trip(pf: PixelFormat) -> None:
    encoder = HextileEncoder()
    for width, height in SIZES:
        for name, make in FRAMES.items():
            frame = make(width, height)
            decoder = HextileDecoder(pf)
            got = decoder.decode(encoder.encode(frame, pf, EncodeContext()), width, height)
            assert np.array_equal(got, pf.encode(frame)), (name, width, height)


def test_views_of_a_larger_framebuffer() -> None:
    """The session passes non-contiguous slices of the framebuffer; several rects share a stream."""
    fb = text_like(400, 300)
    fb[100:200, 50:250] = noise(200, 100, seed=4)
    fb[0:60, 300:400] = gradient(100, 60)
    rects = [(0, 0, 400, 64), (37, 61, 130, 70), (300, 0, 100, 60), (1, 299, 399, 1), (250, 100, 1, 150)]
    for pf in (SERVER_DEFAULT, BE32, RGB565, BGR233):
        ctx = EncodeContext()
        zrle = ZrleDecoder(pf)
        for x, y, w, h in rects:
            view = fb[y : y + h, x : x + w]
            expected = pf.encode(view)
            assert np.array_equal(zrle.decode(ZRLEEncoder().encode(view, pf, ctx), w, h), expected)
            hextile = HextileDecoder(pf).decode(HextileEncoder().encode(view, pf, ctx), w, h)
            assert np.array_equal(hextile, expected)


def test_zrle_uses_every_sub_encoding() -> None:
    ctx = EncodeContext()
    decoder = ZrleDecoder(SERVER_DEFAULT)
    for make in FRAMES.values():
        frame = make(130, 70)
        decoder.decode(ZRLEEncoder().encode(frame, SERVER_DEFAULT, ctx), 130, 70)
    kinds = decoder.subencodings
    assert kinds[0] and kinds[1] and kinds[128], kinds  # raw, solid, plain RLE
    assert kinds[2], kinds  # 1-bit packed palette
    assert any(kinds[k] for k in (3, 4)), kinds  # 2-bit
    assert any(kinds[k] for k in range(5, 17)), kinds  # 4-bit
    assert any(kinds[k] for k in range(130, 256)), kinds  # palette RLE
    assert decoder.longest_run > 255


def test_zrle_picks_small_sub_encodings() -> None:
    ctx = EncodeContext()
    decoder = ZrleDecoder(SERVER_DEFAULT)
    decoder.decode(ZRLEEncoder().encode(noise(128, 128, seed=2), SERVER_DEFAULT, ctx), 128, 128)
    assert decoder.subencodings == Counter({0: 4})
    decoder.subencodings.clear()
    decoder.decode(ZRLEEncoder().encode(solid(128, 128, (1, 2, 3)), SERVER_DEFAULT, ctx), 128, 128)
    assert decoder.subencodings == Counter({1: 4})
    decoder.subencodings.clear()
    # two colours, eight runs of 512: palette RLE (6 + 8 * 2 + 16 bytes) beats plain RLE (8 * 4 + 16)
    # and 1-bit packing (6 + 512)
    stripes = solid(64, 64, (250, 250, 250))
    stripes[(np.arange(64) // 8) % 2 == 1] = (0, 0, 0)
    decoder.decode(ZRLEEncoder().encode(stripes, SERVER_DEFAULT, ctx), 64, 64)
    assert decoder.subencodings == Counter({130: 1})
    decoder.subencodings.clear()
    # two runs of 2048: plain RLE (2 * 4 + 16 bytes) beats palette RLE (6 + 2 * 2 + 16)
    decoder.decode(ZRLEEncoder().encode(bands(64, 64), SERVER_DEFAULT, ctx), 64, 64)
    assert decoder.subencodings == Counter({128: 1})
    # a 64x64 text tile: well under the raw size even before zlib
    frame = text_like(64, 64)
    payload = ZRLEEncoder().encode(frame, SERVER_DEFAULT, EncodeContext())
    assert len(payload) < 64 * 64 * 4 // 10


@pytest.mark.parametrize(
    ("colours", "sample_colours", "expected"),
    [
        (127, 127, 128 + 127),  # the most a palette holds: palette RLE (~4.4 KB before zlib)
        (128, 128, 0),  # one more: raw (12 KB) beats plain RLE (16 KB)
        (200, 2, 0),  # the colour sample (every 8th pixel) shows 2 colours: still counted exactly
        (100, 2, 128 + 100),
    ],
)
def test_zrle_palette_limit_with_many_runs(colours: int, sample_colours: int, expected: int) -> None:
    """A 64x64 tile with a run per pixel: the encoder counts colours from a sample first when a tile
    has many runs; a tile is only kept from a palette when it truly has more than 127 colours."""
    rng = np.random.default_rng(colours)
    palette = rng.permutation(256 * 256)[:colours]
    flat = np.arange(64 * 64)
    sampled = flat % 8 == 0  # the pixels the encoder samples (stream order = row by row here)
    if sample_colours == colours:
        index = flat % colours
    else:  # the sampled pixels take the first colours, the others the rest
        rest = sample_colours + flat % (colours - sample_colours)
        index = np.where(sampled, flat // 8 % sample_colours, rest)
    values = palette[index]
    assert (values[1:] != values[:-1]).all()  # a run per pixel
    tile = np.stack([values >> 8, values & 0xFF, np.full_like(values, 7)], axis=-1).astype(np.uint8)
    tile = tile.reshape(64, 64, 3)
    assert len(np.unique(values)) == colours
    decoder = ZrleDecoder(SERVER_DEFAULT)
    decoded = decoder.decode(ZRLEEncoder().encode(tile, SERVER_DEFAULT, EncodeContext()), 64, 64)
    assert np.array_equal(decoded, SERVER_DEFAULT.encode(tile))
    assert decoder.subencodings == Counter({expected: 1})


def test_hextile_uses_every_tile_kind_and_carries_colours() -> None:
    decoder = HextileDecoder(SERVER_DEFAULT)
    for make in FRAMES.values():
        frame = make(130, 70)
        decoder.decode(HextileEncoder().encode(frame, SERVER_DEFAULT, EncodeContext()), 130, 70)
    for kind in ("raw", "bg", "bg-carried", "fg", "fg-carried", "mono", "coloured", "solid"):
        assert decoder.kinds[kind], (kind, decoder.kinds)


def test_hextile_sizes() -> None:
    pf = SERVER_DEFAULT
    # solid: one tile with the background, then one byte per tile
    payload = HextileEncoder().encode(solid(160, 32, (9, 9, 9)), pf, EncodeContext())
    assert payload == bytes((2,)) + pf.encode(solid(1, 1, (9, 9, 9))).tobytes() + b"\x00" * 19
    # noise: every tile raw, nothing else
    payload = HextileEncoder().encode(noise(32, 32), pf, EncodeContext())
    assert len(payload) == 4 * (1 + 16 * 16 * 4)
    # a 16x16 tile with one 4x3 box: bg, fg, one subrect
    frame = solid(16, 16, (0, 0, 0))
    frame[5:8, 2:6] = (255, 0, 0)
    payload = HextileEncoder().encode(frame, pf, EncodeContext())
    assert payload[0] == 2 | 4 | 8
    assert payload[9:] == bytes((1, (2 << 4) | 5, (3 << 4) | 2))


@pytest.mark.parametrize("height", [16, 11], ids=["whole", "partial"])
def test_hextile_half_and_half_tiles_take_the_colour_not_at_the_top_left(height: int) -> None:
    """A tile split half and half takes as background the colour that is not at its top-left
    (libvncserver's choice), whichever value is smaller, and keeps carrying it: two such tiles
    in a row cost one bg and one fg, then one subrect each."""
    pf = SERVER_DEFAULT
    for left, right in (((0, 0, 0), (255, 0, 0)), ((255, 0, 0), (0, 0, 0))):
        frame = solid(32, height, right)
        frame[:, 0:8] = left
        frame[:, 16:24] = left
        payload = HextileEncoder().encode(frame, pf, EncodeContext())
        bg, fg = pf.encode(solid(1, 1, right)).tobytes(), pf.encode(solid(1, 1, left)).tobytes()
        subrect = bytes((1, 0, (7 << 4) | (height - 1)))
        assert payload == bytes((2 | 4 | 8,)) + bg + fg + subrect + bytes((8,)) + subrect
        np.testing.assert_array_equal(HextileDecoder(pf).decode(payload, 32, height), pf.encode(frame))


def test_hextile_subrect_search_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rectangles with too many tiles for the packed sort key are searched in chunks."""
    frame = text_like(200, 131)
    expected = HextileEncoder().encode(frame, SERVER_DEFAULT, EncodeContext())
    monkeypatch.setattr(hextile, "_KEY_TILE_LIMIT", 7)
    assert HextileEncoder().encode(frame, SERVER_DEFAULT, EncodeContext()) == expected


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 150),
    height=st.integers(1, 90),
    colours=st.sampled_from([1, 2, 3, 4, 5, 16, 17, 127, 128, 300]),
    block=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    pf=st.sampled_from(list(FORMATS.values())),
)
def test_round_trip_random_blocks(width: int, height: int, colours: int, block: int, seed: int,
                                  pf: PixelFormat) -> None:  # fmt: skip
    frame = n_colour_blocks(width, height, colours, block=block, seed=seed)
    expected = pf.encode(frame)
    got = ZrleDecoder(pf).decode(ZRLEEncoder().encode(frame, pf, EncodeContext()), width, height)
    assert np.array_equal(got, expected)
    got = HextileDecoder(pf).decode(HextileEncoder().encode(frame, pf, EncodeContext()), width, height)
    assert np.array_equal(got, expected)
