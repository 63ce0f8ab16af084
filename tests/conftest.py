from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import LoopThread


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
