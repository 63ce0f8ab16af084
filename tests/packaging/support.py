"""Helpers for the packaging tests: start a ``pdum-rfb`` command line, capture it with vncdo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.interop.clients import stop_process

REPO = Path(__file__).resolve().parents[2]


def vncdo_path() -> str:
    """The vncdo client from the project's virtual environment (vncdotool is a dev dependency)."""
    beside = Path(sys.executable).parent / "vncdo"
    found = str(beside) if beside.exists() else shutil.which("vncdo")
    if found is None:
        raise RuntimeError("vncdo missing: run scripts/test.sh (uv sync --all-extras installs vncdotool)")
    return found


def vnc_capture(port: int, out: Path, password: str | None = None, timeout: float = 30) -> np.ndarray:
    """Connect a real VNC client (vncdotool) to 127.0.0.1:port and return its framebuffer as RGB."""
    cmd = [vncdo_path(), "-s", f"127.0.0.1::{port}"]
    if password is not None:
        cmd += ["-p", password]
    result = subprocess.run([*cmd, "capture", str(out)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    with Image.open(out) as img:
        return np.asarray(img.convert("RGB"))


@dataclass
class Served:
    proc: subprocess.Popen[str]
    vnc_port: int
    http_port: int | None
    lines: list[str] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, bytes, str]:
        assert self.http_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")


@contextmanager
def run_served(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Served]:
    """Run a ``pdum-rfb serve``-style command; parse the ports it prints; stop it with SIGTERM."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        # keep draining the log so a chatty server never blocks on a full pipe
        threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
        vnc = re.search(r"vnc://[^:\s]+:(\d+)", text)
        http = re.search(r"Browser:\s+http://[^:\s]+:(\d+)/", text)
        assert vnc, f"no VNC URL in the output (exit {proc.poll()}):\n{text}"
        yield Served(proc, int(vnc.group(1)), int(http.group(1)) if http else None, lines)
    finally:
        stop_process(proc, timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
