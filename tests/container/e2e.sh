#!/usr/bin/env bash
# End to end through the container image: the sagad image built by
# scripts/container.sh runs against the embedded PostgreSQL and Kafka mock
# on 127.0.0.1 (--network=host), as an unprivileged user.
#
#   e2e.sh lifecycle [BIN_DIR]   migrate a fresh database with the image's
#       sagad --migrate, run its saga-es-migrate and saga-es-archive, start sagad, probe it, SIGTERM: exit 0, "stopped"
#   e2e.sh sagas BIN_DIR         the same, plus the order example's three
#       participants and order-starter (host programs from BIN_DIR): orders
#       complete and compensate through the containerized coordinator
#
# Opt-in: runs only with SAGA_CONTAINER_TESTS=1 (root, podman, the Debian
# mirror; see docs/deploy.md), and skips (77) saying why when podman cannot
# run. Removes every container it started, stops every process it started
# and drops its database, also on failure.
. "$(dirname "$0")/lib.sh"
mode=${1:-lifecycle}
bin_dir=${2:-${SAGA_BUILD_DIR:-$root/build}/examples/order-saga}

ct_test_init ct
image=${SAGA_IMAGE:-localhost/saga/sagad:dev}
containers=() pids=()
ct_cleanup_more() {
  local c p
  for c in "${containers[@]}"; do ct podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
ct_fresh_db

# The migration Job's command, from the image.
out=$(ct podman run --rm --network=host --no-healthcheck --entrypoint /usr/bin/sagad \
      -e SAGAD_STORE_CONNINFO="$conninfo" "$image" --migrate 2>&1) || fail "sagad --migrate in the image: $out"
grep -q 'schema up to date: event store version [1-9]' <<<"$out" || fail "sagad --migrate said: $out"
# The event store's own migration program is in the image and loads.
out=$(ct podman run --rm --network=host --no-healthcheck --entrypoint /usr/bin/saga-es-migrate \
      "$image" --version 2>&1) || fail "saga-es-migrate in the image: $out"
grep -q '^saga-es-migrate [0-9]' <<<"$out" || fail "saga-es-migrate --version said: $out"
# The retention program is in the image and loads (zlib among its libraries).
out=$(ct podman run --rm --network=host --no-healthcheck --entrypoint /usr/bin/saga-es-archive \
      "$image" --version 2>&1) || fail "saga-es-archive in the image: $out"
grep -q '^saga-es-archive [0-9]' <<<"$out" || fail "saga-es-archive --version said: $out"

# Definitions with this run's command topics, readable by the image's user.
mkdir -p "$work/defs"
sed -e "s/\"\\([a-z]*\\)\\.commands\"/\"$id.\\1.commands\"/g" \
  "$root/examples/order-saga/demo/order.v1.json" >"$work/defs/order.v1.json"
chmod 755 "$work" "$work/defs"
chmod 644 "$work/defs/order.v1.json"
admin_port=$(free_port)

name=saga-$id
containers+=("$name")
ct podman run -d --name "$name" --network=host --health-interval=disable \
  -v "$work/defs:/etc/sagad/definitions:ro" \
  -e SAGAD_STORE_CONNINFO="$conninfo" \
  -e SAGAD_KAFKA_BOOTSTRAP_SERVERS="$SAGA_KAFKA_BOOTSTRAP" \
  -e SAGAD_TOPIC_INBOX="$id.inbox" \
  -e SAGAD_TOPIC_NOTIFICATIONS="$id.notifications" \
  -e SAGAD_TOPIC_DLQ="$id.dlq" \
  -e SAGAD_GROUP_ID="$id.sagad" \
  -e SAGAD_ADMIN_LISTEN="127.0.0.1:$admin_port" \
  -e SAGAD_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS=1000 \
  "$image" >/dev/null 2>"$work/podman-run.log" || fail "podman run: $(cat "$work/podman-run.log")"

state() { ct podman inspect --format "{{$1}}" "$name"; }
# Running, as the image's user (read from the kernel, not from podman).
deadline=$((SECONDS + 20 * scale))
until [ "$(state .State.Status)" = running ] && ct podman logs "$name" 2>&1 | grep 'loaded [0-9]* saga definitions' >/dev/null; do
  [ "$(state .State.Status)" = exited ] && { ct podman logs "$name" >"$work/sagad.log" 2>&1; fail "sagad exited at start"; }
  [ $SECONDS -lt $deadline ] || fail "sagad did not start"
  sleep 0.2
done
pid=$(state .State.Pid)
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "sagad runs as uid $uid, not 65532"
ct podman healthcheck run "$name" >/dev/null || fail "the image's health check failed"
echo "ok: sagad runs in $image as uid $uid, migrated store, health check passes"

if [ "$mode" = sagas ]; then
  for svc in inventory payment shipping starter; do
    [ -x "$bin_dir/order-$svc" ] || fail "no $bin_dir/order-$svc (build the examples)"
  done
  for svc in inventory payment shipping; do
    "$bin_dir/order-$svc" -b "$SAGA_KAFKA_BOOTSTRAP" -d "$conninfo" \
      -t "$id.$svc.commands" -g "$id.$svc" -s "$svc" >"$work/$svc.log" 2>&1 &
    pids+=($!)
  done
  # 10 orders: 4 plain and 1 flaky shipment (retried forward) complete;
  # 2 declined cards, 1 payment that never answers and 2 out of stock
  # compensate. order-starter checks each outcome against its scenario.
  "$bin_dir/order-starter" -b "$SAGA_KAFKA_BOOTSTRAP" --inbox "$id.inbox" \
    --notifications "$id.notifications" -n 10 --declined 2 --slow 1 \
    --out-of-stock 2 --flaky 1 --seed 7 --timeout $((90000 * scale)) \
    -r "$work/results.tsv" >"$work/starter.log" 2>&1 ||
    fail "order-starter: sagas did not all end as expected"
  completed=$(awk -F'\t' 'toupper($4) == "COMPLETED"' "$work/results.tsv" | wc -l)
  compensated=$(awk -F'\t' 'toupper($4) == "COMPENSATED"' "$work/results.tsv" | wc -l)
  [ "$completed" = 5 ] && [ "$compensated" = 5 ] ||
    fail "expected 5 completed and 5 compensated, got $completed and $compensated"
  echo "ok: 10 orders through the container: $completed completed, $compensated compensated"
fi

# SIGTERM: a graceful stop, exit status 0, within the shutdown bound.
ct podman kill --signal TERM "$name" >/dev/null
status=$(timeout $((30 * scale)) "$root/scripts/container.sh" podman wait "$name") ||
  fail "sagad did not stop within $((30 * scale)) s of SIGTERM"
ct podman logs "$name" >"$work/sagad.log" 2>&1
[ "$status" = 0 ] || fail "sagad exited with status $status after SIGTERM"
grep -q '"msg":"stopped"' "$work/sagad.log" || fail "sagad did not log its stop"
echo "ok: SIGTERM stopped sagad cleanly (exit 0)"
