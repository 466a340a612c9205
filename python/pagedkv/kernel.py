# SPDX-License-Identifier: Apache-2.0
"""The kernel-level layer (pkv_kv_*): attention and K/V writes over memory
the caller owns, with its own block tables, no Cache needed.

Present when the library has it (available()); experimental in the C API,
so it may change. The objects here hold the C structs plus Python
references to every buffer and array the structs point to, so nothing is
freed while a struct still names it.
"""
from . import _structs, interop
from ._ffi import ffi, has, lib, new_struct
from .batch import attn_params
from .buffer import Buffer
from .interop import np


def available():
    """True when the loaded library has the kernel-level layer."""
    return all(has(n) for n in ("pkv_kv_attention", "pkv_kv_write",
                                "pkv_tensor_init_sized"))


def _need():
    if not available():
        raise NotImplementedError("pagedkv: this libpagedkv has no "
                                  "kernel-level layer (pkv_kv_attention)")


def _buffer(ctx, x, keep, output=False):
    """A Buffer for x: Buffers as given; arrays/tensors wrapped where the
    backend can, else (inputs only) copied to a new device buffer."""
    if isinstance(x, Buffer):
        return x
    b = Buffer.wrap(ctx, x) if output else Buffer.from_array(ctx, x)
    keep.append(b)
    return b


class Tensor:
    """A pkv_tensor: [tokens][heads][head_dim] in a buffer, strided.

    Tensor(ctx, x, dtype=None, offset=0, token_stride=0, head_stride=0);
    x is a Buffer or an array/tensor (its dtype is the default; offsets and
    strides as in the C struct: bytes and elements)."""

    def __init__(self, ctx, x, dtype=None, offset=0, token_stride=0,
                 head_stride=0, output=False):
        _need()
        self._keep = []
        if dtype is None and not isinstance(x, Buffer):
            dtype = x.dtype
        self.buffer = _buffer(ctx, x, self._keep, output)
        self.c = new_struct("pkv_tensor")
        self.c.buf = self.buffer._h()
        self.c.offset = int(offset)
        self.c.dtype = interop.dtype_of(dtype if dtype is not None else "f32")
        self.c.token_stride = int(token_stride)
        self.c.head_stride = int(head_stride)

    @classmethod
    def of(cls, ctx, x, output=False):
        return x if isinstance(x, cls) else cls(ctx, x, output=output)


class KVView:
    """A pkv_kv_view: the K and V pools of one layer.

    KVView(ctx, k, v, page_size=, num_kv_heads=, head_dim=, num_pages=,
           dtype=, page_stride=0, head_stride=0, token_stride=0)
    or KVView.of_cache(cache, layer)."""

    def __init__(self, ctx, k, v, **fields):
        _need()
        self._keep = []
        self.k = _buffer(ctx, k, self._keep)
        self.v = _buffer(ctx, v, self._keep)
        self.c = new_struct("pkv_kv_view")
        if "dtype" in fields:
            fields["dtype"] = interop.dtype_of(fields["dtype"])
        _structs.fill(self.c, "pkv_kv_view", fields, self._keep)
        self.c.k = self.k._h()
        self.c.v = self.v._h()

    @classmethod
    def of_cache(cls, cache, layer):
        _need()
        self = cls.__new__(cls)
        self._keep = [cache]
        self.c = new_struct("pkv_kv_view")
        cache._check(lib.pkv_cache_kv_view(cache._h(), int(layer), self.c))
        self.k = self.v = None
        return self


class KVTable:
    """A pkv_kv_table: which pages each sequence of a step reads.

    KVTable.csr(ctx, q_indptr, kv_indptr, kv_indices, kv_last_page_len,
                page_size)
    KVTable.dense(ctx, q_indptr, block_table, seq_lens)
    KVTable.of_batch(batch, "csr" | "dense")
    Arrays are int32 numpy arrays (or Buffers); numpy inputs are also given
    as the host mirrors, so the library checks every entry before a
    launch."""

    def __init__(self):
        self._keep = []
        self.c = new_struct("pkv_kv_table")

    def _set(self, ctx, name, arr):
        if arr is None:
            return
        if np is not None and not isinstance(arr, Buffer) and \
                not interop.is_tensor(arr):
            arr = np.ascontiguousarray(arr, dtype=np.int32)
            self._keep.append(arr)
            host = "host_" + name
            if any(f == host for f in _structs.fields("pkv_kv_table")):
                setattr(self.c, host, ffi.cast("const int32_t *",
                                               arr.ctypes.data))
        setattr(self.c, name, _buffer(ctx, arr, self._keep)._h())

    @staticmethod
    def _common(self, ctx, q_indptr, kind):
        _need()
        q = np.ascontiguousarray(q_indptr, dtype=np.int32)
        self.c.kind = kind
        self.c.num_seqs = len(q) - 1
        self.c.num_tokens = int(q[-1])
        self.c.max_q_len = int(np.max(np.diff(q))) if len(q) > 1 else 0
        self._set(ctx, "q_indptr", q)
        return q

    @classmethod
    def csr(cls, ctx, q_indptr, kv_indptr, kv_indices, kv_last_page_len,
            page_size):
        self = cls()
        cls._common(self, ctx, q_indptr, int(lib.PKV_TABLE_CSR))
        ind = np.ascontiguousarray(kv_indptr, dtype=np.int32)
        last = np.ascontiguousarray(kv_last_page_len, dtype=np.int32)
        npages = np.diff(ind)
        lens = np.where(npages > 0, (npages - 1) * page_size + last, 0)
        self.c.max_kv_len = int(lens.max()) if len(lens) else 0
        self.c.num_kv_indices = int(ind[-1])
        self._set(ctx, "kv_indptr", ind)
        self._set(ctx, "kv_indices", kv_indices)
        self._set(ctx, "kv_last_page_len", last)
        return self

    @classmethod
    def dense(cls, ctx, q_indptr, block_table, seq_lens):
        self = cls()
        cls._common(self, ctx, q_indptr, int(lib.PKV_TABLE_DENSE))
        bt = np.ascontiguousarray(block_table, dtype=np.int32)
        sl = np.ascontiguousarray(seq_lens, dtype=np.int32)
        self.c.max_pages = bt.shape[1] if bt.ndim == 2 else 0
        self.c.max_kv_len = int(sl.max()) if len(sl) else 0
        self._set(ctx, "block_table", bt)
        self._set(ctx, "seq_lens", sl)
        return self

    @classmethod
    def of_batch(cls, batch, kind="csr"):
        _need()
        self = cls()
        k = {"csr": lib.PKV_TABLE_CSR, "dense": lib.PKV_TABLE_DENSE}[kind] \
            if isinstance(kind, str) else kind
        batch._check(lib.pkv_batch_get_table(batch._h(), k, self.c))
        self._keep.append(batch)
        return self


def kv_write(ctx, view, slots, k, v, n=None):
    """Writes n tokens' K and V into slots (int64; negative = skip) of the
    view's pools (pkv_kv_write). numpy slots are also the host mirror."""
    _need()
    keep = []
    host = ffi.NULL
    if np is not None and not isinstance(slots, Buffer) and \
            not interop.is_tensor(slots):
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        host = ffi.cast("const int64_t *", slots.ctypes.data)
    sb = _buffer(ctx, slots, keep)
    if n is None:
        n = sb.size // 8
    kt, vt = Tensor.of(ctx, k), Tensor.of(ctx, v)
    try:
        ctx._check(lib.pkv_kv_write(ctx._h(), view.c, sb._h(), host, int(n),
                                    kt.c, vt.c))
    finally:
        for b in keep:
            if b is not slots:
                b.close()


def kv_attention(ctx, view, table, q, out, lse=None, *, num_q_heads,
                 **params):
    """Paged attention of the table's queries over the view into out
    (pkv_kv_attention); q/out are Tensors, Buffers or arrays/tensors (out
    and lse as arrays only where the backend wraps them: cpu memory on the
    cpu backend, device tensors on hip)."""
    _need()
    p, keep = attn_params(num_q_heads, **params)
    qt, ot = Tensor.of(ctx, q), Tensor.of(ctx, out, output=True)
    lb = _buffer(ctx, lse, keep, output=True) if lse is not None else None
    ctx._check(lib.pkv_kv_attention(ctx._h(), view.c, table.c, p, qt.c, ot.c,
                                    lb._h() if lb is not None else ffi.NULL))


def cache_over(ctx, k_bufs, v_bufs, **desc):
    """A Cache over K/V pools the caller allocated (pkv_cache_create_over):
    k_bufs[l], v_bufs[l] per layer (Buffers or arrays/tensors the backend
    can wrap). The Cache keeps them alive; Buffers given as such must stay
    open as long as the cache."""
    if not has("pkv_cache_create_over"):
        raise NotImplementedError("pagedkv: this libpagedkv has no "
                                  "pkv_cache_create_over")
    from .cache import Cache
    keep = []
    dt = interop.dtype_of(desc.get("dtype", "f16"))  # pkv_cache_desc_init's

    def pool(x):
        if isinstance(x, Buffer):
            return x
        interop.check_dtype(x, dt, "a pool")
        b = Buffer.wrap(ctx, x)
        ctx._children.discard(b)  # owned by the cache, freed after it
        keep.append(b)
        return b
    kb = [pool(x) for x in k_bufs]
    vb = [pool(x) for x in v_bufs]
    keep += [b for b in kb + vb if b not in keep]
    ka = ffi.new("pkv_buffer *[]", [b._h() for b in kb])
    va = ffi.new("pkv_buffer *[]", [b._h() for b in vb])
    return Cache(ctx, _over=(ka, va, keep), **desc)
