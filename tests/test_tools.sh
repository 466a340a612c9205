#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The tools as a user runs them: pkv-sim plays a short day on the CPU
# backend and must end with the pool whole, finite attention output, no
# refused high-class admission and one CSV row per step; pkv-sim and
# pkv-bench refuse bad options. TAP; run by `make check` from the top
# build directory.
set -u
top_builddir=$(pwd)
sim="$top_builddir/tools/pkv-sim"
bench="$top_builddir/tools/pkv-bench"
echo "1..9"
if [ ! -x "$sim" ] || [ ! -x "$bench" ]; then
  echo "Bail out! tools/pkv-sim or tools/pkv-bench not built in $top_builddir"
  exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-tools.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

"$sim" --backend cpu --quick --steps 40 --seed 3 --events --csv "$tmp/day.csv" \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 0 ]; then echo "ok 1 - pkv-sim --quick --steps 40 exits 0"
else
  echo "not ok 1 - pkv-sim exited $rc"
  sed 's/^/# /' "$tmp/err" "$tmp/out" | tail -n 30
fi
check() { # n, pattern, description
  if grep -Eq "$2" "$tmp/out"; then echo "ok $1 - $3"
  else echo "not ok $1 - $3"; sed 's/^/# /' "$tmp/out"; fi
}
check 2 '^pool whole after releasing everything.* yes$' "the pool is whole after releasing everything"
check 3 '^attention output finite +yes$' "the last attention output is finite"
check 4 '^high-class admissions refused \(target 0\) +0 \(requests 0\)' "no high-class admission refused"
steps=$(sed -n 's/.*; \([0-9][0-9]*\) steps in .*/\1/p' "$tmp/out")
rows=$(($(wc -l <"$tmp/day.csv") - 1))
if [ -n "$steps" ] && [ "$rows" -eq "$steps" ]; then
  echo "ok 5 - the CSV has one row per step ($rows)"
else
  echo "not ok 5 - the CSV has $rows rows for '${steps:-?}' steps"
fi
"$sim" --steps 0 >/dev/null 2>&1
rc=$?
if [ "$rc" -eq 2 ]; then echo "ok 6 - pkv-sim --steps 0 is refused (exit 2)"
else echo "not ok 6 - pkv-sim --steps 0 exited $rc, want 2"; fi
"$bench" --dtype f64 >/dev/null 2>&1
rc=$?
if [ "$rc" -eq 2 ]; then echo "ok 7 - pkv-bench --dtype f64 is refused (exit 2)"
else echo "not ok 7 - pkv-bench --dtype f64 exited $rc, want 2"; fi
check 8 '^KV events \(--events\) +[1-9][0-9]* stored' "--events: pages were stored (KV events)"
check 9 '^  a router replaying them holds the cache.s index +yes' "--events: stored - evicted = pages indexed, seqnos contiguous"
exit 0
