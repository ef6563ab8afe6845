#!/usr/bin/env bash
# Runs the black-box conformance checks from ../shared/conformance (compression, SSE and
# WebSocket; over HTTP/1.1, h2c, and TLS with HTTP/1.1 and h2) against a Causeway built from this checkout. Those checks are not part of
# this repository, so this script is separate from scripts/test.sh; it says so and stops when
# they are absent.
#
# Usage: scripts/conformance.sh [--causeway PATH]   (default: .build/debug/causeway, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHECKS=${CONFORMANCE_DIR:-$ROOT/../shared/conformance}
BIN=.build/debug/causeway
[[ "${1:-}" == "--causeway" ]] && BIN=${2:?--causeway needs a path}
[[ -f "$CHECKS/compress_check.py" ]] || { echo "no conformance checks at $CHECKS (set CONFORMANCE_DIR)" >&2; exit 2; }
[[ -x "$BIN" ]] || swift build --product causeway
python3 -m pip install -q -r "$CHECKS/requirements.txt" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages -r "$CHECKS/requirements.txt"

TMP=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

python3 "$CHECKS/compress_upstream.py" --port 18767 >"$TMP/compress_upstream.log" 2>&1 & PIDS+=($!)
python3 "$CHECKS/sse_server.py" --port 18766 >"$TMP/sse_server.log" 2>&1 & PIDS+=($!)
python3 "$CHECKS/ws_echo_server.py" --port 18765 >"$TMP/ws_server.log" 2>&1 & PIDS+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 2>/dev/null
cat >"$TMP/causeway.yaml" <<CONF
server: {workers: 2, admin: {address: "127.0.0.1:18769"}}
listeners:
  - {name: conformance, address: "127.0.0.1:18768", protocols: [http1, h2c]}
  - {name: tls, address: "127.0.0.1:18764", protocols: [http1, h2], tls: {certificates: [{cert: "$TMP/cert.pem", key: "$TMP/key.pem"}]}}
upstreams:
  compress: {endpoints: [{address: "127.0.0.1:18767"}]}
  sse: {endpoints: [{address: "127.0.0.1:18766"}]}
  ws: {endpoints: [{address: "127.0.0.1:18765"}]}
routes:
  - {name: compress, match: {path_prefix: /c/}, upstream: compress, rewrite: {path_prefix: /}, compression: {}}
  - {name: sse, match: {path_prefix: /s/}, upstream: sse, rewrite: {path_prefix: /}, timeout: 0, compression: {}}
  - {name: ws, match: {path_prefix: /ws/}, upstream: ws, websocket: {max_message_size: 2MiB}}
CONF
"$BIN" run --config "$TMP/causeway.yaml" --log-level warning >"$TMP/causeway.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null --max-time 1 http://127.0.0.1:18769/ready && break; sleep 0.2; done

failed=0
run() { echo "== $*"; python3 "$@" | tail -n 40 || failed=1; }
for http2 in "" --http2; do
    run "$CHECKS/compress_check.py" --url http://127.0.0.1:18768/c $http2
    for encoding in gzip br; do
        run "$CHECKS/sse_check.py" --url http://127.0.0.1:18768/s/events --accept-encoding $encoding $http2
        run "$CHECKS/sse_check.py" --url https://127.0.0.1:18764/s/events --insecure --accept-encoding $encoding $http2
    done
done
# ws_check speaks HTTP/1.1 upgrades; RFC 8441 over h2 is Tests/Scripts/websocket_suite.py's.
run "$CHECKS/ws_check.py" --url ws://127.0.0.1:18768/ws
run "$CHECKS/ws_check.py" --url wss://127.0.0.1:18764/ws --insecure --concurrency 200
exit $failed
