#!/usr/bin/env bash
# The order example end to end: sagad, the inventory, payment and shipping
# services and a few dozen orders -- some declined at payment, some whose
# payment never answers, one withdrawn by its customer while its stock was
# being reserved (cancelled) -- then each saga's outcome, the histories of
# the slow order and the cancelled one, and the check of the services'
# ledgers. Run by scripts/demo.sh, which builds
# and starts PostgreSQL and Kafka first; on its own it needs
# SAGA_PG_CONNINFO and SAGA_KAFKA_BOOTSTRAP. Stops what it starts.
#
# Environment: DEMO_ORDERS (30), DEMO_DECLINED (a fifth of the orders),
# DEMO_SLOW, DEMO_OUT_OF_STOCK, DEMO_FLAKY (a tenth each: 6, 3, 3, 3 of
# 30), DEMO_CANCELLED (1), DEMO_DB
# (order_demo, recreated),
# DEMO_TIMEOUT_MS (40000, per order), SAGA_BUILD_DIR (build); DEMO_KEEP=1
# keeps the work folder with the logs; DEMO_PAYMENT=python runs the Python
# payment service (examples/order-saga/python/payment.py) instead of the C.
set -euo pipefail
. "$(cd "$(dirname "$0")/.." && pwd)/scripts/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

: "${SAGA_PG_CONNINFO:?not set: run scripts/demo.sh, or export it}"
: "${SAGA_KAFKA_BOOTSTRAP:?not set: run scripts/demo.sh, or export it}"
orders=${DEMO_ORDERS:-30}
db=${DEMO_DB:-order_demo}
[[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] ||
  die "DEMO_DB: \"$db\" is not a plain database name (lower-case letters, digits, _)"
case $SAGA_PG_CONNINFO in
  postgres://*|postgresql://*)
    die "SAGA_PG_CONNINFO: the demo adds dbname=$db to it, which a postgresql:// URI does not take: give it as key=value pairs (host=... port=... user=...)" ;;
esac
bin=$SAGA_BUILD_DIR/examples/order-saga
sagad=$SAGA_BUILD_DIR/bin/sagad
sagactl=$SAGA_BUILD_DIR/bin/sagactl
for p in "$sagad" "$sagactl" "$bin/order-inventory" "$bin/order-payment" \
         "$bin/order-shipping" "$bin/order-starter"; do
  [ -x "$p" ] || die "$p is not built (run scripts/demo.sh)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/order-demo.XXXXXX")
pids=()
stop_all() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${DEMO_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
    say "logs kept in $work"
  else
    rm -rf "$work"
  fi
  return "$rc"
}
# scripts/demo.sh stops the stack from its own EXIT trap after this script
# returns; this one stops only the processes started here, by pid.
trap 'stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section() { printf '\n== %s\n' "$*"; }

# One database for the coordinator's events and the services' ledgers (each
# in its own schema), recreated so the ledger check sees this run only.
# Topics and groups get a fresh prefix: the Kafka mock may outlive a run.
pg() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
pg "$SAGA_PG_CONNINFO" -c "DROP DATABASE IF EXISTS $db" \
   -c "CREATE DATABASE $db" >/dev/null ||
  die "could not recreate database $db (the error is above)"
conninfo="$SAGA_PG_CONNINFO dbname=$db"
ns=demo$(date +%s)
mkdir -p "$work/definitions"
sed "s/\"topic\": \"\([a-z.]*\)\"/\"topic\": \"$ns.\1\"/" \
  "$SAGA_ROOT/examples/order-saga/demo/order.v1.json" \
  > "$work/definitions/order.v1.json"

# A free port for sagad's admin endpoint (nothing answers on it yet).
admin_port=
for _ in $(seq 50); do
  p=$(( 20000 + RANDOM % 40000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    admin_port=$p
    break
  fi
done
[ -n "$admin_port" ] || die "no free port for the admin endpoint"

section "starting sagad and the three services (logs in $work)"
kafka_low_latency=(-X fetch.wait.max.ms=5 -X session.timeout.ms=6000)
"$sagad" --set "store.conninfo=$conninfo" \
  --set "kafka.bootstrap.servers=$SAGA_KAFKA_BOOTSTRAP" \
  --set "definitions.dir=$work/definitions" \
  --set "topic.inbox=$ns.saga.inbox" \
  --set "topic.notifications=$ns.saga.notifications" \
  --set "topic.dlq=$ns.saga.dlq" \
  --set "group.id=$ns.sagad" \
  --set "admin.listen=127.0.0.1:$admin_port" \
  --set "log.format=text" \
  --set "kafka.fetch.wait.max.ms=5" \
  --set "kafka.session.timeout.ms=6000" \
  --set "kafka.auto.offset.reset=earliest" \
  >"$work/sagad.log" 2>&1 &
pids+=($!)
say "sagad pid $!"
for svc in inventory payment shipping; do
  prog=("$bin/order-$svc")
  if [ "$svc" = payment ] && [ "${DEMO_PAYMENT:-c}" = python ]; then
    [ -f "$SAGA_BUILD_DIR/python/saga_client/saga_pb2.py" ] ||
      die "the Python client is not built in $SAGA_BUILD_DIR/python (run scripts/demo.sh)"
    prog=(env "PYTHONPATH=$SAGA_BUILD_DIR/python" /usr/bin/python3
          "$SAGA_ROOT/examples/order-saga/python/payment.py")
  fi
  "${prog[@]}" --conninfo "$conninfo" --topic "$ns.$svc.commands" \
    --group "$ns.$svc" "${kafka_low_latency[@]}" >"$work/$svc.log" 2>&1 &
  pids+=($!)
  say "order-$svc pid $!"
done
sleep 1
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || {
    tail -n 20 "$work"/*.log >&2
    die "a process stopped at start (pid $pid)"
  }
done

# One order through every service first: once it completes, sagad and the
# three services have joined their consumer groups (the Kafka mock takes
# about 3 s per first join), so the timings below are the steady state.
section "warming up: one order through every service"
starter=("$bin/order-starter" --inbox "$ns.saga.inbox"
         --notifications "$ns.saga.notifications" "${kafka_low_latency[@]}")
"${starter[@]}" --count 1 --declined 0 --slow 0 --out-of-stock 0 --flaky 0 \
  --timeout 30s --results "$work/warmup.tsv" ||
  die "the warm-up order did not complete"

section "running $orders orders"
started=$(date +%s)
rc=0
# the special orders not set are order-starter's shares of the count
mix=()
[ -z "${DEMO_DECLINED:-}" ] || mix+=(--declined "$DEMO_DECLINED")
[ -z "${DEMO_SLOW:-}" ] || mix+=(--slow "$DEMO_SLOW")
[ -z "${DEMO_OUT_OF_STOCK:-}" ] || mix+=(--out-of-stock "$DEMO_OUT_OF_STOCK")
[ -z "${DEMO_FLAKY:-}" ] || mix+=(--flaky "$DEMO_FLAKY")
"${starter[@]}" --count "$orders" "${mix[@]}" \
  --cancelled "${DEMO_CANCELLED:-1}" \
  --timeout "${DEMO_TIMEOUT_MS:-40000}ms" \
  --results "$work/results.tsv" || rc=$?
[ -s "$work/results.tsv" ] ||
  die "order-starter ran no order (exit status $rc; its message is above)"
say "orders done in $(( $(date +%s) - started )) s"

# The most eventful saga: a payment that never answered, timed out twice,
# then was refunded and the stock released; and the cancelled order: who
# cancelled it and why, the reservation's deadline waited out, the stock
# released.
sagas=$(awk -F'\t' '$3 == "slow" { print $1; exit }' "$work/results.tsv")
[ -n "$sagas" ] || sagas=$(awk -F'\t' '{ print $1; exit }' "$work/results.tsv")
sagas="$sagas $(awk -F'\t' '$3 == "cancelled" { print $1; exit }' "$work/results.tsv")"
for saga in $sagas; do
  section "history of $saga"
  "$sagactl" history "$saga" --pg "$conninfo" \
    --definitions "$work/definitions" ||
    say "sagactl history failed"
done

section "ledgers"
pg "$conninfo" <<'SQL'
SELECT service, action, effect, count(*) FROM (
  SELECT 'inventory' AS service, action, effect FROM inventory.ledger
  UNION ALL SELECT 'payment', action, effect FROM payment.ledger
  UNION ALL SELECT 'shipping', action, effect FROM shipping.ledger) t
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SQL
section "ledger check (no rows = every effect applied once, every compensated effect undone once)"
problems=$(
  {
    echo "CREATE TEMP TABLE order_run (saga_id text, order_id text, scenario text,"
    echo "  expected text, outcome text, ms bigint);"
    echo "\\copy order_run FROM '$work/warmup.tsv'"
    echo "\\copy order_run FROM '$work/results.tsv'"
    cat "$SAGA_ROOT/examples/order-saga/ledger-check.sql"
  } | pg "$conninfo" -A -t -F ' | '
) || die "the ledger check could not run"
if [ -n "$problems" ]; then
  printf '%s\n' "$problems"
  say "ledger check: $(printf '%s\n' "$problems" | wc -l) problem(s)"
  rc=1
else
  echo "(no rows) -- consistent"
fi
[ "$rc" = 0 ] || say "some orders did not end as expected; logs in $work"
exit "$rc"
