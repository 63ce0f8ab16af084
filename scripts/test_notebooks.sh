#!/usr/bin/env bash
# Execute every example notebook headless (nbclient) and fail on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run python - "$@" <<'PY'
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("examples").glob("*.ipynb"))
for path in paths:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"ok  {path}")
PY
