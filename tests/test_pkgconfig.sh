#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the library into a temporary root (make install DESTDIR=...),
# then builds examples/decode_step.c as an outside program would, through
# pkg-config alone, and runs it against the installed shared library.
# TAP output. Run by `make check` from the top build directory.
set -u

srcdir=${srcdir:-.}
top_builddir=$(pwd)
echo "1..4"

if ! command -v pkg-config >/dev/null 2>&1; then
  echo "ok 1 # SKIP pkg-config not installed"
  echo "ok 2 # SKIP pkg-config not installed"
  echo "ok 3 # SKIP pkg-config not installed"
  echo "ok 4 # SKIP pkg-config not installed"
  exit 0
fi
if [ ! -f "$top_builddir/Makefile" ] || [ ! -f "$top_builddir/pagedkv.pc" ]; then
  echo "Bail out! run from the top build directory (no Makefile/pagedkv.pc in $top_builddir)"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pkv-pkgconfig.XXXXXX") || {
  echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

# The consumer is compiled the way the library was (same compiler and flags:
# a sanitizer build needs its runtime in the program too).
mkvar() { sed -n "s/^$1 = //p" "$top_builddir/Makefile" | head -n 1; }
CC_=$(mkvar CC); CFLAGS_=$(mkvar CFLAGS); LDFLAGS_=$(mkvar LDFLAGS)
MAKE_=${MAKE:-make}

# A nested make must not inherit the test harness's jobserver.
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "$MAKE_" -C "$top_builddir" install \
    DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1; then
  echo "ok 1 - make install DESTDIR=<tmp> succeeded"
else
  echo "not ok 1 - make install DESTDIR=<tmp> failed"
  sed 's/^/# /' "$tmp/install.log" | tail -n 30
  echo "ok 2 # SKIP nothing installed"; echo "ok 3 # SKIP nothing installed"
  echo "ok 4 # SKIP nothing installed"
  exit 1
fi

libdir=$(pkg-config --variable=libdir "$top_builddir/pagedkv.pc")
pcdir="$tmp/root$libdir/pkgconfig"
# PKG_CONFIG_SYSROOT_DIR prefixes -I/-L with the DESTDIR root, as for a
# staged install; PKG_CONFIG_LIBDIR puts the installed pagedkv.pc first and
# keeps the system's directories after it, for the Requires.private modules
# (libxxhash, OpenCL) that pkg-config resolves even without --static.
syspc=$(pkg-config --variable pc_path pkg-config 2>/dev/null)
if flags=$(PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_LIBDIR="$pcdir${syspc:+:$syspc}" \
           PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs pagedkv 2>"$tmp/pc.err"); then
  case "$flags" in
    *"$tmp/root"*-lpagedkv*) echo "ok 2 - pkg-config finds the installed pagedkv.pc: $flags" ;;
    *) echo "not ok 2 - pkg-config flags do not point into the install root: $flags" ;;
  esac
else
  echo "not ok 2 - pkg-config --cflags --libs pagedkv failed"
  sed 's/^/# /' "$tmp/pc.err"
  echo "ok 3 # SKIP no flags"; echo "ok 4 # SKIP no flags"
  exit 1
fi

# shellcheck disable=SC2086  # flags are split on purpose
if ${CC_:-cc} $CFLAGS_ "$srcdir/examples/decode_step.c" -o "$tmp/decode_step" \
     $flags $LDFLAGS_ -lm >"$tmp/cc.log" 2>&1; then
  echo "ok 3 - examples/decode_step.c compiles and links with pkg-config's flags alone"
else
  echo "not ok 3 - examples/decode_step.c does not compile against the installed library"
  sed 's/^/# /' "$tmp/cc.log" | tail -n 30
  echo "ok 4 # SKIP not built"
  exit 1
fi

# Make sure it really resolves the installed copy, not the build tree's.
resolved=$(LD_LIBRARY_PATH="$tmp/root$libdir" ldd "$tmp/decode_step" 2>/dev/null | grep libpagedkv)
case "$resolved" in
  *"$tmp/root"*) ;;
  *) echo "# libpagedkv resolves to: $resolved" ;;
esac
if LD_LIBRARY_PATH="$tmp/root$libdir" "$tmp/decode_step" >"$tmp/run.log" 2>&1 &&
   case "$resolved" in *"$tmp/root"*) true ;; *) false ;; esac; then
  echo "ok 4 - decode_step runs against the installed libpagedkv: $(tail -n 1 "$tmp/run.log")"
else
  echo "not ok 4 - decode_step failed against the installed library"
  sed 's/^/# /' "$tmp/run.log" | tail -n 30
  exit 1
fi
exit 0
