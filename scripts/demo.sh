#!/usr/bin/env bash
# Builds Causeway and runs `causeway demo`: the gateway on :8080 in front of built-in users
# and orders services. Extra arguments go to `causeway demo` (try --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --product causeway
exec .build/debug/causeway demo "$@"
