#!/usr/bin/env bash
# Runs every test: unit tests, handler tests and end-to-end tests with real sockets, curl and
# a real upstream server. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
# One test at a time: the end-to-end tests wait on real clients (curl, h2load, Python) with
# blocking calls, and on a 2-core machine two of those occupy Swift's whole cooperative pool,
# stalling the timing-sensitive tests beside them. Serial costs ~30 s and removes that.
swift test --skip-build --no-parallel --skip CompressionMemoryTests
# Alone: it holds 10,000 streams (and as many sockets) open, which would starve timing-sensitive
# tests running beside it.
swift test --skip-build --filter CompressionMemoryTests
# Hostile input against a running gateway (docs/security.md): every attack answered as
# specified, the process alive, and the loop still quick after each.
python3 Tests/Scripts/hostile_suite.py .build/debug/causeway
# Reload under load (docs/operations.md): 100 reloads during 20 s of wrk, zero failed
# requests, event streams over HTTP/1.1 and HTTP/2 open throughout, a broken config refused.
python3 Tests/Scripts/reload_suite.py .build/debug/causeway
# WebSocket through the gateway: Python websockets clients over HTTP/1.1 and TLS, and an h2
# client for RFC 8441 over h2c and TLS (docs/websocket.md).
python3 Tests/Scripts/websocket_suite.py .build/debug/causeway
# WebSocket memory: 10,000 idle WebSockets (as many as the open-file limit allows) with memory
# per connection, and 1 GiB through one WebSocket to a slow reader with RSS growth < 64 MiB.
python3 Tests/Scripts/websocket_scale.py .build/debug/causeway
# Event-stream fan-out: one subscription shared, replay, slow clients dropped, reconnects, and
# 10,000 clients on one subscription with memory per client (docs/sse.md).
python3 Tests/Scripts/sse_fanout_suite.py .build/debug/causeway
# gRPC through the gateway with grpcio servers and clients: the four call kinds over h2c and
# TLS, metadata and trailers, deadlines, cancellation, size limits, gRPC statuses, and gRPC-Web
# (binary and text, HTTP/1.1 and h2) by a test client of its own (docs/grpc.md).
python3 Tests/Scripts/grpc_suite.py .build/debug/causeway
# JSON transcoding (grpc.transcode) against a grpcio upstream: every google.api.http mapping
# rule with curl, compared field by field with protobuf's json_format (docs/grpc.md).
python3 Tests/Scripts/transcode_suite.py .build/debug/causeway
# Edge policies (docs/security.md): CORS as browsers check it, IP rules with trusted proxies,
# API keys, rate limits exact at their boundaries and across two event loops, per-IP connections.
python3 Tests/Scripts/policy_suite.py .build/debug/causeway
# Rate limits shared through a real redis-server by two gateways: exact together, Redis killed
# and restarted (on_redis_error allow and deny), scripts reloaded after SCRIPT FLUSH.
python3 Tests/Scripts/redis_suite.py .build/debug/causeway
# libFuzzer smoke run (60 s per harness; longer runs: Tests/Fuzz/run.sh 1800).
CAUSEWAY_FUZZ_SMOKE=1 Tests/Fuzz/run.sh "${CAUSEWAY_FUZZ_SECONDS:-60}"
