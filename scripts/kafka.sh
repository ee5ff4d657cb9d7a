#!/usr/bin/env bash
# The embedded Kafka: saga-kafka-mock (librdkafka's mock cluster, 3 brokers
# on 127.0.0.1, random ports) for development, tests and the demo.
#
# Usage: scripts/kafka.sh start|stop|status|bootstrap|ctl COMMAND...
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: scripts/kafka.sh start|stop|status|bootstrap|ctl COMMAND...

  start      start the mock cluster (no-op if running); prints the bootstrap list
  stop       stop the mock cluster started from this tree
  status     say whether it runs; exit 0 if it does, 3 if not
  bootstrap  print the bootstrap list (host:port,...)
  ctl        send a fault-injection command, e.g. 'ctl broker-down 2'
             ('saga-kafka-mock --help' lists them)

State lives in ${SAGA_RUN#"$SAGA_ROOT"/}/kafka; the program is taken from
\$SAGA_BUILD_DIR (default build/): build first with scripts/test.sh or cmake.
Limits: messages live in memory, about 5 MiB per partition (the oldest are
dropped past that), and the first consumer-group join takes about 3 s.
SAGA_KAFKA_MOCK_ARGS adds options to the program, e.g. --no-long-poll
(docs/internals/embedded-stack.md).
USAGE
}

dir=$SAGA_RUN/kafka
pidfile=$dir/pid
bsfile=$dir/bootstrap
ctlsock=$dir/control.sock
bin=$SAGA_BUILD_DIR/tools/kafka-mock/saga-kafka-mock

running_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  pid_alive "$pid" saga-kafka-mock || return 1
  echo "$pid"
}

do_start() {
  if running_pid >/dev/null && [ -s "$bsfile" ]; then
    cat "$bsfile"
    return 0
  fi
  [ -x "$bin" ] || die "$bin is not built (run scripts/test.sh, or cmake --build)"
  mkdir -p "$dir"
  rm -f "$pidfile" "$bsfile" "$ctlsock"
  # shellcheck disable=SC2086 # SAGA_KAFKA_MOCK_ARGS: words, on purpose
  setsid nohup "$bin" --brokers 3 --bootstrap-file "$bsfile" --control "$ctlsock" \
    ${SAGA_KAFKA_MOCK_ARGS:-} >"$dir/mock.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local i
  for i in $(seq 100); do
    [ -s "$bsfile" ] && break
    running_pid >/dev/null || { cat "$dir/mock.log" >&2; die "saga-kafka-mock exited"; }
    sleep 0.1
  done
  [ -s "$bsfile" ] || die "saga-kafka-mock wrote no bootstrap list in 10 s"
  say "Kafka (mock cluster) running on $(cat "$bsfile")"
  cat "$bsfile"
}

do_stop() {
  local pid i
  if ! pid=$(running_pid); then
    say "Kafka mock is not running"
    rm -f "$pidfile" "$bsfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    pid_alive "$pid" saga-kafka-mock || break
    sleep 0.1
  done
  pid_alive "$pid" saga-kafka-mock && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile" "$bsfile" "$ctlsock"
  say "Kafka mock stopped"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status)
    if running_pid >/dev/null; then
      echo "running: $(cat "$bsfile")"
    else
      echo "not running"
      exit 3
    fi ;;
  bootstrap)
    running_pid >/dev/null || die "Kafka mock is not running: run scripts/kafka.sh start"
    cat "$bsfile" ;;
  ctl)
    shift
    running_pid >/dev/null || die "Kafka mock is not running"
    exec "$bin" --send "$ctlsock" "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
