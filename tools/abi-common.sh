# SPDX-License-Identifier: Apache-2.0
# Shared by tools/abi-baseline.sh and tools/abi-check.sh (sourced, not run).

# abidw of a built libpagedkv.so, restricted to what lib/pagedkv.h declares:
# opaque handles stay declaration-only, so internal structs are not ABI.
#   abi_dump LIB.so HEADER OUT.abi
# abidw matches types to the header by the path the debug info records,
# which for an in-tree build is "lib/pagedkv.h" relative to the build tree:
# so LIB must be TREE/.libs/libpagedkv.so of an in-tree build with -g, and
# abidw runs from TREE. A dump whose public structs came out
# declaration-only is refused rather than compared: it would hide layout
# changes.
#   abi_dump LIB.so OUT.abi
abi_dump() {
  local lib tree
  lib=$(readlink -f "$1")
  tree=$(cd "$(dirname "$1")/.." && pwd)
  [ -f "$tree/lib/pagedkv.h" ] || {
    echo "abidw: $tree/lib/pagedkv.h not found: give the .libs/libpagedkv.so of an in-tree build" >&2
    return 1; }
  (cd "$tree" && abidw --header-file lib/pagedkv.h --drop-private-types \
     --no-corpus-path --out-file "$2" "$lib") || return 1
  if ! grep -q "<class-decl name='pkv_cache_desc' size-in-bits=" "$2"; then
    echo "abidw: $1 shows no layout of pkv_cache_desc: is it built with -g?" >&2
    return 1
  fi
}

# The pagedkv.h of the tree a library was built in.
abi_header_for() {
  echo "$(cd "$(dirname "$1")/.." && pwd)/lib/pagedkv.h"
}

# The soname of a shared library (libpagedkv.so.1).
abi_soname() {
  readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p'
}

# libtool's current:revision:age from the real file name of the library
# (libpagedkv.so.MAJOR.AGE.REVISION, MAJOR = current - age).
abi_version_info() {
  local real major age rev
  real=$(basename "$(readlink -f "$1")")
  IFS=. read -r _ _ major age rev <<<"$real"
  [ -n "$rev" ] || { echo "cannot read the version from $real" >&2; return 1; }
  echo "$((major + age)):$rev:$age"
}

# An abidiff suppression file for the API between the PKV_EXPERIMENTAL_BEGIN
# and PKV_EXPERIMENTAL_END markers of the header: outside the ABI promise
# (doc/ABI.md), so adding, changing or removing it is no ABI change.
#   abi_experimental_suppressions HEADER OUT
abi_experimental_suppressions() {
  : >"$2"
  # The markers are lines of their own: /* PKV_EXPERIMENTAL_BEGIN */
  awk '/^\/\* PKV_EXPERIMENTAL_BEGIN \*\/$/ {x = 1; next}
       /^\/\* PKV_EXPERIMENTAL_END \*\/$/ {x = 0} x' "$1" >"$2.src"
  grep -o 'pkv_[a-z0-9_]*[[:space:]]*(' "$2.src" | tr -d ' (' | sort -u |
    while read -r f; do printf '[suppress_function]\n  name = %s\n\n' "$f"; done >>"$2"
  grep -o '\(struct\|typedef struct\|enum\|typedef enum\)[[:space:]]\+pkv_[a-z0-9_]*' "$2.src" |
    awk '{print $NF}' | sort -u |
    while read -r t; do printf '[suppress_type]\n  name = %s\n\n' "$t"; done >>"$2"
  rm -f "$2.src"
}
