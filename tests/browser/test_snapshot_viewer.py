"""The viewer shows its ``snapshot`` (the latest frame the kernel sent) whenever it has no live
connection, as in a notebook saved with widget state, and hides it while connected."""

from __future__ import annotations

from typing import Any

import numpy as np

from pdum.rfb.encodings.tight_png import encode_rgb
from pdum.rfb.testing import noise
from pdum.rfb.widget import data_url

from ..support import LoopThread, wait_until
from .conftest import decode_data_url, wait_for_canvas

CANVAS = (
    "() => { const c = document.querySelector('.pdum-rfb-screen canvas'); return c ? c.toDataURL() : null; }"
)
SNAPSHOT_SHOWN = (
    "() => { const img = document.querySelector('.pdum-rfb-snapshot');"
    " return !!img && img.style.display !== 'none' && img.complete && img.naturalWidth > 0; }"
)
# The pixels of the <img> as the page decoded them, drawn 1:1 onto a canvas.
SNAPSHOT_PIXELS = """() => {
  const img = document.querySelector('.pdum-rfb-snapshot');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png');
}"""


def test_snapshot_shown_only_without_a_live_connection(served: LoopThread, page: Any) -> None:
    display = served.serve(96, 64, port=0)
    live = noise(96, 64, seed=31)
    served.publish(display, live)
    page.goto(display.http_url)
    wait_for_canvas(page, live, CANVAS)
    saved = noise(80, 50, seed=32)
    url = data_url(encode_rgb(saved, 6))
    page.evaluate("(url) => window.pdumRfbModel.set('snapshot', url)", url)
    assert not page.evaluate(SNAPSHOT_SHOWN)  # connected: the live canvas, not the snapshot

    served.run(display.aclose())
    wait_until(lambda: page.evaluate(SNAPSHOT_SHOWN), timeout=15)
    assert np.array_equal(decode_data_url(page.evaluate(SNAPSHOT_PIXELS)), saved)
    # A newer snapshot replaces it.
    newer = noise(80, 50, seed=33)
    page.evaluate("(url) => window.pdumRfbModel.set('snapshot', url)", data_url(encode_rgb(newer, 6)))
    wait_until(lambda: np.array_equal(decode_data_url(page.evaluate(SNAPSHOT_PIXELS)), newer), timeout=10)
