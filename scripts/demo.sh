#!/usr/bin/env bash
# The demo: installs missing packages, builds, starts the embedded
# PostgreSQL and Kafka, runs the example, shows what happened, and stops
# what it started (also on failure or Ctrl-C).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

"$SAGA_ROOT/scripts/deps.sh"
configure_and_build
start_stack

demo=$SAGA_ROOT/examples/demo.sh
if [ -x "$demo" ]; then
  "$demo"
else
  say "the stack is up: PostgreSQL at '$SAGA_PG_CONNINFO', Kafka at $SAGA_KAFKA_BOOTSTRAP"
fi
