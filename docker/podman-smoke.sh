#!/usr/bin/env bash
# Build and run the image for real with rootful podman on a machine with no container registry and no
# Docker engine (like the CI machine): the base image is a Debian rootfs made by mmdebstrap from
# Debian's packages, the wheelhouse comes from PyPI, then a VNC client checks exact pixels through
# the published port. Not part of CI (it installs podman, runc and mmdebstrap); run by hand, as root:
#   docker/podman-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-/tmp/pdum-rfb-podman}"
IMAGE=localhost/pdum-rfb:smoke
BASE=localhost/pdum-rfb-base:bookworm
PORT_VNC="${PORT_VNC:-15900}"
PORT_HTTP="${PORT_HTTP:-16080}"
mkdir -p "$WORK"

for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc mmdebstrap conmon containernetworking-plugins >/dev/null
done

# python:3.12-slim cannot be pulled here: Debian 12's python3 (3.11) stands in, pip allowed system-wide.
if ! podman image exists "$BASE"; then
  mmdebstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    bookworm "$WORK/base.tar" "deb http://deb.debian.org/debian bookworm main"
  podman import "$WORK/base.tar" "$BASE"
fi
PY=3.11 bash docker/wheelhouse.sh >/dev/null
podman build --format docker --runtime runc --network host --build-arg BASE="$BASE" -t "$IMAGE" docker/

# This kernel refuses podman's default (raised) RLIMIT_NOFILE/NPROC inside the container: ask for less.
RUN=(podman run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
if "${RUN[@]}" "$IMAGE" >/dev/null 2>&1; then echo "FAIL: started without a password" >&2; exit 1; fi
"${RUN[@]}" -d --name pdum-rfb-smoke -p "127.0.0.1:$PORT_VNC:5900" -p "127.0.0.1:$PORT_HTTP:6080" \
  -e VNC_PASSWORD=s3cret "$IMAGE" --width 320 --height 240 >/dev/null
trap 'podman stop -t 10 pdum-rfb-smoke >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT_HTTP/health" >/dev/null 2>&1 && break; sleep 0.2; done
uv run python - "$PORT_VNC" "$WORK/shot.png" <<'PY'
import subprocess, sys
import numpy as np
from PIL import Image
from pdum.rfb.testing import test_card
port, out = sys.argv[1], sys.argv[2]
subprocess.run(["vncdo", "-s", f"127.0.0.1::{port}", "-p", "s3cret", "capture", out], check=True, timeout=30)
shot = np.asarray(Image.open(out).convert("RGB"))
assert np.array_equal(shot, test_card(320, 240)), "pixels differ"
print("exact pixels through the container's published port")
PY
podman healthcheck run pdum-rfb-smoke && echo "HEALTHCHECK passes"
test "$(podman exec pdum-rfb-smoke id -u)" = 10001 && echo "runs as uid 10001"
echo "podman smoke: OK"
