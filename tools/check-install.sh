#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A lintian-style check of an installed tree, as a distribution packager
# would run it on `make install DESTDIR=...`:
#
#   tools/check-install.sh DESTDIR [PREFIX]      (PREFIX default /usr/local)
#
# E: lines are errors (exit 1), W: warnings, I: information. Checks: the
# license is installed in the documentation directory; every program in
# bin/ has a man1 page and answers --version; every function the installed
# header declares and the installed library exports has a man3 page;
# pagedkv(7) exists; pagedkv.pc has its fields, names this version, and
# its Requires.private resolve; the soname link is in place and the core
# library needs no GPU runtime when backends are modules; the header
# compiles alone as C and C++; no binary carries a build-tree RPATH; and
# no file is installed that the package does not declare.
set -uo pipefail
dest=${1:?usage: check-install.sh DESTDIR [PREFIX]}
prefix=${2:-/usr/local}
root=$dest$prefix
errors=0 warnings=0
E() { echo "E: $*"; errors=$((errors + 1)); }
W() { echo "W: $*"; warnings=$((warnings + 1)); }
I() { echo "I: $*"; }
[ -d "$root" ] || { E "no-install-tree $root"; exit 1; }

# Standard layout (configure's defaults; a packager's --libdir is found).
bindir=$root/bin incdir=$root/include mandir=$root/share/man
docdir=$root/share/doc/pagedkv
lib=$(find "$root" -name 'libpagedkv.so.*' -type f | head -1)
libdir=$(dirname "${lib:-$root/lib/x}")
pc=$(find "$root" -name pagedkv.pc | head -1)

# --- license -----------------------------------------------------------------
if [ -f "$docdir/LICENSE" ]; then
  grep -q "Apache License" "$docdir/LICENSE" && grep -q "Version 2.0" "$docdir/LICENSE" ||
    E "license-not-apache-2.0 $docdir/LICENSE"
else
  E "no-license-in-docdir ${docdir#$dest}/LICENSE"
fi
[ -f "$docdir/README.md" ] || W "no-readme-in-docdir"
grep -q "SPDX-License-Identifier: Apache-2.0" "$incdir/pagedkv.h" 2>/dev/null ||
  E "header-without-spdx-line include/pagedkv.h"

# --- programs: man1, --version -------------------------------------------------
manpage() { # section name -> path of the page, plain or compressed
  local f
  for f in "$mandir/man$1/$2.$1" "$mandir/man$1/$2.$1.gz"; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}
nbin=0
for b in "$bindir"/*; do
  [ -e "$b" ] || continue
  nbin=$((nbin + 1))
  name=$(basename "$b")
  manpage 1 "$name" >/dev/null || E "binary-without-manpage bin/$name"
  if [ -n "$lib" ]; then
    LD_LIBRARY_PATH=$libdir "$b" --version >/dev/null 2>&1 ||
      E "binary-without-version-option bin/$name"
  fi
done
I "programs: $nbin"

# --- library functions: man3 ---------------------------------------------------
if [ -f "$incdir/pagedkv.h" ]; then
  api=$(sed 's:/\*.*\*/::g' "$incdir/pagedkv.h" | tr '\n' ' ' | tr ';' '\n' |
    sed -n 's/.*PKV_API[^(]*[^a-z0-9_]\(pkv_[a-z0-9_]*\)[[:space:]]*(.*/\1/p' | sort -u)
  macros=$(sed -n 's/^#define[[:space:]]*\(pkv_[a-z0-9_]*_init\)(.*/\1/p' "$incdir/pagedkv.h")
else
  E "no-public-header include/pagedkv.h"; api= macros=
fi
exported=
if [ -n "$lib" ]; then
  exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort -u)
fi
nman=0
for f in $(printf '%s\n' $api $macros $exported | sort -u); do
  if manpage 3 "$f" >/dev/null; then nman=$((nman + 1))
  else E "function-without-manpage $f"; fi
done
for f in $exported; do
  grep -qx "$f" <<<"$api" || E "exported-symbol-not-in-header $f"
done
I "man3 pages checked: $nman"
manpage 7 pagedkv >/dev/null || E "no-overview-manpage pagedkv(7)"

# --- shared library ------------------------------------------------------------
if [ -z "$lib" ]; then
  E "no-shared-library libpagedkv.so.*"
else
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  [ -L "$libdir/$soname" ] || E "no-soname-link ${libdir#$dest}/$soname"
  [ -L "$libdir/libpagedkv.so" ] || W "no-dev-symlink ${libdir#$dest}/libpagedkv.so"
  needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')
  I "soname $soname, NEEDED: $needed"
  if ls "$libdir"/pagedkv/backend-*.so >/dev/null 2>&1; then
    for r in libamdhip64 libcudart libcuda.so libhiprtc libnvrtc libOpenCL; do
      case " $needed" in *" $r"*) E "gpu-runtime-in-core-library $r (backends are modules)";; esac
    done
    I "backend modules: $(cd "$libdir/pagedkv" && echo backend-*.so)"
  fi
fi

# --- RPATH ---------------------------------------------------------------------
for f in "$bindir"/* "$libdir"/libpagedkv.so.* "$libdir"/pagedkv/*.so; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  rp=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\].*/\2/p')
  case "$rp" in
    "") ;;
    *.libs*|*/tmp/*|*/work/*|*/build*) E "binary-or-shlib-defines-rpath-to-build-tree ${f#$dest} $rp" ;;
    *) W "binary-or-shlib-defines-rpath ${f#$dest} $rp" ;;
  esac
done

# --- pagedkv.pc ----------------------------------------------------------------
if [ -z "$pc" ]; then
  E "no-pkgconfig-file pagedkv.pc"
else
  for field in Name Description Version Libs Cflags Requires.private; do
    grep -q "^$field:" "$pc" || E "pkgconfig-missing-field $field"
  done
  grep -q '^Libs:.*-lpagedkv' "$pc" || E "pkgconfig-libs-without-lpagedkv"
  grep -q "^prefix=$prefix\$" "$pc" || E "pkgconfig-prefix-mismatch (want $prefix)"
  hv=$(sed -n 's/^#define PKV_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$incdir/pagedkv.h" | paste -sd.)
  pv=$(sed -n 's/^Version: //p' "$pc")
  [ "$hv" = "$pv" ] || E "pkgconfig-version-mismatch pc $pv, header $hv"
  req=$(sed -n 's/^Requires.private: *//p' "$pc" | tr ',' ' ' | tr -s ' ')
  for m in $req; do
    pkg-config --exists "$m" 2>/dev/null || W "pkgconfig-requires-not-found $m"
  done
  PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --exists --print-errors pagedkv ||
    E "pkgconfig-file-invalid"
  I "Requires.private: ${req:-(none)}"
fi

# --- the header compiles alone ---------------------------------------------------
tmp=$(mktemp -d /tmp/pkv-ci.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo '#include <pagedkv.h>' >"$tmp/h.c"
${CC:-cc} -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$incdir" "$tmp/h.c" ||
  E "header-not-self-contained-c11"
if command -v "${CXX:-c++}" >/dev/null; then
  cp "$tmp/h.c" "$tmp/h.cc"
  ${CXX:-c++} -Wall -Wextra -Werror -fsyntax-only -I"$incdir" "$tmp/h.cc" ||
    E "header-not-usable-from-c++"
fi

# --- nothing unexpected ----------------------------------------------------------
# What the package installs, as shell patterns relative to PREFIX.
allowed='bin/pkv-* include/pagedkv.h include/pkv_dlpack.h
lib*/libpagedkv.so lib*/libpagedkv.so.* lib*/libpagedkv.a lib*/libpagedkv.la
lib*/pkgconfig/pagedkv.pc lib*/pagedkv/backend-*.so lib*/pagedkv/transfer-*.so
share/man/man1/pkv-*.1* share/man/man3/pkv_*.3* share/man/man7/pagedkv.7*
share/doc/pagedkv/* share/doc/pagedkv/examples/*
lib*/python3*/*-packages/pagedkv/* lib*/python3*/*-packages/pagedkv/*/*
lib*/python3*/*-packages/pagedkv-*/* lib*/python3*/*-packages/pagedkv*'
nfiles=0
while IFS= read -r -d '' f; do
  rel=${f#"$root"/}
  nfiles=$((nfiles + 1))
  ok=
  for p in $allowed; do
    # shellcheck disable=SC2254
    case "$rel" in $p) ok=1; break ;; esac
  done
  [ -n "$ok" ] || E "unexpected-file $rel"
done < <(find "$root" \( -type f -o -type l \) -print0)
others=$(find "$dest" \( -type f -o -type l \) ! -path "$root/*" | head -5)
[ -z "$others" ] || E "file-outside-prefix $others"
I "files installed: $nfiles"

echo "check-install: $errors errors, $warnings warnings"
[ "$errors" -eq 0 ]
