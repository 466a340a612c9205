#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the ABI baseline of the library, abi/<soname>.abi, and the
# libtool version-info it was taken at, abi/<soname>.version-info, from a
# -g -Og build of this checkout (its tracked and untracked, not ignored
# files). Run it when a release is made, or after API was added on purpose
# and -version-info bumped (doc/ABI.md):
#
#   tools/abi-baseline.sh                 # builds in a temporary directory
#   tools/abi-baseline.sh --lib TREE/.libs/libpagedkv.so  # an in-tree -g
#                                         # build already made
#
# Needs abigail-tools (abidw). Extra arguments after -- go to configure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/tools/abi-common.sh"
lib=
while [ $# -gt 0 ]; do
  case $1 in
    --lib) lib=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "abi-baseline.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v abidw >/dev/null || { echo "abidw not found: install abigail-tools" >&2; exit 1; }

tmp=
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
if [ -z "$lib" ]; then
  tmp=$(mktemp -d /tmp/pkv-abi.XXXXXX)
  echo "building a -g -Og library in $tmp"
  (cd "$top" && git ls-files -co --exclude-standard -z |
     tar --null -T - -cf - ) | tar -xf - -C "$tmp"
  (cd "$tmp" && autoreconf -fi >/dev/null 2>&1 &&
     ./configure -q --disable-static CFLAGS="-g -Og" "$@" >/dev/null &&
     make -s -j"$(nproc 2>/dev/null || echo 2)" libpagedkv.la >/dev/null)
  lib=$tmp/.libs/libpagedkv.so
fi
[ -e "$lib" ] || { echo "no library at $lib" >&2; exit 1; }

soname=$(abi_soname "$lib")
vinfo=$(abi_version_info "$lib")
[ -n "$soname" ] || { echo "$lib has no soname" >&2; exit 1; }
out=$top/abi/$soname.abi
abi_dump "$lib" "$out"
echo "$vinfo" >"$top/abi/$soname.version-info"
nfun=$(grep -c '<elf-symbol name=.*func-type' "$out" || true)
echo "wrote $out ($nfun exported functions, version-info $vinfo)"
