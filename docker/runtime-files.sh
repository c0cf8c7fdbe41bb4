#!/bin/sh
# Copies what the runtime image needs of each workspace from a built tree SRC
# to DEST: its manifest, compiled sources (dist/src) and data files (the gRPC
# .proto, the demo page in public/), without TypeScript sources, tests, source
# maps or build info. Used by docker/Dockerfile, and by the compose test to
# assemble the same layout on the host.
#   docker/runtime-files.sh SRC DEST
set -eu
src="$1"
dest="$2"
for ws in packages/protocol packages/sdk services/chat services/store services/jobs services/gateway; do
  mkdir -p "$dest/$ws"
  tar -C "$src/$ws" --exclude=./src --exclude=./test --exclude=./bench --exclude=./dist/test \
    --exclude=./dist/bench --exclude=./node_modules --exclude='./tsconfig*.json' \
    --exclude='*.tsbuildinfo' --exclude='*.map' --exclude='*.d.ts' -cf - . | tar -C "$dest/$ws" -xf -
done
