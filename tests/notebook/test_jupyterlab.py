"""The seed notebook in a real JupyterLab server, opened in headless Chromium: the widget shows the
moving orange block (exact pixels at two times), the stats overlay shows fps and rtt, a click and a
key typed in the canvas arrive from ``display.poll_events()``; and the comm fallback draws exact
pixels when the WebSocket port is unreachable."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from pdum.rfb.testing import noise

from ..browser.conftest import decode_data_url
from ..support import wait_until

ROOT = Path(__file__).resolve().parents[2]
CANVAS = (
    "() => { const c = document.querySelector('.pdum-rfb-screen canvas');"
    " return c && c.width > 0 ? c.toDataURL('image/png') : null; }"
)
ORANGE = np.array([255, 140, 0], dtype=np.uint8)

COMM_NOTEBOOK = [
    """import pdum.rfb as rfb
from pdum.rfb.testing import noise

display = await rfb.serve(320, 240, port=0)
display.publish(noise(320, 240, seed=5))
view = display.widget()
view.url = "ws://127.0.0.1:9/websockify"  # a port nobody listens on: the socket never opens
view""",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_notebook(path: Path, sources: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("lab")
    seed = nbformat.read(ROOT / "examples" / "seed.ipynb", as_version=4)
    sources = [
        c.source for c in seed.cells if c.cell_type == "code" and "teardown" not in c.metadata.get("tags", [])
    ]
    _write_notebook(root / "seed_live.ipynb", sources)
    _write_notebook(root / "comm.ipynb", COMM_NOTEBOOK)
    # Render every cell (no virtual scrolling), so the widget stays in the DOM while we add cells.
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    apputils = root / ".settings" / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "IPYTHONDIR": str(root / ".ipython"),
    }
    args = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={root / '.settings'}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = open(root / "lab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout=60, interval=0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _open_and_run(page: Any, url: str, notebook: str) -> None:
    # A workspace of its own, reset: nothing restored from an earlier test's layout.
    page.goto(f"{url}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset")
    wait_until(
        lambda: page.evaluate(
            "(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " if (!w || !w.context || w.context.path !== name) return false;"
            " const k = w.context.sessionContext.session && w.context.sessionContext.session.kernel;"
            " return !!k && k.status === 'idle'; }",
            notebook,
        ),
        timeout=90,
        interval=0.5,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def _run_in_kernel(page: Any, code: str, expect: str, timeout: float = 30) -> str:
    """Append a cell with ``code``, run it, and return its output once it contains ``expect``."""
    page.evaluate(
        """async (code) => {
            const app = window.jupyterapp;
            const nb = app.shell.currentWidget.content;
            nb.activeCellIndex = nb.widgets.length - 1;
            await app.commands.execute('notebook:insert-cell-below');
            nb.activeCell.model.sharedModel.setSource(code);
            await app.commands.execute('notebook:run-cell');
        }""",
        code,
    )

    def output() -> str | None:
        text = page.evaluate(
            "() => { const nb = window.jupyterapp.shell.currentWidget.content;"
            " const cell = nb.widgets[nb.widgets.length - 1];"
            " return cell.outputArea ? cell.outputArea.node.textContent : ''; }"
        )
        return text if expect in text else None

    return wait_until(output, timeout=timeout, interval=0.3)


def _orange_block(frame: np.ndarray) -> tuple[int, int]:
    """Top-left of the 60x60 orange block; asserts the rest is one uniform background colour."""
    mask = np.all(frame == ORANGE, axis=2)
    ys, xs = np.nonzero(mask)
    assert mask.sum() == 3600, f"{mask.sum()} orange pixels"
    y0, x0 = int(ys.min()), int(xs.min())
    assert mask[y0 : y0 + 60, x0 : x0 + 60].all()
    background = frame[~mask]
    assert (background == background[0]).all(), "the background is not one exact colour"
    shade = int(background[0][0])
    assert 20 <= shade < 68 and tuple(background[0]) == (shade, shade, shade + 20)
    return x0, y0


def test_seed_notebook_in_jupyterlab(jupyterlab: str, page: Any) -> None:
    _open_and_run(page, jupyterlab, "seed_live.ipynb")
    wait_until(lambda: page.evaluate(CANVAS), timeout=60, interval=0.5)

    def block_now() -> tuple[int, int] | None:
        frame = decode_data_url(page.evaluate(CANVAS))
        if frame.shape != (240, 320, 3):
            return None
        try:
            return _orange_block(frame)
        except AssertionError:
            return None  # caught mid-draw: try again

    first = wait_until(block_now, timeout=30, interval=0.2)
    second = wait_until(lambda: (p := block_now()) is not None and p != first and p, timeout=10, interval=0.2)
    assert first != second

    # the stats overlay shows server-truth fps and rtt for this viewer
    def overlay() -> tuple[float, float] | None:
        text = page.evaluate("() => document.querySelector('.pdum-rfb-stats').textContent")
        match = re.search(r"([\d.]+) fps\s+rtt ([\d.]+) ms", text or "")
        if match and float(match.group(1)) > 0 and float(match.group(2)) > 0:
            return float(match.group(1)), float(match.group(2))
        return None

    fps, rtt = wait_until(overlay, timeout=20, interval=0.5)
    assert 3 <= fps <= 15 and rtt < 1000

    # a click and a key typed into the canvas arrive from display.poll_events()
    _run_in_kernel(page, "display.poll_events(); print('drained')", "drained")
    canvas = page.locator(".pdum-rfb-screen canvas")
    canvas.scroll_into_view_if_needed()
    canvas.click(position={"x": 100, "y": 80})
    page.keyboard.press("k")
    out = _run_in_kernel(
        page,
        "import json; evs = [e.event for e in display.poll_events()];"
        " print(json.dumps([[e['type'], e.get('key'), e.get('button')] for e in evs]))",
        "]",
    )
    events = json.loads(out.strip().splitlines()[-1])
    assert ["pointer_down", None, 0] in events and ["pointer_up", None, 0] in events
    assert ["key_down", "k", None] in events and ["key_up", "k", None] in events


def test_comm_fallback_in_jupyterlab(jupyterlab: str, page: Any) -> None:
    _open_and_run(page, jupyterlab, "comm.ipynb")
    expected = noise(320, 240, seed=5)

    def exact() -> bool:
        url = page.evaluate(CANVAS)
        return bool(url) and np.array_equal(decode_data_url(url), expected)

    wait_until(exact, timeout=60, interval=0.5)
    out = _run_in_kernel(page, "print([s.stream.kind for s in display.server.sessions.values()])", "comm")
    assert "websocket" not in out
