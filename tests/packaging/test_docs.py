"""The documentation builds (``mkdocs build --strict``) and its Python snippets run.

Convention for the ```python blocks in README.md, docker/README.md and docs/*.md (each runs in its
own subprocess):

- Every block runs unless the line before its opening fence is ``<!-- no-run -->`` (for a block that
  needs something a test cannot give it: real key files, a notebook frontend, a second machine).
- ``<!-- run-for: N -->`` marks a block that runs until stopped (a render loop, ``asyncio.run`` of a
  server): it must still be running, without an error, after N seconds; then it is stopped.
- Top-level ``await`` works, as in a notebook: a block runs as the body of a coroutine on a running
  event loop, unless it calls ``asyncio.run(`` itself (then it runs as a plain script).
- Every port given to ``rfb.serve`` (and its default WebSocket port) becomes a free one, so snippets
  can show the real 5900/6080 without clashing with anything on the machine.
- Predefined names, for blocks that continue an earlier one: ``render()`` (returns a 240x320x3
  uint8 frame) and ``display`` (a Display on free loopback ports; a block may rebind it).
  ``$VNC_PASSWORD`` is set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from tests.certs import make_certificate

from .support import REPO

pytestmark = [pytest.mark.packaging]

PRELUDE = """
import ast, asyncio, sys
import pdum.rfb, pdum.rfb.display
from pdum.rfb.testing import seed_scene

_real_serve = pdum.rfb.display.serve
_opened = []


async def _serve(*args, **kwargs):
    for key in ("port", "vnc_port"):
        if kwargs.get(key, 0) is not None:
            kwargs[key] = 0
    if kwargs.get("host") == "0.0.0.0":  # tests only ever listen on loopback
        kwargs["host"] = "127.0.0.1"
    display = await _real_serve(*args, **kwargs)
    _opened.append(display)
    return display


pdum.rfb.serve = pdum.rfb.display.serve = _serve
_frames = iter(range(10**9))


def render(t=None):
    return seed_scene(320, 240, next(_frames) if t is None else t)


async def _main(source):
    namespace = {"__name__": "__main__", "render": render, "display": await _serve(320, 240)}
    code = compile(source, "<snippet>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    try:
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
    finally:
        for display in _opened:
            await display.aclose()


def _run(source):
    if "asyncio.run(" in source:  # a block that starts its own event loop runs as a plain script
        exec(compile(source, "<snippet>", "exec"), {"__name__": "__main__", "render": render})
    else:
        asyncio.run(_main(source))


_run(sys.stdin.read())
print("SNIPPET-OK", flush=True)
"""

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!--\s*(no-run|run-for:\s*(\d+(?:\.\d+)?))\s*-->\s*$")


def snippets() -> list[tuple[str, str, str | None]]:
    """(id, code, marker) for every ```python block in README.md, docker/README.md and docs/*.md."""
    found = []
    for path in [REPO / "README.md", REPO / "docker" / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            line = text.count("\n", 0, match.start()) + 1
            found.append(
                (f"{path.relative_to(REPO)}:{line}", match.group(1), mark.group(1) if mark else None)
            )
    return found


SNIPPETS = snippets()


def test_some_snippets_are_found_and_most_run() -> None:
    assert len(SNIPPETS) >= 5
    assert sum(1 for _, _, mark in SNIPPETS if mark != "no-run") > len(SNIPPETS) // 2


@pytest.mark.parametrize(("where", "code", "mark"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet_runs(where: str, code: str, mark: str | None, tmp_path: Path) -> None:
    if mark == "no-run":
        compile(textwrap.dedent(code), where, "exec", flags=0x2000)  # still valid Python (top-level await ok)
        return
    # Key material the security snippets name (relative paths, made fresh for each run).
    make_certificate(tmp_path)
    (tmp_path / "rsa.pem").write_bytes(RSA.generate(2048).export_key())
    env = {**os.environ, "VNC_PASSWORD": "s3cret"}
    cmd = [sys.executable, "-c", PRELUDE]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    if mark and mark.startswith("run-for"):
        seconds = float(mark.split(":")[1])
        try:
            out, _ = proc.communicate(code, timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            assert "Traceback" not in out, f"{where}:\n{out}"
            return
        pytest.fail(
            f"{where}: a run-for block stopped after less than {seconds}s (exit {proc.returncode}):\n{out}"
        )
    out, _ = proc.communicate(code, timeout=60)
    assert proc.returncode == 0 and "SNIPPET-OK" in out, f"{where} failed:\n{out}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs missing: uv sync --all-extras installs the docs extra"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "api/index.html", "clients/index.html", "architecture/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("Display", "publish", "InputEvent", "publish_loop", "RfbApp", "RfbViewer"):
        assert name in api, f"{name} missing from the API page"
