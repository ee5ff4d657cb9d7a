#!/usr/bin/env bash
# The project as a user installs it: `cmake --install` into a temporary
# prefix, then a participant and a starter built outside the tree twice --
# with pkg-config and with find_package(Saga CONFIG) -- run against the
# embedded PostgreSQL and Kafka with the installed sagad, and each build's
# saga must complete.
# Usage: out_of_tree.sh BUILD_DIR SOURCE_DIR (ctest passes them); needs
# SAGA_PG_CONNINFO and SAGA_KAFKA_BOOTSTRAP; SAGA_SANITIZE=1 compiles the
# consumers with the sanitizers the installed libraries were built with.
set -euo pipefail
build=$1 src=$2
: "${SAGA_PG_CONNINFO:?not set: run through scripts/test.sh}"
: "${SAGA_KAFKA_BOOTSTRAP:?not set: run through scripts/test.sh}"
here=$src/tests/install
work=$(mktemp -d "${TMPDIR:-/tmp}/saga-install.XXXXXX")
prefix=$work/prefix
ns="oot$$$(date +%s%N | tail -c 7)"
db="saga_$ns"
pids=()
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done; exit 1; }
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$SAGA_PG_CONNINFO" -qXc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cflags=()
if [ "${SAGA_SANITIZE:-0}" = 1 ]; then
  cflags=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi

# 1. the installed tree
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  fail "cmake --install failed"
for f in bin/sagad bin/sagactl bin/saga-es-migrate bin/saga-es-archive \
         include/saga/client.h include/saga/protocol.h include/saga/eventstore.h \
         include/saga/version.h \
         lib/libsaga_client.a lib/libsaga_client.so.0 lib/libsaga_client.so \
         lib/libsaga_eventstore.a lib/libsaga_eventstore.so.0 \
         lib/pkgconfig/saga-client.pc lib/pkgconfig/saga-eventstore.pc \
         lib/cmake/Saga/SagaConfig.cmake lib/cmake/Saga/SagaConfigVersion.cmake \
         share/saga/schemas/saga-definition.schema.json \
         share/saga/sql/eventstore/0001_events.sql \
         lib/systemd/system/sagad.service \
         share/man/man8/sagad.8 share/man/man1/sagactl.1 \
         share/man/man8/saga-es-migrate.8 share/man/man8/saga-es-archive.8 \
         share/bash-completion/completions/sagactl; do
  [ -e "$prefix/$f" ] || fail "the install has no $f"
done
version=$(sed -n 's/^#define SAGA_VERSION "\(.*\)"/\1/p' "$prefix/include/saga/version.h")
for p in sagad sagactl saga-es-migrate saga-es-archive; do
  out=$("$prefix/bin/$p" --version) || fail "$p --version exited $?"
  [ "$out" = "$p $version" ] || [ "${out#"$p $version "}" != "$out" ] ||
    fail "$p --version printed '$out', not '$p $version'"
done
if command -v man >/dev/null; then
  MANPATH=$prefix/share/man man -P cat sagactl 2>/dev/null | grep -q "sagactl" ||
    fail "man sagactl shows nothing from the install prefix"
fi
# the completion completes: "sagactl hi<TAB>" -> history
got=$(bash -c '. "$1"; COMP_WORDS=(sagactl hi); COMP_CWORD=1; _sagactl;
               echo "${COMPREPLY[*]}"' _ "$prefix/share/bash-completion/completions/sagactl")
[ "$got" = history ] || fail "completion of 'sagactl hi' gave '$got', not 'history'"
got=$(bash -c '. "$1"; COMP_WORDS=(sagactl list --sta); COMP_CWORD=2; _sagactl;
               echo "${COMPREPLY[*]}"' _ "$prefix/share/bash-completion/completions/sagactl")
[ "$got" = --state ] || fail "completion of 'sagactl list --sta' gave '$got', not '--state'"
echo "installed tree complete, version $version"

# 2. a consumer built with pkg-config
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
mkdir -p "$work/pc"
for p in participant starter; do
  # shellcheck disable=SC2046
  cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Werror "${cflags[@]}" \
    "$here/consumer/hello_$p.c" -o "$work/pc/hello-$p" \
    $(pkg-config --cflags --libs saga-client) -Wl,-rpath,"$prefix/lib" \
    2>"$work/pc-build.log" || fail "pkg-config build of hello-$p failed"
done
# 3. the same consumer built with find_package(Saga CONFIG)
cmake -S "$here/consumer" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="${cflags[*]}" >"$work/cm-build.log" 2>&1 &&
  cmake --build "$work/cm" >>"$work/cm-build.log" 2>&1 ||
  fail "find_package build failed"
echo "consumers built with pkg-config and with find_package"

# 4. the installed sagad with a two-step saga on one topic
topic="$ns.hello.commands"
mkdir -p "$work/defs"
sed "s/TOPIC/$topic/g" "$here/hello.json" >"$work/defs/hello.json"
psql "$SAGA_PG_CONNINFO" -qXc "CREATE DATABASE \"$db\"" >/dev/null ||
  fail "could not create database $db"
conninfo="$SAGA_PG_CONNINFO dbname=$db"
"$prefix/bin/sagad" --store.conninfo="$conninfo" \
  --kafka.bootstrap.servers="$SAGA_KAFKA_BOOTSTRAP" \
  --topic.inbox="$ns.inbox" --topic.notifications="$ns.notifications" \
  --topic.dlq="$ns.dlq" --group.id="$ns.sagad" \
  --definitions.dir="$work/defs" --kafka.session.timeout.ms=6000 \
  --kafka.allow.auto.create.topics=true --admin.listen=127.0.0.1:0 \
  --log.format=text >"$work/sagad.log" 2>&1 &
sagad_pid=$!
pids+=("$sagad_pid")

run_one() { # BUILD_NAME SAGA_ID
  local dir=$1 id=$2 ppid
  kill -0 "$sagad_pid" 2>/dev/null || fail "the installed sagad exited"
  "$dir/hello-participant" "$SAGA_KAFKA_BOOTSTRAP" "$topic" "$ns.hello" \
    >"$work/participant-${dir##*/}.log" 2>&1 &
  ppid=$!
  pids+=("$ppid")
  "$dir/hello-starter" "$SAGA_KAFKA_BOOTSTRAP" "$ns.inbox" \
    "$ns.notifications" hello "$id" >"$work/starter-${dir##*/}.log" 2>&1 ||
    fail "the saga $id started by the ${dir##*/} build did not complete"
  grep -q "saga $id: COMPLETED" "$work/starter-${dir##*/}.log" ||
    fail "the ${dir##*/} starter did not report $id COMPLETED"
  kill -TERM "$ppid"
  wait "$ppid" || fail "hello-participant (${dir##*/}) exited $?"
  echo "saga $id completed with the ${dir##*/} build"
}
run_one "$work/pc" "$ns-pc"
run_one "$work/cm" "$ns-cm"
