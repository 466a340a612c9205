# SPDX-License-Identifier: Apache-2.0
"""Cache: the page pool and its control plane (pkv_cache_*, pkv_class_*,
pkv_namespace_*, pkv_page_*, host tier)."""
import weakref

from . import _structs, interop
from ._ffi import ffi, lib, new_struct
from ._handle import Handle
from .buffer import Buffer
from .interop import np

HND = int(lib.PKV_LAYOUT_HND)
NHD = int(lib.PKV_LAYOUT_NHD)
PAGE_FREE = int(lib.PKV_PAGE_FREE)
PAGE_LIVE = int(lib.PKV_PAGE_LIVE)
PAGE_CACHED = int(lib.PKV_PAGE_CACHED)


def _destroy_cache(ptr, _ctx, _pools):
    lib.pkv_cache_destroy(ptr)


def _layout(x):
    if isinstance(x, str):
        try:
            return {"hnd": HND, "nhd": NHD}[x.lower()]
        except KeyError:
            raise ValueError("pagedkv: unknown layout %r (hnd, nhd)" % x)
    return int(x)


def seq_ids(seqs):
    """An int64 array of sequence ids from Sequences or ints."""
    ids = [s.id if hasattr(s, "id") else int(s) for s in seqs]
    return ffi.new("pkv_seq_id[]", ids), len(ids)


class Cache(Handle):
    """A pkv_cache on a Context.

    Cache(ctx, num_layers=..., num_kv_heads=..., head_dim=..., page_size=...,
          num_pages=..., dtype="f16", layout="hnd", ...): keyword arguments
    are pkv_cache_desc fields; dtype takes "f32"/"f16"/"bf16", numpy or
    torch dtypes; layout "hnd"/"nhd"; class_reserved a list.
    """
    _kind = "cache"

    def __init__(self, ctx, _over=None, **desc):
        d = new_struct("pkv_cache_desc")
        if "dtype" in desc:
            desc["dtype"] = interop.dtype_of(desc["dtype"])
        if "layout" in desc:
            desc["layout"] = _layout(desc["layout"])
        keep = []
        _structs.fill(d, "pkv_cache_desc", desc, keep)
        out = ffi.new("pkv_cache **")
        if _over is None:
            ctx._check(lib.pkv_cache_create(ctx._h(), d, out))
        else:  # kernel.cache_over: pools the caller allocated
            ka, va, pools = _over
            ctx._check(lib.pkv_cache_create_over(ctx._h(), d, ka, va, out))
        # the finalizer holds the pools: they outlive the cache
        super().__init__(out[0], ctx, _destroy_cache,
                         (out[0], ctx._core, _over and _over[2]))
        self._ctx = ctx
        self._seqs = weakref.WeakValueDictionary()
        self.geometry = self.get_geometry()

    def _check(self, status):
        self._ctx._check(status)

    def _parent_closing(self):
        self.close()

    def close(self):
        # sequences die with the cache (no release call); batches and views
        # are closed before pkv_cache_destroy
        if self._ptr is None:
            return
        for child in list(self._children):
            if isinstance(child, Sequence):
                child._forget()
        super().close()

    @property
    def context(self):
        return self._ctx

    # -- geometry and pools ----------------------------------------------
    def get_geometry(self):
        """pkv_cache_geometry as a namespace (also kept as .geometry)."""
        out = new_struct("pkv_cache_geometry")
        self._check(lib.pkv_cache_get_geometry(self._h(), out))
        return _structs.to_namespace(out, "pkv_cache_geometry")

    def kv_view(self, layer):
        """The kernel-layer KVView of one layer (pkv_cache_kv_view)."""
        from .kernel import KVView
        return KVView.of_cache(self, layer)

    def kv(self, layer):
        """(K, V) pool Buffers of one layer, owned by the cache."""
        k = ffi.new("pkv_buffer **")
        v = ffi.new("pkv_buffer **")
        self._check(lib.pkv_cache_kv(self._h(), int(layer), k, v))
        return (Buffer(k[0], self, self._ctx, False),
                Buffer(v[0], self, self._ctx, False))

    def kv_arrays(self, layer):
        """(K, V) of one layer as zero-copy numpy arrays on the CPU backend,
        shaped [num_pages, num_kv_heads, page_size, head_dim] (HND) or
        [num_pages, page_size, num_kv_heads, head_dim] (NHD); bf16 as uint16.
        Valid while the cache is open. torch.from_numpy() views them too."""
        g = self.geometry
        if g.layout == NHD:
            shape = (g.num_pages, g.page_size, g.num_kv_heads, g.head_dim)
        else:
            shape = (g.num_pages, g.num_kv_heads, g.page_size, g.head_dim)
        dt = interop.numpy_dtype(g.dtype)
        k, v = self.kv(layer)
        return (k.numpy(dt, shape), v.numpy(dt, shape))

    def export_dlpack(self, layer, which):
        """The K (which=0) or V (which=1) pool of a layer as a DLPack
        "dltensor" capsule, no copy (pkv_cache_export_dlpack); valid while
        the cache is open. NotImplementedError without library support."""
        from . import dlpack
        return dlpack.export(self, "pkv_cache_export_dlpack", int(layer),
                             int(which))

    def kv_tensors(self, layer):
        """(K, V) of one layer as torch tensors without a copy: through
        DLPack when the library has it (any backend with a DLPack device),
        else through numpy on the CPU backend."""
        import torch
        from . import dlpack
        if dlpack.available():
            return tuple(dlpack.to_torch(self.export_dlpack(layer, w))
                         for w in (0, 1))
        k, v = self.kv_arrays(layer)
        if self.geometry.dtype == interop.BF16:
            # torch has no uint16: reinterpret through int16
            return (torch.from_numpy(k.view(np.int16)).view(torch.bfloat16),
                    torch.from_numpy(v.view(np.int16)).view(torch.bfloat16))
        return torch.from_numpy(k), torch.from_numpy(v)

    # -- sequences ---------------------------------------------------------
    def open_seq(self, priority_class=0, namespace_id=0, **desc):
        """Opens an empty Sequence (pkv_seq_open)."""
        from .sequence import Sequence as _S
        d = _seq_desc(priority_class, namespace_id, desc)
        out = ffi.new("pkv_seq_id *")
        self._check(lib.pkv_seq_open(self._h(), d, out))
        return _S(self, int(out[0]))

    def session_open(self, session_key, priority_class=0, namespace_id=0,
                     **desc):
        """Reopens a session: (Sequence, tokens that survived)."""
        from .sequence import Sequence as _S
        d = _seq_desc(priority_class, namespace_id, desc)
        out = ffi.new("pkv_seq_id *")
        tokens = ffi.new("int64_t *")
        self._check(lib.pkv_session_open(self._h(), int(session_key), d, out,
                                         tokens))
        return _S(self, int(out[0])), int(tokens[0])

    def seq(self, seq_id):
        """The live Sequence object of an id (e.g. a preemption candidate)."""
        s = self._seqs.get(int(seq_id))
        if s is None or s.closed:
            raise KeyError("pagedkv: no open Sequence with id %d" % seq_id)
        return s

    def namespace_drop(self, namespace_id):
        self._check(lib.pkv_namespace_drop(self._h(), int(namespace_id)))

    # -- classes and preemption -----------------------------------------
    def class_set_reserved(self, cls, reserved_pages):
        self._check(lib.pkv_class_set_reserved(self._h(), int(cls),
                                               int(reserved_pages)))

    def preemption_candidates(self, cls):
        """Sequence ids to preempt to make room for class cls (cache.seq(id)
        gives the object)."""
        count = ffi.new("int64_t *")
        self._check(lib.pkv_preemption_candidates(self._h(), int(cls),
                                                  ffi.NULL, 0, count))
        n = int(count[0])
        if n == 0:
            return []
        out = ffi.new("pkv_seq_id[]", n)
        self._check(lib.pkv_preemption_candidates(self._h(), int(cls), out, n,
                                                  count))
        return [int(out[i]) for i in range(min(n, int(count[0])))]

    # -- host tier --------------------------------------------------------
    def swap_out(self, seqs):
        arr, n = seq_ids(seqs)
        self._check(lib.pkv_seq_swap_out(self._h(), arr, n))

    def swap_in(self, seqs):
        arr, n = seq_ids(seqs)
        self._check(lib.pkv_seq_swap_in(self._h(), arr, n))

    def flush(self):
        """Runs pending copy-on-write page copies now (pkv_cache_flush)."""
        self._check(lib.pkv_cache_flush(self._h()))

    # -- statistics ---------------------------------------------------------
    def stats(self):
        """pkv_stats as a namespace; .classes lists num_classes entries."""
        out = new_struct("pkv_stats")
        self._check(lib.pkv_cache_stats(self._h(), out))
        ns = _structs.to_namespace(out, "pkv_stats")
        ns.classes = ns.classes[:ns.num_classes]
        return ns

    def page_info(self, page):
        out = new_struct("pkv_page_info")
        self._check(lib.pkv_page_get_info(self._h(), int(page), out))
        return _structs.to_namespace(out, "pkv_page_info")

    # -- batches and writes -----------------------------------------------
    def batch(self):
        """A new Batch descriptor on this cache."""
        from .batch import Batch
        return Batch(self)

    def write_kv_slots(self, layer, k, v, slots, n=None):
        """Writes n tokens' K/V to explicit slots (pkv_write_kv_slots);
        k, v, slots are Buffers or arrays the backend can wrap; a negative
        slot is skipped."""
        from .batch import as_buffers
        interop.check_dtype(k, self.geometry.dtype, "k")
        interop.check_dtype(v, self.geometry.dtype, "v")
        with as_buffers(self._ctx, k, v, slots) as (kb, vb, sb):
            if n is None:
                n = sb.size // 8
            self._check(lib.pkv_write_kv_slots(self._h(), int(layer), kb._h(),
                                               vb._h(), sb._h(), int(n)))


def _seq_desc(priority_class, namespace_id, extra):
    d = new_struct("pkv_seq_desc")
    extra = dict(extra)
    extra.update(priority_class=priority_class, namespace_id=namespace_id)
    _structs.fill(d, "pkv_seq_desc", extra, [])
    return d


def dtype_size(dtype):
    """Bytes of one element of a pkv_dtype; 0 for an unknown one."""
    return int(lib.pkv_dtype_size(interop.dtype_of(dtype)))


def convert_from_f32(dtype, src):
    """float32 values (array-like) to a pkv_dtype: a numpy array (uint16 for
    bf16), rounded as the backends round (pkv_convert_from_f32)."""
    from .errors import check
    s = np.ascontiguousarray(src, dtype=np.float32)
    out = np.empty(s.shape, dtype=interop.numpy_dtype(dtype))
    check(lib.pkv_convert_from_f32(
        interop.dtype_of(dtype), ffi.cast("float *", s.ctypes.data),
        ffi.cast("void *", out.ctypes.data), s.size))
    return out


def convert_to_f32(dtype, src):
    """Values of a pkv_dtype (numpy array, uint16 for bf16) to float32."""
    from .errors import check
    s = np.ascontiguousarray(src, dtype=interop.numpy_dtype(dtype))
    out = np.empty(s.shape, dtype=np.float32)
    check(lib.pkv_convert_to_f32(
        interop.dtype_of(dtype), ffi.cast("void *", s.ctypes.data),
        ffi.cast("float *", out.ctypes.data), s.size))
    return out


from .sequence import Sequence  # noqa: E402  (used by close())
