#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Manual pages: every function pagedkv.h exports and every pkv_X_init macro
# has a man3 page, pagedkv(7) exists, every installed program has a man1
# page and answers --help and --version (exit 0, the package version); with
# man and groff installed, every page renders without a warning. TAP; run
# by `make check` from the top build directory ($srcdir from automake).
set -u
srcdir=${srcdir:-.}
top_builddir=$(pwd)
man=$srcdir/man
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$top_builddir/Makefile")
tools="pkv-sim pkv-bench pkv-conformance"
# built with UCX only (configure --with-ucx)
[ -x "$top_builddir/tools/pkv-disagg" ] && tools="$tools pkv-disagg"
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

# The header's API, comments removed (a prototype spans lines).
api=$(sed 's:/\*.*\*/::g' "$srcdir/lib/pagedkv.h" | tr '\n' ' ' | tr ';' '\n' |
  sed -n 's/.*PKV_API[^(]*[^a-z0-9_]\(pkv_[a-z0-9_]*\)[[:space:]]*(.*/\1/p' | sort -u)
macros=$(sed -n 's/^#define[[:space:]]*\(pkv_[a-z0-9_]*_init\)(.*/\1/p' \
  "$srcdir/lib/pagedkv.h" | sort -u)
nfun=$(echo "$api" | wc -w)
[ "$nfun" -gt 50 ] && ok "the header exports $nfun functions" ||
  nok "the header's functions could not be read ($nfun)"

missing=
for f in $api $macros; do [ -s "$man/man3/$f.3" ] || missing="$missing $f"; done
[ -z "$missing" ] && ok "a man3 page for each of $nfun functions and $(echo "$macros" | wc -w) _init macros" ||
  nok "functions without a man3 page:$missing"

extra=
for p in "$man"/man3/*.3; do
  b=$(basename "$p" .3)
  echo "$api $macros" | tr ' ' '\n' | grep -qx "$b" || extra="$extra $b"
done
[ -z "$extra" ] && ok "no man3 page for a function the header lacks" ||
  nok "man3 pages of no exported function:$extra"

[ -s "$man/man7/pagedkv.7" ] && ok "pagedkv(7) overview" || nok "pagedkv(7) missing"

for t in $tools; do
  [ -s "$man/man1/$t.1" ] && ok "$t(1)" || nok "$t has no man1 page"
  exe=$top_builddir/tools/$t
  out=$("$exe" --version 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && echo "$out" | grep -q "^$t (pagedkv) $version\$" &&
     echo "$out" | grep -q "libpagedkv $version"; then
    ok "$t --version: $version, tool and library"
  else nok "$t --version (exit $rc): $out"; fi
  out=$("$exe" --help 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && echo "$out" | grep -q "^usage: $t" &&
     echo "$out" | grep -q -- "--version"; then
    ok "$t --help: usage, exit 0"
  else nok "$t --help (exit $rc)"; fi
done

# Rendering: man -l with groff's warnings on, from the man root so that
# the .so pages of the _init macros resolve.
if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
  bad=
  for p in "$man"/man1/*.1 "$man"/man3/*.3 "$man"/man7/*.7; do
    rel=${p#"$man"/}
    w=$(cd "$man" && LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$rel" 2>&1 >/dev/null)
    [ -z "$w" ] || { bad="$bad $rel"; echo "# $rel: $w" | head -3; }
  done
  [ -z "$bad" ] && ok "every page renders without a groff warning" ||
    nok "pages with warnings:$bad"
else
  n=$((n + 1)); echo "ok $n # SKIP man or groff not installed: pages not rendered"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
