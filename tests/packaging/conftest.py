"""The packaging tests build and install the package: slow-ish, but they run in CI."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "packaging: builds or installs the package (slow-ish; runs in CI)")
