# SPDX-License-Identifier: Apache-2.0
"""Buffer: a pkv_buffer, owned, wrapping caller memory, or a view."""
from ._ffi import ffi, lib
from ._handle import Handle
from . import interop
from .interop import np


def _destroy_buffer(ptr, _parent):
    lib.pkv_buffer_destroy(ptr)


class Buffer(Handle):
    """Device memory of a context (host memory on the CPU backend).

    Made by Context.buffer(nbytes), Context.wrap(array_or_tensor),
    Context.buffer_from(array_or_tensor), Cache.kv(layer) (views the cache
    owns) and Batch.device() (views the batch owns).
    """
    _kind = "buffer"
    _close_rank = 1

    def __init__(self, ptr, parent, ctx, owned, keep=None):
        # the finalizer holds the parent: it is destroyed after this buffer
        super().__init__(ptr, parent, _destroy_buffer if owned else None,
                         (ptr, parent._core))
        self._ctx = ctx
        self._keep = keep

    # -- construction ---------------------------------------------------
    @classmethod
    def create(cls, ctx, nbytes):
        out = ffi.new("pkv_buffer **")
        ctx._check(lib.pkv_buffer_create(ctx._h(), int(nbytes), out))
        return cls(out[0], ctx, ctx, True)

    @classmethod
    def wrap(cls, ctx, obj):
        """Wraps caller memory (see Context.wrap)."""
        mem = interop.memory_of(obj, writable=True)
        backend = ctx.backend
        from .context import CPU, HIP
        if mem.device == "cpu" and backend != CPU:
            raise ValueError("pagedkv: host memory can only be wrapped on the "
                             "cpu backend (this context: %s); use "
                             "buffer_from() to copy" % ctx.backend_name)
        if mem.device == "cuda" and backend != HIP:
            raise ValueError("pagedkv: a cuda/hip tensor can only be wrapped "
                             "on the hip backend (this context: %s)"
                             % ctx.backend_name)
        out = ffi.new("pkv_buffer **")
        ctx._check(lib.pkv_buffer_wrap(ctx._h(), ffi.cast("void *", mem.ptr),
                                       mem.nbytes, out))
        return cls(out[0], ctx, ctx, True, keep=mem.keep)

    @classmethod
    def from_array(cls, ctx, obj):
        mem = interop.memory_of(obj)
        from .context import CPU, HIP
        backend = ctx.backend
        if (mem.device == "cpu" and backend == CPU) or \
           (mem.device == "cuda" and backend == HIP):
            return cls.wrap(ctx, obj)
        if mem.device != "cpu":
            raise ValueError("pagedkv: cannot copy %s memory to the %s backend"
                             % (mem.device, ctx.backend_name))
        buf = cls.create(ctx, mem.nbytes)
        buf.upload(obj)
        return buf

    # -- properties -----------------------------------------------------
    @property
    def context(self):
        return self._ctx

    @property
    def size(self):
        """Size in bytes (pkv_buffer_size)."""
        return int(lib.pkv_buffer_size(self._h()))

    def __len__(self):
        return self.size

    @property
    def native(self):
        """The native object as an int: host pointer, device pointer or
        cl_mem (pkv_buffer_native)."""
        return int(ffi.cast("uintptr_t", lib.pkv_buffer_native(self._h())))

    # -- data -----------------------------------------------------------
    def upload(self, data, offset=0):
        """Copies a numpy array, CPU tensor or bytes-like into the buffer."""
        mem = interop.memory_of(data)
        if mem.device != "cpu":
            raise ValueError("pagedkv: upload takes host memory")
        self._ctx._check(lib.pkv_buffer_upload(
            self._h(), int(offset), ffi.cast("void *", mem.ptr), mem.nbytes))

    def download(self, out=None, offset=0, nbytes=None):
        """Copies from the buffer into `out` (a writable numpy array, CPU
        tensor or bytearray) and returns it; without out, returns bytes of
        nbytes (default: the rest of the buffer)."""
        if out is None:
            if nbytes is None:
                nbytes = self.size - int(offset)
            out = bytearray(nbytes)
            self.download(out, offset)
            return bytes(out)
        mem = interop.memory_of(out, writable=True)
        if mem.device != "cpu":
            raise ValueError("pagedkv: download writes host memory")
        self._ctx._check(lib.pkv_buffer_download(
            self._h(), int(offset), ffi.cast("void *", mem.ptr), mem.nbytes))
        return out

    def to_numpy(self, dtype="float32", shape=None, offset=0):
        """A numpy copy of the buffer's contents (any backend)."""
        dt = np.dtype(dtype) if not _is_pkv_name(dtype) else \
            interop.numpy_dtype(dtype)
        count = (self.size - offset) // dt.itemsize
        arr = np.empty(count, dtype=dt)
        self.download(arr, offset)
        return arr.reshape(shape) if shape is not None else arr

    def numpy(self, dtype="float32", shape=None):
        """A zero-copy numpy view of a CPU-backend buffer (its host memory).
        Valid while the buffer (and for views, its cache) is open."""
        from .context import CPU
        if self._ctx.backend != CPU:
            raise ValueError("pagedkv: numpy() views host memory: cpu backend "
                             "only (use to_numpy() to copy)")
        dt = np.dtype(dtype) if not _is_pkv_name(dtype) else \
            interop.numpy_dtype(dtype)
        raw = ffi.buffer(ffi.cast("char *", self.native), self.size)
        arr = np.frombuffer(raw, dtype=dt, count=self.size // dt.itemsize)
        return arr.reshape(shape) if shape is not None else arr

    def copy_from(self, src, dst_offset=0, src_offset=0, nbytes=None):
        """Device-to-device copy within one context (pkv_buffer_copy)."""
        if nbytes is None:
            nbytes = src.size - src_offset
        self._ctx._check(lib.pkv_buffer_copy(self._h(), int(dst_offset),
                                             src._h(), int(src_offset),
                                             int(nbytes)))


def _is_pkv_name(dtype):
    return isinstance(dtype, str) and dtype.lower() in ("f32", "f16", "bf16")
