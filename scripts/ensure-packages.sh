#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not
# installed yet (apt-get, no recommends). Quiet and quick when all are there.
#   scripts/ensure-packages.sh nats-server haproxy
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PACKAGE..." >&2
  exit 64
fi

missing=()
for pkg in "$@"; do
  # dpkg -s also succeeds for removed-but-not-purged packages: require "install ok installed".
  status="$(dpkg -s "$pkg" 2>/dev/null || true)"
  if ! grep -qx 'Status: install ok installed' <<<"$status"; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-packages: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "ensure-packages: missing ${missing[*]}; run as root or install sudo, or install them by hand:" >&2
  echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "ensure-packages: installing ${missing[*]}" >&2
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq)
if ! "${apt[@]}" update || ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; then
  echo "ensure-packages: apt-get could not install ${missing[*]}" >&2
  exit 1
fi
