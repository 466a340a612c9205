# SPDX-License-Identifier: Apache-2.0
"""make install DESTDIR=<tmp> installs the package into $(pkgpythondir),
byte-compiled, with the generated declarations and $(libdir) recorded;
the installed copy imports and runs against the installed library."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from tap import Tap

t = Tap()
build = os.environ.get("PKV_BUILDDIR")
libdir = os.environ.get("PKV_LIBDIR")
pythondir = os.environ.get("PKV_PYTHONDIR")
pkgpythondir = os.environ.get("PKV_PKGPYTHONDIR")
if not (build and libdir and pythondir and pkgpythondir):
    t.skip_all("run by make check (PKV_BUILDDIR, PKV_LIBDIR, PKV_PYTHONDIR)")

tmp = tempfile.mkdtemp(prefix="pkv-pyinstall.")
try:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run([os.environ.get("MAKE", "make"), "-C", build,
                        "install", "DESTDIR=" + tmp],
                       env=env, capture_output=True, text=True, timeout=600)
    if not t.ok(r.returncode == 0, "make install DESTDIR=<tmp>"):
        t.diag((r.stdout + r.stderr)[-3000:])
        t.done()
    pkg = tmp + pkgpythondir
    t.ok(os.path.isfile(os.path.join(pkg, "__init__.py")) and
         os.path.isfile(os.path.join(pkg, "_cdef.py")) and
         os.path.isfile(os.path.join(pkg, "_config.py")),
         "the package, _cdef.py and _config.py are in $(pkgpythondir) = %s"
         % pkgpythondir)
    t.ok(glob.glob(os.path.join(pkg, "__pycache__", "*.pyc")),
         "the installed modules are byte-compiled")
    t.eq(os.path.dirname(pkgpythondir), pythondir,
         "pkgpythondir is $(pythondir)/pagedkv")
    libs = sorted(glob.glob(tmp + libdir + "/libpagedkv.so.[0-9]*"), key=len)
    if not t.ok(libs, "libpagedkv.so.N is installed in $(libdir)"):
        t.done()
    code = ("import pagedkv, sys\n"
            "from pagedkv import _config\n"
            "print(pagedkv.__file__); print(pagedkv.library_path)\n"
            "print(_config.LIBDIR); print(_config.SONAME)\n"
            "with pagedkv.Context('cpu') as ctx:\n"
            "    c = ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64,\n"
            "                  page_size=4, num_pages=4)\n"
            "    s = c.open_seq(); s.append(5); print(len(s.pages()))\n")
    run_env = dict(env, PYTHONPATH=tmp + pythondir,
                   PAGEDKV_LIBRARY=libs[0])
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([sys.executable, "-c", code], env=run_env,
                       capture_output=True, text=True, timeout=120,
                       cwd=tmp)
    out = r.stdout.split("\n")
    if not t.ok(r.returncode == 0 and len(out) >= 5,
                "the installed package imports and runs"):
        t.diag(r.stdout + r.stderr)
        t.done()
    t.ok(out[0].startswith(tmp + pkgpythondir),
         "it is the installed copy: %s" % out[0])
    t.eq(out[1], libs[0], "it loads the installed library")
    t.eq(out[2], libdir, "_config.LIBDIR records $(libdir)")
    t.eq(out[3], os.path.basename(libs[0]),
         "_config.SONAME records the installed soname")
    t.eq(out[4], "2", "a cache works through the installed package")
    # without PAGEDKV_LIBRARY the package looks in $(libdir) first
    del run_env["PAGEDKV_LIBRARY"]
    r = subprocess.run([sys.executable, "-c",
                        "from pagedkv import _ffi; print(_ffi.library_path)"],
                       env=run_env, capture_output=True, text=True,
                       timeout=120, cwd=tmp)
    t.ok(os.path.join(libdir, os.path.basename(libs[0])) in
         r.stdout + r.stderr,
         "without PAGEDKV_LIBRARY it tries $(libdir)/<soname> first")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
t.done()
