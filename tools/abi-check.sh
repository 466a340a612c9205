#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compares a built libpagedkv.so with every ABI baseline in abi/ (abidiff,
# Debian's abigail-tools) and fails on an ABI change that the library's
# libtool -version-info does not declare (doc/ABI.md):
#   - same soname as the baseline, incompatible change (a function removed
#     or its type changed, a struct changed other than by the growth rule):
#     fail: that needs a new soname (current+1, age 0);
#     (abidiff's own verdict, plus a member that moved or changed type and
#     an enumerator removed or renumbered, which abidiff lets pass);
#   - same soname, compatible change (functions or fields added): the
#     version-info must declare added interfaces against the baseline's
#     (current and age both higher, same current - age);
#   - an older soname's baseline (abi/libpagedkv-0.1.abi): its incompatible
#     changes are declared by the soname bump; reported, not failed.
# API between the PKV_EXPERIMENTAL_BEGIN/END markers of pagedkv.h is
# suppressed: outside the promise.
#
#   tools/abi-check.sh [TREE/.libs/libpagedkv.so]
# (default: .libs/libpagedkv.so; an in-tree build with -g, as configure's
# default CFLAGS give)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/tools/abi-common.sh"
lib=${1:-.libs/libpagedkv.so}
command -v abidiff >/dev/null || { echo "abidiff not found: install abigail-tools" >&2; exit 1; }
[ -e "$lib" ] || { echo "no library at $lib: build first" >&2; exit 1; }

tmp=$(mktemp -d /tmp/pkv-abicheck.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
header=$(abi_header_for "$lib")
abi_dump "$lib" "$tmp/current.abi" || exit 1
abi_experimental_suppressions "$header" "$tmp/experimental.supp"
soname=$(abi_soname "$lib")
vinfo=$(abi_version_info "$lib") || exit 1
IFS=: read -r cur rev age <<<"$vinfo"
echo "library: $lib, soname $soname, version-info $vinfo"

fail=0 same=0
for base in "$top"/abi/*.abi; do
  [ -e "$base" ] || continue
  bsoname=$(sed -n "s/.*soname='\([^']*\)'.*/\1/p" "$base" | head -1)
  abidiff --suppressions "$tmp/experimental.supp" \
    "$base" "$tmp/current.abi" >"$tmp/diff-all" 2>&1
  rc_all=$?
  name=$(basename "$base")
  if [ $((rc_all & 3)) -ne 0 ]; then
    echo "FAIL $name: abidiff could not compare (status $rc_all)"
    cat "$tmp/diff-all"; fail=1; continue
  fi
  if [ "$bsoname" != "$soname" ]; then
    if [ $((rc_all & 12)) -ne 0 ]; then
      echo "ok   $name: ABI changes since $bsoname, declared by the new soname $soname"
    else
      echo "ok   $name: no ABI change since $bsoname (the soname bump was not needed)"
    fi
    continue
  fi
  same=1
  bvinfo=$(cat "${base%.abi}.version-info" 2>/dev/null) || {
    echo "FAIL $name: ${base%.abi}.version-info is missing (tools/abi-baseline.sh writes it)"
    fail=1; continue; }
  IFS=: read -r bcur brev bage <<<"$bvinfo"
  # abidiff calls a moved struct member or a deleted enumerator a mere
  # "change" (status 4): by the growth rule only appended members and new
  # enumerators are compatible, so anything else in the report is a break.
  if [ $((rc_all & 4)) -ne 0 ] &&
     grep -Eq "offset changed|deletion|was removed|was added|name changed|value changed|type of '" "$tmp/diff-all"; then
    rc_all=$((rc_all | 8))
  fi
  if [ $((rc_all & 8)) -ne 0 ]; then
    echo "FAIL $name: incompatible ABI change under the same soname $soname."
    echo "     Declare it: -version-info $((cur + 1)):0:0 in configure.ac (new soname),"
    echo "     then tools/abi-baseline.sh. The change:"
    sed 's/^/     /' "$tmp/diff-all"; fail=1
  elif [ $((rc_all & 4)) -ne 0 ]; then
    if [ "$cur" -gt "$bcur" ] && [ "$age" -gt "$bage" ] &&
       [ $((cur - age)) -eq $((bcur - bage)) ]; then
      echo "ok   $name: compatible additions, declared by version-info $vinfo (baseline $bvinfo)"
    else
      echo "FAIL $name: interfaces added since the baseline (version-info $bvinfo) but"
      echo "     version-info is $vinfo: make it $((bcur + 1)):0:$((bage + 1)) in configure.ac."
      echo "     (After a release: tools/abi-baseline.sh.) The change:"
      sed 's/^/     /' "$tmp/diff-all"; fail=1
    fi
  else
    echo "ok   $name: no ABI change against the baseline ($bvinfo)"
  fi
done
if [ "$same" -eq 0 ]; then
  echo "FAIL no baseline for $soname in abi/: run tools/abi-baseline.sh"
  fail=1
fi
exit $fail
