#!/usr/bin/env bash
# Unary gRPC benchmark (bench/grpc.py): CPU per proxied call, Causeway against nginx grpc_pass,
# one worker each, pinned. Builds the release binary first. Arguments go to grpc.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-release.sh >/dev/null
exec python3 bench/grpc.py --causeway .build/release/causeway "$@"
