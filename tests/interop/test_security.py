"""Security types against real clients: TigerVNC (VncAuth from a vncpasswd file; VeNCrypt's
TLSVnc, TLSPlain, TLSNone, X509Vnc, X509Plain; RSA-AES with TigerVNC 1.13+), vncdotool and asyncvnc
(VncAuth), and the failure lockout.

With the right secret each client draws the frame pixel-exact; with a wrong one it is refused
and no session ever reached ServerInit (so no framebuffer byte was sent).

Debian bookworm ships TigerVNC 1.12, which predates RSA-AES: the RSA-AES tests run against the
viewer named by ``$PDUM_RFB_TIGERVNC``. ``scripts/test.sh`` (and so CI) sets it to TigerVNC 1.15
from Debian trixie, unpacked into a private prefix by ``scripts/tigervnc-trixie.sh``. Without a
1.13+ viewer these tests fail under CI (``$CI`` set) and are skipped, saying so, otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncvnc
import numpy as np
import pytest

from pdum.rfb.auth import AuthContext, Principal
from pdum.rfb.protocol.security import SECURITY_NAMES
from pdum.rfb.testing import noise, noise_and_gradient

from ..certs import make_certificate
from ..support import LoopThread, run_async, wait_until
from .clients import (
    Xvfb,
    load_rgb,
    require,
    tigervnc,
    tigervnc_version,
    vncpasswd_file,
    wait_for_image_on_screen,
)

RSA_AES_VIEWER = os.environ.get("PDUM_RFB_TIGERVNC", "xtigervncviewer")
RSA_AES_TYPES = ["RA2", "RA2ne", "RA2_256", "RA2ne_256"]
# TigerVNC 1.15 asks for full screen on each MapNotify; with no window manager (Xvfb) FLTK's
# fallback re-creates the window, which maps it again, without end, and xwd -root then fails on
# windows that vanish under it. The RSA-AES viewer runs in a plain window instead.
WINDOWED = "-FullScreen=0"


def _sessions_reaching_server_init(display: Any) -> list[Any]:
    """Every session that gets past the handshake from now on (a spy on Server.register)."""
    seen: list[Any] = []
    server = display.server
    original = server.register

    def register(session: Any) -> None:
        seen.append(session)
        original(session)

    server.register = register
    return seen


def _rsa_aes_viewer() -> str:
    version = tigervnc_version(RSA_AES_VIEWER)
    if version is None or version < (1, 13):
        message = (
            f"RSA-AES needs TigerVNC 1.13+, {RSA_AES_VIEWER} is {version}: run scripts/tigervnc-trixie.sh "
            "and set PDUM_RFB_TIGERVNC to the viewer it prints (scripts/test.sh does both)"
        )
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)  # CI runs scripts/test.sh, which always provides one
        pytest.skip(message)
    return RSA_AES_VIEWER


def _refused(served: LoopThread, display: Any, seen: list[Any], failures: int) -> None:
    wait_until(lambda: served.call(lambda: display.stats["auth_failures"]) == failures, timeout=20)
    assert seen == []
    assert display.client_count == 0


def test_tigervnc_vnc_auth(served: LoopThread, xvfb: Xvfb, tmp_path: Path) -> None:
    display = served.serve(320, 240, password="s3cret")
    frame = noise_and_gradient(320, 240, seed=61)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)
    (tmp_path / "wrong").mkdir()
    wrong = vncpasswd_file("nope", tmp_path / "wrong")
    with tigervnc(xvfb, display.vnc_port, security_types="VncAuth", passwd_file=wrong) as viewer:
        viewer.wait(20)  # it gives up (exit status 0, with -AlertOnFatalError=0)
    _refused(served, display, seen, 1)
    right = vncpasswd_file("s3cret", tmp_path)
    with tigervnc(xvfb, display.vnc_port, security_types="VncAuth", passwd_file=right):
        wait_for_image_on_screen(xvfb, frame)
        second = noise(320, 240, seed=62)
        served.publish(display, second)
        wait_for_image_on_screen(xvfb, second, timeout=10)
    assert len(seen) == 1 and seen[0].principal is None


VENCRYPT_TYPES = ["TLSVnc", "TLSPlain", "TLSNone", "X509Vnc", "X509Plain"]


@pytest.mark.parametrize("name", VENCRYPT_TYPES)
def test_tigervnc_vencrypt(served: LoopThread, xvfb: Xvfb, tmp_path: Path, name: str) -> None:
    cert, key = make_certificate(tmp_path)
    display = served.serve(
        320, 240, password="s3cret", tls_cert=str(cert), tls_key=str(key),
        security=["x509plain", "x509vnc", "tlsplain", "tlsvnc", "tlsnone", "vnc"],
    )  # fmt: skip
    frame = noise_and_gradient(320, 240, seed=67)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)
    # the viewer checks the certificate against this CA file (the certificate is its own CA)
    common: dict[str, Any] = {"security_types": name, "username": "ann"}
    extra = ("-X509CA", str(cert))
    if not name.endswith("None"):
        with tigervnc(xvfb, display.vnc_port, *extra, password="wrong", **common) as viewer:
            viewer.wait(20)
        _refused(served, display, seen, 1)
    with tigervnc(xvfb, display.vnc_port, *extra, password="s3cret", log=tmp_path / "viewer.log", **common):
        wait_for_image_on_screen(xvfb, frame)
        second = np.ascontiguousarray(frame[:, ::-1])
        served.publish(display, second)
        wait_for_image_on_screen(xvfb, second, timeout=10)
        session = seen[0]
        assert session.connection.authenticated_as == SECURITY_NAMES[name.lower()]
        assert session.connection.encrypted
        # Plain sends a username, which is the principal without authenticate=
        assert session.principal == ("ann" if name.endswith("Plain") else None)
    assert f"Choosing security type {name}" in (tmp_path / "viewer.log").read_text()


@pytest.mark.parametrize("name", RSA_AES_TYPES)
def test_tigervnc_rsa_aes(served: LoopThread, xvfb: Xvfb, tmp_path: Path, name: str) -> None:
    viewer_exe = _rsa_aes_viewer()
    display = served.serve(
        320, 240, security=["ra2", "ra2_256", "ra2ne", "ra2ne_256", "vnc"], password="s3cret"
    )
    frame = noise_and_gradient(320, 240, seed=63)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)
    common: dict[str, Any] = {"viewer": viewer_exe, "security_types": name, "approve_server_key": True}
    with tigervnc(xvfb, display.vnc_port, WINDOWED, password="wrong", **common) as viewer:
        viewer.wait(30)
    _refused(served, display, seen, 1)
    with tigervnc(xvfb, display.vnc_port, WINDOWED, password="s3cret", log=tmp_path / "viewer.log", **common):
        wait_for_image_on_screen(xvfb, frame)
        # later updates too (under RA2 / RA2_256 every byte goes through the record layer)
        second = np.ascontiguousarray(frame[::-1])
        served.publish(display, second)
        wait_for_image_on_screen(xvfb, second, timeout=10)
        session = seen[0]
        assert session.connection.security_type == SECURITY_NAMES[name.lower()]
        assert session.connection.encrypted is (name in ("RA2", "RA2_256"))
    assert f"Choosing security type {name}" in (tmp_path / "viewer.log").read_text()


def test_tigervnc_rsa_aes_username_and_view_only(served: LoopThread, xvfb: Xvfb) -> None:
    viewer_exe = _rsa_aes_viewer()

    def authenticate(ctx: AuthContext) -> Any:
        if ctx.username == "ann" and ctx.check_password("full access"):
            return Principal("ann")
        if ctx.username == "guest" and ctx.check_password("just looking"):
            return Principal("guest", view_only=True)
        return None

    display = served.serve(320, 240, security=["ra2_256"], authenticate=authenticate)
    frame = noise_and_gradient(320, 240, seed=64)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)
    common: dict[str, Any] = {"viewer": viewer_exe, "security_types": "RA2_256", "approve_server_key": True}
    with tigervnc(xvfb, display.vnc_port, WINDOWED, username="ann", password="wrong", **common) as viewer:
        viewer.wait(30)
    _refused(served, display, seen, 1)
    for user, password in (("guest", "just looking"), ("ann", "full access")):
        served.call(display.poll_events)
        with tigervnc(
            xvfb, display.vnc_port, WINDOWED, username=user, password=password, view_only=False, **common
        ):
            x, y = wait_for_image_on_screen(xvfb, frame)
            subprocess.run(
                ["xdotool", "mousemove", str(x + 10), str(y + 10), "click", "1"], env=xvfb.env, check=True
            )
            session = seen[-1]
            assert session.principal == Principal(user, view_only=user == "guest")
            if user == "ann":
                events = wait_until(lambda: served.call(display.poll_events), timeout=10)
                assert {e.principal for e in events} == {Principal("ann")}
            else:
                time.sleep(1)
                assert served.call(display.poll_events) == []  # a view-only principal's input is dropped


def test_vncdotool_vnc_auth_and_lockout(served: LoopThread, tmp_path: Path) -> None:
    require("vncdo")
    # long enough that the sixth vncdo (each takes ~1 s to start) still meets the lockout
    display = served.serve(320, 240, password="s3cret", lockout_timeout=6.0)
    frame = noise_and_gradient(320, 240, seed=65)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)
    out = tmp_path / "shot.png"

    def vncdo(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["vncdo", "-s", f"127.0.0.1::{display.vnc_port}", "-p", password, "capture", str(out)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert vncdo("s3cret").returncode == 0
    assert np.array_equal(load_rgb(out), frame)
    for attempt in range(1, 6):
        result = vncdo("wrong")
        assert result.returncode != 0 and "authentication failed" in result.stderr
        assert served.call(lambda: display.stats["auth_failures"]) == attempt
    # the sixth attempt is refused before any challenge, even with the right password
    result = vncdo("s3cret")
    assert result.returncode != 0
    assert "too many security failures" in result.stderr
    assert len(seen) == 1
    # once the lockout is over the right password works again
    wait_until(lambda: served.call(lambda: display.server.auth.refusal("127.0.0.1:0")) is None, timeout=15)
    out.unlink()
    assert vncdo("s3cret").returncode == 0
    assert np.array_equal(load_rgb(out), frame)


def test_asyncvnc_vnc_auth(served: LoopThread) -> None:
    display = served.serve(320, 240, password="s3cret")
    frame = noise_and_gradient(320, 240, seed=66)
    served.publish(display, frame)
    seen = _sessions_reaching_server_init(display)

    async def screenshot(password: str) -> np.ndarray:
        async with asyncvnc.connect("127.0.0.1", display.vnc_port, password=password) as client:
            return (await client.screenshot())[..., :3].copy()

    with pytest.raises(PermissionError):
        run_async(screenshot("wrong"))
    _refused(served, display, seen, 1)
    assert np.array_equal(run_async(screenshot("s3cret")), frame)
