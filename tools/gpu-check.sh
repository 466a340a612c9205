#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# gpu-check.sh: the GPU acceptance run of issue 9 on one NVIDIA GPU (an
# H200), from prebuilt binaries, within 9 minutes; ends with one table.
#
#   tools/gpu-check.sh --pack BUILD DIR   (here) copy a --with-cuda build's
#                                         binaries and libraries into DIR
#   tools/gpu-check.sh [DIR]              (on the GPU machine) run the checks
#
# DIR (default gpu-bin) holds bin/ (pkv-conformance, pkv-bench, test_hip),
# lib/ (libpagedkv.so.0 and the libraries the GPU machine may lack, such
# as libxxhash) and lib/pagedkv/ (the backend-cuda.so module). doc/gpu-kernels.md gives the whole carry recipe.
# Steps, each under its own time limit (seconds):
#   test_hip (60), pkv-conformance --backend hip --full (150),
#   compute-sanitizer memcheck (60) and racecheck (60) on the decode grid,
#   pkv-bench (GPU rows: copy; 16x4k; 64x4k at pages 1, 16, 128; 1x128k)
#   (90), then GQA 8:1, MHA, 1x4k and 1x128k+63x1k (30 each),
#   tools/compare_torch.py (60), then the mma prefill against flash SDPA
#   (prefill 4096 over 0 and 16384, extend 512 over 16384; f16, bf16; 25
#   each).
# Results also go to $OUT (or DIR/out) as gpu-check.txt and per-step logs.
set -u

if [ "${1:-}" = "--pack" ]; then
  build=${2:?usage: gpu-check.sh --pack BUILD DIR}
  dir=${3:?usage: gpu-check.sh --pack BUILD DIR}
  mkdir -p "$dir/bin" "$dir/lib"
  for p in tools/pkv-conformance tools/pkv-bench tests/test_hip; do
    # libtool puts the real program in .libs/ when it links shared.
    b=$(basename "$p")
    if [ -x "$build/$(dirname "$p")/.libs/$b" ]; then
      cp "$build/$(dirname "$p")/.libs/$b" "$dir/bin/"
    elif [ -x "$build/$p" ]; then
      cp "$build/$p" "$dir/bin/"
    else
      echo "gpu-check: $build/$p not built (make; make check TESTS=)" >&2
      exit 1
    fi
  done
  cp -P "$build"/.libs/libpagedkv.so* "$dir/lib/"
  # The GPU backend is a loadable module (unless --disable-modules): the
  # run points PKV_BACKEND_PATH at DIR/lib/pagedkv.
  mkdir -p "$dir/lib/pagedkv"
  for m in "$build"/hip/cuda/.libs/backend-cuda.so "$build"/hip/amd/.libs/backend-hip.so; do
    [ -f "$m" ] && cp -L "$m" "$dir/lib/pagedkv/"
  done
  # Libraries outside the C runtime and the CUDA driver (libxxhash, the
  # CUDA runtime of the build): the GPU machine's image may lack them.
  ldd "$dir/lib/libpagedkv.so.0" "$dir"/lib/pagedkv/*.so 2>/dev/null |
    awk '/=> \// { print $3 }' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
    grep -v -E '/libcuda\.so' |
    while read -r l; do cp -L "$l" "$dir/lib/"; done
  cp "$(dirname "$0")/compare_torch.py" "$dir/bin/"
  echo "gpu-check: packed into $dir:"
  ls -l "$dir/bin" "$dir/lib"
  exit 0
fi

dir=${1:-gpu-bin}
bin="$dir/bin"
out=${OUT:-$dir/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKV_BACKEND_PATH="$(cd "$dir/lib/pagedkv" 2>/dev/null && pwd)"
table="$out/gpu-check.txt"
: >"$table"
t_start=$(date +%s)

# row NAME STATUS DETAIL SECONDS
row() { printf '| %-34s | %-9s | %-60s | %5s |\n' "$1" "$2" "$3" "$4" >>"$table"; }

# step LIMIT LOG CMD...: runs CMD under timeout, returns its status.
step() {
  lim=$1 log=$2
  shift 2
  s0=$(date +%s)
  timeout "$lim" "$@" >"$out/$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - s0))
  return $rc
}

# status of a TAP program: a SKIP (no GPU seen) fails this check too.
tap_status() {
  if [ "$1" != 0 ]; then echo "FAIL($1)"
  elif grep -q '^1\.\.0 # SKIP' "$2"; then echo "FAIL(skip)"
  else echo pass; fi
}

tap_summary() { # "N ok, M failed" from a TAP log
  awk '/^ok /{o++} /^not ok /{f++} /^1\.\.0 # SKIP/{s=1}
       END { if (s) print "SKIP"; else printf "%d ok, %d failed\n", o, f }' "$1"
}

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader >"$out/nvidia-smi.txt" 2>&1
else
  echo "no nvidia-smi" >"$out/nvidia-smi.txt"
fi

# 1. unit tests of the HIP backend
step 60 test_hip.log "$bin/test_hip"
row "test_hip" "$(tap_status $rc "$out/test_hip.log")" "$(tap_summary "$out/test_hip.log")" "$secs"

# 2. the whole conformance grid
step 150 conformance.log "$bin/pkv-conformance" --backend hip --full
row "pkv-conformance --backend hip --full" "$(tap_status $rc "$out/conformance.log")" "$(tap_summary "$out/conformance.log")" "$secs"

# 3. compute-sanitizer on the decode grid (GPU kernel) and test_hip
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck racecheck; do
  if [ -x "$cs" ]; then
    if step 60 "sanitizer-$tool.log" "$cs" --tool "$tool" --error-exitcode 3 \
        "$bin/pkv-conformance" --backend hip --decode-only; then
      st=pass
    else
      st="FAIL($rc)"
      [ "$rc" = 124 ] && st=TIMEOUT
    fi
    detail=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|not supported' "$out/sanitizer-$tool.log" | tail -1)
    row "compute-sanitizer $tool" "$st" "${detail:-see sanitizer-$tool.log}" "$secs"
  else
    row "compute-sanitizer $tool" "SKIP" "compute-sanitizer not found" 0
  fi
done

# 4. pkv-bench: every row against the copy bandwidth of the same run.
# bench NAME LIMIT ARGS...: adds one table row per "decode paged" row.
bench() {
  bname=$1 blim=$2
  shift 2
  if step "$blim" "bench-$bname.csv" "$bin/pkv-bench" --backend hip --csv "$@"; then
    awk -F, -v n="$bname" -v s="$secs" '
      $3 == "\"copy\"" { printf "| %-34s | %-9s | %-60s | %5s |\n", "bench " n ": copy", "-", sprintf("%.0f GB/s (read+write)", $7), s }
      $3 == "\"decode paged\"" {
        gsub(/"/, "", $4)
        printf "| %-34s | %-9s | %-60s | %5s |\n", "bench " n " " $4, "-", sprintf("%.3f ms, %.0f GB/s, %.0f%% of copy", $5, $7, 100 * $8), "" }' \
      "$out/bench-$bname.csv" >>"$table"
  else
    row "bench $bname" "FAIL($rc)" "$(tail -1 "$out/bench-$bname.csv" | cut -c1-60)" "$secs"
  fi
}
# GQA 4:1 (32 q / 8 kv heads, f16, d128): 16x4k p16, 64x4k at p1/16/128, 1x128k
bench gqa4 90
bench gqa8 30 --q-heads 64 --kv-heads 8 --batch 64 --ctx-len 4096 --page-size 16
bench mha 30 --q-heads 32 --kv-heads 32 --batch 64 --ctx-len 4096 --page-size 16
bench 1x4k 30 --batch 1 --ctx-len 4096 --page-size 16
bench skewed 30 --batch 64 --ctx-len 1024 --first-len 131072 --page-size 16

# 5. against PyTorch SDPA
if command -v python3 >/dev/null 2>&1; then
  if step 60 compare_torch.log python3 "$bin/compare_torch.py" \
      --lib "$dir/lib/libpagedkv.so.0"; then st=pass; else st="FAIL($rc)"; fi
  row "compare_torch.py" "$st" "$(tail -1 "$out/compare_torch.log" | cut -c1-60)" "$secs"
else
  row "compare_torch.py" "SKIP" "no python3" 0
fi

# 6. the matrix-unit prefill (issue 10): GQA 4:1, head dim 128, page 16,
# f16 and bf16: prefill 4096 over 0 and over 16384 cached tokens, extend
# 512 over 16384; TFLOP/s and the time against SDPA's flash backend.
if command -v python3 >/dev/null 2>&1; then
  for ty in f16 bf16; do
    for shape in 4096:0 4096:16384 512:16384; do
      p=${shape%%:*} c=${shape#*:}
      lg="mma-$ty-$p-$c.log"
      if step 25 "$lg" python3 "$bin/compare_torch.py" --lib "$dir/lib/libpagedkv.so.0" \
          --skip-decode --dtype "$ty" --heads 32 --kv-heads 8 --head-dim 128 \
          --prefill "$p" --context "$c" --iters 10 --flash; then st=pass; else st="FAIL($rc)"; fi
      row "mma prefill $ty $p over $c" "$st" \
        "$(grep 'TFLOP/s' "$out/$lg" | sed 's/.*: ours/ours/' | cut -c1-60)" "$secs"
    done
  done
fi

total=$(($(date +%s) - t_start))
{
  echo "gpu-check: $(cat "$out/nvidia-smi.txt" 2>/dev/null | head -1), $total s"
  printf '| %-34s | %-9s | %-60s | %5s |\n' step status result s
  printf '| %-34s | %-9s | %-60s | %5s |\n' --- --- --- ---
  cat "$table"
} >"$table.new" && mv "$table.new" "$table"
cat "$table"
! grep -q -E '\| (FAIL|TIMEOUT)' "$table"
