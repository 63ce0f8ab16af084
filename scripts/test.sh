#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
#   scripts/test.sh                 lint, type-check, all tests (unit + real-client interop)
#   scripts/test.sh tests/unit      any extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients and tools the interop tests drive (Debian package names).
APT_PACKAGES=(
  xvfb x11-apps imagemagick          # virtual X screen, xwd screenshots, /usr/bin/convert
  tigervnc-viewer tigervnc-tools     # xtigervncviewer, vncpasswd
  xclip                              # reads/sets X selections for TigerVNC's clipboard test
  xdotool                            # accepts TigerVNC's RSA-AES server-key dialog, clicks
  gvncviewer                         # gvnccapture (gtk-vnc)
  vncsnapshot                        # RFB 3.3 client
  libvncserver-dev gcc               # libvncclient for the C test client
  chromium fonts-dejavu-core         # headless browser for the noVNC / widget tests
  novnc                              # noVNC's stock page, served by a real websockify in a test
)
# Node.js + npm build the widget bundle (esbuild, noVNC from npm); take Debian's only if absent.
if ! command -v npm >/dev/null 2>&1; then APT_PACKAGES+=(nodejs npm); fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# RSA-AES needs TigerVNC 1.13+ and bookworm has 1.12: tests/interop/test_security.py uses 1.15 from
# Debian trixie, unpacked (once, no root needed) into a private prefix (amd64 Debian only).
if [ -z "${PDUM_RFB_TIGERVNC:-}" ]; then
  PDUM_RFB_TIGERVNC="$(scripts/tigervnc-trixie.sh)"
  export PDUM_RFB_TIGERVNC
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet uv
fi

(cd viewer && npm ci --no-audit --no-fund --loglevel=error)
uv sync --frozen --all-extras
uv run ruff check .
uv run ruff format --check .
uv run mypy
uv run pytest "$@"

# Users run newer Pythons than the 3.11 floor: with no arguments, the unit tests run again on every
# newer CPython this machine has (pyenv's, or on PATH), each in its own .venv-py3.X from uv.lock.
# uv cannot download interpreters here (no route to GitHub), so a version the machine lacks is
# named and left out.
if (($# == 0)); then
  for version in 3.12 3.13 3.14; do
    interpreter=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/"python$version" \
                     "$(command -v "python$version" || true)"; do
      if [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then interpreter="$candidate"; fi
    done
    if [ -z "$interpreter" ]; then
      echo "test.sh: no Python $version on this machine: its unit-test run is left out"
      continue
    fi
    echo "test.sh: unit tests on $("$interpreter" --version)"
    UV_PROJECT_ENVIRONMENT=".venv-py$version" uv run --frozen --all-extras --python "$interpreter" \
      pytest tests/unit -q -p no:cacheprovider
  done
fi
