"""The built wheel, installed into a fresh virtual environment, works on its own: doctor, a real VNC
client seeing exact pixels, and the browser viewer served from the installed package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pdum.rfb import testing as patterns

from .support import REPO, run_served, vnc_capture

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, venv): ``uv build --wheel`` then ``python -m venv`` + ``pip install`` of that wheel."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run(
        ["uv", "build", "--wheel", "-o", str(dist)], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("habemus_papadum_rfb-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return wheel, venv


def test_wheel_contents(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pdum/rfb/static/viewer.js" in names
    assert "pdum/rfb/static/noVNC-LICENSE.txt" in names
    assert "pdum/rfb/py.typed" in names or "pdum/rfb/__init__.py" in names
    assert not any(n.startswith(("tests/", "viewer/")) for n in names), "test or source-only files shipped"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "pdum-rfb = pdum.rfb.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_doctor(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pdum.rfb; print(pdum.rfb.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), f"imported from the source tree: {where.stdout}"
    doctor = subprocess.run(
        [str(venv / "bin" / "pdum-rfb"), "doctor"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "handshake and first update" in doctor.stdout and "noVNC licence present" in doctor.stdout


def test_installed_serve_exact_pixels_and_viewer(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    cmd = [str(venv / "bin" / "pdum-rfb"), "serve", "--pattern", "test_card"]
    cmd += ["--width", "320", "--height", "240", "--vnc-port", "0", "--port", "0"]
    with run_served(cmd, cwd=tmp_path) as srv:
        shot = vnc_capture(srv.vnc_port, tmp_path / "card.png")
        np.testing.assert_array_equal(shot, patterns.test_card(320, 240))
        status, page, ctype = srv.get("/")
        assert status == 200 and "text/html" in ctype and b"viewer.js" in page
        status, bundle, ctype = srv.get("/static/viewer.js")
        assert status == 200 and "javascript" in ctype
        assert bundle == (REPO / "pdum" / "rfb" / "static" / "viewer.js").read_bytes()
        status, health, _ = srv.get("/health")
        assert status == 200


def test_installed_demo_shows_a_seed_scene_frame(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    frames = 600
    cmd = [str(venv / "bin" / "pdum-rfb"), "demo", "--frames", str(frames), "--fps", "30"]
    cmd += ["--vnc-port", "0", "--port", "0"]
    with run_served(cmd, cwd=tmp_path) as srv:
        shot = vnc_capture(srv.vnc_port, tmp_path / "demo.png")
    matches = [t for t in range(frames) if np.array_equal(shot, patterns.seed_scene(320, 240, t))]
    assert matches, "the captured framebuffer is no frame of seed_scene"
