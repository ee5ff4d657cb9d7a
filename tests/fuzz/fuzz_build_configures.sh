#!/usr/bin/env bash
# The libFuzzer build that scripts/fuzz.sh makes (clang, -DSAGA_FUZZ=ON)
# configures and generates: its instrumented copies of the libraries take
# their sources from the libraries' own targets, where a product library's
# parts are generator expressions ($<TARGET_OBJECTS:...>), which a wrong
# path rule once turned into files that do not exist -- and scripts/fuzz.sh
# stopped at "cmake configure failed" for every target. Configure only: the
# suite's own runs replay the seeds (fuzz_*_seed_corpus_replays_...).
# Usage: fuzz_build_configures.sh SOURCE_DIR [CMAKE]
#        (exit 77: no clang, skipped)
set -euo pipefail
src=$1
cmake=${2:-cmake}
command -v clang >/dev/null || { echo "skipped: clang is not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if ! CC=clang "$cmake" -S "$src" -B "$dir" -DSAGA_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir/configure.log" 2>&1; then
  tail -n 20 "$dir/configure.log"
  echo "the fuzz build (CC=clang -DSAGA_FUZZ=ON) does not configure"
  exit 1
fi
names=$(sed -n 's/^set(fuzz_names \(.*\))$/\1/p' "$src/tests/fuzz/CMakeLists.txt")
[ -n "$names" ] || { echo "no fuzz_names in tests/fuzz/CMakeLists.txt"; exit 1; }
targets=$("$cmake" --build "$dir" --target help)
for t in $names; do
  grep -qw "fuzz_$t" <<<"$targets" || {
    echo "the fuzz build has no target fuzz_$t"
    exit 1
  }
done
echo "the fuzz build configures, with every fuzz target"
