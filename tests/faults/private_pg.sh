#!/usr/bin/env bash
# A private PostgreSQL cluster for one fault test (tests/faults), so that
# restarting it, or filling its disk, touches no other test: initdb into DIR
# (as scripts/pg.sh does: the 'postgres' user when run as root, fsync on), a
# free port, a unix socket in DIR. Test-only.
#
# usage: private_pg.sh init DIR [TMPFS_MB]  create and start; print conninfo
#                                           (TMPFS_MB: DIR/data on a tmpfs of
#                                           that size; exit 77 if no mount)
#        private_pg.sh start DIR            start (after a stop)
#        private_pg.sh stop DIR [MODE]      pg_ctl stop -m MODE (fast)
#        private_pg.sh running DIR          exit 0 when the server runs
#        private_pg.sh destroy DIR          stop (immediate), unmount, rm -rf
set -euo pipefail

cmd=${1:?usage: private_pg.sh init|start|stop|running|destroy DIR}
dir=${2:?missing DIR}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 77; }
runas=()
if [ "$(id -u)" = 0 ]; then
  runas=(runuser -u postgres -- env -C /)
fi
data=$dir/data

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
    start >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
}

case "$cmd" in
  init)
    # Leftovers of a run killed before its teardown (a ctest timeout): the
    # clusters DIR's name had under another test process that is gone
    # (DIR is /tmp/saga-NAME-PID).
    for old in "${dir%-*}"-*; do
      [ -d "$old" ] && [ "$old" != "$dir" ] || continue
      pid=${old##*-}
      case $pid in '' | *[!0-9]*) continue ;; esac
      kill -0 "$pid" 2>/dev/null && continue
      echo "private_pg.sh: removing $old, left by process $pid" >&2
      "$0" destroy "$old" || true
    done
    mkdir -p "$dir"
    chmod 0755 "$dir"
    if [ -n "${3:-}" ]; then
      mkdir -p "$data"
      if ! mount -t tmpfs -o "size=${3}m,mode=0700" tmpfs "$data" 2>/dev/null; then
        echo "could not mount a ${3} MB tmpfs on $data (needs root)" >&2
        exit 77
      fi
    fi
    [ ${#runas[@]} -gt 0 ] && chown -R postgres: "$dir"
    "${runas[@]}" "$pgbin/initdb" -D "$data" -U saga -A trust -E UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    port=56432
    while ! port_free $port; do port=$((port + 1)); done
    echo $port >"$dir/port"
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 50
logging_collector = off
log_min_messages = warning
restart_after_crash = on
CONF
    start
    "${runas[@]}" "$pgbin/psql" -q -h "$dir" -p "$port" -U saga -d postgres \
      -c "CREATE DATABASE saga" >/dev/null
    echo "host=$dir port=$port user=saga dbname=saga"
    ;;
  start) start ;;
  stop)
    "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -w -t 60 -m "${3:-fast}" stop \
      >/dev/null
    ;;
  running)
    "${runas[@]}" "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1 ;;
  destroy)
    "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -w -t 60 -m immediate stop \
      >/dev/null 2>&1 || true
    if mountpoint -q "$data" 2>/dev/null; then
      umount "$data" || umount -l "$data"
    fi
    rm -rf "$dir"
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
