# SPDX-License-Identifier: Apache-2.0
"""dtype names and numpy/torch interop (both optional imports).

numpy has no bfloat16: a bf16 cache is seen from numpy as uint16 (the raw
bits; to_f32/from_f32 convert with the library's rounding). torch has all
three storage dtypes.
"""
from ._ffi import ffi, lib

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

F32 = int(lib.PKV_DTYPE_F32)
F16 = int(lib.PKV_DTYPE_F16)
BF16 = int(lib.PKV_DTYPE_BF16)

_DTYPE_NAMES = {"f32": F32, "float32": F32, "float": F32,
                "f16": F16, "float16": F16, "half": F16,
                "bf16": BF16, "bfloat16": BF16}
_NUMPY_OF = {F32: "float32", F16: "float16", BF16: "uint16"}


def _torch():
    import sys
    return sys.modules.get("torch")  # never import torch just for a check


def is_tensor(x):
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def dtype_of(x):
    """A pkv_dtype from a name, a pkv_dtype int, a numpy or torch dtype."""
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        try:
            return _DTYPE_NAMES[x.lower()]
        except KeyError:
            raise ValueError("pagedkv: unknown dtype %r (f32, f16, bf16)" % x)
    t = _torch()
    if t is not None and isinstance(x, t.dtype):
        m = {t.float32: F32, t.float16: F16, t.bfloat16: BF16}
        if x in m:
            return m[x]
        raise ValueError("pagedkv: torch dtype %s has no pkv_dtype" % x)
    if np is not None:
        d = np.dtype(x)
        m = {np.dtype("float32"): F32, np.dtype("float16"): F16}
        if d in m:
            return m[d]
        raise ValueError("pagedkv: numpy dtype %s has no pkv_dtype "
                         "(bf16 data: use uint16 and dtype='bf16')" % d)
    raise ValueError("pagedkv: cannot map %r to a pkv_dtype" % (x,))


def check_dtype(x, dtype, what):
    """Raises ValueError when array/tensor x does not hold elements of
    pkv_dtype `dtype` (Buffers and raw bytes are taken as they are; bf16
    data may come as numpy uint16)."""
    xd = getattr(x, "dtype", None)
    if xd is None:
        return
    want = dtype_of(dtype)
    if np is not None and not is_tensor(x) and want == BF16 and \
            np.dtype(xd) == np.dtype("uint16"):
        return
    try:
        got = dtype_of(xd)
    except ValueError:
        got = None
    if got != want:
        raise ValueError("pagedkv: %s holds %s but the cache stores %s"
                         % (what, xd, dtype_name(want)))


def numpy_dtype(dtype):
    """The numpy dtype that holds elements of a pkv_dtype."""
    return np.dtype(_NUMPY_OF[dtype_of(dtype)])


def torch_dtype(dtype):
    import torch
    return {F32: torch.float32, F16: torch.float16,
            BF16: torch.bfloat16}[dtype_of(dtype)]


def dtype_name(dtype):
    return {F32: "f32", F16: "f16", BF16: "bf16"}.get(dtype_of(dtype),
                                                      str(dtype))


class Memory:
    """Where an array-like lives: (pointer, bytes, device, keepalive).

    device is "cpu" for host memory (numpy, CPU tensors, bytearray) or
    "cuda" for a CUDA/HIP tensor (ROCm torch also says "cuda")."""

    def __init__(self, ptr, nbytes, device, keep):
        self.ptr, self.nbytes, self.device, self.keep = ptr, nbytes, device, keep


def memory_of(x, writable=False):
    """The memory of a contiguous numpy array, torch tensor or writable
    buffer-protocol object, without a copy."""
    if is_tensor(x):
        if not x.is_contiguous():
            raise ValueError("pagedkv: tensor must be contiguous "
                             "(call .contiguous())")
        dev = x.device.type
        if dev not in ("cpu", "cuda"):
            raise ValueError("pagedkv: tensor on %s: only cpu and cuda/hip "
                             "tensors can be wrapped" % dev)
        return Memory(x.data_ptr(), x.numel() * x.element_size(), dev, x)
    if np is not None and isinstance(x, np.ndarray):
        if not x.flags["C_CONTIGUOUS"]:
            raise ValueError("pagedkv: array must be C-contiguous "
                             "(np.ascontiguousarray)")
        if writable and not x.flags["WRITEABLE"]:
            raise ValueError("pagedkv: array is read-only")
        return Memory(x.ctypes.data, x.nbytes, "cpu", x)
    try:
        buf = ffi.from_buffer(x, require_writable=writable)
    except TypeError:
        raise TypeError("pagedkv: expected a numpy array, a torch tensor or "
                        "a buffer, got %s" % type(x).__name__)
    return Memory(int(ffi.cast("uintptr_t", buf)), len(buf), "cpu", (x, buf))
