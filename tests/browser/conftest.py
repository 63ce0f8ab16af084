"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, and a static server for
noVNC's npm sources plus our test pages."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: F401  (the browser fixtures live there)
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
NOVNC = ROOT / "viewer" / "node_modules" / "@novnc" / "novnc"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/novnc/"):
            return str(NOVNC / path[len("/novnc/") :])
        return str(Path(__file__).parent / path.lstrip("/"))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_server() -> Iterator[str]:
    """Serves noVNC's core/ from viewer/node_modules and tests/browser/*.html on loopback."""
    if not (NOVNC / "core" / "rfb.js").exists():
        raise RuntimeError("viewer/node_modules is missing: run scripts/test.sh (it runs npm ci)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def decode_data_url(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def wait_for_canvas(page: Any, expected: np.ndarray, script: str, timeout: float = 15.0) -> None:
    """Poll a canvas (``script`` returns a PNG data URL) until it equals ``expected`` exactly."""
    last: dict[str, Any] = {}

    def matches() -> bool:
        url = page.evaluate(script)
        last["raw"] = url
        if not url or not url.startswith("data:image/png"):
            return False
        got = decode_data_url(url)
        last["got"] = got
        return got.shape == expected.shape and np.array_equal(got, expected)

    try:
        wait_until(matches, timeout=timeout, interval=0.2)
    except AssertionError:
        got = last.get("got")
        if got is None:
            raise AssertionError(f"the canvas never showed a frame ({str(last.get('raw'))[:80]!r})") from None
        if got.shape != expected.shape:
            raise AssertionError(f"canvas is {got.shape}, expected {expected.shape}") from None
        diff = int(np.any(got != expected, axis=2).sum())
        raise AssertionError(f"canvas never matched: {diff} pixels differ") from None
