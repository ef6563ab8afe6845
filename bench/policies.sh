#!/usr/bin/env bash
# Edge-policy benchmark (bench/policies.py): CPU per request added by JWT verification (ES256,
# RS256; warm cache and cold) and by a local token bucket. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-release.sh >/dev/null
exec python3 bench/policies.py --causeway .build/release/causeway "$@"
