#!/usr/bin/env bash
# Event-stream fan-out benchmark (bench/sse.py): CPU per delivered event at 1,000 clients,
# Causeway's sse.fanout against independently proxied streams (Causeway and nginx).
# Builds the release binary first. Arguments go to sse.py (--clients, --duration, --rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-release.sh >/dev/null
exec python3 bench/sse.py --causeway .build/release/causeway "$@"
