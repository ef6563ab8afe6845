#!/usr/bin/env bash
# Installs the Debian packages Causeway builds and tests with, when any is missing.
# Usage: scripts/setup.sh [extra packages...]   (bench/ passes nginx, haproxy, wrk)
set -euo pipefail

packages=(libnghttp2-dev libssl-dev zlib1g-dev libbrotli-dev pkg-config curl openssl nghttp2-client nginx wrk redis-server python3-pip protobuf-compiler libprotobuf-dev "$@")
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python peers for protocol-level tests (HTTP/2 frames built by hand).
if ! python3 -c "import hyperframe, hpack, h2, jsonschema, yaml, grpc, grpc_tools, httpx, google.protobuf, google.api.annotations_pb2, joserfc, cryptography" 2>/dev/null; then
    echo "setup: installing Python packages from scripts/requirements.txt" >&2
    python3 -m pip install -q -r "$(dirname "$0")/requirements.txt" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages -r "$(dirname "$0")/requirements.txt"
fi
