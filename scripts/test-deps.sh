#!/usr/bin/env bash
# Installs what Weir's tests need on a Debian machine: the Debian packages
# that are missing (as root, or through sudo) and the Go modules. Safe to
# run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_py() { /usr/bin/python3 -c "import $1" >/dev/null 2>&1 || missing+=("$2"); }

need_cmd dd coreutils
need_cmd kcat kcat                       # librdkafka's CLI, for protocol tests
need_cmd logger bsdutils                 # util-linux's logger, for syslog tests
need_cmd redis-server redis-server       # Redis pub/sub sink and benchmarks
need_cmd promtool prometheus            # promtool check metrics, for /metrics tests
need_cmd tmux tmux                       # weir top under a terminal
need_cmd systemd-analyze systemd         # checks deploy/weir.service
need_cmd node nodejs                     # DuckDB (npm @duckdb/node-api) reads the Parquet files
need_cmd npm npm
need_cmd chromium chromium               # headless browser: EventSource subscriptions
if [ -x /usr/bin/python3 ]; then
  need_py kafka python3-kafka            # kafka-python
  need_py confluent_kafka python3-confluent-kafka
  need_py snappy python3-snappy          # kafka-python's codecs
  need_py lz4 python3-lz4
  need_py zstandard python3-zstandard
else
  missing+=(python3 python3-kafka python3-confluent-kafka python3-snappy python3-lz4 python3-zstandard)
fi

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "test-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download
# DuckDB, once per machine into ~/.cache/weir-test/duckdb (internal/ducktest
# installs it the same way when a test finds it missing).
go test -count=1 -run '^TestQuery$' ./internal/ducktest >/dev/null
