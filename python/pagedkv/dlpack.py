# SPDX-License-Identifier: Apache-2.0
"""DLPack out: cache pools and batch arrays as framework tensors, no copy.

Present when the library has pkv_cache_export_dlpack /
pkv_batch_export_dlpack (available() says so). The DLManagedTensor the
library returns is put in a PyCapsule named "dltensor", the protocol
torch.utils.dlpack.from_dlpack (and numpy >= 1.22's from_dlpack through
__dlpack__) consume; an unconsumed capsule calls the tensor's deleter when
it is collected, as the DLPack spec asks.
"""
import ctypes

import cffi

from ._ffi import ffi, has, lib

# The standard DLPack ABI (v0.8), only to reach the deleter of a capsule
# nobody consumed; kept in its own FFI so it never clashes with the header.
_dl = cffi.FFI()
_dl.cdef("""
typedef struct { int device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct { void *data; DLDevice device; int32_t ndim; DLDataType dtype;
  int64_t *shape; int64_t *strides; uint64_t byte_offset; } DLTensor;
typedef struct DLManagedTensor { DLTensor dl_tensor; void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self); } DLManagedTensor;
""")

_NAME = b"dltensor"
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                               ctypes.c_void_p]
# The destructor gets the dying capsule as a raw pointer: it must not be
# wrapped in a py_object (a new reference to an object being freed).
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_DESTRUCTOR
def _capsule_destructor(capsule_ptr):
    # runs when the capsule dies; "used_dltensor" means a consumer took it
    if _api.PyCapsule_IsValid(capsule_ptr, _NAME):
        p = _api.PyCapsule_GetPointer(capsule_ptr, _NAME)
        t = _dl.cast("DLManagedTensor *", p)
        if t.deleter != _dl.NULL:
            t.deleter(t)


def available():
    """True when the loaded library can export DLPack tensors."""
    return has("pkv_cache_export_dlpack") and has("pkv_batch_export_dlpack")


def _capsule(managed):
    ptr = int(ffi.cast("uintptr_t", managed))
    return _api.PyCapsule_New(ptr, _NAME,
                              ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def export(owner, fname, *args):
    """Calls lib.<fname>(owner, *args, &out) and returns a "dltensor"
    capsule."""
    if not has(fname):
        raise NotImplementedError("pagedkv: this libpagedkv has no %s "
                                  "(DLPack export not built)" % fname)
    out = ffi.new("struct DLManagedTensor **")
    owner._check(getattr(lib, fname)(owner._h(), *args, out))
    return _capsule(out[0])


def to_torch(capsule):
    """A torch tensor over a capsule from export() (no copy)."""
    import torch.utils.dlpack
    return torch.utils.dlpack.from_dlpack(capsule)
