#!/usr/bin/env bash
# kcat, a Kafka client that knows nothing of this project, produces keyed
# messages to the mock cluster and reads them back in order.
set -euo pipefail
[ -n "${SAGA_KAFKA_BOOTSTRAP:-}" ] || { echo "skipped: SAGA_KAFKA_BOOTSTRAP unset"; exit 77; }
command -v kcat >/dev/null || { echo "kcat is not installed (scripts/deps.sh)"; exit 1; }
topic=kcat-roundtrip-$$-$RANDOM
for i in 1 2 3 4 5; do echo "saga-$i:payload $i"; done |
  kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -K: -X acks=all
got=$(kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -o beginning -e \
  -f '%k=%s\n' -q)
want=$(for i in 1 2 3 4 5; do echo "saga-$i=payload $i"; done)
if [ "$got" != "$want" ]; then
  printf 'expected:\n%s\ngot:\n%s\n' "$want" "$got"
  exit 1
fi
# The metadata lists the three brokers.
brokers=$(kcat -L -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" | grep -c 'broker [0-9]* at 127.0.0.1')
[ "$brokers" = 3 ] || { echo "expected 3 brokers on 127.0.0.1, got $brokers"; exit 1; }
echo "kcat round trip ok: 5 messages, 3 brokers"
