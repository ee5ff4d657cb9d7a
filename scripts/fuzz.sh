#!/usr/bin/env bash
# Fuzz the decode and parse entry points with libFuzzer (clang, ASan, UBSan).
# Usage: scripts/fuzz.sh [TARGET|all] [SECONDS]
#   TARGET   definition, codec, config, wire, eventstore, http, or all (default)
#   SECONDS  per target (default 30)
# Builds in build-fuzz (SAGA_FUZZ_BUILD_DIR) with clang and -DSAGA_FUZZ=ON,
# fuzzes each target into a scratch corpus seeded from tests/fuzz/corpus
# (build-fuzz/tests/fuzz/work/<target>/corpus; new inputs stay there). A
# crash (or a libFuzzer timeout or out-of-memory) stops that target: its
# input lands in .../artifacts/, the log's tail is printed, and the script
# goes on to the next target. It exits 1 when any target failed, else 0.
# Installs clang and libclang-rt-14-dev when missing (Debian).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

target=${1:-all}
seconds=${2:-30}
build=${SAGA_FUZZ_BUILD_DIR:-$SAGA_ROOT/build-fuzz}
case $build in /*) ;; *) build=$SAGA_ROOT/$build ;; esac
# the targets tests/fuzz/CMakeLists.txt builds (its fuzz_names), in order
read -r -a all <<<"$(sed -n 's/^set(fuzz_names \(.*\))$/\1/p' \
  "$SAGA_ROOT/tests/fuzz/CMakeLists.txt")"
[ ${#all[@]} -gt 0 ] || die "no fuzz_names in tests/fuzz/CMakeLists.txt"
if [ "$target" = all ]; then
  targets=("${all[@]}")
else
  case " ${all[*]} " in *" $target "*) ;; *) die "unknown target \"$target\" (one of: ${all[*]}, all)" ;; esac
  targets=("$target")
fi
case $seconds in '' | *[!0-9]*) die "SECONDS must be a whole number, got \"$seconds\"" ;; esac

need=()
command -v clang >/dev/null || need+=(clang)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" \
  >/dev/null || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null || die "apt-get update failed"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null || die "apt-get install failed for: ${need[*]}"
fi

say "building the fuzz targets in ${build#"$SAGA_ROOT"/}"
mkdir -p "$build"
CC=clang cmake -S "$SAGA_ROOT" -B "$build" -DSAGA_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || {
  tail -n 30 "$build/configure.log" >&2
  die "cmake configure failed"
}
cmake --build "$build" -j "$(nproc)" \
  --target "${targets[@]/#/fuzz_}" >"$build/build.log" 2>&1 || {
  tail -n 60 "$build/build.log" >&2
  die "build failed (full log: $build/build.log)"
}

status=0
for t in "${targets[@]}"; do
  work=$build/tests/fuzz/work/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  say "fuzzing $t for ${seconds}s (corpus ${work#"$SAGA_ROOT"/}/corpus)"
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" \
      "$work/corpus" "$SAGA_ROOT/tests/fuzz/corpus/$t" 2>"$work/fuzz.log"; then
    tail -n 40 "$work/fuzz.log" >&2
    say "$t: crash; reproduce with: $build/tests/fuzz/fuzz_$t $work/artifacts/<file>"
    status=1
    continue
  fi
  # The last status line and the final stats: runs, exec/s, coverage.
  grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$work/fuzz.log" | tail -n 1 >&2 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
    "$work/fuzz.log" >&2 || true
  say "$t: $(find "$work/corpus" -type f | wc -l) inputs in the working corpus"
done
exit $status
