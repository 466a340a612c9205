#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: compile-time gates of the matrix-unit prefill
# (kernels/prefill_mma.cl on kernels/frag.h), so that CI without a GPU
# keeps it on the matrix units. Compiles the kernel, f16 and bf16, at head
# dims 64, 96, 128 and 256 (with today's SIMT pkv_prefill beside it, for
# the before/after numbers printed as TAP comments), SKIP for an absent
# compiler:
#   NVIDIA (nvcc, sm_90): every pkv_prefill_mma kernel's PTX has
#     mma.sync.aligned.m16n8k16 (f16 or bf16 as its dtype), ldmatrix and
#     cp.async.cg; ptxas -v reports 0 spill bytes and no stack at head
#     dims 64-128 (256 is reported, not gated);
#   AMD (hipcc, gfx90a and gfx940): every pkv_prefill_mma kernel has
#     v_mfma instructions and .amdhsa_private_segment_fixed_size 0.
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
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-gate-mma.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
inc="-DHAVE_CONFIG_H -I$build -I$top -I$top/lib -I$top/kernels -I$top/hip"
dims="64 96 128 256"
n=0
fails=0
out=""
emit() { n=$((n + 1)); out="$out$1 $n - $2
"; [ "$1" = ok ] || fails=$((fails + 1)); }
skip() { n=$((n + 1)); out="${out}ok $n # SKIP $1
"; }
note() { out="$out# $1
"; }

# One translation unit per dtype: the SIMT and the mma prefill at each dim,
# as hip/hip_kernels_inst.h instantiates them.
for t in 1 2; do
  f="$tmp/k$t.hip"
  {
    echo "#define PKV_DTYPE $t"
    echo '#include "hip_internal.h"'
    echo '#include "dialect.h"'
    echo '#include "tile.h"'
    echo '#include "frag.h"'
    echo '#define PKV_PF_BR 64'
    for d in $dims; do
      echo "#define PKV_HEAD_DIM $d"
      echo '#undef PKV_PF_BK'
      echo '#define PKV_PF_BK (4096 / PKV_HEAD_DIM > 64 ? 64 : 4096 / PKV_HEAD_DIM)'
      echo '#include "common.cl"'
      echo '#include "prefill.cl"'
      echo '#include "prefill_mma.cl"'
      echo '#undef PKV_HEAD_DIM'
    done
  } >"$f"
done

if [ -z "$NVCC" ]; then
  skip "nvcc not found: NVIDIA gates not run"
else
  for t in 1 2; do
    ty=$([ $t = 1 ] && echo f16 || echo bf16)
    d="$tmp/nv$t"
    mkdir -p "$d"
    if ! nice "$NVCC" -x cu -std=c++17 -O3 $inc -arch=sm_90 -Xptxas -v \
        -keep -keep-dir "$d" -c "$tmp/k$t.hip" -o "$d/k.o" >"$d/log" 2>&1; then
      emit "not ok" "nvcc sm_90 $ty: compile failed"
      sed 's/^/# /' "$d/log" | head -20 >&2
      continue
    fi
    # ptxas -v per entry: name, registers, spill stores, stack frame
    facts=$(awk '/Compiling entry function/ { f = $0; sub(/.*function .\047?/, "", f); sub(/\047.*/, "", f) }
                 /bytes stack frame/ { st[f] = $1; sp[f] = $5 }
                 /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) if ($i == "registers,") r[f] = $(i - 1) }
                 END { for (x in r) print x, r[x], sp[x], st[x] }' "$d/log" | sort)
    echo "$facts" | while read -r k r sp st; do
      [ -n "$k" ] && echo "sm_90 $k: $r registers, $sp spill bytes, $st stack bytes"
    done >"$d/facts"
    while read -r line; do note "$line"; done <"$d/facts"
    bad=$(echo "$facts" | awk '$1 ~ /^pkv_prefill_mma/ && $1 !~ /_d256$/ && ($3 != 0 || $4 != 0) { print $1 }')
    cnt=$(echo "$facts" | grep -c '^pkv_prefill_mma')
    if [ -z "$bad" ] && [ "$cnt" -eq 8 ]; then
      emit ok "sm_90 $ty: pkv_prefill_mma and pkv_prefill_mma_plan at head dims 64-128: 0 spill bytes, 0 stack (ptxas -v)"
    else
      emit "not ok" "sm_90 $ty: spills or stack in${bad:- (none)}; $cnt of 8 kernels found"
    fi
    ptx=$(ls "$d"/*.ptx 2>/dev/null | head -1)
    miss=""
    for e in $(grep -o '^\.visible \.entry pkv_prefill_mma\(_plan\)\?_t[0-9]*_d[0-9]*' "$ptx" | awk '{print $3}'); do
      body=$(awk -v e="$e" '$0 ~ "\\.entry " e "\\(" {f=1} f {print} f && /^}/ {exit}' "$ptx")
      echo "$body" | grep -q "mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.$ty\.$ty\.f32" || miss="$miss $e:mma.sync.m16n8k16.$ty"
      echo "$body" | grep -q 'ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16' || miss="$miss $e:ldmatrix"
      echo "$body" | grep -q 'ldmatrix\.sync\.aligned\.m8n8\.x4\.trans\.shared\.b16' || miss="$miss $e:ldmatrix.trans"
      echo "$body" | grep -q 'cp\.async\.cg' || miss="$miss $e:cp.async"
    done
    if [ -n "$ptx" ] && [ -z "$miss" ]; then
      emit ok "sm_90 $ty: pkv_prefill_mma(_plan) PTX has mma.sync.aligned.m16n8k16 ($ty), ldmatrix (.trans), cp.async.cg"
    else
      emit "not ok" "sm_90 $ty: PTX check:${miss:- no PTX}"
    fi
  done
fi

if [ -z "$HIPCC" ]; then
  skip "hipcc not found: AMD gates not run"
else
  for t in 1 2; do
    ty=$([ $t = 1 ] && echo f16 || echo bf16)
    for arch in gfx90a gfx940; do
      s="$tmp/amd${t}_$arch.s"
      if ! nice "$HIPCC" -x hip -std=c++17 -O3 $inc --offload-arch=$arch \
          --cuda-device-only -S "$tmp/k$t.hip" -o "$s" >"$s.log" 2>&1; then
        emit "not ok" "hipcc $arch $ty: compile failed"
        grep -v 'unused' "$s.log" | sed 's/^/# /' | head -20 >&2
        continue
      fi
      res=$(awk '/^pkv_prefill(_mma(_plan)?)?_t[0-9]+_d[0-9]+:/ { f = $1; sub(/:$/, "", f) }
                 f && /v_mfma/ { mf[f]++ }
                 /^\.Lfunc_end/ { f = "" }
                 /^\t\.amdhsa_kernel pkv_prefill/ { k = $2 }
                 k && /amdhsa_private_segment_fixed_size/ { priv[k] = $2 }
                 k && /amdhsa_next_free_vgpr/ { vg[k] = $2 }
                 k && /amdhsa_group_segment_fixed_size/ { lds[k] = $2 }
                 /\.end_amdhsa_kernel/ { k = "" }
                 END { for (x in priv) print x, mf[x] + 0, priv[x], vg[x], lds[x] }' "$s" | sort)
      echo "$res" | while read -r k mf pr vg lds; do
        [ -n "$k" ] && echo "$arch $k: $vg VGPRs, $pr bytes scratch, $lds bytes LDS, $mf v_mfma"
      done >"$s.facts"
      while read -r line; do note "$line"; done <"$s.facts"
      cnt=$(echo "$res" | grep -c '^pkv_prefill_mma')
      bad=$(echo "$res" | awk '$1 ~ /^pkv_prefill_mma/ && ($2 == 0 || $3 != 0) { print $1 " (" $2 " v_mfma, scratch " $3 ")" }')
      if [ -z "$bad" ] && [ "$cnt" -eq 8 ]; then
        emit ok "$arch $ty: 8 pkv_prefill_mma(_plan) kernels with v_mfma, private_segment_fixed_size 0"
      else
        emit "not ok" "$arch $ty: ${bad:-} ($cnt of 8 kernels found)"
      fi
    done
  done
fi
echo "1..$n"
printf '%s' "$out"
[ "$fails" -eq 0 ]
