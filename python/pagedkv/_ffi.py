# SPDX-License-Identifier: Apache-2.0
"""Loads libpagedkv through cffi (ABI mode) with the generated declarations.

The library is found, in order: $PAGEDKV_LIBRARY (a file path: the tests
point it at the build tree), then the soname recorded at build time in the
libdir recorded then (_config.LIBDIR/_config.SONAME: $(libdir) of `make
install`), then that soname on the dynamic loader's search path.
"""
import glob
import os

import cffi

from . import _cdef

ffi = cffi.FFI()
ffi.cdef(_cdef.CDEF)


def _candidates():
    env = os.environ.get("PAGEDKV_LIBRARY")
    if env:
        return [env]
    names = []
    try:
        from . import _config
        libdir, soname = _config.LIBDIR, getattr(_config, "SONAME", "")
    except ImportError:  # a source tree that was never built
        libdir, soname = None, ""
    if libdir and soname:
        names.append(os.path.join(libdir, soname))
    elif libdir:
        names += sorted(glob.glob(os.path.join(libdir, "libpagedkv.so.[0-9]*")),
                        key=len)
        names.append(os.path.join(libdir, "libpagedkv.dylib"))
    # the loader's search path: the recorded soname, never another version
    names.append(soname or "libpagedkv.so")
    return names


def _load():
    errors = []
    for name in _candidates():
        if os.sep in name and not os.path.exists(name):
            errors.append("%s: no such file" % name)
            continue
        try:
            return ffi.dlopen(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
    raise ImportError("pagedkv: cannot load libpagedkv (set PAGEDKV_LIBRARY "
                      "to its path):\n  " + "\n  ".join(errors))


lib, library_path = _load()


def has(name):
    """True when the loaded library and its header both have `name`."""
    try:
        getattr(lib, name)
        return True
    except (AttributeError, NotImplementedError):
        return False


def new_struct(ctype, *init_args):
    """A zeroed caller-allocated public struct, initialised the way the
    header says: pkv_X_init_sized(x, sizeof) where it exists (the ABI rule:
    pkv_X_init is then a macro, which cffi cannot call), else pkv_X_init(x)
    where it is a function, else struct_size set by hand where the struct
    has one. Extra init_args go to the initialiser after the pointer (and
    the size), as many as it takes (pkv_attn_params' num_q_heads)."""
    p = ffi.new(ctype + " *")
    if has(ctype + "_init_sized"):
        fn = getattr(lib, ctype + "_init_sized")
        # (x, size) or, like pkv_attn_params, (x, size, num_q_heads)
        extra = init_args[:len(ffi.typeof(fn).args) - 2]
        fn(p, ffi.sizeof(ctype), *extra)
    elif has(ctype + "_init"):
        fn = getattr(lib, ctype + "_init")
        fn(p, *init_args[:len(ffi.typeof(fn).args) - 1])
    elif _has_field(ctype, "struct_size"):
        p.struct_size = ffi.sizeof(ctype)
    return p


def _has_field(ctype, field):
    try:
        return any(f == field for f, _ in ffi.typeof(ctype).fields)
    except (ffi.error, TypeError):
        return False


def has_field(ctype, field):
    return _has_field(ctype, field)


def string(cdata):
    """A C string (const char *) as str; None for NULL."""
    if cdata == ffi.NULL:
        return None
    return ffi.string(cdata).decode("utf-8", "replace")
