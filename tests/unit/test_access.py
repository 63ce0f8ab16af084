"""Token and origin checks on the WebSocket bridge, /metrics and the ASGI app."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import pdum.rfb as rfb
from pdum.rfb.access import AccessPolicy
from pdum.rfb.asgi import RfbApp
from tests.support import run_async


def test_policy_rules() -> None:
    open_policy = AccessPolicy.build(None, None)
    assert open_policy.check_websocket("/websockify", {"origin": "http://evil.example"}, []) is None
    policy = AccessPolicy.build("s3cret", ["http://localhost:8888"])
    assert policy.check_websocket("/websockify?token=s3cret", {"origin": "http://localhost:8888"}, []) is None
    assert (
        policy.check_websocket("/websockify", {}, ["binary", "token.s3cret"]) is None
    )  # no Origin: not a browser
    assert "token" in (policy.check_websocket("/websockify?token=nope", {}, []) or "")
    assert "origin" in (policy.check_websocket("/?token=s3cret", {"origin": "http://evil.example"}, []) or "")
    assert policy.check_http("/metrics") is not None and policy.check_http("/metrics?token=s3cret") is None
    assert policy.check_http("/") is None and policy.check_http("/health") is None
    with pytest.raises(ValueError):
        AccessPolicy.build("", None)
    with pytest.raises(TypeError):
        AccessPolicy.build(None, "http://localhost:8888")  # type: ignore[arg-type]


async def _status(url: str, **kwargs: Any) -> str:
    try:
        async with connect(url, **kwargs) as ws:
            return (await asyncio.wait_for(ws.recv(), 5))[:12].decode()  # type: ignore[union-attr]
    except InvalidStatus as exc:
        return str(exc.response.status_code)


def test_bridge_enforces_token_and_origins() -> None:
    async def scenario() -> None:
        display = await rfb.serve(
            16, 8, port=0, vnc_port=None, token="s3cret", origins=["http://localhost:8888"]
        )
        base = display.ws_url
        assert await _status(base) == "403"
        assert await _status(base + "?token=wrong") == "403"
        assert await _status(base + "?token=s3cret") == "RFB 003.008\n"
        assert await _status(base + "?token=s3cret", origin="http://evil.example") == "403"
        assert await _status(base + "?token=s3cret", origin="http://localhost:8888") == "RFB 003.008\n"
        assert await _status(base, subprotocols=["binary", "token.s3cret"]) == "RFB 003.008\n"

        def get(path: str) -> int:
            try:
                with urllib.request.urlopen(display.http_url + path, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert await asyncio.to_thread(get, "metrics") == 403
        assert await asyncio.to_thread(get, "metrics?token=s3cret") == 200
        assert await asyncio.to_thread(get, "") == 200  # the page itself is static
        assert display.stats["violations"].get("forbidden", 0) >= 4
        assert display.widget().token == "s3cret"
        await display.aclose()

    run_async(scenario())


def test_asgi_app_enforces_token() -> None:
    async def scenario() -> None:
        display = await rfb.serve(16, 8, port=None, vnc_port=None, token="s3cret")
        app = RfbApp(display)

        async def websocket(query: bytes) -> dict[str, Any]:
            sent: list[dict[str, Any]] = []
            inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect"}]

            async def receive() -> dict[str, Any]:
                return inbox.pop(0) if inbox else {"type": "websocket.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {"type": "websocket", "path": "/websockify", "query_string": query, "headers": [],
                     "subprotocols": ["binary"], "client": ("127.0.0.1", 1)}  # fmt: skip
            await asyncio.wait_for(app(scope, receive, send), 5)
            return sent[0]

        assert await websocket(b"") == {"type": "websocket.close", "code": 4403}
        assert (await websocket(b"token=s3cret"))["type"] == "websocket.accept"
        await display.aclose()

    run_async(scenario())
