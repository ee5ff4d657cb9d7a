#!/usr/bin/env bash
# clang-tidy (.clang-tidy) on the C files changed since the merge base with
# main, every finding an error. On main itself (CI) the base is the commit
# before HEAD, so a merge's files are checked. Needs a configured build
# ($SAGA_BUILD_DIR/compile_commands.json); files it does not compile (a
# build option left them out) are passed over with a note.
# Usage: scripts/tidy.sh [--all | BASE]
#   --all   every C file the build compiles (slow: about 30 min here)
#   BASE    a commit to compare against instead of the merge base
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
  -h|--help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0 ;;
esac

db=$SAGA_BUILD_DIR/compile_commands.json
[ -f "$db" ] || die "no $db: configure the build first (scripts/test.sh)"
command -v clang-tidy >/dev/null ||
  die "clang-tidy not found (Debian package clang-tidy; scripts/deps.sh)"
cd "$SAGA_ROOT"

# The C files of the tree the build compiles (absolute paths).
compiled=$(sed -n 's/^ *"file": "\(.*\.c\)",\{0,1\}$/\1/p' "$db" |
           grep -v "^$SAGA_BUILD_DIR/" | sort -u)

if [ "${1:-}" = --all ]; then
  files=$compiled
else
  base=${1:-}
  if [ -z "$base" ]; then
    main=$(git rev-parse -q --verify main || git rev-parse -q --verify origin/main) ||
      die "no branch main to compare with: name a BASE"
    base=$(git merge-base HEAD "$main")
    if [ "$base" = "$(git rev-parse HEAD)" ]; then
      base=$(git rev-parse -q --verify HEAD~1) || { say "no commit before HEAD: nothing to check"; exit 0; }
    fi
  fi
  changed=$( { git diff --name-only --diff-filter=AMR "$base" -- '*.c'
               git ls-files --others --exclude-standard -- '*.c'; } | sort -u)
  files=
  for f in $changed; do
    if grep -qxF "$SAGA_ROOT/$f" <<<"$compiled"; then
      files+="$SAGA_ROOT/$f"$'\n'
    else
      say "not compiled by this build, passed over: $f"
    fi
  done
fi
files=$(sed '/^$/d' <<<"$files")
if [ -z "$files" ]; then
  say "no C file to check"
  exit 0
fi
n=$(wc -l <<<"$files")
say "clang-tidy on $n file(s)"
start=$(date +%s)
rc=0
# One file a clang-tidy, its "N warnings generated" count (of what the
# configuration leaves out) dropped from the output.
# shellcheck disable=SC2016
xargs -P "$(nproc)" -n 1 bash -c '
  out=$(clang-tidy -p "$0" --quiet "$1" 2>&1) && rc=0 || rc=$?
  grep -v "^[0-9]* warnings\{0,1\} generated\.$" <<<"$out" || true
  exit $rc' "$SAGA_BUILD_DIR" <<<"$files" || rc=$?
say "clang-tidy took $(( $(date +%s) - start )) s"
[ "$rc" = 0 ] || die "clang-tidy found problems (above)"
