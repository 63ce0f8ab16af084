"""Fresh-deflate segments continue any client's zlib stream, so one payload serves many clients."""

from __future__ import annotations

import zlib
from functools import partial

from pdum.rfb.encodings.base import EncodeContext
from pdum.rfb.encodings.sharing import EncodeCache, FreshDeflate, make_shared
from pdum.rfb.encodings.zlib import ZlibEncoder
from pdum.rfb.protocol import SERVER_DEFAULT
from pdum.rfb.testing import noise, text_like


def test_segments_continue_a_private_stream() -> None:
    private = zlib.compressobj(6)
    inflater = zlib.decompressobj()
    first = b"private history " * 100
    assert inflater.decompress(private.compress(first) + private.flush(zlib.Z_SYNC_FLUSH)) == first
    shared = FreshDeflate(6, started=True)
    for chunk in (b"segment one " * 50, b"segment two " * 70, bytes(range(256)) * 3):
        shared.compress(chunk)
        assert inflater.decompress(shared.flush(zlib.Z_SYNC_FLUSH)) == chunk


def test_new_stream_gets_its_header_once() -> None:
    inflater = zlib.decompressobj()
    stream = FreshDeflate(1, started=False)
    stream.compress(b"abc" * 10)
    data = stream.flush()
    assert data[:2] == b"\x78\x9c" and stream.emitted_header
    assert inflater.decompress(data) == b"abc" * 10
    stream.compress(b"xyz")
    assert inflater.decompress(stream.flush()) == b"xyz"


def test_cache_serves_a_second_client_and_both_decode() -> None:
    encoder = ZlibEncoder()
    a, b = EncodeContext(), EncodeContext()
    inflate_a, inflate_b = zlib.decompressobj(), zlib.decompressobj()
    cache = EncodeCache()
    # client A streamed privately before B joined
    rgb0 = text_like(64, 32)
    payload = encoder.encode(rgb0, SERVER_DEFAULT, a)
    assert inflate_a.decompress(payload[4:]) == SERVER_DEFAULT.encode_bytes(rgb0)
    make_shared(a)
    make_shared(b)
    for generation in range(1, 4):
        rgb = noise(64, 32, seed=generation) if generation % 2 else text_like(64, 32, seed=generation)
        key = ("rect", generation)
        got_b, _ = cache.payload(generation, key, 6, b, partial(encoder.encode, rgb, SERVER_DEFAULT, b))
        got_a, _ = cache.payload(generation, key, 6, a, partial(encoder.encode, rgb, SERVER_DEFAULT, a))
        expected = SERVER_DEFAULT.encode_bytes(rgb)
        assert inflate_a.decompress(got_a[4:]) == expected
        assert inflate_b.decompress(got_b[4:]) == expected
    # B's first payload carried its header, so it was not shared; later ones were
    assert cache.hits == 2 and cache.misses == 4
