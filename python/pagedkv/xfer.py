# SPDX-License-Identifier: Apache-2.0
"""Page transfer between processes over UCX (pkv_xfer_*). Experimental in
the C API (doc/disaggregation.md), so it may change. The calls need the
module transfer-ucx.so; without it they raise NoBackendError.

    ep = xfer.Endpoint(cache, staging_pages=64)
    blob = ep.blob()                    # carry to the peer
    peer = ep.connect(peer_blob)
    req = ep.fetch(peer, keys, ns=0)    # keys: [(lo, hi), ...]
    req.wait(5000); req.result()        # (imported, skipped, remote_seq)
"""
from ._ffi import ffi, has, lib, new_struct
from .kvevents import _keys


def available():
    """True when the loaded library has the pkv_xfer_* calls (the module
    may still be missing: Endpoint() says so)."""
    return has("pkv_xfer_endpoint_create")


class Request:
    def __init__(self, ep, handle):
        self._ep = ep
        self._p = handle

    def test(self):
        """(done, status) after one progress step."""
        done = ffi.new("int32_t *")
        st = ffi.new("pkv_status *")
        self._ep._check(lib.pkv_xfer_test(self._p, done, st))
        return bool(done[0]), int(st[0])

    def wait(self, timeout_ms=-1):
        """Raises the request's error (TimeoutError_ on timeout)."""
        self._ep._check(lib.pkv_xfer_wait(self._p, int(timeout_ms)))

    def result(self):
        imp = ffi.new("int64_t *")
        skp = ffi.new("int64_t *")
        seq = ffi.new("pkv_seq_id *")
        self._ep._check(lib.pkv_xfer_request_result(self._p, imp, skp, seq))
        return int(imp[0]), int(skp[0]), int(seq[0])

    def free(self):
        if self._p is not None:
            lib.pkv_xfer_request_free(self._p)
            self._p = None


class Endpoint:
    def __init__(self, cache, staging_pages=None, lease_ms=None):
        self._cache = cache
        o = new_struct("pkv_xfer_options")
        if staging_pages is not None:
            o.staging_pages = int(staging_pages)
        if lease_ms is not None:
            o.lease_ms = int(lease_ms)
        out = ffi.new("pkv_xfer_endpoint **")
        self._check(lib.pkv_xfer_endpoint_create(cache._h(), o, out))
        self._p = out[0]
        self._reqs = []

    def _check(self, status):
        self._cache._check(status)

    def blob(self):
        n = ffi.new("size_t *")
        lib.pkv_xfer_endpoint_blob(self._p, ffi.NULL, 0, n)
        buf = ffi.new("unsigned char[]", int(n[0]))
        self._check(lib.pkv_xfer_endpoint_blob(self._p, buf, int(n[0]), n))
        return bytes(ffi.buffer(buf, int(n[0])))

    def connect(self, blob):
        out = ffi.new("pkv_xfer_peer **")
        self._check(lib.pkv_xfer_connect(self._p, blob, len(blob), out))
        return out[0]

    def fetch(self, peer, keys, ns=0, parent=None):
        out = ffi.new("pkv_xfer_request **")
        par = _keys([parent]) if parent is not None else ffi.NULL
        self._check(lib.pkv_xfer_fetch(self._p, peer, int(ns), par,
                                       _keys(keys), len(keys), out))
        return Request(self, out[0])

    def push_seq(self, peer, seq, tag=0, namespace=0, priority_class=0):
        d = new_struct("pkv_seq_desc")
        d.namespace_id = int(namespace)
        d.priority_class = int(priority_class)
        sid = seq.id if hasattr(seq, "id") else int(seq)
        out = ffi.new("pkv_xfer_request **")
        self._check(lib.pkv_xfer_push_seq(self._p, peer, sid, d, int(tag),
                                          out))
        return Request(self, out[0])

    def progress(self):
        self._check(lib.pkv_xfer_progress(self._p))

    def poll_arrivals(self, max_n=64):
        tags = ffi.new("uint64_t[]", max(max_n, 1))
        seqs = ffi.new("pkv_seq_id[]", max(max_n, 1))
        n = ffi.new("int64_t *")
        self._check(lib.pkv_xfer_poll_arrivals(self._p, tags, seqs,
                                               int(max_n), n))
        return [(int(tags[i]), int(seqs[i])) for i in range(n[0])]

    def close(self):
        if self._p is not None:
            lib.pkv_xfer_endpoint_destroy(self._p)
            self._p = None
