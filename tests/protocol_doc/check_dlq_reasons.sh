#!/bin/sh
# docs/protocol.md lists every dead-letter reason code, and only those: the
# table between the dlq-reason-codes markers must hold exactly the codes
# the code writes at the start of saga-dlq-reason.
#   sagad: "<class>: <text>", the class of every dead letter the engine
#          writes (coordinator/engine/engine.c: `why = "..."` and the
#          classes passed to dlq_write(); dead_letter.c writes the header).
#   participants: "<SAGA_E name>: <text>", the codes the decoder returns
#          for an input (saga__errf in protocol/wire.c), without
#          SAGA_EINVAL and SAGA_ENOMEM (a caller's bad argument, an
#          encoder out of memory: never an input's fault).
# And sagad's classes are the ones its dead-letter counter starts at 0.
# Usage: check_dlq_reasons.sh PROJECT_ROOT
set -eu
root=${1:?usage: check_dlq_reasons.sh PROJECT_ROOT}
doc=$root/docs/protocol.md
engine=$root/coordinator/engine/engine.c
dead_letter=$root/coordinator/engine/dead_letter.c
wire=$root/protocol/wire.c
participant=$root/client/participant.c
fail() { echo "check_dlq_reasons: $*" >&2; exit 1; }

# The header formats the lists rely on.
grep -q '"%s: %s", why, reason' "$dead_letter" ||
  fail "$dead_letter no longer writes saga-dlq-reason as \"<class>: <text>\""
grep -q '"%s: %s", saga_err_name(rc), err' "$participant" ||
  fail "$participant no longer writes saga-dlq-reason as \"<SAGA_E name>: <text>\""

doc_codes=$(sed -n '/<!-- dlq-reason-codes/,/<!-- \/dlq-reason-codes -->/p' \
              "$doc" | sed -n 's/^| `\([A-Za-z_]*\)` |.*/\1/p' | sort -u)
[ -n "$doc_codes" ] || fail "$doc: no dlq-reason-codes table found"

sagad_codes=$( { sed -n 's/^ *why = "\([a-z_]*\)";.*/\1/p' "$engine"
                 sed -n 's/.*dlq_write(e, m, [a-z]*, "\([a-z_]*\)");.*/\1/p' \
                   "$engine"; } | sort -u)
[ -n "$sagad_codes" ] || fail "$engine: no dead-letter class found"
part_codes=$(grep -o 'saga__errf(SAGA_E[A-Z]*' "$wire" |
               sed 's/saga__errf(//' |
               grep -v -x -e SAGA_EINVAL -e SAGA_ENOMEM | sort -u)
[ -n "$part_codes" ] || fail "$wire: no decoder error code found"
code_codes=$(printf '%s\n%s\n' "$sagad_codes" "$part_codes" | sort -u)

# Fails with what differs when lists $2 and $3 are not the same ($1 names
# them).
same() {
  [ "$2" = "$3" ] && return 0
  echo "$1:" >&2
  a=$(mktemp) b=$(mktemp)
  printf '%s\n' "$2" >"$a"
  printf '%s\n' "$3" >"$b"
  diff "$a" "$b" >&2 || true
  rm -f "$a" "$b"
  exit 1
}

same "dead-letter reason codes differ (< docs/protocol.md, > the code)" \
  "$doc_codes" "$code_codes"
# sagad exports saga_dead_letters_total{reason} at 0 for each of its
# classes from the start (coordinator/observe/observe.c, dlq_classes):
# the same classes, or a new one would raise no increase() alert at its
# first dead letter after a restart.
observe=$root/coordinator/observe/observe.c
metric_codes=$(sed -n '/dlq_classes\[\] = {/,/};/p' "$observe" |
                 grep -o '"[a-z_]*"' | tr -d '"' | sort -u)
[ -n "$metric_codes" ] || fail "$observe: no dlq_classes list found"
same "dead-letter classes differ (< observe.c dlq_classes, > engine.c)" \
  "$metric_codes" "$sagad_codes"
echo "dead-letter reason codes: $(echo $code_codes)"
