"""A saved notebook shows the picture without a kernel: the seed notebook executed by
``jupyter nbconvert --execute`` and exported to HTML by nbconvert carries a PNG of a frame the
notebook published, exactly, both ways nbconvert renders the widget's output:

- with the widget state nbclient stores in the notebook (the default of ``--execute``), nbconvert
  renders the widget view, and the embedded widget state carries the ``snapshot`` trait (a
  ``data:image/png;base64,`` URL the viewer shows while it has no live connection);
- without widget state (JupyterLab's default save, GitHub, ``store_widget_state=False``),
  nbconvert falls back to the output's ``image/png``: an ``<img>`` in the page.

``--execute --to html`` is ``--execute --to notebook`` followed by the HTML export, so one kernel
run gives both pages.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("nbconvert")
from nbconvert import HTMLExporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PNG_URL = "data:image/png;base64,"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    out = tmp_path_factory.mktemp("executed")
    command = [sys.executable, "-m", "nbconvert", "--execute", "--to", "notebook", "--output-dir", str(out)]
    result = subprocess.run(
        [*command, str(SEED)], capture_output=True, text=True, timeout=300, cwd=SEED.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return nbformat.read(out / SEED.name, as_version=4)


def _published_frames(nb: nbformat.NotebookNode, count: int = 3000) -> Iterator[np.ndarray]:
    """The frames the notebook's own ``render()`` publishes, in order (its cell, run here)."""
    source = next(c.source for c in nb.cells if c.cell_type == "code" and "def render" in c.source)
    namespace: dict[str, Any] = {
        "np": np,
        "publish_loop": lambda *args, **kwargs: None,
        "display": SimpleNamespace(ws_url=""),
    }
    exec(source, namespace)
    for _ in range(count):  # 10 fps: five minutes of frames
        yield namespace["render"]()


def _decode(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        return np.asarray(img)


def _published_index(pixels: np.ndarray, nb: nbformat.NotebookNode) -> int:
    """Which published frame ``pixels`` is, exactly (fails if it is none of them)."""
    for i, frame in enumerate(_published_frames(nb)):
        if frame.shape == pixels.shape and np.array_equal(frame, pixels):
            return i
    raise AssertionError(f"the {pixels.shape} image is not a frame the notebook published")


def test_exported_html_carries_the_snapshot(executed: nbformat.NotebookNode) -> None:
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    widget_outputs = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(widget_outputs) == 1
    bundle = widget_outputs[0]["data"]
    assert {WIDGET_VIEW, "image/png", "text/plain"} <= set(bundle)
    model_id = bundle[WIDGET_VIEW]["model_id"]
    at_display = _published_index(_decode(bundle["image/png"]), executed)

    # As executed: nbclient stored the widget state, so nbconvert renders the widget view and
    # embeds the state; the viewer's snapshot trait is there, a frame published no earlier.
    assert model_id in executed.metadata["widgets"][WIDGET_STATE]["state"]
    html, _ = HTMLExporter().from_notebook_node(executed)
    views = re.findall(rf'<script type="{re.escape(WIDGET_VIEW)}">\s*(.*?)\s*</script>', html, re.S)
    assert [json.loads(v)["model_id"] for v in views] == [model_id]
    assert "<img" not in html
    state_json = re.search(rf'<script type="{re.escape(WIDGET_STATE)}">\s*(.*?)\s*</script>', html, re.S)
    assert state_json is not None
    snapshot = json.loads(state_json.group(1))["state"][model_id]["state"]["snapshot"]
    assert snapshot.startswith(PNG_URL)
    assert _published_index(_decode(snapshot[len(PNG_URL) :]), executed) >= at_display

    # Without widget state, nbconvert falls back to the output's image/png: one <img> in the page.
    bare = copy.deepcopy(executed)
    del bare.metadata["widgets"]
    html, _ = HTMLExporter().from_notebook_node(bare)
    assert WIDGET_VIEW not in html
    images = re.findall(r'<img [^>]*src="(data:image/png;base64,[^"]+)"', html)
    assert len(images) == 1
    assert _published_index(_decode(images[0][len(PNG_URL) :]), executed) == at_display
