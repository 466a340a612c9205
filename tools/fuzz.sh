#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Coverage-guided fuzzing of the public API (tests/fuzz/fuzz_api.c) with
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, on the CPU
# backend. Builds the harness straight from the library sources with clang
# (no configure needed), then fuzzes for SECONDS (default 600), starting
# from the seed corpus tests/fuzz/corpus and growing a work corpus in
# $PKV_FUZZ_DIR/corpus (default build-fuzz/). A failing input lands in
# $PKV_FUZZ_DIR/artifacts/; replay it with
#   build-fuzz/fuzz_api ARTIFACT          (libFuzzer build), or
#   PKV_FUZZ_TRACE=1 tests/fuzz/fuzz_replay ARTIFACT   (make check build).
#
#   tools/fuzz.sh [SECONDS] [libFuzzer options...]
# Extra options go to libFuzzer, e.g. -jobs=4 -workers=4. Inputs are used
# at full length (-len_control=0): long call sequences reach the states
# where features meet.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-600}
[ $# -gt 0 ] && shift
out=${PKV_FUZZ_DIR:-$top/build-fuzz}
cc=${PKV_FUZZ_CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz.sh: $cc not found (Debian: apt-get install clang)" >&2; exit 2; }
mkdir -p "$out/corpus" "$out/artifacts"

# The library with its CPU backend linked in (as --disable-modules builds
# it): every lib/ source but the module loader and module entry point.
srcs=()
for f in "$top"/lib/*.c "$top"/cpu/*.c; do
  case "$f" in */module_loader.c|*/module_entry.c) continue ;; esac
  srcs+=("$f")
done
"$cc" -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$top/lib" -I"$top/tests" \
  "$top"/tests/fuzz/fuzz_api.c "${srcs[@]}" \
  -o "$out/fuzz_api" -lxxhash -lm -lpthread

log="$out/fuzz.log"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64} \
  "$out/fuzz_api" -max_total_time="$secs" -timeout=20 -max_len=772 -len_control=0 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/" "$@" \
    "$out/corpus" "$top/tests/fuzz/corpus" 2>&1 | tee "$log" | grep -E '^(#[0-9]+ +(INITED|DONE|pulse)|fuzz_api:|==[0-9]+==ERROR|SUMMARY|stat::)'
rc=${PIPESTATUS[0]}
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
echo "fuzz.sh: ${execs:-?} executions in ${secs} s, ${cov:-cov: ?}, work corpus $(ls "$out/corpus" | wc -l) inputs, exit $rc"
if [ "$rc" -ne 0 ]; then
  echo "fuzz.sh: FAILED; input(s) in $out/artifacts/:" >&2
  ls -l "$out/artifacts/" >&2
fi
exit "$rc"
