#!/usr/bin/env bash
# Runs every test: unit tests, handler tests and end-to-end tests with real sockets, curl and
# a real upstream server. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build --skip CompressionMemoryTests
# Alone: it holds 10,000 streams (and as many sockets) open, which would starve timing-sensitive
# tests running beside it.
swift test --skip-build --filter CompressionMemoryTests
