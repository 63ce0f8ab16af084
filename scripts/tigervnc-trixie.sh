#!/usr/bin/env bash
# TigerVNC's viewer from Debian 13 (trixie) on Debian 12 (bookworm), which only packages 1.12:
# the RSA-AES security types (RA2, RA2ne, RA2_256, RA2ne_256) need a 1.13+ viewer.
#
#   scripts/tigervnc-trixie.sh [PREFIX]
#
# Into PREFIX (default ${XDG_CACHE_HOME:-$HOME/.cache}/pdum-rfb/tigervnc-trixie), with nothing
# installed on the system and no root needed: apt, with a private configuration (trixie main only,
# signed by the trixie keys in bookworm's debian-archive-keyring, and an empty dpkg status so the
# whole dependency closure is computed), downloads tigervnc-viewer and everything it depends on
# (about 55 MB); `dpkg -x` unpacks them; PREFIX/bin/xtigervncviewer runs the trixie binary with
# trixie's own dynamic loader and libraries. It prints that wrapper's path on stdout (progress
# goes to stderr) and does nothing but print it when a working viewer is already there.
# TIGERVNC_TRIXIE_MIRROR overrides the Debian mirror (default http://deb.debian.org/debian).
set -euo pipefail

prefix="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pdum-rfb/tigervnc-trixie}"
mirror="${TIGERVNC_TRIXIE_MIRROR:-http://deb.debian.org/debian}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
wrapper="$prefix/bin/xtigervncviewer"

works() { # the wrapper runs and reports a TigerVNC viewer version
  [ -x "$1" ] && grep -qi 'TigerVNC viewer .*v1\.' <<<"$("$1" -h 2>&1 || true)"
}

if [ -f "$prefix/.complete" ] && works "$wrapper"; then
  echo "$wrapper"
  exit 0
fi

arch="$(dpkg --print-architecture 2>/dev/null || true)"
if [ "$arch" != amd64 ]; then
  echo "tigervnc-trixie.sh: needs Debian on amd64 (dpkg says '${arch:-no dpkg}')" >&2
  exit 1
fi
if [ ! -r "$keyring" ]; then
  echo "tigervnc-trixie.sh: $keyring is missing (apt-get install debian-archive-keyring)" >&2
  exit 1
fi

# build next to PREFIX, then move into place: an interrupted run leaves no half-made viewer
mkdir -p "$(dirname "$prefix")"
build="$(mktemp -d "$prefix.tmp.XXXXXX")"
trap 'rm -rf "$build"' EXIT
work="$build/.apt"
mkdir -p "$work/etc/sources.list.d" "$work/etc/preferences.d" "$work/state/lists/partial" \
  "$work/cache/archives/partial" "$work/log"
: >"$work/state/status" # an empty dpkg status: nothing counts as installed
echo "deb [signed-by=$keyring] $mirror trixie main" >"$work/etc/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/etc/sources.list" -o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$work/etc/preferences" -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
  -o "Dir::State=$work/state" -o "Dir::State::status=$work/state/status"
  -o "Dir::Cache=$work/cache" -o "Dir::Log=$work/log"
  -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Install-Recommends=0
  -o Acquire::Languages=none -o APT::Sandbox::User=root -o Debug::NoLocking=1
)
echo "tigervnc-trixie.sh: downloading tigervnc-viewer and its dependencies from trixie" >&2
apt-get "${apt_opts[@]}" -qq update >&2
apt-get "${apt_opts[@]}" -qq -y --download-only install tigervnc-viewer >&2
for deb in "$work"/cache/archives/*.deb; do
  dpkg -x "$deb" "$build"
done
rm -rf "$work"

# trixie is merged-/usr: its loader and libraries all live in usr/lib/x86_64-linux-gnu
mkdir -p "$build/bin"
cat >"$build/bin/xtigervncviewer" <<'EOF'
#!/bin/sh
# TigerVNC's viewer from Debian trixie (made by scripts/tigervnc-trixie.sh): trixie's own
# dynamic loader, libraries, iconv modules and X locale data, none of the system's.
root="$(dirname "$(dirname "$(readlink -f "$0")")")"
lib="$root/usr/lib/x86_64-linux-gnu"
export GCONV_PATH="$lib/gconv" XLOCALEDIR="$root/usr/share/X11/locale"
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" --argv0 xtigervncviewer \
  "$root/usr/bin/xtigervncviewer" "$@"
EOF
chmod +x "$build/bin/xtigervncviewer"
if ! works "$build/bin/xtigervncviewer"; then
  echo "tigervnc-trixie.sh: the unpacked viewer does not run:" >&2
  "$build/bin/xtigervncviewer" -h >&2 || true
  exit 1
fi
touch "$build/.complete"
rm -rf "$prefix"
mv -T "$build" "$prefix" || works "$wrapper" # or a run at the same time got there first
trap - EXIT
echo "tigervnc-trixie.sh: $("$wrapper" -h 2>&1 | grep -i 'TigerVNC viewer')" >&2
echo "$wrapper"
