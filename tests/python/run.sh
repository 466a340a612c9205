#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs one tests/python/*.py with the interpreter configure recorded, on the
# package and library of the build tree. make check sets the PKV_* variables
# (Makefile.am, PY_LOG_COMPILER). Without the package: a TAP skip plan.
set -u
test=$1
if [ -z "${PKV_PYTHON:-}" ] || [ "$PKV_PYTHON" = : ]; then
  echo "1..0 # SKIP Python package not built (configure --disable-python or no Python 3 with cffi)"
  exit 0
fi
# A sanitizer build's library needs the ASan runtime loaded first, which a
# stock interpreter does not do: dlopen would abort, so skip with the reason.
if command -v ldd >/dev/null 2>&1 &&
   ldd "$PKV_BUILDDIR/.libs/libpagedkv.so" 2>/dev/null | grep -q 'libasan'; then
  echo "1..0 # SKIP libpagedkv is built with AddressSanitizer: the Python interpreter cannot dlopen it"
  exit 0
fi
PYTHONPATH="$PKV_BUILDDIR/python:$PKV_SRCDIR/tests/python${PYTHONPATH:+:$PYTHONPATH}"
PAGEDKV_LIBRARY="$PKV_BUILDDIR/.libs/libpagedkv.so"
# no __pycache__ in the build tree (distcleancheck)
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PAGEDKV_LIBRARY PYTHONDONTWRITEBYTECODE
exec "$PKV_PYTHON" "$test"
