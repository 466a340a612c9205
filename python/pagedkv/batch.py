# SPDX-License-Identifier: Apache-2.0
"""Batch: the per-step descriptor, K/V writes and attention."""
import contextlib
import types

from . import _structs, interop
from ._ffi import ffi, has, lib, new_struct
from ._handle import Handle
from .buffer import Buffer
from .cache import seq_ids
from .interop import np


def _destroy_batch(ptr, _cache):
    lib.pkv_batch_destroy(ptr)


@contextlib.contextmanager
def as_buffers(ctx, *objs):
    """Buffers for each argument: Buffers as they are, arrays/tensors wrapped
    without a copy (host memory on the cpu backend, device tensors on hip);
    the temporary wraps are closed on exit. None stays None."""
    made = []
    out = []
    try:
        for o in objs:
            if o is None or isinstance(o, Buffer):
                out.append(o)
            else:
                b = Buffer.wrap(ctx, o)
                made.append(b)
                out.append(b)
        yield out
    finally:
        for b in made:
            b.close()


def attn_params(num_q_heads, **params):
    """A pkv_attn_params from keywords (scale, causal, window_left, softcap,
    alibi_slopes and sinks as lists, any field a newer header adds). Returns
    (params, keepalive)."""
    p = new_struct("pkv_attn_params", int(num_q_heads))
    p.num_q_heads = int(num_q_heads)  # the _init_sized form takes no count
    keep = []
    _structs.fill(p, "pkv_attn_params", params, keep)
    return p, keep


class Batch(Handle):
    """A pkv_batch of a Cache: build() once per step, then per layer
    write_kv() and attention()."""
    _kind = "batch"

    def __init__(self, cache):
        out = ffi.new("pkv_batch **")
        cache._check(lib.pkv_batch_create(cache._h(), out))
        super().__init__(out[0], cache, _destroy_batch,
                         (out[0], cache._core))
        self._cache = cache
        self._ctx = cache.context

    def _check(self, status):
        self._cache._check(status)

    @property
    def cache(self):
        return self._cache

    def build(self, seqs, q_lens=None):
        """Describes one step over seqs (Sequences or ids); q_lens[i] query
        tokens of seqs[i] (None: 1 each, decode)."""
        arr, n = seq_ids(seqs)
        ql = ffi.NULL
        if q_lens is not None:
            if len(q_lens) != n:
                raise ValueError("pagedkv: %d q_lens for %d sequences"
                                 % (len(q_lens), n))
            ql = ffi.new("int32_t[]", [int(x) for x in q_lens] or [0])
        self._check(lib.pkv_batch_build(self._h(), arr, n, ql))

    def view(self):
        """The last build's arrays (pkv_batch_view) as a namespace: the
        scalars as ints, the arrays as numpy copies (lists without numpy)."""
        v = new_struct("pkv_batch_view")
        self._check(lib.pkv_batch_get_view(self._h(), v))
        ns = types.SimpleNamespace(num_seqs=v.num_seqs, max_pages=v.max_pages,
                                   num_tokens=v.num_tokens,
                                   max_q_len=v.max_q_len,
                                   max_kv_len=v.max_kv_len)
        n, t = v.num_seqs, v.num_tokens
        sizes = {"block_table": n * v.max_pages, "seq_lens": n,
                 "q_indptr": n + 1, "kv_indptr": n + 1,
                 "kv_last_page_len": n, "slot_mapping": t}
        for name, count in sizes.items():
            setattr(ns, name, _copy(getattr(v, name), count))
        ns.kv_indices = _copy(v.kv_indices, int(ns.kv_indptr[n]) if n else 0)
        if np is not None and n:
            ns.block_table = ns.block_table.reshape(n, v.max_pages)
        return ns

    def device(self):
        """The device copies (pkv_batch_device) as Buffers owned by the
        batch, valid until the next build."""
        d = new_struct("pkv_batch_device")
        self._check(lib.pkv_batch_get_device(self._h(), d))
        ns = types.SimpleNamespace()
        for name in _structs.fields("pkv_batch_device"):
            if name == "struct_size":
                continue
            ptr = getattr(d, name)
            setattr(ns, name, None if ptr == ffi.NULL else
                    Buffer(ptr, self, self._ctx, False))
        return ns

    def write_kv(self, layer, k, v):
        """Writes the new tokens' K and V ([num_tokens][kv_heads][head_dim],
        cache dtype) into their slots of `layer`."""
        dt = self._cache.geometry.dtype
        interop.check_dtype(k, dt, "k")
        interop.check_dtype(v, dt, "v")
        with as_buffers(self._ctx, k, v) as (kb, vb):
            self._check(lib.pkv_write_kv(self._h(), int(layer), kb._h(),
                                         vb._h()))

    def attention(self, layer, q, out, lse=None, *, num_q_heads, **params):
        """Paged attention of the batch's queries over `layer` into out
        (and f32 log-sum-exp into lse). params: scale, causal, window_left,
        softcap, alibi_slopes, and fields a newer header adds."""
        dt = self._cache.geometry.dtype
        interop.check_dtype(q, dt, "q")
        interop.check_dtype(out, dt, "out")
        if lse is not None:
            interop.check_dtype(lse, interop.F32, "lse")
        p, keep = attn_params(num_q_heads, **params)
        with as_buffers(self._ctx, q, out, lse) as (qb, ob, lb):
            self._check(lib.pkv_attention(self._h(), int(layer), p, qb._h(),
                                          ob._h(),
                                          lb._h() if lb is not None
                                          else ffi.NULL))
        del keep

    def table(self, kind="csr"):
        """The kernel-layer KVTable of the last build (pkv_batch_get_table),
        "csr" or "dense"."""
        from .kernel import KVTable
        return KVTable.of_batch(self, kind)

    # DLPack export, when the library has it (see pagedkv.dlpack)
    def export_dlpack(self, which):
        """One array of the last build (pkv_batch_array, e.g.
        lib.PKV_BATCH_BLOCK_TABLE) as a DLPack "dltensor" capsule, no copy
        (pkv_batch_export_dlpack); valid until the next build."""
        from . import dlpack
        return dlpack.export(self, "pkv_batch_export_dlpack", int(which))


def _copy(ptr, count):
    if np is None:
        return [int(ptr[i]) for i in range(count)]
    if count == 0 or ptr == ffi.NULL:
        return np.zeros(0, dtype=_np_type(ptr))
    return np.frombuffer(ffi.buffer(ptr, count * ffi.sizeof(ffi.typeof(ptr).item)),
                         dtype=_np_type(ptr)).copy()


def _np_type(ptr):
    return np.int64 if ffi.sizeof(ffi.typeof(ptr).item) == 8 else np.int32


def has_kernel_layer():
    """True when the library has the kernel-level layer (pkv_kv_*)."""
    return has("pkv_kv_attention")
