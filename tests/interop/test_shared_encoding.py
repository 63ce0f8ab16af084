"""Encode once: several real clients with the same settings decode the same shared payloads
pixel-exact (fresh-deflate segments continuing each client's zlib streams)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdum.rfb.testing import bouncing_box, gradient, noise, text_like

from ..support import LoopThread
from .clients import VncDump, in_client_format


def _frames(width: int, height: int) -> list[np.ndarray]:
    frames = [text_like(width, height, seed=1), gradient(width, height)]
    for t in range(8):
        frame = bouncing_box(width, height, t)
        frame[10:40, 10 + t * 8 : 60 + t * 8] = noise(50, 30, seed=t)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("encoding", ["zlib", "zrle", "tight", "hextile", "raw"])
def test_clients_with_the_same_settings_share_encodes(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str
) -> None:
    width, height = 320, 240
    display = served.serve(width, height)
    frames = _frames(width, height)
    served.publish(display, frames[0])
    first = VncDump(vncdump_exe, display.vnc_port, encoding, 32, tmp_path)
    clients = [first]
    other_format = VncDump(vncdump_exe, display.vnc_port, encoding, 16, tmp_path)
    loose = encoding == "zrle"  # see VncDump.wait_for
    try:
        first.wait_for(in_client_format(frames[0], 32), colour_bytes_only=loose)  # private streams first
        served.publish(display, frames[1])
        first.wait_for(in_client_format(frames[1], 32), colour_bytes_only=loose)
        clients += [VncDump(vncdump_exe, display.vnc_port, encoding, 32, tmp_path) for _ in range(2)]
        for client in clients[1:]:
            client.wait_for(in_client_format(frames[1], 32), colour_bytes_only=loose)
        other_format.wait_for(in_client_format(frames[1], 16))
        hits_before = display.stats["encode_cache_hits"]
        for frame in frames[2:]:
            served.publish(display, frame)
            for client in clients:
                client.wait_for(in_client_format(frame, 32), colour_bytes_only=loose)
            other_format.wait_for(in_client_format(frame, 16))
        # three 32 bpp clients: at least two of every three encodes came from the cache
        hits = display.stats["encode_cache_hits"] - hits_before
        assert hits >= len(frames[2:]), display.stats
    finally:
        for client in clients:
            client.close()
        other_format.close()
