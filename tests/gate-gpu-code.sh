#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: compile-time gates of the GPU decode code, so that CI without
# a GPU keeps the kernels honest. Compiles hip/hip_kernels_{f32,f16,bf16,
# e4m3,e5m2,int8}.hip (every head dim) with each device compiler found,
# SKIP for one absent:
#   NVIDIA (nvcc, sm_80 and sm_90): ptxas -v reports 0 spill bytes and a
#     0-byte stack frame for every decode kernel GPUs run (pkv_decode_gpu,
#     its unaligned twin, pkv_decode_merge, the plan-driven
#     pkv_decode_gpu_plan and its twin, pkv_decode_plan_merge); the PTX of
#     pkv_decode_gpu and pkv_decode_gpu_plan has shfl.sync, cp.async and a
#     128-bit global load (ld.global[.nc].v4), and no decode kernel has
#     ld.local;
#   the quantized dtypes (fp8 e4m3/e5m2, int8) on sm_90 only, the arch
#     with the hardware fp8 conversion: the same spill/stack/shfl/cp.async
#     and no-ld.local checks, and for fp8 cvt.rn.f16x2.e4m3x2 (e5m2x2) in
#     every pkv_decode_gpu; no 128-bit global load is required (their q is
#     read element by element in its own dtype, K/V come by cp.async);
#   AMD (hipcc, gfx90a and gfx940): private_segment_fixed_size 0 and LDS
#     that lets at least 4 waves share a CU (64 KiB of LDS per CU).
# PKV_GATE_DTYPES (default "f32 f16 bf16 e4m3 e5m2 int8") narrows the run.
# The gates compile the sources alone (no build output is read), so one run
# per checkout says it all: .ci/run sets PKV_GATES_RAN after its main
# make check, and the later builds of the same tree (ASan, modules,
# --disable-modules, distcheck) skip them instead of compiling again.
if [ -n "${PKV_GATES_RAN:-}" ]; then
  echo "1..0 # SKIP compile gates already run on this tree: $PKV_GATES_RAN"
  exit 0
fi
srcdir=${srcdir:-.}
top=$(cd "$srcdir" && pwd)
build=$(pwd)
NVCC=${NVCC:-}
[ -n "$NVCC" ] || NVCC=$(command -v nvcc 2>/dev/null)
[ -n "$NVCC" ] || { [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc; }
HIPCC=${HIPCC:-$(command -v hipcc 2>/dev/null)}
dtypes=${PKV_GATE_DTYPES:-"f32 f16 bf16 e4m3 e5m2 int8"}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-gate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
inc="-DHAVE_CONFIG_H -I$build -I$top -I$top/lib -I$top/kernels -I$top/hip"
n=0
fails=0
out=""
emit() { n=$((n + 1)); out="$out$1 $n - $2
"; [ "$1" = ok ] || fails=$((fails + 1)); }
skip() { n=$((n + 1)); out="${out}ok $n # SKIP $1
"; }

if [ -z "$NVCC" ]; then
  skip "nvcc not found: NVIDIA gates not run"
else
  for t in $dtypes; do
    case $t in
      e4m3|e5m2|int8) sms=90 ;;
      *) sms="80 90" ;;
    esac
    for sm in $sms; do
      d="$tmp/nv_${t}_$sm"
      mkdir -p "$d"
      if ! nice "$NVCC" -x cu -std=c++17 -O3 $inc -arch=sm_$sm -Xptxas -v \
          -keep -keep-dir "$d" -c "$top/hip/hip_kernels_$t.hip" \
          -o "$d/k.o" >"$d/log" 2>&1; then
        emit "not ok" "nvcc sm_$sm $t: compile failed"
        sed 's/^/# /' "$d/log" | head -20 >&2
        continue
      fi
      # ptxas -v: "Compiling entry function 'NAME'", then the properties.
      bad=$(awk '/Compiling entry function/ { f = $0; sub(/.*function .\047?/, "", f); sub(/\047.*/, "", f) }
                 /bytes stack frame/ && f ~ /^pkv_decode_(gpu|merge|plan_merge)/ {
                   if ($1 != 0 || $5 != 0 || $9 != 0) print f ": " $0 }' "$d/log")
      cnt=$(grep -c "Compiling entry function 'pkv_decode_gpu" "$d/log")
      if [ -z "$bad" ] && [ "$cnt" -gt 0 ]; then
        emit ok "sm_$sm $t: $cnt pkv_decode_gpu kernels, 0 spill bytes, 0 stack (ptxas -v)"
      else
        emit "not ok" "sm_$sm $t: spills or stack in decode kernels ($cnt found): $bad"
      fi
      ptx=$(ls "$d"/*.ptx 2>/dev/null | head -1)
      miss=""
      for e in $(grep -Eo '^\.visible \.entry pkv_decode_gpu(_plan)?_t[0-9]*_d[0-9]*' "$ptx" | awk '{print $3}'); do
        body=$(awk -v e="$e" '$0 ~ "\\.entry " e "\\(" {f=1} f {print} f && /^}/ {exit}' "$ptx")
        echo "$body" | grep -q 'shfl\.sync' || miss="$miss $e:shfl.sync"
        echo "$body" | grep -q 'cp\.async\.cg' || miss="$miss $e:cp.async"
        case $t in
          e4m3|e5m2)
            echo "$body" | grep -q "cvt\.rn\.f16x2\.${t}x2" || miss="$miss $e:cvt.${t}x2" ;;
          int8) ;;
          *) echo "$body" | grep -Eq 'ld\.global(\.nc)?\.v4' || miss="$miss $e:ld.global.v4" ;;
        esac
      done
      loc=$(awk '/\.entry pkv_decode_(gpu|merge|plan_merge)/ {f=1} f && /ld\.local/ {print; exit} /^}/ {f=0}' "$ptx")
      if [ -n "$ptx" ] && [ -z "$miss" ] && [ -z "$loc" ]; then
        case $t in
          e4m3|e5m2) what="shfl.sync, cp.async, cvt.rn.f16x2.${t}x2" ;;
          int8) what="shfl.sync, cp.async" ;;
          *) what="shfl.sync, cp.async, ld.global.v4" ;;
        esac
        emit ok "sm_$sm $t: decode PTX has $what; no ld.local"
      else
        emit "not ok" "sm_$sm $t: PTX check:${miss:- } ${loc:+ld.local found: $loc}"
      fi
    done
  done
fi

if [ -z "$HIPCC" ]; then
  skip "hipcc not found: AMD gates not run"
else
  for t in $dtypes; do
    for arch in gfx90a gfx940; do
      s="$tmp/amd_${t}_$arch.s"
      if ! nice "$HIPCC" -x hip -std=c++17 -O3 $inc --offload-arch=$arch \
          --cuda-device-only -S "$top/hip/hip_kernels_$t.hip" -o "$s" \
          >"$s.log" 2>&1; then
        emit "not ok" "hipcc $arch $t: compile failed"
        grep -v 'unused' "$s.log" | sed 's/^/# /' | head -20 >&2
        continue
      fi
      # Per kernel: LDS bytes, scratch bytes, and waves per block from the
      # work-group size the launcher uses (PKV_G_NT: launch bounds).
      res=$(awk '/^\t\.amdhsa_kernel pkv_decode_(gpu|merge|plan_merge)/ { k = $2 }
                 k && /amdhsa_group_segment_fixed_size/ { lds[k] = $2 }
                 k && /amdhsa_private_segment_fixed_size/ { priv[k] = $2 }
                 /\.end_amdhsa_kernel/ { k = "" }
                 END { for (x in lds) print x, lds[x], priv[x] }' "$s")
      cnt=$(echo "$res" | grep -c '^pkv_decode_gpu')
      bad=$(echo "$res" | awk '$3 != 0 { print $1 " scratch " $3 }
            $1 ~ /^pkv_decode_gpu/ && $2 > 0 && int(65536 / $2) * 2 < 4 { print $1 " LDS " $2 }')
      if [ -z "$bad" ] && [ "$cnt" -gt 0 ]; then
        lmax=$(echo "$res" | awk '$2 > m { m = $2 } END { print m }')
        emit ok "$arch $t: $cnt pkv_decode_gpu kernels, private_segment 0, LDS <= $lmax bytes (>= 4 waves/CU)"
      else
        emit "not ok" "$arch $t: $bad ($cnt kernels found)"
      fi
    done
  done
fi
echo "1..$n"
printf '%s' "$out"
[ "$fails" -eq 0 ]
