# SPDX-License-Identifier: Apache-2.0
# The Python package (python/pagedkv): choose an interpreter that can run it.
#
# The package binds libpagedkv with cffi in ABI mode, so the interpreter
# must import cffi; the tests also use numpy and torch when present. On some
# Debian machines the python3 first on PATH (pyenv, conda, a venv) does not
# see Debian's python3-cffi/numpy/torch while /usr/bin/python3 does, so
# configure tries the candidates in order and keeps the first one that has
# the most of cffi, numpy and torch (cffi is required). PYTHON=... on the
# configure line is taken as given. The choice is recorded in PYTHON (the
# Makefile, the tests) and printed in the summary.
#
# --disable-python skips the package; --enable-python makes a missing
# interpreter with cffi an error; the default builds it when one is found.

AC_ARG_WITH([pythondir],
  [AS_HELP_STRING([--with-pythondir=DIR],
    [where to install the Python package (default: the site directory of the chosen interpreter under the prefix)])],
  [pkv_python_dir_given=yes], [pkv_python_dir_given=no])

AC_ARG_ENABLE([python],
  [AS_HELP_STRING([--disable-python],
    [do not build or install the Python package (default: build it when a Python 3 with cffi is found)])],
  [], [enable_python=check])

# PKV_PY_SCORE(INTERP): prints 0 (no cffi), 1 (cffi), 2 (+numpy), 3 (+torch)
pkv_py_score() {
  "$1" - <<'EOF' 2>/dev/null || echo 0
import importlib.util as u
s = 0
if u.find_spec("cffi"):
    s = 1
    if u.find_spec("numpy"):
        s = 2
        if u.find_spec("torch"):
            s = 3
print(s)
EOF
}

have_python=no
PKV_PYTHON_DETAIL="disabled (--disable-python)"
AS_IF([test "x$enable_python" != xno], [
  AS_IF([test -n "$PYTHON"], [
    pkv_py_candidates="$PYTHON"
  ], [
    pkv_py_candidates=
    for pkv_py in python3 /usr/bin/python3 /usr/local/bin/python3 python; do
      pkv_py_path=`command -v "$pkv_py" 2>/dev/null` || continue
      pkv_py_candidates="$pkv_py_candidates $pkv_py_path"
    done
  ])
  pkv_py_best=; pkv_py_best_score=0
  for pkv_py in $pkv_py_candidates; do
    AC_MSG_CHECKING([what $pkv_py can import (cffi numpy torch)])
    pkv_py_s=`pkv_py_score "$pkv_py"`
    case $pkv_py_s in
      0) AC_MSG_RESULT([no cffi]) ;;
      1) AC_MSG_RESULT([cffi]) ;;
      2) AC_MSG_RESULT([cffi numpy]) ;;
      *) AC_MSG_RESULT([cffi numpy torch]) ;;
    esac
    AS_IF([test "$pkv_py_s" -gt "$pkv_py_best_score"],
      [pkv_py_best=$pkv_py; pkv_py_best_score=$pkv_py_s])
  done
  AS_IF([test -n "$pkv_py_best"], [
    PYTHON=$pkv_py_best
    AM_PATH_PYTHON([3.7], [have_python=yes], [have_python=no])
  ])
  # Debian's Python reads dist-packages, never the site-packages automake
  # picks: /usr/lib/python3/dist-packages for prefix /usr, else
  # PREFIX/lib/python3.X/dist-packages (on sys.path for /usr/local).
  AS_IF([test "x$have_python" = xyes && test "x$pkv_python_dir_given" != xyes], [
    pkv_py_deb=`$PYTHON -c "import sys, sysconfig; print('lib/python%d.%d/dist-packages' % sys.version_info[[:2]] if 'deb_system' in sysconfig.get_scheme_names() else '')" 2>/dev/null`
    AS_IF([test -n "$pkv_py_deb"], [
      pkv_py_prefix=$prefix
      test "x$pkv_py_prefix" = xNONE && pkv_py_prefix=$ac_default_prefix
      AS_IF([test "x$pkv_py_prefix" = x/usr],
        [pythondir='${prefix}/lib/python3/dist-packages'],
        [pythondir="\${prefix}/$pkv_py_deb"])
      AC_MSG_NOTICE([Debian Python: the package goes to $pythondir])
    ])
  ])
  AS_IF([test "x$pkv_python_dir_given" = xyes], [pythondir=$with_pythondir])
  AS_IF([test "x$have_python" = xyes], [
    case $pkv_py_best_score in
      1) PKV_PYTHON_DETAIL="$PYTHON (cffi; no numpy/torch: their tests skip)" ;;
      2) PKV_PYTHON_DETAIL="$PYTHON (cffi numpy; no torch: its tests skip)" ;;
      *) PKV_PYTHON_DETAIL="$PYTHON (cffi numpy torch)" ;;
    esac
    PKV_PYTHON_DETAIL="$PKV_PYTHON_DETAIL -> $pythondir"
  ], [test "x$enable_python" = xyes], [
    AC_MSG_ERROR([--enable-python: no Python >= 3.7 with cffi found (Debian: python3-cffi; or PYTHON=/path/to/python3)])
  ], [
    PYTHON=:
    PKV_PYTHON_DETAIL="no (no Python 3 with cffi found; Debian: python3-cffi)"
  ])
])
AS_IF([test "x$have_python" != xyes], [
  # AM_PATH_PYTHON was not run or failed: keep its variables defined.
  AC_SUBST([pythondir], ['${prefix}/lib/python3/site-packages'])
  AC_SUBST([pkgpythondir], ['${pythondir}/pagedkv'])
])
AC_SUBST([PKV_PYTHON_DETAIL])
AM_CONDITIONAL([HAVE_PYTHON], [test "x$have_python" = xyes])
