#!/usr/bin/env bash
# The embedded Kafka keeps a consumer's place for its group.instance.id, as
# a broker does with static membership: a consumer killed with -9 and
# started again under the same instance id comes back as the member it was
# (the same member id), instead of joining as a new member next to the dead
# one, which the group would wait for and might elect as its leader; and
# as it held the group alone and asks for what it had, it is let back at
# once, in the generation it had (no new election: librdkafka's mock alone
# would hold every rejoin for session.timeout.ms - 1000 and elect again).
# While
# the first one lives, a second consumer with the same instance id joins as
# a member of its own (the embedded Kafka does not fence), and the cluster
# goes on answering.
set -euo pipefail
[ -n "${SAGA_KAFKA_BOOTSTRAP:-}" ] || { echo "skipped: SAGA_KAFKA_BOOTSTRAP unset"; exit 77; }
command -v kcat >/dev/null || { echo "kcat is not installed (scripts/deps.sh)"; exit 1; }
topic=kafka-static-$$-$RANDOM
group=$topic-group
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
echo first | kcat -P -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" -p 0 -X acks=all

# consume NAME INSTANCE: a group consumer logging to $dir/NAME
consume() {
  kcat -C -b "$SAGA_KAFKA_BOOTSTRAP" -G "$group" -X group.instance.id="$2" \
    -X session.timeout.ms=4000 -X heartbeat.interval.ms=1000 -X debug=cgrp \
    "$topic" >/dev/null 2>"$dir/$1" &
  pids+=($!)
}
# generation NAME: the generation of its last JoinGroup answer
generation() {
  sed -n 's/.*JoinGroup response: GenerationId \([0-9-]*\),.*/\1/p' "$dir/$1" | tail -1
}
# member NAME: its member id once it has an assignment (30 s at most)
member() {
  for _ in $(seq 300); do
    if grep -q "SyncGroup response: Success ([1-9]" "$dir/$1"; then
      sed -n 's/.*my MemberId \([^,]*\),.*/\1/p' "$dir/$1" | tail -1
      return
    fi
    sleep 0.1
  done
  echo "consumer $1 got no assignment within 30 s:" >&2
  tail -5 "$dir/$1" >&2
  exit 1
}

consume a inst-1
first=$(member a)
kill -9 "${pids[0]}"
consume b inst-1
again=$(member b)
# kept WHAT BEFORE AFTER WHY: fail unless the restarted consumer's WHAT is
# the killed one's (and known)
kept() {
  [ -n "$2" ] && [ "$2" = "$3" ] && return
  echo "the restarted consumer has $1 '$3', not '$2': $4"
  exit 1
}
kept "member id" "$first" "$again" "the group keeps the dead member and waits for it"
echo "a consumer killed and restarted under its instance id came back as member $first"
kept generation "$(generation a)" "$(generation b)" "the group held it for a new election"
echo "it came back in the generation it had ($(generation b)), without a new election"

consume c inst-1
other=$(member c)
[ "$other" != "$again" ] || {
  echo "a second live consumer with the same instance id took member $again"
  exit 1
}
kcat -L -b "$SAGA_KAFKA_BOOTSTRAP" -t "$topic" >/dev/null
echo "a second live consumer with the same instance id joined as member $other"
