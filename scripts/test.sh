#!/usr/bin/env bash
# The whole test suite: installs missing packages, builds, starts the
# embedded PostgreSQL and Kafka, runs ctest, stops what it started.
# Extra arguments go to ctest, e.g. scripts/test.sh -L eventstore
#
# Environment: SAGA_BUILD_DIR (default build), SAGA_SANITIZE=1 (ASan+UBSan),
# SAGA_CMAKE_ARGS (more cmake arguments), SAGA_TEST_TIMEOUT_SCALE (slow runs),
# SAGA_TEST_JOBS (parallel tests, default 2).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
  -h|--help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0 ;;
esac

"$SAGA_ROOT/scripts/deps.sh"
configure_and_build
start_stack
say "running tests (ctest $*)"
cd "$SAGA_BUILD_DIR"
ctest --output-on-failure --no-tests=error -j "${SAGA_TEST_JOBS:-2}" "$@"
