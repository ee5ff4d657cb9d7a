#!/usr/bin/env bash
# The shared library exports exactly the functions of its public header:
# compares the dynamic symbols it defines with the list beside this script
# and names every unexpected or missing one.
# Usage: check_symbols.sh LIBRARY.so EXPECTED_LIST
set -euo pipefail
lib=$1 expected=$2
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sort -u)
want=$(grep -v '^#' "$expected" | sed '/^$/d' | sort -u)
extra=$(comm -23 <(echo "$actual") <(echo "$want"))
missing=$(comm -13 <(echo "$actual") <(echo "$want"))
rc=0
if [ -n "$extra" ]; then
  echo "unexpected symbols exported by ${lib##*/} (not in ${expected##*/}):" >&2
  echo "$extra" | sed 's/^/  /' >&2
  rc=1
fi
if [ -n "$missing" ]; then
  echo "symbols of ${expected##*/} that ${lib##*/} does not export:" >&2
  echo "$missing" | sed 's/^/  /' >&2
  rc=1
fi
[ $rc = 0 ] && echo "${lib##*/}: $(echo "$actual" | wc -l) symbols, as listed"
exit $rc
