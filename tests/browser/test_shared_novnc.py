"""Encode once with noVNC: two browsers with the same settings decode shared payloads exactly."""

from __future__ import annotations

from typing import Any

import pytest

from pdum.rfb.protocol.messages import Encoding
from pdum.rfb.testing import bouncing_box, noise, text_like

from ..support import LoopThread
from .conftest import wait_for_canvas
from .test_novnc import GRAB, PSEUDO, open_novnc


@pytest.mark.parametrize(
    "encoding", [Encoding.TIGHT, Encoding.ZRLE, Encoding.ZLIB], ids=["tight", "zrle", "zlib"]
)
def test_two_novnc_clients_share_encodes(
    served: LoopThread, browser: Any, static_server: str, encoding: Encoding
) -> None:
    display = served.serve(320, 240, port=0)
    served.publish(display, text_like(320, 240))
    contexts = [browser.new_context() for _ in range(2)]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        open_novnc(pages[0], static_server, display.ws_url, [encoding, *PSEUDO])
        wait_for_canvas(pages[0], text_like(320, 240), GRAB)
        open_novnc(pages[1], static_server, display.ws_url, [encoding, *PSEUDO])
        hits_before = display.stats["encode_cache_hits"]
        for t in range(6):
            frame = bouncing_box(320, 240, t)
            frame[20:60, 30:130] = noise(100, 40, seed=t)
            served.publish(display, frame)
            for page in pages:
                wait_for_canvas(page, frame, GRAB)
        assert display.stats["encode_cache_hits"] > hits_before
    finally:
        for ctx in contexts:
            ctx.close()
