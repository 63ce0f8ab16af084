#!/usr/bin/env bash
# Rebuild the committed widget bundle (pdum/rfb/static/viewer.js) from viewer/src with esbuild.
#   scripts/build_viewer.sh           rebuild
#   scripts/build_viewer.sh --check   fail if the committed bundle is stale
set -euo pipefail
cd "$(dirname "$0")/../viewer"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
node build.mjs "$@"
