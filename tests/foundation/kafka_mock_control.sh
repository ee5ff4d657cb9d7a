#!/usr/bin/env bash
# The mock's control socket: a produce fails while errors are injected for
# the Produce API, and succeeds once they are cleared; an error pushed for
# one broker is counted until a produce to that broker takes it.
set -euo pipefail
mock=$1
[ -n "${SAGA_KAFKA_BOOTSTRAP:-}" ] && [ -S "${SAGA_KAFKA_CONTROL:-}" ] ||
  { echo "skipped: SAGA_KAFKA_CONTROL unset"; exit 77; }
ctl() { "$mock" --send "$SAGA_KAFKA_CONTROL" "$@"; }
ctl ping
topic=ctl-test-$$-$RANDOM
ctl topic-create "$topic" 1 3
# Unknown commands are refused with a reason and a non-zero exit.
if ctl no-such-command 2>/dev/null; then echo "unknown command accepted"; exit 1; fi
# 10 Produce errors of NOT_ENOUGH_REPLICAS (19), then no retries allowed.
# The partition's leader is broker 1, which this test never gives errors
# of its own: a broker that ever had some (broker 2, below, in an earlier
# run against the same mock) answers from its own list, empty, and never
# takes the cluster's.
ctl partition-leader "$topic" 0 1
ctl push-errors 0 19 10
if echo "x" | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 \
     -X message.send.max.retries=0 -X retries=0 2>/dev/null; then
  # kcat may exit 0 while reporting the delivery failure; check the topic.
  n=$(kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -o beginning -e -q | wc -l)
  [ "$n" = 0 ] || { echo "produce succeeded despite injected errors"; exit 1; }
fi
ctl clear-errors 0
echo "y" | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0
n=$(kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -o beginning -e -q | wc -l)
[ "$n" = 1 ] || { echo "expected 1 message after clearing errors, got $n"; exit 1; }
# Errors for one broker: counted, and taken by the next request to it.
ctl partition-leader "$topic" 0 2
ctl broker-push-errors 2 0 19 1
left=$(ctl broker-errors-left 2 0 | head -n 1)
[ "$left" = 1 ] || { echo "expected 1 broker error left, got $left"; exit 1; }
echo "z" | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0
left=$(ctl broker-errors-left 2 0 | head -n 1)
[ "$left" = 0 ] || { echo "the produce did not take the broker error ($left left)"; exit 1; }
n=$(kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -o beginning -e -q | wc -l)
[ "$n" = 2 ] || { echo "expected 2 messages after a retried produce, got $n"; exit 1; }
# A group's coordinator set by hand; only group or transaction keys.
ctl coordinator-set group "ctl-group-$$" 2
if ctl coordinator-set nosuch "ctl-group-$$" 2 2>/dev/null; then
  echo "coordinator-set took a key type other than group or transaction"; exit 1
fi
# The clients' bootstrap list (the relay's ports), and the brokers' own
# ports past the relay: three of them, not the relay's, and a client reads
# the topic there too.
listed=$(ctl bootstrap | head -n 1)
[ "$listed" = "$SAGA_KAFKA_BOOTSTRAP" ] ||
  { echo "bootstrap answered '$listed', not '$SAGA_KAFKA_BOOTSTRAP'"; exit 1; }
direct=$(ctl bootstrap-direct | head -n 1)
[ "$(tr ',' '\n' <<<"$direct" | grep -c '^127\.0\.0\.1:[0-9]*$')" = 3 ] ||
  { echo "bootstrap-direct answered '$direct'"; exit 1; }
[ "$direct" != "$SAGA_KAFKA_BOOTSTRAP" ] ||
  { echo "bootstrap-direct names the relay's ports"; exit 1; }
n=$(kcat -C -b "$direct" -t "$topic" -p 0 -o beginning -e -q | wc -l)
[ "$n" = 2 ] || { echo "expected 2 messages through the direct ports, got $n"; exit 1; }
echo "control socket ok"
