# Shared by the podman tests of this folder: sourced, never run.
# Sets root, id (unique per run), work (a scratch directory), and after
# ct_fresh_db, db and conninfo. A test adds its own clean-up to the function
# ct_cleanup_more, which runs first on exit, also on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
scale=${SAGA_TEST_TIMEOUT_SCALE:-1}
ct() { "$root/scripts/container.sh" "$@"; }
skip() { echo "skipped: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
ct_cleanup_more() { :; }

# Skips (77) with the reason unless the tests are asked for, the services
# are given and podman can run a container; then builds the image.
ct_test_init() {
  [ "${SAGA_CONTAINER_TESTS:-0}" = 1 ] ||
    skip "container tests are opt-in: SAGA_CONTAINER_TESTS=1 (root podman; scripts/container.sh test)"
  [ -n "${SAGA_PG_CONNINFO:-}" ] || skip "SAGA_PG_CONNINFO unset"
  [ -n "${SAGA_KAFKA_BOOTSTRAP:-}" ] || skip "SAGA_KAFKA_BOOTSTRAP unset"
  local why
  why=$(ct can-run 2>&1) || skip "$why"
  ct build
  id=$1$$$RANDOM
  work=$(mktemp -d "${TMPDIR:-/tmp}/saga-$id.XXXXXX")
  db=
  trap ct_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

ct_cleanup() {
  local rc=$?
  ct_cleanup_more || true
  [ -n "$db" ] && psql "$SAGA_PG_CONNINFO" -qXc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    local f
    for f in "$work"/*.log; do [ -s "$f" ] && { echo "--- ${f##*/}"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$work"
  exit $rc
}

# A fresh database, reached over TCP: containers share the host's network
# but not its file system, so not the unix socket.
ct_fresh_db() {
  db=saga_$id
  psql "$SAGA_PG_CONNINFO" -qXc "CREATE DATABASE \"$db\"" >/dev/null
  conninfo="$(sed -E 's/(^| )host=[^ ]*//' <<<"$SAGA_PG_CONNINFO") host=127.0.0.1 dbname=$db"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
