#!/usr/bin/env bash
# The embedded Kafka answers a waiting fetch as soon as data arrives, as a
# broker does (the mock alone holds it for the fetch's whole
# fetch.wait.max.ms): a consumer waiting with a 30 s fetch wait gets a
# message produced while it waits within 10 s; produces to another topic
# do not wake it (each would cost it a fetch round trip). And the metadata
# names the brokers at the ports of the bootstrap list (the relay's, not
# the mock's).
set -euo pipefail
[ -n "${SAGA_KAFKA_BOOTSTRAP:-}" ] || { echo "skipped: SAGA_KAFKA_BOOTSTRAP unset"; exit 77; }
command -v kcat >/dev/null || { echo "kcat is not installed (scripts/deps.sh)"; exit 1; }
topic=kafka-long-poll-$$-$RANDOM
other=$topic-other
out=$(mktemp)
log=$(mktemp)
trap 'rm -f "$out" "$log"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
echo first | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -X acks=all
echo first | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$other" -p 0 -X acks=all
timeout 30 kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -o 1 -c 1 \
  -X fetch.wait.max.ms=30000 -X debug=protocol >"$out" 2>"$log" &
pid=$!
sleep 2 # its fetch is waiting now
fetches() { grep -c "Sent FetchRequest" "$log" || true; }
before=$(fetches)
for i in $(seq 10); do
  echo "other $i" | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$other" -p 0 -X acks=all
done
sleep 1
woken=$(( $(fetches) - before ))
[ "$woken" -le 2 ] || {
  echo "10 produces to another topic woke the waiting consumer $woken times:"
  echo "a held fetch goes on a produce to any topic, not only to its own"
  exit 1
}
echo "10 produces to another topic woke the waiting consumer $woken times"
start=$(date +%s%N)
echo second | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -X acks=all
for _ in $(seq 100); do
  [ -s "$out" ] && break
  sleep 0.1
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
got=$(cat "$out")
[ "$got" = second ] || {
  echo "the waiting consumer did not get the message within 10 s (got '$got'):"
  echo "the fetch was held for its whole fetch.wait.max.ms"
  exit 1
}
echo "a fetch waiting with fetch.wait.max.ms 30000 got the message ${ms} ms after it was produced"
want=$(tr ',' '\n' <<<"$SAGA_KAFKA_BOOTSTRAP" | sort)
listed=$(kcat -L -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" |
  sed -n 's/.*broker [0-9]* at \(127\.0\.0\.1:[0-9]*\).*/\1/p' | sort)
[ "$want" = "$listed" ] || {
  printf 'metadata names other brokers than the bootstrap list:\n%s\nagainst\n%s\n' \
    "$listed" "$want"
  exit 1
}
echo "metadata names the bootstrap list's ports"
