#!/usr/bin/env bash
# Runs one benchmark: builds in Release, starts the embedded stack, runs
# bench/NAME, stops what it started. Extra arguments go to the benchmark.
# Usage: scripts/bench.sh NAME [ARGS...]     (ls bench/ for the names)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] && [ "$1" != -h ] && [ "$1" != --help ] || {
  sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}
name=$1
shift
SAGA_BUILD_DIR=${SAGA_BENCH_BUILD_DIR:-$SAGA_ROOT/build-release}
case $SAGA_BUILD_DIR in /*) ;; *) SAGA_BUILD_DIR=$PWD/$SAGA_BUILD_DIR ;; esac
SAGA_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DSAGA_BUILD_TESTS=OFF ${SAGA_CMAKE_ARGS:-}"
"$SAGA_ROOT/scripts/deps.sh"
configure_and_build
prog=$SAGA_BUILD_DIR/bench/bench-$name
[ -x "$prog" ] || die "no benchmark named '$name' (expected $prog)"
start_stack
"$prog" "$@"
