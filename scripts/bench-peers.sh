#!/usr/bin/env bash
# Installs the peers the hub benchmark (benchmarks/hubbench) measures Weir
# against, when missing, and prints where they are. Idempotent.
#   - redis-server, redis-benchmark: Debian packages redis-server and
#     redis-tools (apt-get, as root or through sudo).
#   - nats-server: go install github.com/nats-io/nats-server/v2@latest into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/weir-bench/bin (set NATS_VERSION to pin
#     another version), unless one is already on PATH or there.
set -euo pipefail

bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/weir-bench/bin"
nats_module="github.com/nats-io/nats-server/v2@${NATS_VERSION:-latest}"

# command -> Debian package
declare -A need=(
  [redis-server]=redis-server
  [redis-benchmark]=redis-tools
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "bench-peers: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "bench-peers: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

nats=$(command -v nats-server 2>/dev/null || true)
if [ -z "$nats" ] && [ -x "$bin_dir/nats-server" ]; then
  nats="$bin_dir/nats-server"
fi
if [ -z "$nats" ]; then
  command -v go >/dev/null 2>&1 || { echo "bench-peers: go not found: it is needed to install nats-server" >&2; exit 1; }
  mkdir -p "$bin_dir"
  echo "bench-peers: GOBIN=$bin_dir go install $nats_module"
  GOBIN="$bin_dir" go install "$nats_module"
  nats="$bin_dir/nats-server"
fi

echo "redis-server:    $(command -v redis-server) ($(redis-server --version | grep -o 'v=[^ ]*'))"
echo "redis-benchmark: $(command -v redis-benchmark)"
echo "nats-server:     $nats ($("$nats" --version))"
