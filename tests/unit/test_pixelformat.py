from __future__ import annotations

import numpy as np
import pytest

from pdum.rfb.protocol import BGR233, RGB565, SERVER_DEFAULT, PixelFormat, UnsupportedPixelFormat


def test_pack_roundtrip() -> None:
    for pf in (SERVER_DEFAULT, RGB565, BGR233):
        data = pf.pack()
        assert len(data) == 16
        assert PixelFormat.unpack(data) == pf


def test_server_default_bytes() -> None:
    assert SERVER_DEFAULT.pack() == bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])


def test_rgb888_little_and_big_endian() -> None:
    rgb = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert SERVER_DEFAULT.encode_bytes(rgb) == bytes([3, 2, 1, 0])
    big = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
    assert big.encode_bytes(rgb) == bytes([0, 1, 2, 3])
    rgbx = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)
    assert rgbx.encode_bytes(rgb) == bytes([1, 2, 3, 0])


def test_rgb565_rounds_to_nearest() -> None:
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [8, 4, 132]]], dtype=np.uint8)
    out = np.frombuffer(RGB565.encode_bytes(rgb), dtype="<u2")
    assert out[0] == 0xFFFF and out[1] == 0
    r, g, b = (8 * 31 + 128) // 255, (4 * 63 + 128) // 255, (132 * 31 + 128) // 255
    assert out[2] == (r << 11) | (g << 5) | b


def test_big_endian_16() -> None:
    pf = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
    rgb = np.array([[[255, 0, 0]]], dtype=np.uint8)
    assert pf.encode_bytes(rgb) == b"\xf8\x00"


def test_bgr233() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    assert BGR233.encode_bytes(rgb) == bytes([0b00000111, 0b00111000, 0b11000000])


def test_odd_maxes_and_shifts_vectorised() -> None:
    pf = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    values = np.frombuffer(pf.encode_bytes(rgb), dtype="<u4").reshape(7, 5)
    expected = ((rgb[..., 0].astype(np.uint32) * 1023 + 128) // 255) << 20
    assert np.array_equal(values >> 20, expected >> 20)


@pytest.mark.parametrize(
    "pf, message",
    [
        (PixelFormat(7, 7, False, True, 3, 3, 1, 0, 2, 4), "bits-per-pixel"),
        (PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0), "colour-map"),
        (PixelFormat(16, 16, False, True, 0, 63, 31, 11, 5, 0), "zero"),
        (PixelFormat(16, 16, False, True, 31, 63, 31, 12, 5, 0), "does not fit"),
        (PixelFormat(16, 24, False, True, 31, 63, 31, 11, 5, 0), "depth"),
    ],
)
def test_refused_formats(pf: PixelFormat, message: str) -> None:
    with pytest.raises(UnsupportedPixelFormat, match=message):
        pf.validate()
