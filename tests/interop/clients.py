"""Drivers for the real VNC clients the interop tests use, and pixel helpers."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.support import wait_until

HERE = Path(__file__).parent
CONVERT = "/usr/bin/convert"


def require(*tools: str) -> None:
    """Fail (not skip) when a client the acceptance tests need is missing: CI installs them."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        raise RuntimeError(f"missing test tools {missing}: run scripts/test.sh (it installs them)")


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# -- Xvfb ----------------------------------------------------------------------------------------------
class Xvfb:
    def __init__(self, width: int, height: int) -> None:
        require("Xvfb", "xwd", CONVERT)
        self.width, self.height = width, height
        for n in range(60, 120):
            if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
                self.number = n
                break
        else:  # pragma: no cover
            raise RuntimeError("no free X display number")
        self.display = f":{self.number}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{self.number}").exists(), timeout=10)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    def screenshot(self) -> np.ndarray:
        xwd = subprocess.run(["xwd", "-root", "-silent"], env=self.env, capture_output=True, check=True)
        png = subprocess.run([CONVERT, "xwd:-", "png:-"], input=xwd.stdout, capture_output=True, check=True)
        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            f.write(png.stdout)
            f.flush()
            return load_rgb(f.name)

    def close(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def find_subimage(screen: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Top-left (x, y) where ``image`` appears exactly in ``screen``, or None."""
    sh, sw = screen.shape[:2]
    h, w = image.shape[:2]
    if h > sh or w > sw:
        return None
    first = np.all(screen[: sh - h + 1, : sw - w + 1] == image[0, 0], axis=2)
    ys, xs = np.nonzero(first)
    for y, x in list(zip(ys.tolist(), xs.tolist(), strict=True))[:5000]:
        if np.array_equal(screen[y : y + h, x : x + w], image):
            return x, y
    return None


@contextlib.contextmanager
def tigervnc(
    xvfb: Xvfb,
    port: int,
    *extra: str,
    encoding: str = "Tight",
    low_color_level: int | None = None,
    view_only: bool = True,
    security_types: str = "None",
    passwd_file: str | Path | None = None,
    username: str | None = None,
    password: str | None = None,
    viewer: str = "xtigervncviewer",
    approve_server_key: bool = False,
    log: str | Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """TigerVNC's viewer, full screen on ``xvfb``, asking for ``encoding`` (Tight, ZRLE, Hextile, Raw).

    ``low_color_level`` 0, 1 or 2 makes it ask for one of its 8 bpp true-colour formats (RGB111,
    RGB222, RGB332) instead of full colour; ``view_only=False`` lets it send input and its clipboard.

    ``security_types`` is its -SecurityTypes list ("VncAuth", "RA2,RA2ne", "TLSPlain", ...). Secrets
    go in without a dialog: ``passwd_file`` (a ``vncpasswd -f`` file, password-only types) or
    ``password`` / ``username`` (the VNC_PASSWORD / VNC_USERNAME variables it reads). RSA-AES makes
    TigerVNC 1.13+ ask whether to trust the server key: ``approve_server_key`` presses Return on
    that dialog (needs xdotool). ``viewer`` picks another build; ``log`` keeps its stderr.
    """
    require(viewer)
    colour = ["-FullColor"]
    if low_color_level is not None:
        colour = ["-FullColor=0", "-LowColorLevel", str(low_color_level)]
    secrets = ["-passwd", str(passwd_file)] if passwd_file is not None else []
    args = [
        viewer, "-FullScreen", "-RemoteResize=0", "-SecurityTypes", security_types, "-AutoSelect=0",
        "-PreferredEncoding", encoding, *colour, "-Shared", *(["-ViewOnly"] if view_only else []),
        "-AlertOnFatalError=0", "-ReconnectOnError=0", *secrets, *extra, f"127.0.0.1::{port}",
    ]  # fmt: skip
    env = xvfb.env
    env.pop("VNC_PASSWORD", None)
    env.pop("VNC_USERNAME", None)
    if password is not None:
        env["VNC_PASSWORD"] = password
    if username is not None:
        env["VNC_USERNAME"] = username
    stderr = open(log, "wb") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    approver = _KeyApprover(xvfb) if approve_server_key else None
    try:
        yield proc
    finally:
        if approver is not None:
            approver.stop()
        stop_process(proc)
        if log is not None:
            stderr.close()  # type: ignore[union-attr]


class _KeyApprover:
    """Presses Return on TigerVNC's "is this the server's key?" dialog whenever one shows up."""

    TITLES = ("Server key fingerprint", "Verify server key")

    def __init__(self, xvfb: Xvfb) -> None:
        require("xdotool")
        self.env = xvfb.env
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tigervnc-key-approver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for title in self.TITLES:
                found = subprocess.run(["xdotool", "search", "--name", title], env=self.env,
                                       capture_output=True, text=True)  # fmt: skip
                for window in found.stdout.split():
                    subprocess.run(["xdotool", "key", "--window", window, "Return"], env=self.env,
                                   capture_output=True)  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def tigervnc_version(viewer: str) -> tuple[int, ...] | None:
    """The version a TigerVNC viewer reports (``None`` if it is not there or says nothing).

    1.12 says "TigerVNC Viewer 64-bit v1.12.0", 1.15 "TigerVNC viewer v1.15.0": match either.
    """
    path = shutil.which(viewer) or (viewer if Path(viewer).exists() else None)
    if path is None:
        return None
    out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=10)
    match = re.search(r"TigerVNC viewer (?:64-bit )?v(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr, re.I)
    return tuple(int(g) for g in match.groups()) if match else None


def vncpasswd_file(password: str, directory: Path) -> Path:
    """A TigerVNC password file (``vncpasswd -f``: DES-obfuscated, 8 characters at most)."""
    require("vncpasswd")
    path = directory / "passwd"
    out = subprocess.run(["vncpasswd", "-f"], input=f"{password}\n".encode(), capture_output=True, check=True)
    path.write_bytes(out.stdout)
    return path


def wait_for_image_on_screen(xvfb: Xvfb, image: np.ndarray, timeout: float = 25.0) -> tuple[int, int]:
    """Screenshots until ``image`` shows exactly (TigerVNC's banner hides part of it for ~5 s)."""
    return wait_until(lambda: find_subimage(xvfb.screenshot(), image), timeout=timeout, interval=0.5)


# -- libvncclient --------------------------------------------------------------------------------------
def build_vncdump(workdir: Path) -> Path:
    require("gcc")
    exe = workdir / "vncdump"
    subprocess.run(
        ["gcc", "-O1", "-o", str(exe), str(HERE / "clients" / "vncdump.c"), "-lvncclient"],
        check=True,
        capture_output=True,
    )
    return exe


class VncDump:
    """A running libvncclient client that dumps its framebuffer after every update."""

    def __init__(
        self, exe: Path, port: int, encodings: str, bpp: int, workdir: Path, password: str = ""
    ) -> None:
        self.out = Path(tempfile.mktemp(prefix="vncdump-", suffix=".bin", dir=workdir))
        self.bpp = bpp
        args = [str(exe), "127.0.0.1", str(port), encodings, str(bpp), str(self.out)]
        if password:
            args.append(password)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read(self) -> tuple[int, np.ndarray] | None:
        """(updates, framebuffer as HxWxBpp uint8) from the latest dump, or None before the first."""
        try:
            data = self.out.read_bytes()
        except FileNotFoundError:
            return None
        header, _, body = data.partition(b"\n")
        w, h, bpp, updates = (int(v) for v in header.split())
        return updates, np.frombuffer(body, dtype=np.uint8).reshape(h, w, bpp // 8)

    def wait_for(self, expected: np.ndarray, timeout: float = 15.0, colour_bytes_only: bool = False) -> None:
        """Wait until the dump equals ``expected``. ``colour_bytes_only`` ignores the padding byte of
        32 bpp pixels (libvncclient's ZRLE decoder fills it with whatever byte follows a CPIXEL)."""

        def view(pixels: np.ndarray) -> np.ndarray:
            return pixels[..., :3] if colour_bytes_only and pixels.shape[-1] == 4 else pixels

        def matches() -> bool:
            got = self.read()
            return (
                got is not None
                and got[1].shape == expected.shape
                and np.array_equal(view(got[1]), view(expected))
            )

        try:
            wait_until(matches, timeout=timeout)
        except AssertionError:
            got = self.read()
            detail = "no update" if got is None else f"shape {got[1].shape}, updates {got[0]}"
            if got is not None and got[1].shape == expected.shape:
                detail += f", {int(np.any(got[1] != expected, axis=2).sum())} pixels differ"
            raise AssertionError(f"libvncclient framebuffer never matched ({detail})") from None

    def close(self) -> None:
        stop_process(self.proc)


def in_client_format(frame: np.ndarray, bpp: int) -> np.ndarray:
    """What vncdump's framebuffer must hold for ``frame`` (computed independently of pdum.rfb).

    32 bpp: libvncclient's default R,G,B,x bytes; 16 bpp: RGB565 little-endian; 8 bpp: BGR233.
    Channels are rounded to nearest: (v * max + 128) // 255.
    """
    r, g, b = (frame[..., i].astype(np.uint32) for i in range(3))

    def q(v: np.ndarray, mx: int) -> np.ndarray:
        return (v * mx + 128) // 255

    if bpp == 32:
        out = np.zeros(frame.shape[:2] + (4,), dtype=np.uint8)
        out[..., :3] = frame
        return out
    if bpp == 16:
        value = (q(r, 31) << 11) | (q(g, 63) << 5) | q(b, 31)
        return value.astype("<u2").view(np.uint8).reshape(frame.shape[:2] + (2,))
    if bpp == 8:
        value = q(r, 7) | (q(g, 7) << 3) | (q(b, 3) << 6)
        return value.astype(np.uint8).reshape(frame.shape[:2] + (1,))
    raise ValueError(bpp)
