#!/usr/bin/env bash
# WebSocket benchmark (bench/websocket.py): CPU per echoed 128-byte message over 100 connections
# and RSS per idle WebSocket, Causeway against nginx and Caddy, one worker each, pinned.
# Builds the release binary first. Arguments go to websocket.py (--duration, --rounds, --idle).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-release.sh >/dev/null
exec python3 bench/websocket.py --causeway .build/release/causeway "$@"
