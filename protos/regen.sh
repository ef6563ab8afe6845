#!/usr/bin/env bash
# Rebuilds protos/demo.pb, the FileDescriptorSet the demo's transcoding route reads
# (routes[].grpc.transcode.descriptors), from protos/demo/v1/demo.proto with Debian's protoc
# (package protobuf-compiler; the well-known types come from /usr/include). Imports are
# included, source info is not. Run from anywhere.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v protoc >/dev/null || { echo "regen: protoc not found (scripts/setup.sh installs protobuf-compiler)" >&2; exit 1; }
protoc --include_imports --descriptor_set_out=protos/demo.pb \
    -I protos -I /usr/include protos/demo/v1/demo.proto
echo "regen: wrote protos/demo.pb ($(wc -c <protos/demo.pb) bytes)"
