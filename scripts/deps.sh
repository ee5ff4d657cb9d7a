#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing.
# Usage: scripts/deps.sh [--check]   (--check only lists what is missing)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(
  gcc make cmake pkg-config            # toolchain
  help2man                             # man pages from the programs' --help
  librdkafka-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler
  libuv1-dev libcjson-dev              # the product's libraries
  libcurl4-openssl-dev                 # the OTLP exporter (sagad)
  libjemalloc-dev                      # sagad's allocator (CMakeLists.txt)
  zlib1g-dev                           # event store archive files (gzip)
  postgresql                           # embedded PostgreSQL for dev/tests
  libcmocka-dev kcat python3-yaml      # tests (python3-yaml: deploy/ check)
  python3-jsonschema                   # tests: the definition schema
  libssl-dev openssl                   # tests: the OTLP exporter over TLS
  python3 python3-protobuf python3-confluent-kafka  # protocol test peer
  protobuf-compiler python3-psycopg    # the Python client (client/python)
  python3-pip python3-venv python3-wheel  # its install test
  chromium prometheus                  # timeline page and scrape tests
  clang-tidy                           # scripts/tidy.sh (CI)
  clang                                # tests/fuzz: scripts/fuzz.sh's build configures
  valgrind                             # bench-engine (callgrind, its header)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${1:-}" = --check ]; then
  printf '%s\n' "${missing[@]}"
  exit 1
fi
say "installing missing Debian packages: ${missing[*]}"
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} by hand"
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null ||
  die "apt-get update failed"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
  die "apt-get install failed for: ${missing[*]}"
