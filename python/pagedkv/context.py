# SPDX-License-Identifier: Apache-2.0
"""Version, backends, devices and the Context."""
from . import _structs
from ._ffi import ffi, lib, new_struct, string
from ._handle import Handle
from .errors import check

# --------------------------------------------------------------- version


def version():
    """(major, minor, patch) of the loaded library (pkv_version)."""
    p = ffi.new("int[3]")
    lib.pkv_version(p, p + 1, p + 2)
    return tuple(p)


def version_string():
    return string(lib.pkv_version_string())


# --------------------------------------------------------------- backends

AUTO = int(lib.PKV_BACKEND_AUTO)
CPU = int(lib.PKV_BACKEND_CPU)
OPENCL = int(lib.PKV_BACKEND_OPENCL)
HIP = int(lib.PKV_BACKEND_HIP)


def backend_name(kind):
    """"cpu", "opencl", ...; None for an unknown value (pkv_backend_name)."""
    return string(lib.pkv_backend_name(kind))


def backend_from_name(name):
    """The pkv_backend_kind of a name (case-insensitive)."""
    out = ffi.new("pkv_backend_kind *")
    check(lib.pkv_backend_from_name(name.encode(), out))
    return int(out[0])


def backend_kind(backend):
    if backend is None:
        return AUTO
    if isinstance(backend, str):
        return backend_from_name(backend)
    return int(backend)


def backend_available(backend):
    """True when the backend was compiled into this library."""
    return bool(lib.pkv_backend_available(backend_kind(backend)))


def list_devices(backend):
    """The devices one backend sees, as namespaces of pkv_device_info.
    Raises NoBackendError for a backend not compiled in."""
    kind = backend_kind(backend)
    count = ffi.new("int *")
    check(lib.pkv_list_devices(kind, ffi.NULL, 0, count))
    n = count[0]
    if n == 0:
        return []
    arr = ffi.new("pkv_device_info[]", n)
    if _has_size("pkv_device_info"):
        for i in range(n):
            arr[i].struct_size = ffi.sizeof("pkv_device_info")
    check(lib.pkv_list_devices(kind, arr, n, count))
    return [_structs.to_namespace(arr[i], "pkv_device_info")
            for i in range(min(n, count[0]))]


def _has_size(ctype):
    from ._ffi import has_field
    return has_field(ctype, "struct_size")


def _stream_handle(stream):
    """A native stream pointer from a torch stream, an int or a cdata."""
    if stream is None:
        return ffi.NULL
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream (CUDA or ROCm)
        return ffi.cast("void *", stream.cuda_stream)
    if isinstance(stream, int):
        return ffi.cast("void *", stream)
    return ffi.cast("void *", stream)


class Context(Handle):
    """A pkv_context: one backend and device.

    Context(backend="cpu") or Context("hip", stream=torch.cuda.current_stream()).
    Keyword arguments are pkv_context_desc fields (device, device_name,
    platform, cpu_threads, flags, cache_dir, native_context, native_queue).
    stream= is a torch.cuda.Stream (its cuda_stream handle, also on ROCm),
    an int or a pointer, given to the HIP backend as its native_queue; the
    string "current" takes torch.cuda.current_stream().
    """
    _kind = "context"

    def __init__(self, backend=None, *, stream=None, **desc):
        self._keep = []
        d = new_struct("pkv_context_desc")
        d.backend = backend_kind(backend)
        if stream is not None:
            if isinstance(stream, str) and stream == "current":
                import torch
                stream = torch.cuda.current_stream()
            self._keep.append(stream)
            desc["native_queue"] = _stream_handle(stream)
        for k in ("native_context", "native_queue"):
            if k in desc and isinstance(desc[k], int):
                desc[k] = ffi.cast("void *", desc[k])
        _structs.fill(d, "pkv_context_desc", desc, self._keep)
        out = ffi.new("pkv_context **")
        check(lib.pkv_context_create(d, out))
        super().__init__(out[0], None, lib.pkv_context_destroy, (out[0],))

    @property
    def backend(self):
        """The pkv_backend_kind this context runs on."""
        return int(lib.pkv_context_backend(self._h()))

    @property
    def backend_name(self):
        return backend_name(self.backend)

    def device_info(self):
        out = new_struct("pkv_device_info")
        self._check(lib.pkv_context_device_info(self._h(), out))
        return _structs.to_namespace(out, "pkv_device_info")

    def synchronize(self):
        """Waits for all work queued on the device."""
        self._check(lib.pkv_context_synchronize(self._h()))

    def last_error(self):
        return string(lib.pkv_last_error(self._h()))

    def _check(self, status):
        check(status, self._ptr if self._ptr is not None else None)

    # -- factories ------------------------------------------------------
    def buffer(self, nbytes):
        """New device memory (host memory on the CPU backend)."""
        from .buffer import Buffer
        return Buffer.create(self, nbytes)

    def wrap(self, obj):
        """A Buffer over memory the caller owns, without a copy: a numpy
        array or CPU tensor on the CPU backend, a CUDA/HIP tensor on the HIP
        backend. The Buffer keeps obj alive."""
        from .buffer import Buffer
        return Buffer.wrap(self, obj)

    def buffer_from(self, obj):
        """A Buffer holding a copy of obj: wraps where the backend can (CPU
        memory on CPU, device tensors on HIP), else creates and uploads."""
        from .buffer import Buffer
        return Buffer.from_array(self, obj)

    def cache(self, **desc):
        """A Cache on this context; see Cache."""
        from .cache import Cache
        return Cache(self, **desc)
