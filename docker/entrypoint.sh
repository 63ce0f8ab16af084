#!/bin/sh
# Container entrypoint: `pdum-rfb serve` on all interfaces, VNC on $VNC_PORT (5900) and the browser
# viewer + WebSocket + /health on $HTTP_PORT (6080).
#
#   password   $VNC_PASSWORD, else the file $VNC_PASSWORD_FILE (default /run/secrets/vnc_password)
#   no password: refused unless ALLOW_INSECURE=1
#   arguments  go to `pdum-rfb serve` (e.g. --script /app/app.py, --pattern noise, --width 1280);
#              with none: $APP_SCRIPT if set, else the test card. A first argument that is not an
#              option (e.g. `sh`) is run instead of the server.
set -eu

HOST="${HOST:-0.0.0.0}"
VNC_PORT="${VNC_PORT:-5900}"
HTTP_PORT="${HTTP_PORT:-6080}"
VNC_PASSWORD_FILE="${VNC_PASSWORD_FILE:-/run/secrets/vnc_password}"

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

if [ -z "${VNC_PASSWORD:-}" ] && [ -r "$VNC_PASSWORD_FILE" ]; then
  VNC_PASSWORD="$(head -n 1 "$VNC_PASSWORD_FILE" | tr -d '\r\n')"
fi

insecure=""
if [ -z "${VNC_PASSWORD:-}" ]; then
  unset VNC_PASSWORD
  if [ "${ALLOW_INSECURE:-0}" = "1" ]; then
    echo "pdum-rfb: WARNING: serving $HOST without a password (ALLOW_INSECURE=1)" >&2
    insecure="--allow-insecure"
  else
    echo "pdum-rfb: refusing to serve $HOST without a password: set VNC_PASSWORD, mount a secret at" \
      "$VNC_PASSWORD_FILE, or set ALLOW_INSECURE=1" >&2
    exit 2
  fi
else
  export VNC_PASSWORD  # pdum-rfb reads it from the environment: never on the command line
fi

if [ "$#" -eq 0 ] && [ -n "${APP_SCRIPT:-}" ]; then
  set -- --script "$APP_SCRIPT"
fi

# shellcheck disable=SC2086  # $insecure is empty or one word
exec pdum-rfb serve --host "$HOST" --vnc-port "$VNC_PORT" --port "$HTTP_PORT" $insecure "$@"
