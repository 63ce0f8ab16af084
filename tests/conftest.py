from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import LoopThread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is missing: run scripts/test.sh (it installs it)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def vncdump_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libvncclient test client, compiled once per run (interop and browser tests share it)."""
    from tests.interop.clients import build_vncdump

    return build_vncdump(tmp_path_factory.mktemp("vncdump"))


@pytest.fixture(scope="session")
def xvfb() -> Iterator[Any]:
    """One 1280x720 virtual screen per run for the GUI viewers."""
    from tests.interop.clients import Xvfb

    screen = Xvfb(1280, 720)
    yield screen
    screen.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def served(loop_thread: LoopThread) -> Iterator[LoopThread]:
    """The loop thread; every Display served through it is closed after the test."""
    yield loop_thread
    loop_thread.close_displays()
