#!/usr/bin/env bash
# Installs what building trailship needs beyond Rust, when it is missing:
# rdkafka builds its bundled librdkafka with cmake, against OpenSSL and zlib,
# and librdkafka's sources include curl's headers even with curl support off.
# Debian/Ubuntu (apt-get); elsewhere it says what to install and fails.
set -euo pipefail
missing=()
for pkg in cmake pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if ! command -v apt-get >/dev/null; then
    echo "trailship's build needs: cmake, pkg-config, and the curl, OpenSSL and zlib headers (missing: ${missing[*]})" >&2
    exit 1
fi
echo "== installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
$sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
