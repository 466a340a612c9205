# SPDX-License-Identifier: Apache-2.0
"""Sequence: one pkv_seq_id of a Cache, released when closed."""
from ._ffi import ffi, lib
from ._handle import Handle
from .interop import np


def _release_seq(cache_core, seq_id):
    # the finalizer holds the cache's core, so the cache is still alive
    # here; a cache closed meanwhile detached this finalizer
    if cache_core.ptr is not None:
        lib.pkv_seq_release(cache_core.ptr, seq_id)


class Sequence(Handle):
    """A sequence of a Cache. close() (or leaving `with`, or the garbage
    collector) releases it with pkv_seq_release; close_session() releases
    it into a session instead."""
    _kind = "sequence"

    def __init__(self, cache, seq_id):
        self.id = seq_id
        self._cache = cache
        # the C side has no handle object: the id stands in for it
        super().__init__(seq_id, cache, _release_seq, (cache._core, seq_id))
        cache._seqs[seq_id] = self

    def _c(self):
        self._h()
        return self._cache._h()

    def _check(self, status):
        self._cache._check(status)

    def __repr__(self):
        return "<pagedkv.Sequence %d%s>" % (self.id,
                                            " closed" if self.closed else "")

    def __index__(self):
        return self.id

    @property
    def cache(self):
        return self._cache

    # -- tokens ---------------------------------------------------------
    def append(self, n=None, token_ids=None):
        """Appends n tokens (or len(token_ids)), all-or-nothing; returns
        their slots (slot = page * page_size + offset) as an int64 numpy
        array (a list without numpy)."""
        if token_ids is not None:
            token_ids = list(token_ids) if np is None else \
                np.ascontiguousarray(token_ids, dtype=np.int32)
            if n is None:
                n = len(token_ids)
            elif n != len(token_ids):
                raise ValueError("pagedkv: n=%d but %d token ids"
                                 % (n, len(token_ids)))
        if n is None:
            raise TypeError("pagedkv: append needs n or token_ids")
        slots = ffi.new("int64_t[]", max(int(n), 1))
        ids = ffi.NULL
        if token_ids is not None:
            ids = ffi.new("int32_t[]", [int(t) for t in token_ids])
        self._check(lib.pkv_seq_append(self._c(), self.id, int(n), ids,
                                       slots))
        return _int_array(slots, int(n), np.int64 if np is not None else None)

    def __len__(self):
        return self.length

    @property
    def length(self):
        out = ffi.new("int64_t *")
        self._check(lib.pkv_seq_length(self._c(), self.id, out))
        return int(out[0])

    def pages(self):
        """The sequence's page indices in order (pkv_seq_pages)."""
        count = ffi.new("int64_t *")
        self._check(lib.pkv_seq_pages(self._c(), self.id, ffi.NULL, 0, count))
        n = int(count[0])
        buf = ffi.new("int32_t[]", max(n, 1))
        self._check(lib.pkv_seq_pages(self._c(), self.id, buf, n, count))
        return _int_array(buf, min(n, int(count[0])),
                          np.int32 if np is not None else None)

    # -- prefix reuse, fork, sessions, truncation ---------------------------
    def match_prefix(self, tokens):
        """Attaches the longest cached prefix of tokens; returns the number
        of tokens reused."""
        t = ffi.new("int32_t[]", [int(x) for x in tokens] or [0])
        out = ffi.new("int64_t *")
        self._check(lib.pkv_seq_match_prefix(self._c(), self.id, t,
                                             len(tokens), out))
        return int(out[0])

    def commit(self, computed):
        self._check(lib.pkv_seq_commit(self._c(), self.id, int(computed)))

    def fork(self):
        """A child Sequence sharing this one's pages (copy-on-write)."""
        out = ffi.new("pkv_seq_id *")
        self._check(lib.pkv_seq_fork(self._c(), self.id, out))
        return Sequence(self._cache, int(out[0]))

    def close_session(self, session_key):
        """Releases the sequence, keeping its pages under session_key; the
        object is closed afterwards."""
        self._check(lib.pkv_seq_close_session(self._c(), self.id,
                                              int(session_key)))
        self._forget()

    def truncate_front(self, max_tokens):
        """Drops whole pages from the front until length <= max_tokens;
        returns the number of tokens dropped."""
        out = ffi.new("int64_t *")
        self._check(lib.pkv_seq_truncate_front(self._c(), self.id,
                                               int(max_tokens), out))
        return int(out[0])

    # -- speculative decoding (when the library has it) ---------------------
    def truncate_back(self, n_tokens):
        """Drops the last n_tokens tokens (rejected draft tokens),
        all-or-nothing (pkv_seq_truncate_back)."""
        _need("pkv_seq_truncate_back")
        self._check(lib.pkv_seq_truncate_back(self._c(), self.id,
                                              int(n_tokens)))

    def reserve(self, n_tokens):
        """Takes ahead the pages the next n_tokens appends need, so they
        cannot fail with NoPagesError; 0 cancels (pkv_seq_reserve)."""
        _need("pkv_seq_reserve")
        self._check(lib.pkv_seq_reserve(self._c(), self.id, int(n_tokens)))

    # -- host tier --------------------------------------------------------
    @property
    def is_swapped(self):
        r = lib.pkv_seq_is_swapped(self._c(), self.id)
        if r < 0:
            raise KeyError("pagedkv: sequence %d is unknown" % self.id)
        return bool(r)

    def swap_out(self):
        self._cache.swap_out([self])

    def swap_in(self):
        self._cache.swap_in([self])


def _need(name):
    from ._ffi import has
    if not has(name):
        raise NotImplementedError("pagedkv: this libpagedkv has no %s" % name)


def _int_array(cbuf, n, np_dtype):
    if np_dtype is None:
        return [int(cbuf[i]) for i in range(n)]
    return np.frombuffer(ffi.buffer(cbuf, n * ffi.sizeof(ffi.typeof(cbuf).item)),
                         dtype=np_dtype).copy()
