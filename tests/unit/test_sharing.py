"""Shared zlib streams: one payload serves every client whose inflater can take it, with the
history of the segments they all took (lineages), and clients out of step get valid bytes too."""

from __future__ import annotations

import zlib
from functools import partial

import numpy as np

from pdum.rfb.encodings.base import EncodeContext
from pdum.rfb.encodings.sharing import EncodeCache, Lineage, SharedStream, make_shared
from pdum.rfb.encodings.zlib import ZlibEncoder
from pdum.rfb.protocol import SERVER_DEFAULT
from pdum.rfb.testing import noise, text_like


def test_a_segment_without_history_continues_a_private_stream() -> None:
    private = zlib.compressobj(6)
    inflater = zlib.decompressobj()
    first = b"private history " * 100
    assert inflater.decompress(private.compress(first) + private.flush(zlib.Z_SYNC_FLUSH)) == first
    shared = SharedStream(6, started=True)  # no lineage yet: its first segment has no history
    for chunk in (b"segment one " * 50, b"segment two " * 70, bytes(range(256)) * 3):
        shared.compress(chunk)
        assert inflater.decompress(shared.flush(zlib.Z_SYNC_FLUSH)) == chunk


def test_new_stream_gets_its_header_once() -> None:
    inflater = zlib.decompressobj()
    stream = SharedStream(1, started=False)
    stream.compress(b"abc" * 10)
    data = stream.flush()
    assert data[:2] == b"\x78\x9c" and stream.emitted_header
    assert inflater.decompress(data) == b"abc" * 10
    stream.compress(b"xyz")
    assert inflater.decompress(stream.flush()) == b"xyz"


def test_a_private_compressor_goes_on_as_a_lineage() -> None:
    """Going shared loses nothing: the private compressor's history carries on."""
    encoder = ZlibEncoder()
    alone, shared = EncodeContext(), EncodeContext()
    inflater = zlib.decompressobj()
    rgb = text_like(64, 32)
    first = encoder.encode(rgb, SERVER_DEFAULT, shared)
    assert first == encoder.encode(rgb, SERVER_DEFAULT, alone)
    assert inflater.decompress(first[4:]) == SERVER_DEFAULT.encode_bytes(rgb)
    make_shared(shared)
    again = encoder.encode(rgb, SERVER_DEFAULT, shared)
    assert again == encoder.encode(rgb, SERVER_DEFAULT, alone)
    assert inflater.decompress(again[4:]) == SERVER_DEFAULT.encode_bytes(rgb)
    assert len(again) < len(first) * 3 // 4  # the repeat refers back to the first


class Client:
    """One client's encoder state and inflater."""

    def __init__(self, private_first: bool) -> None:
        self.ctx = EncodeContext()
        self.inflater = zlib.decompressobj()
        self.private_first = private_first


def _encode_frame(cache: EncodeCache, generation: int, rgb: np.ndarray, clients: list[Client]) -> list[bytes]:
    """Each client gets the frame's rect through the cache, in list order; each decodes it."""
    encoder = ZlibEncoder()
    expected = SERVER_DEFAULT.encode_bytes(rgb)
    payloads = []
    for client in clients:
        produce = partial(encoder.encode, rgb, SERVER_DEFAULT, client.ctx)
        payload, _ = cache.payload(generation, ("rect",), 6, client.ctx, produce)
        assert client.inflater.decompress(payload[4:]) == expected
        payloads.append(payload)
    return payloads


def _frame(generation: int) -> np.ndarray:
    return noise(64, 32, seed=generation) if generation % 3 == 0 else text_like(64, 32, seed=generation % 2)


def test_clients_in_step_converge_and_share_payloads_with_history() -> None:
    a, b, c = Client(True), Client(False), Client(False)
    cache = EncodeCache()
    encoder = ZlibEncoder()
    rgb0 = text_like(64, 32, seed=0)
    a.inflater.decompress(encoder.encode(rgb0, SERVER_DEFAULT, a.ctx)[4:])  # A streamed alone before
    for client in (a, b, c):
        make_shared(client.ctx)
    sizes = []
    for generation in range(1, 13):
        payloads = _encode_frame(cache, generation, _frame(generation), [a, b, c])
        sizes.append([len(p) for p in payloads])
        if generation >= 3:  # B and C had their headers and one frame without history: in step
            assert payloads[0] == payloads[1] == payloads[2]
    # Frames 4, 5, 7, 8 ... repeat the text of frames 1 and 2: the shared lineage's history makes
    # them a few back-references, as small as with a private stream.
    alone = EncodeContext()
    private = [len(encoder.encode(_frame(g), SERVER_DEFAULT, alone)) for g in range(1, 13)]
    history_less = [len(encoder.encode(_frame(g), SERVER_DEFAULT, EncodeContext())) for g in range(1, 13)]
    shared = [row[0] for row in sizes]
    # From generation 7 on the lineage has seen what the private stream has seen that deflate
    # still finds (its window holds four frames): as small as a lone client's payloads, and
    # smaller than segments without history where the history helps (generation 10: 209 vs 341).
    for g in range(6, 12):
        assert shared[g] <= private[g] + 8, (g, shared, private)
    assert sum(shared[6:]) < sum(history_less[6:]) and shared[9] < history_less[9] * 3 // 4, shared
    assert cache.hits >= 2 * 10


def test_a_client_out_of_step_gets_valid_bytes_and_the_group_converges_again() -> None:
    clients = [Client(False) for _ in range(3)]
    cache = EncodeCache()
    for client in clients:
        make_shared(client.ctx)
    for generation in range(1, 5):
        _encode_frame(cache, generation, _frame(generation), clients)
    # Client 2 misses frame 5 (it had not asked), then gets frame 6 with the others.
    _encode_frame(cache, 5, _frame(5), clients[:2])
    out_of_step = _encode_frame(cache, 6, _frame(6), clients)
    assert out_of_step[2] != out_of_step[0]  # it could not take the others' segment
    back = _encode_frame(cache, 7, _frame(7), clients)  # a new lineage without history: everyone
    assert back[0] == back[1] == back[2]
    again = _encode_frame(cache, 8, _frame(8), clients)
    assert again[0] == again[1] == again[2]


def test_a_busy_or_retired_lineage_is_not_continued() -> None:
    lineage = Lineage(zlib.compressobj(6, zlib.DEFLATED, -15))
    stream = SharedStream(6, True, lineage)
    lineage.busy = True  # another thread is compressing its next segment
    stream.compress(b"x" * 100)
    stream.flush()
    assert stream.requires is None and stream.position is not None and stream.position[0] is not lineage
    follower = SharedStream(6, True, stream.position[0])
    follower.position = stream.position
    stream.position[0].retired = True
    follower.begin()
    follower.compress(b"y" * 100)
    follower.flush()
    assert follower.requires is None  # a retired lineage is not continued either


def test_a_lineage_whose_compressor_failed_is_released_and_retired() -> None:
    class Failing:
        def compress(self, data: bytes) -> bytes:
            raise zlib.error("boom")

    lineage = Lineage(Failing())
    stream = SharedStream(6, True, lineage)
    stream.compress(b"x")
    try:
        stream.flush()
    except zlib.error:
        pass
    else:  # pragma: no cover
        raise AssertionError("the error was swallowed")
    assert not lineage.busy and lineage.retired
    stream.compress(b"y" * 10)
    assert zlib.decompressobj(-15).decompress(stream.flush()) == b"y" * 10  # a new lineage
