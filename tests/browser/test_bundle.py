"""The committed widget bundle is exactly what esbuild builds from viewer/src today."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pdum.rfb import web

ROOT = Path(__file__).resolve().parents[2]


def test_committed_bundle_is_fresh() -> None:
    result = subprocess.run(
        ["node", str(ROOT / "viewer" / "build.mjs"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_bundle_and_licence_ship_in_the_package() -> None:
    js = web.static_file("viewer.js")
    assert js is not None and len(js) > 100_000
    assert b"noVNC" in js[:200]
    licence = web.static_file("noVNC-LICENSE.txt")
    assert licence is not None and b"MPL" in licence
