#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The exported interface: libpagedkv.so exports exactly the functions of
# pagedkv.h (no kernel handle, no pkv__ internal, on any vendor), each
# backend module exports exactly its entry point and needs nothing of
# libpagedkv, and in a module build libpagedkv.so needs no GPU runtime and
# no OpenCL loader. TAP output.
#
# Run by `make check` from the top build directory on the build tree, or by
# CI on an install tree: PKV_EXPORTS_LIB=<libpagedkv.so>
# PKV_EXPORTS_MODDIR=<pkglibdir>.
set -u
srcdir=${srcdir:-.}
header=$srcdir/lib/pagedkv.h
lib=${PKV_EXPORTS_LIB:-.libs/libpagedkv.so}
if [ -n "${PKV_EXPORTS_MODDIR:-}" ]; then
  modules=$(ls "$PKV_EXPORTS_MODDIR"/backend-*.so 2>/dev/null)
else
  modules=$(ls opencl/.libs/backend-opencl.so hip/amd/.libs/backend-hip.so \
    hip/cuda/.libs/backend-cuda.so 2>/dev/null)
fi

if ! command -v nm >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
  echo "1..0 # SKIP nm/readelf (binutils) not installed"; exit 0
fi
if [ ! -f "$lib" ]; then
  echo "1..0 # SKIP no shared library at $lib (static-only build)"; exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-exports.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

nmods=$(echo "$modules" | grep -c . )
# The UCX transfer module (issue 14): its entry point only; it links UCX
# and libpagedkv, libpagedkv links neither UCX nor it.
if [ -n "${PKV_EXPORTS_MODDIR:-}" ]; then
  xmod=$(ls "$PKV_EXPORTS_MODDIR"/transfer-ucx.so 2>/dev/null)
else
  xmod=$(ls net/.libs/transfer-ucx.so 2>/dev/null)
fi
nx=0; [ -n "$xmod" ] && nx=2
echo "1..$((5 + 3 * nmods + nx))"
n=0
report() { # cond description
  n=$((n + 1))
  if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
# defined dynamic symbols, without the version node itself (type A)
exports() { nm -D --defined-only "$1" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | LC_ALL=C sort -u; }

# Expected: the header's PKV_API functions, found independently of
# tools/gen-symbol-map.sh: the preprocessed header (comments gone, PKV_API
# expanded to its visibility attribute), one declaration per line.
mark='__attribute__((visibility("default")))'
${CPP:-cpp} -P "$header" 2>/dev/null | tr '\n' ' ' | tr ';' '\n' | grep -F "$mark" |
  sed 's/.*visibility("default")))//; s/(.*//' | awk '{ print $NF }' |
  sed 's/^\**//' | LC_ALL=C sort -u > "$tmp/want"
exports "$lib" > "$tmp/got"
nwant=$(wc -l < "$tmp/want"); ngot=$(wc -l < "$tmp/got")
echo "# $lib exports $ngot symbols; pagedkv.h declares $nwant functions"
[ "$nwant" -gt 40 ]; report $? "pagedkv.h declares $nwant functions"
diff "$tmp/want" "$tmp/got" > "$tmp/diff"; rc=$?
[ $rc = 0 ] || sed 's/^/#   /' "$tmp/diff" | head -40
report $rc "libpagedkv exports exactly the header's functions ($ngot)"

needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "# NEEDED: $needed"
if grep -q '^#define PKV_MODULES 1' config.h 2>/dev/null || [ -n "${PKV_EXPORTS_MODDIR:-}" ]; then
  echo "$needed" | grep -Eq 'OpenCL|amdhip|hsa-runtime|cudart|libcuda|stdc\+\+'
  [ $? != 0 ]; report $? "module build: libpagedkv needs no GPU runtime, OpenCL loader or C++ runtime"
else
  n=$((n + 1)); echo "ok $n # SKIP --disable-modules links the runtimes in"
fi
vers=$(nm -D --defined-only "$lib" | awk '$2 == "A" { print $3 }' | tr '\n' ' ')
[ -n "$vers" ]; report $? "exports carry a symbol version (${vers:-none})"

for m in $modules; do
  got=$(exports "$m" | tr '\n' ' ')
  [ "$got" = "pkv_backend_module_v1 " ]
  report $? "$(basename "$m") exports exactly pkv_backend_module_v1 (got: $got)"
  und=$(nm -D --undefined-only "$m" | awk '{ print $NF }' | grep '^pkv_' | tr '\n' ' ')
  [ -z "$und" ]; report $? "$(basename "$m") needs no libpagedkv symbol ($und)"
  mneed=$(readelf -d "$m" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "#   $(basename "$m") NEEDED: $mneed"
  echo "$mneed" | grep -q 'libpagedkv'
  [ $? != 0 ]; report $? "$(basename "$m") does not link libpagedkv"
done

echo "$needed" | grep -Eq 'libucp|libucs|libuct'
[ $? != 0 ]; report $? "libpagedkv does not link UCX (the transfer module does)"
if [ -n "$xmod" ]; then
  got=$(exports "$xmod" | tr '\n' ' ')
  [ "$got" = "pkv_xfer_module_v1 " ]
  report $? "transfer-ucx.so exports exactly pkv_xfer_module_v1 (got: $got)"
  xneed=$(readelf -d "$xmod" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')
  echo "#   transfer-ucx.so NEEDED: $xneed"
  echo "$xneed" | grep -q 'libucp' && echo "$xneed" | grep -q 'libpagedkv'
  report $? "transfer-ucx.so links libucp and libpagedkv (public API only)"
fi
