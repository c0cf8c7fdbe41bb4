#!/usr/bin/env bash
# Installs Soketi 1.6.1, the reference Pusher Channels server, into
# loadtest/peers/soketi/node_modules (gitignored) for `make pusher-reference`:
# a package of its own, not a workspace of the root, installed with `npm ci`
# from its committed lock file. Soketi 1.6 asks for uWebSockets.js v20.10.0
# from GitHub, which only the npm registry here cannot give; the package's
# `overrides` take @trufflesuite/uws-js-unofficial 20.30.0-unofficial.0 (the
# v20 API, the build services/gateway uses on Node 20) from npm instead. That
# build has binaries for Node 16, 18 and 20 only, so Soketi runs on the
# machine's Node 20, not on .tools/node24.
#
# No install scripts run: nothing Soketi needs is built on install (the
# uWebSockets.js binaries ship in the package; bufferutil and utf-8-validate
# fall back to JavaScript). Quick and quiet when the same lock is installed.
#
#   scripts/install-soketi.sh        prints the path of Soketi's CLI (bin/server.js)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/loadtest/peers/soketi"
CLI="$DIR/node_modules/@soketi/soketi/bin/server.js"
STAMP="$DIR/node_modules/.installed"
NODE="${SOKETI_NODE:-node}"

# What an installation is: the lock file's hash. The next run compares it and is done.
stamp="$(sha256sum "$DIR/package-lock.json" | cut -d ' ' -f 1)"

if [ ! -f "$CLI" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$stamp" ]; then
  echo "install-soketi: npm ci --prefix loadtest/peers/soketi" >&2
  rm -f "$STAMP"
  npm ci --prefix "$DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  [ -f "$CLI" ] || {
    echo "install-soketi: $CLI is missing after npm ci" >&2
    exit 1
  }
  echo "$stamp" >"$STAMP"
fi

# The Node that runs Soketi must be one the uWebSockets.js build has a binary for.
abi="$("$NODE" -p process.versions.modules)"
if [ ! -f "$DIR/node_modules/uWebSockets.js/binaries/uws_linux_x64_$abi.node" ]; then
  echo "install-soketi: $("$NODE" --version) (ABI $abi) has no binary in Soketi's uWebSockets.js build;" \
    "run Soketi with Node 16, 18 or 20 (SOKETI_NODE=/path/to/node)" >&2
  exit 1
fi
echo "$CLI"
