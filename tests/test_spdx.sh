#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Every source file of the project starts with its SPDX license line (after
# a shebang line, if any), so a distribution can check the license file by
# file. In a git checkout the files are the tracked ones (git ls-files);
# in an unpacked tarball (make distcheck) they are the distributed ones.
# Third-party files (libtool's m4, build-aux) and generated ones are not
# ours and are left out by the name filter below. TAP.
set -u
srcdir=${srcdir:-.}
cd "$srcdir" || { echo "1..0 # SKIP no source dir $srcdir"; exit 0; }

# A tarball unpacked inside some other checkout must not take that
# checkout's file list: use git only when srcdir is the top of the work tree.
if command -v git >/dev/null 2>&1 &&
   top=$(git rev-parse --show-toplevel 2>/dev/null) &&
   [ "$(cd "$top" && pwd -P)" = "$(pwd -P)" ]; then
  how="git ls-files"
  list=$(git ls-files)
else
  how="the distributed tree"
  # _build/_inst are make distcheck's build and install directories.
  list=$(find . \( -name _build -o -name _inst -o -name autom4te.cache \
                  -o -name build-aux -o -name .git \) -prune -o -type f -print |
         sed 's|^\./||')
fi

files=$(printf '%s\n' "$list" | while IFS= read -r f; do
  case "$f" in
    opencl/kernels_embedded.c|config.h|*/.deps/*|*.mod.c) continue ;;
    m4/libtool.m4|m4/lt*.m4|aclocal.m4) continue ;;  # libtool/automake's own
    *.c|*.h|*.cl|*.hip|*.cu|*.sh|*.py|m4/*.m4) ;;
    Makefile.am|*/Makefile.am|configure.ac|.ci/run|.ci/lsan.supp|pagedkv.pc.in) ;;
    *) continue ;;
  esac
  # build outputs that share an extension with sources (e.g. config.h)
  [ -f "$f" ] && printf '%s\n' "$f"
done)

n=$(printf '%s\n' "$files" | grep -c .)
if [ "$n" -eq 0 ]; then
  echo "1..1"; echo "not ok 1 - no source files found through $how"; exit 1
fi
echo "1..2"
missing=
for f in $files; do
  first=$(head -n 1 "$f")
  case "$first" in '#!'*) first=$(sed -n 2p "$f") ;; esac
  case "$first" in
    *SPDX-License-Identifier:\ Apache-2.0*) ;;
    *) missing="$missing $f" ;;
  esac
done
if [ -z "$missing" ]; then
  echo "ok 1 - all $n source files (from $how) start with SPDX-License-Identifier: Apache-2.0"
else
  echo "not ok 1 - source files without the SPDX line as first line:"
  for f in $missing; do echo "#   $f"; done
fi
if [ -f LICENSE ] && grep -q 'Apache License' LICENSE &&
   grep -q 'Version 2.0, January 2004' LICENSE; then
  echo "ok 2 - LICENSE holds the Apache License 2.0"
else
  echo "not ok 2 - LICENSE missing or not the Apache License 2.0"
fi
[ -z "$missing" ]
