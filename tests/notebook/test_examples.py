"""Every example notebook executes headless without error (scripts/test_notebooks.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_notebooks_execute() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "test_notebooks.sh")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  examples/seed.ipynb" in result.stdout
