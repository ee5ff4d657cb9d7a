# Shared by the scripts in this folder: paths and small helpers.
# Sourced, never run. Keeps state under $SAGA_RUN (default .run/, ignored).

SAGA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAGA_RUN=${SAGA_RUN:-$SAGA_ROOT/.run}
SAGA_BUILD_DIR=${SAGA_BUILD_DIR:-$SAGA_ROOT/build}
case $SAGA_BUILD_DIR in /*) ;; *) SAGA_BUILD_DIR=$SAGA_ROOT/$SAGA_BUILD_DIR ;; esac
# Exported: the scripts a script runs (kafka.sh starts the mock of this
# build) use the build it chose, as bench.sh's build-release.
export SAGA_BUILD_DIR

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "$*"; exit 1; }

# pid_alive PID NAME: true when PID runs and its command line mentions NAME,
# so a recycled pid of another program is never taken for ours.
pid_alive() {
  local pid=$1 name=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  case $cmd in *"$name"*) return 0 ;; *) return 1 ;; esac
}

# configure_and_build: configure $SAGA_BUILD_DIR (once) and build it.
# SAGA_SANITIZE=1 adds ASan+UBSan; SAGA_CMAKE_ARGS passes more to cmake.
configure_and_build() {
  local args=()
  [ "${SAGA_SANITIZE:-0}" = 1 ] && args+=(-DSAGA_SANITIZE=ON)
  # shellcheck disable=SC2206
  [ -n "${SAGA_CMAKE_ARGS:-}" ] && args+=($SAGA_CMAKE_ARGS)
  say "building in ${SAGA_BUILD_DIR#"$SAGA_ROOT"/}"
  cmake -S "$SAGA_ROOT" -B "$SAGA_BUILD_DIR" "${args[@]}" >/dev/null ||
    die "cmake configure failed"
  cmake --build "$SAGA_BUILD_DIR" -j "$(nproc)" -- --no-print-directory \
    >"$SAGA_BUILD_DIR/build.log" 2>&1 || {
    tail -n 60 "$SAGA_BUILD_DIR/build.log" >&2
    die "build failed (full log: $SAGA_BUILD_DIR/build.log)"
  }
}

# start_stack: start the embedded PostgreSQL and Kafka unless they already
# run, export SAGA_PG_CONNINFO / SAGA_KAFKA_BOOTSTRAP / SAGA_KAFKA_CONTROL,
# and install a trap that stops, on exit or interrupt, only what it started.
started_pg=0
started_kafka=0
stop_stack() {
  local rc=$?
  trap - EXIT INT TERM
  [ "$started_kafka" = 1 ] && "$SAGA_ROOT/scripts/kafka.sh" stop || true
  [ "$started_pg" = 1 ] && "$SAGA_ROOT/scripts/pg.sh" stop || true
  started_pg=0 started_kafka=0
  return $rc
}
start_stack() {
  trap 'stop_stack; exit 130' INT
  trap 'stop_stack; exit 143' TERM
  trap 'stop_stack' EXIT
  if ! "$SAGA_ROOT/scripts/pg.sh" status >/dev/null 2>&1; then
    started_pg=1
  fi
  SAGA_PG_CONNINFO=$("$SAGA_ROOT/scripts/pg.sh" start) || die "could not start PostgreSQL"
  if ! "$SAGA_ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
    started_kafka=1
  fi
  SAGA_KAFKA_BOOTSTRAP=$("$SAGA_ROOT/scripts/kafka.sh" start) || die "could not start the Kafka mock"
  SAGA_KAFKA_CONTROL=$SAGA_RUN/kafka/control.sock
  export SAGA_PG_CONNINFO SAGA_KAFKA_BOOTSTRAP SAGA_KAFKA_CONTROL
}
