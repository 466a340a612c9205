# SPDX-License-Identifier: Apache-2.0
"""Page keys, KV events and page export/import (pkv_seq_page_keys,
pkv_cache_*_event*, pkv_pages_*, pkv_seq_export/import). Experimental in
the C API (doc/kv-events.md), so it may change.

Keys are (lo, hi) tuples of ints; K/V travel as bytes in the wire form
(pkv_cache_page_wire_bytes per page)."""
from ._ffi import ffi, has, lib, new_struct

STORED = 1
EVICTED = 2
NAMESPACE_DROPPED = 3


def available():
    """True when the loaded library has page keys and events."""
    return all(has(n) for n in ("pkv_seq_page_keys", "pkv_pages_import"))


def _keys(keys):
    arr = ffi.new("pkv_page_key[]", max(len(keys), 1))
    for i, (lo, hi) in enumerate(keys):
        arr[i].lo, arr[i].hi = int(lo), int(hi)
    return arr


def _layout(cache, layout):
    if layout is None:
        return int(cache.geometry.layout)
    from .cache import _layout as parse
    return parse(layout)


def page_keys(cache, seq, first_page=0, max_pages=None):
    """Keys of the sequence's full pages with known token ids."""
    sid = seq.id if hasattr(seq, "id") else int(seq)
    if max_pages is None:
        n = ffi.new("int64_t *")
        cache._check(lib.pkv_seq_pages(cache._h(), sid, ffi.NULL, 0, n))
        max_pages = max(int(n[0]) - first_page, 0)
    out = ffi.new("pkv_page_key[]", max(max_pages, 1))
    n = ffi.new("int64_t *")
    cache._check(lib.pkv_seq_page_keys(cache._h(), sid, first_page,
                                       max_pages, out, n))
    return [(int(out[i].lo), int(out[i].hi)) for i in range(n[0])]


def wire_bytes(cache):
    """Bytes of one page in the export/import wire form."""
    b = ffi.new("size_t *")
    cache._check(lib.pkv_cache_page_wire_bytes(cache._h(), b))
    return int(b[0])


def set_event_queue(cache, capacity):
    cache._check(lib.pkv_cache_set_event_queue(cache._h(), int(capacity)))


def _event(ev):
    return {"kind": int(ev.kind), "num_tokens": int(ev.num_tokens),
            "namespace_id": int(ev.namespace_id),
            "key": (int(ev.key.lo), int(ev.key.hi)),
            "parent_key": ((int(ev.parent_key.lo), int(ev.parent_key.hi))
                           if ev.has_parent else None),
            "seqno": int(ev.seqno)}


def poll_events(cache, max_events=256):
    """(events as dicts, lost count) from the cache's queue."""
    out = ffi.new("pkv_kv_event[]", max(max_events, 1))
    lib.pkv_kv_event_init_sized(out, ffi.sizeof("pkv_kv_event"))
    n = ffi.new("int64_t *")
    lost = ffi.new("int64_t *")
    cache._check(lib.pkv_cache_poll_events(cache._h(), out, max_events, n,
                                           lost))
    return [_event(out[i]) for i in range(n[0])], int(lost[0])


def set_event_callback(cache, fn):
    """fn(event dict) for every event (None removes it). The callback
    object is kept on the cache."""
    if fn is None:
        cache._check(lib.pkv_cache_set_event_callback(cache._h(), ffi.NULL,
                                                      ffi.NULL))
        cache._event_cb = None
        return

    @ffi.callback("void(void *, const pkv_kv_event *)")
    def cb(_user, ev):
        fn(_event(ev))
    cache._check(lib.pkv_cache_set_event_callback(cache._h(), cb, ffi.NULL))
    cache._event_cb = cb


def export_pages(cache, namespace_id, keys, layout=None):
    """(K/V bytes, token ids) of the indexed pages of a key chain."""
    hold = ffi.new("pkv_page_hold **")
    cache._check(lib.pkv_pages_hold(cache._h(), int(namespace_id),
                                    _keys(keys), len(keys), hold))
    try:
        count = int(lib.pkv_page_hold_count(hold[0]))
        pages = ffi.new("int32_t[]", max(count, 1))
        total = ffi.new("int64_t *")
        cache._check(lib.pkv_page_hold_pages(hold[0], pages, count, total))
        ps = int(cache.geometry.page_size)
        size = count * wire_bytes(cache)
        dst = ffi.new("unsigned char[]", max(size, 1))
        toks = ffi.new("int32_t[]", max(count * ps, 1))
        cache._check(lib.pkv_pages_read(cache._h(), hold[0],
                                        _layout(cache, layout), dst, size,
                                        toks))
        return bytes(ffi.buffer(dst, size)), [toks[i] for i in
                                               range(count * ps)]
    finally:
        lib.pkv_page_hold_release(cache._h(), hold[0])


def import_pages(cache, namespace_id, keys, tokens, data, parent=None,
                 layout=None):
    """Imports a key chain's pages; returns (imported, skipped)."""
    par = _keys([parent]) if parent is not None else ffi.NULL
    toks = ffi.new("int32_t[]", [int(t) for t in tokens] or [0])
    src = ffi.from_buffer(data)
    ni = ffi.new("int64_t *")
    ns = ffi.new("int64_t *")
    cache._check(lib.pkv_pages_import(cache._h(), int(namespace_id), par,
                                      _keys(keys), toks, len(keys),
                                      _layout(cache, layout), src, len(data),
                                      ni, ns))
    return int(ni[0]), int(ns[0])


def export_seq(cache, seq, layout=None):
    """(K/V bytes, token ids) of a whole sequence."""
    sid = seq.id if hasattr(seq, "id") else int(seq)
    n = ffi.new("int64_t *")
    cache._check(lib.pkv_seq_export(cache._h(), sid, _layout(cache, layout),
                                    ffi.NULL, 0, ffi.NULL, n))
    ps = int(cache.geometry.page_size)
    size = -(-int(n[0]) // ps) * wire_bytes(cache)
    dst = ffi.new("unsigned char[]", max(size, 1))
    toks = ffi.new("int32_t[]", max(int(n[0]), 1))
    cache._check(lib.pkv_seq_export(cache._h(), sid, _layout(cache, layout),
                                    dst, size, toks, n))
    return bytes(ffi.buffer(dst, size)), [toks[i] for i in range(n[0])]


def import_seq(cache, tokens, data, n_tokens=None, layout=None,
               priority_class=0, namespace_id=0):
    """A new Sequence holding the exported K/V."""
    from .sequence import Sequence
    d = new_struct("pkv_seq_desc")
    d.priority_class = priority_class
    d.namespace_id = namespace_id
    n_tokens = len(tokens) if n_tokens is None else n_tokens
    toks = ffi.new("int32_t[]", [int(t) for t in tokens] or [0]) \
        if tokens is not None else ffi.NULL
    out = ffi.new("pkv_seq_id *")
    cache._check(lib.pkv_seq_import(cache._h(), d, toks, n_tokens,
                                    _layout(cache, layout),
                                    ffi.from_buffer(data), len(data), out))
    return Sequence(cache, int(out[0]))
