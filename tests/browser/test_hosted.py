"""The viewer through hosted setups: our full page (the widget bundle), the ASGI app mounted under a
prefix behind uvicorn, and noVNC's stock page through a real websockify process."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdum.rfb.testing import noise, noise_and_gradient

from ..support import LoopThread, wait_until
from .conftest import wait_for_canvas


def _canvas_grabber(selector: str) -> str:
    find = f"document.querySelector('{selector}')"
    return f"() => {{ const c = {find}; return c ? c.toDataURL('image/png') : null; }}"


VIEWER_CANVAS = _canvas_grabber(".pdum-rfb-screen canvas")
# the viewer's state, or null while the page's module script has not run yet
VIEWER_STATE = "window.pdumRfbModel ? window.pdumRfbModel.get('state') : null"
STOCK_CANVAS = _canvas_grabber("#screen canvas")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_full_page_viewer(served: LoopThread, page: Any) -> None:
    display = served.serve(320, 240, port=0)
    first = noise_and_gradient(320, 240, seed=81)
    served.publish(display, first)
    page.goto(display.http_url)
    wait_for_canvas(page, first, VIEWER_CANVAS)
    second = noise(320, 240, seed=82)
    served.publish(display, second)
    wait_for_canvas(page, second, VIEWER_CANVAS)
    assert page.evaluate(VIEWER_STATE) == "connected"


@pytest.fixture
def uvicorn_app(served: LoopThread) -> Iterator[tuple[Any, int]]:
    """A Starlette app mounting RfbApp at /apps/rfb, served by uvicorn on the Display's loop."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from pdum.rfb.asgi import RfbApp

    display = served.serve(320, 240, port=None)
    app = Starlette(routes=[Mount("/apps/rfb", app=RfbApp(display))])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )

    async def start() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(server.serve())

    task = served.run(start())
    wait_until(lambda: server.started, timeout=10)
    yield display, port
    server.should_exit = True

    async def stop() -> None:
        await asyncio.wait_for(task, 5)

    served.run(stop())


def test_asgi_app_under_a_prefix(served: LoopThread, page: Any, uvicorn_app: tuple[Any, int]) -> None:
    display, port = uvicorn_app
    frame = noise_and_gradient(320, 240, seed=83)
    served.publish(display, frame)
    page.goto(f"http://127.0.0.1:{port}/apps/rfb/")
    wait_for_canvas(page, frame, VIEWER_CANVAS)
    session = next(iter(display.server.sessions.values()))
    assert session.stream.kind == "asgi"
    second = np.ascontiguousarray(frame[::-1])
    served.publish(display, second)
    wait_for_canvas(page, second, VIEWER_CANVAS)


def test_novnc_stock_page_through_real_websockify(served: LoopThread, page: Any, tmp_path: Path) -> None:
    web = Path("/usr/share/novnc")
    websockify = shutil.which("websockify") or str(Path(sys.executable).parent / "websockify")
    if not (web / "vnc_lite.html").exists():
        raise RuntimeError("Debian's novnc package is missing: run scripts/test.sh (it installs it)")
    display = served.serve(320, 240, port=None)
    frame = noise_and_gradient(320, 240, seed=84)
    served.publish(display, frame)
    port = _free_port()
    proc = subprocess.Popen(
        [websockify, "--web", str(web), f"127.0.0.1:{port}", f"127.0.0.1:{display.vnc_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _port_open(port), timeout=10)
        page.goto(f"http://127.0.0.1:{port}/vnc_lite.html?host=127.0.0.1&port={port}&path=websockify")
        wait_for_canvas(page, frame, STOCK_CANVAS)
        second = noise(320, 240, seed=85)
        served.publish(display, second)
        wait_for_canvas(page, second, STOCK_CANVAS)
    finally:
        proc.terminate()
        proc.wait(5)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_viewer_reconnects_when_the_display_comes_back(served: LoopThread, page: Any) -> None:
    display = served.serve(320, 240, port=0)
    first = noise(320, 240, seed=86)
    served.publish(display, first)
    port = display.port
    page.goto(display.http_url)
    wait_for_canvas(page, first, VIEWER_CANVAS)
    served.run(display.aclose())
    wait_until(lambda: page.evaluate(VIEWER_STATE) == "disconnected", timeout=10)
    # The page itself came from the old Display; a new one on the same port brings the viewer back.
    again = served.serve(200, 150, port=port)
    second = noise_and_gradient(200, 150, seed=87)
    served.publish(again, second)
    wait_for_canvas(page, second, VIEWER_CANVAS, timeout=20)
    assert page.evaluate(VIEWER_STATE) == "connected"


def test_asgi_hub_routes_by_name(served: LoopThread) -> None:
    """A hub serves several Displays under their names, and lists them at its root."""
    import json

    from pdum.rfb.asgi import RfbApp

    left = served.serve(32, 16, port=None, vnc_port=None, name="left")
    right = served.serve(48, 16, port=None, vnc_port=None, name="right")
    app = RfbApp({"left": left, "right": right})

    async def get(path: str) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "path": path, "root_path": ""}, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    status, body = served.run(get("/"))
    assert status == 200 and json.loads(body) == {"displays": ["left", "right"]}
    status, body = served.run(get("/right/metrics"))
    assert status == 200 and json.loads(body)["width"] == 48
    status, body = served.run(get("/left/"))
    assert status == 200 and b"<title>left</title>" in body
    assert served.run(get("/nobody/health"))[0] == 404


def test_full_page_viewer_with_a_token(served: LoopThread, page: Any) -> None:
    display = served.serve(320, 240, port=0, token="s3cret")
    frame = noise(320, 240, seed=88)
    served.publish(display, frame)
    page.goto(display.http_url)  # no token: the WebSocket is refused
    wait_until(lambda: page.evaluate(VIEWER_STATE) == "disconnected", timeout=10)
    page.goto(display.http_url + "?token=s3cret")  # the page passes its token on
    wait_for_canvas(page, frame, VIEWER_CANVAS)
