#!/usr/bin/env bash
# Fill docker/wheelhouse/ with the project's wheel and every dependency's wheel for the image's
# Python (3.12, Linux x86_64 by default), so `docker build docker/` installs offline.
#   docker/wheelhouse.sh            or: PY=3.11 ARCH=aarch64 docker/wheelhouse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-3.12}"
ARCH="${ARCH:-x86_64}"
rm -rf docker/wheelhouse
uv build --wheel -o docker/wheelhouse
wheel="$(ls docker/wheelhouse/habemus_papadum_rfb-*.whl)"
python3 -m pip download --only-binary=:all: --python-version "$PY" --platform "manylinux2014_$ARCH" \
  --platform "manylinux_2_17_$ARCH" --platform "manylinux_2_28_$ARCH" -d docker/wheelhouse "$wheel"
ls docker/wheelhouse
