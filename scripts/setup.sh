#!/usr/bin/env bash
# Installs the Debian packages Causeway builds and tests with, when any is missing.
# Usage: scripts/setup.sh [extra packages...]   (bench/ passes nginx, haproxy, wrk)
set -euo pipefail

packages=(libnghttp2-dev libssl-dev zlib1g-dev libbrotli-dev pkg-config curl "$@")
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
