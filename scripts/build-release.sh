#!/usr/bin/env bash
# The release build of `causeway` (what bench/ measures and what to deploy): optimized, with
# Swift's dynamic exclusivity checks off in every module, dependencies included. Causeway's own
# targets already turn them off in release (Package.swift); for SwiftNIO and swift-http-types
# only this flag can, and it saves ~2 µs of CPU per proxied request (docs/benchmarks.md).
# Debug builds and the tests keep every check.
set -euo pipefail
cd "$(dirname "$0")/.."
exec swift build -c release --product causeway -Xswiftc -enforce-exclusivity=unchecked "$@"
