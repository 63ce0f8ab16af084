from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .clients import Xvfb, build_vncdump


@pytest.fixture(scope="session")
def vncdump_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vncdump(tmp_path_factory.mktemp("vncdump"))


@pytest.fixture(scope="session")
def xvfb() -> Iterator[Xvfb]:
    screen = Xvfb(1280, 720)
    yield screen
    screen.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "interop" in item.nodeid:
            item.add_marker(pytest.mark.interop)
