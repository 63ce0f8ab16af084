"""noVNC (npm @novnc/novnc 1.7) in headless Chromium with a password: RSA-AES as noVNC speaks it
(RA2ne, with the server-key approval step) and VncAuth. Right secret: exact pixels; wrong secret:
a security failure with our reason and no session past the handshake."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from pdum.rfb.auth import AuthContext, Principal
from pdum.rfb.protocol import SecurityType
from pdum.rfb.protocol.rsaaes import public_key_message
from pdum.rfb.testing import noise, noise_and_gradient

from ..support import LoopThread, wait_until
from .conftest import wait_for_canvas
from .test_novnc import GRAB


def _open(page: Any, static_server: str, ws_url: str, password: str, username: str | None = None) -> None:
    query = f"url={ws_url}&password={quote(password)}"
    if username is not None:
        query += f"&username={quote(username)}"
    page.goto(f"{static_server}/novnc_page.html?{query}")


def _state(page: Any) -> str:
    return str(page.evaluate("window.rfbState"))


def _spy(display: Any) -> list[Any]:
    """Sessions that get past the handshake from now on."""
    seen: list[Any] = []
    original = display.server.register

    def register(session: Any) -> None:
        seen.append(session)
        original(session)

    display.server.register = register
    return seen


@pytest.mark.parametrize("security", [["ra2ne", "vnc"], ["vnc"]], ids=["ra2ne", "vncauth"])
def test_novnc_password(served: LoopThread, page: Any, static_server: str, security: list[str]) -> None:
    display = served.serve(320, 240, port=0, security=security, password="s3cret")
    frame = noise_and_gradient(320, 240, seed=81)
    served.publish(display, frame)
    seen = _spy(display)
    _open(page, static_server, display.ws_url, "wrong")
    wait_until(lambda: _state(page) in ("failed", "closed"), timeout=15)
    assert "authentication failed" in page.evaluate("window.rfbErrors")
    assert served.call(lambda: display.stats["auth_failures"]) == 1
    assert seen == []
    _open(page, static_server, display.ws_url, "s3cret")
    wait_until(lambda: _state(page) == "connected", timeout=15)
    wait_for_canvas(page, frame, GRAB)
    second = noise(320, 240, seed=82)
    served.publish(display, second)
    wait_for_canvas(page, second, GRAB)
    session = seen[0]
    expected = SecurityType.RA2NE if security[0] == "ra2ne" else SecurityType.VNC_AUTH
    assert session.connection.security_type is expected
    if expected is SecurityType.RA2NE:
        # noVNC was shown our key for approval (u32 bits, modulus, exponent)
        key = served.call(display.server.auth.server_key)
        assert bytes(page.evaluate("window.rfbServerKey")) == public_key_message(key)


def test_novnc_ra2ne_username(served: LoopThread, page: Any, static_server: str) -> None:
    def authenticate(ctx: AuthContext) -> Any:
        return Principal(ctx.username) if ctx.username == "dora" and ctx.check_password("pässwörd") else None

    display = served.serve(320, 240, port=0, security=["ra2ne"], authenticate=authenticate)
    frame = noise(320, 240, seed=83)
    served.publish(display, frame)
    seen = _spy(display)
    _open(page, static_server, display.ws_url, "pässwörd", username="dora")
    wait_until(lambda: _state(page) == "connected", timeout=15)
    wait_for_canvas(page, frame, GRAB)
    assert seen[0].principal == Principal("dora")
