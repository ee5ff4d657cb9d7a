#!/usr/bin/env bash
# The embedded PostgreSQL: a private cluster for development, tests and the
# demo. Created on first use (initdb) under .run/pg, listening on a unix
# socket there and on 127.0.0.1, fsync and synchronous_commit on.
# When invoked as root the server runs as the 'postgres' user.
#
# Usage: scripts/pg.sh start|stop|status|conninfo|psql [ARGS...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
usage: scripts/pg.sh start|stop|status|conninfo|psql [ARGS...]

  start     create the cluster on first use, then start it (no-op if running)
  stop      stop the cluster started from this tree (no-op if not running)
  status    say whether it runs; exit 0 if it does, 3 if not
  conninfo  print the libpq conninfo string
  psql      run psql against it with ARGS

State lives in ${SAGA_RUN#"$SAGA_ROOT"/}/pg (override the root with SAGA_RUN).
USAGE
}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] ||
  die "PostgreSQL server binaries not found (run scripts/deps.sh)"

runas=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (run scripts/deps.sh)"
  runas=(runuser -u postgres -- env -C /)
fi

# The cluster lives in .run/pg, unless the server user cannot reach the
# project folder (e.g. a clone under a 0700 home or mktemp dir): then in a
# folder under /var/tmp named after the tree, linked from .run/pg.
pg_home() {
  local home=$SAGA_RUN/pg
  if [ -L "$home" ] || [ -d "$home" ]; then
    echo "$home"
    return
  fi
  mkdir -p "$SAGA_RUN"
  if [ ${#runas[@]} -gt 0 ] && ! "${runas[@]}" test -x "$SAGA_RUN"; then
    local alt
    alt=/var/tmp/saga-pg-$(printf '%s' "$SAGA_ROOT" | md5sum | cut -c1-12)
    mkdir -p "$alt"
    ln -sfn "$alt" "$home"
  else
    mkdir -p "$home"
  fi
  echo "$home"
}

# Resolved, so the server user never walks through the project folder.
home=$(readlink -f "$(pg_home)")
data=$home/data
[ ${#runas[@]} -gt 0 ] && chown postgres: "$home"
sock=$home

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

conninfo() {
  echo "host=$sock port=$(cat "$home/port") user=saga dbname=saga"
}

# The postmaster's pid, if it is alive (a zombie or a recycled pid of
# another program does not count).
server_pid() {
  local pid
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 1
  pid_alive "$pid" postgres || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

is_running() { server_pid >/dev/null; }

do_init() {
  say "creating PostgreSQL cluster in $data"
  "${runas[@]}" "$pgbin/initdb" -D "$data" -U saga -A trust -E UTF8 \
    --locale=C.UTF-8 >"$home/initdb.log" 2>&1 || {
    cat "$home/initdb.log" >&2
    die "initdb failed"
  }
  local port=55432
  while ! port_free $port; do port=$((port + 1)); done
  echo $port >"$home/port"
  cat >>"$data/postgresql.conf" <<CONF

# --- embedded cluster settings (scripts/pg.sh) ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
logging_collector = off
log_min_messages = warning
CONF
}

do_start() {
  if is_running; then
    conninfo
    return 0
  fi
  [ -f "$data/PG_VERSION" ] || do_init
  # The recorded port may have been taken by another program meanwhile
  # (another checkout's cluster, say): this private cluster moves to the
  # next free one; the conninfo it prints names the port in use.
  local port
  port=$(cat "$home/port")
  if ! port_free "$port"; then
    local was=$port
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port" >"$home/port"
    echo "port = $port" >>"$data/postgresql.conf"
    say "port $was on 127.0.0.1 is in use by another program: using $port"
  fi
  if [ -f "$data/postmaster.pid" ]; then
    # A killed postmaster can linger as a zombie for a moment; the server
    # would take its lock files for live ones, so wait until it is gone.
    local old i
    old=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    for i in $(seq 50); do
      [ -n "$old" ] && [ -d "/proc/$old" ] || break
      sleep 0.2
    done
    say "removing stale $data/postmaster.pid (server crashed or was killed)"
    rm -f "$data/postmaster.pid"
  fi
  "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 \
    start >/dev/null || {
    tail -n 20 "$home/server.log" >&2
    die "PostgreSQL did not start (log: $home/server.log)"
  }
  if [ ! -f "$home/db-created" ]; then
    "${runas[@]}" "$pgbin/psql" -q -h "$sock" -p "$port" -U saga -d postgres \
      -c "CREATE DATABASE saga" >/dev/null || die "could not create database saga"
    touch "$home/db-created"
  fi
  say "PostgreSQL running on 127.0.0.1:$port and $sock"
  conninfo
}

do_stop() {
  if ! is_running; then
    say "PostgreSQL is not running"
    return 0
  fi
  local pid
  pid=$(server_pid)
  "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -w -t 60 -m fast stop >/dev/null ||
    { say "fast stop failed; sending SIGKILL to $pid"; kill -9 "$pid" || true; }
  say "PostgreSQL stopped"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status)
    if is_running; then
      echo "running: $(conninfo)"
    else
      echo "not running"
      exit 3
    fi ;;
  conninfo)
    [ -f "$home/port" ] || die "no cluster yet: run scripts/pg.sh start"
    conninfo ;;
  psql)
    shift
    is_running || die "PostgreSQL is not running: run scripts/pg.sh start"
    exec psql "$(conninfo)" "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
