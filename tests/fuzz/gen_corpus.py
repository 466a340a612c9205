#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of the API fuzz harness (tests/fuzz/corpus/).

Each seed is one scenario in the harness's encoding (see the top of
tests/fuzz/fuzz_api.c): a 4-byte geometry header, then 8-byte operations
(opcode + 7 argument bytes). The scenarios are the reproducers of issue 8's
control-plane bugs and the regression tests' flows (decode steps, forks,
prefix reuse, sessions, truncation, swaps, classes, injected allocation
failures), so that libFuzzer starts from states where features meet.

    python3 tests/fuzz/gen_corpus.py [OUTDIR]
"""
import os
import sys

OPS = {
    "open": 0, "append": 1, "commit": 2, "match": 3, "fork": 4,
    "release": 5, "close": 6, "session_open": 7, "truncate": 8,
    "swap_out": 9, "swap_in": 10, "ns_drop": 11, "class": 12, "flush": 13,
    "build": 14, "write_kv": 15, "write_slots": 16, "attention": 17,
    "query": 18, "inject": 20, "truncate_back": 21, "reserve": 22,
    "seq_transfer": 23, "events": 24, "pages_import": 25,
}
PAGE_SIZES = [1, 2, 3, 4, 8]


class Seed:
    """Builds one input and mirrors the harness's sequence table, whose
    order the seq selector bytes index (a removed entry takes the last)."""

    def __init__(self, ps=4, pages=16, host=0, layers=1, dtype=0, layout=0,
                 classes=1, reserved1=0, kv_heads=1):
        g0 = PAGE_SIZES.index(ps) | ((layers - 1) << 3) | (dtype << 4) | (layout << 6)
        g1 = (pages - 4) | ((host // 4) << 5)
        g2 = (classes - 1) | (reserved1 << 2) | ((kv_heads - 1) << 4)
        self.b = bytearray([g0, g1, g2, 0])
        self.seqs = []   # harness order
        self.nextid = 0  # names for this script only
        self.ps = ps

    def op(self, name, *args):
        a = list(args) + [0] * (7 - len(args))
        assert len(a) == 7 and all(0 <= x < 256 for x in a), (name, args)
        self.b += bytes([OPS[name]] + a)

    def sel(self, name):
        return self.seqs.index(name)

    def _add(self, name):
        self.seqs.append(name)
        return name

    def _drop(self, name):
        i = self.sel(name)
        last = self.seqs.pop()
        if i < len(self.seqs):
            self.seqs[i] = last

    # operations, named as the API calls they drive
    def open(self, name, cls=0, ns=0):
        self.op("open", cls, ns)
        return self._add(name)

    def append(self, name, n, ids=True, t0=0, stride=1, slots=False):
        mode = (1 if ids else 0) | (4 if slots else 0) | (stride << 4)
        self.op("append", self.sel(name), n, mode, t0)

    def commit(self, name):
        self.op("commit", self.sel(name), 0)

    def match_fresh(self, name, source, cls=0, ns=0, extra=0, session=False,
                    t0=None):
        """Opens `name` and matches the tokens of tracked sequence `source`
        (or of session key `source`), plus `extra` tokens."""
        a = (0 if session else 1) | (2 if extra else 0) | ((extra % 17) << 2)
        b = source if session else self.sel(source)
        if t0 is not None:
            b = t0
        c = 1 | (cls << 1) | (ns << 3)
        self.op("match", 0, a, b, c)
        return self._add(name)

    def fork(self, parent, child):
        self.op("fork", self.sel(parent), 0)
        return self._add(child)

    def release(self, name):
        self.op("release", self.sel(name))
        self._drop(name)

    def close(self, name, key):
        self.op("close", self.sel(name), key)
        self._drop(name)

    def session_open(self, name, key, cls=0):
        self.op("session_open", key, cls)
        return self._add(name)

    def truncate(self, name, keep_back):
        """Drops pages until length <= len - keep_back (b < 160)."""
        self.op("truncate", self.sel(name), keep_back, 0)

    def swap(self, out, names):
        self.op("swap_out" if out else "swap_in", len(names) - 1,
                *[self.sel(n) for n in names])

    def build(self, batch, names, q="decode"):
        qm = {"decode": 0, "unwritten": 2, "one+": 1}[q]
        self.op("build", batch, len(names) - 1, *[self.sel(n) for n in names],
                *([qm, 0] if len(names) < 4 else [qm]))

    def write_kv(self, batch, layer=0):
        self.op("write_kv", batch, layer)

    def write_slots(self, name, layer=0, padding=False, past=False):
        self.op("write_slots", self.sel(name), layer,
                (1 if padding else 0) | (2 if past else 0))

    def attention(self, batch, qmul=1, alibi=False, window=None, lse=False):
        a = {1: 0, 2: 1, 4: 2}[qmul]
        b = 1 | (((window + 2) if window is not None else 1) << 2)
        c = (1 if alibi else 0) | (0x20 if lse else 0)
        self.op("attention", batch, a, b, c, 0)

    def flush(self):
        self.op("flush")

    def inject(self, k, sticky=False):
        self.op("inject", (k - 1) | (0x80 if sticky else 0))

    def ns_drop(self, ns):
        self.op("ns_drop", ns)

    def set_class(self, cls, pages):
        self.op("class", cls, pages)

    def truncate_back(self, name, n):
        self.op("truncate_back", self.sel(name), n)

    def reserve(self, name, n):
        self.op("reserve", self.sel(name), n)

    def transfer(self, name, new, ids=True, export_nhd=False, import_nhd=False,
                 short=False):
        """seq_export of `name`, seq_import of it as `new`."""
        b = (1 if export_nhd else 0) | (2 if ids else 0) | \
            (4 if import_nhd else 0) | (0x80 if short else 0)
        self.op("seq_transfer", self.sel(name), b)
        if not short:
            return self._add(new)

    def pages_import(self, name, other_ns=0, nhd=False, bad_parent=False,
                     short=False, mismatch=False):
        """Imports `name`'s full pages as pages of another namespace."""
        b = other_ns | (2 if nhd else 0) | (4 if bad_parent else 0) | \
            (8 if short else 0) | (0x10 if mismatch else 0)
        self.op("pages_import", self.sel(name), b)

    def events(self, capacity=None, poll=8):
        if capacity is not None:
            self.op("events", 1 | ((capacity + 8) << 1), 0)
        else:
            self.op("events", 0, poll + 1)

    def query(self, kind, arg=0):
        self.op("query", kind, arg)


def seeds():
    out = {}

    # Bug 1: a closed session's token overwritten by copy-on-write that
    # ignored the session's hold.
    s = Seed(ps=4, pages=16)
    s.open("a"); s.append("a", 3); s.write_slots("a")
    s.fork("a", "b"); s.close("a", 1)
    s.append("b", 1, t0=2); s.write_slots("b"); s.close("b", 2)
    s.session_open("a2", 1); s.append("a2", 1, t0=1); s.write_slots("a2")
    s.session_open("b2", 2); s.flush()
    out["bug1-session-cow"] = s

    # Bug 2: a session's partial page filled by a sibling and committed,
    # then written in place by the reopened session.
    s = Seed(ps=4, pages=16)
    s.open("a"); s.append("a", 2); s.fork("a", "b"); s.close("a", 0)
    s.append("b", 2, t0=1); s.commit("b")
    s.fork("b", "c"); s.close("c", 1)          # keeps b's tokens findable
    s.session_open("a2", 0); s.release("b")
    s.append("a2", 1, ids=False); s.write_slots("a2")
    s.match_fresh("m", 1, session=True)         # b's four tokens
    s.flush()
    out["bug2-indexed-page-in-place"] = s

    # Bug 3: a queued copy-on-write copy run over a slot written before
    # the flush.
    s = Seed(ps=4, pages=16)
    s.open("a"); s.append("a", 3); s.write_slots("a")
    s.fork("a", "b"); s.append("a", 1, t0=2); s.write_slots("a")
    s.flush(); s.build(0, ["a", "b"]); s.attention(0)
    out["bug3-queued-copy"] = s

    # Bug 4: pages computed after dropped context, through a session...
    s = Seed(ps=4, pages=16)
    s.open("a", ns=1); s.append("a", 8); s.commit("a")
    s.truncate("a", 8); s.close("a", 0); s.session_open("a2", 0)
    s.append("a2", 4, t0=1); s.commit("a2")   # not a's first page
    s.match_fresh("m", "a2", ns=1)
    out["bug4-truncate-session"] = s
    # ... and without one: a page appended after truncate_front indexed
    # under the untruncated chain.
    s = Seed(ps=4, pages=16)
    s.open("a"); s.append("a", 8, t0=0); s.commit("a")
    s.fork("a", "keep")
    s.truncate("a", 4); s.append("a", 4, t0=1); s.commit("a")
    s.match_fresh("m", "keep", extra=4, t0=1)
    out["bug4-truncate-chain"] = s

    # Bug 5: a stale batch writes into pages that now belong to another
    # sequence.
    s = Seed(ps=4, pages=8)
    s.open("x"); s.append("x", 4); s.build(0, ["x"], q="unwritten")
    s.release("x"); s.open("y"); s.append("y", 4, t0=2); s.write_slots("y")
    s.write_kv(0); s.attention(0); s.flush()
    out["bug5-stale-batch"] = s
    s = Seed(ps=4, pages=8, host=4)
    s.open("x"); s.append("x", 4); s.build(0, ["x"], q="unwritten")
    s.swap(True, ["x"]); s.open("y"); s.append("y", 4, t0=1)
    s.write_slots("y"); s.write_kv(0); s.flush()
    out["bug5-stale-batch-swap"] = s

    # Bug 6: a failed swap ran the queued copies.
    s = Seed(ps=4, pages=16, host=4)
    s.open("a"); s.append("a", 10); s.write_slots("a")
    s.fork("a", "b"); s.append("a", 1, t0=1)
    s.swap(True, ["a", "b"])   # needs 4 host pages: fails after the flush?
    s.swap(True, ["a"]); s.swap(False, ["a"]); s.flush()
    out["bug6-failed-swap"] = s

    # Found by the fuzzer after the fixes: pkv_write_kv_slots with a slot
    # past the pool ran the queued copies before the backend refused it.
    s = Seed(ps=3, pages=16)
    s.open("a"); s.append("a", 4); s.write_slots("a")
    s.fork("a", "b"); s.append("a", 1, t0=1)
    s.write_slots("a", past=True); s.write_slots("a", padding=True); s.flush()
    out["write-slots-range-with-queued-copy"] = s

    # Bug 8: one failed index insert.
    s = Seed(ps=4, pages=16)
    s.open("a"); s.append("a", 12); s.inject(1); s.commit("a")
    s.commit("a"); s.match_fresh("m", "a")
    out["bug8-index-oom"] = s

    # Decode steps of three sequences with K/V writes and attention.
    for ps, dtype, layout, kvh, layers in [(4, 0, 0, 1, 1), (8, 1, 1, 2, 2),
                                           (1, 2, 0, 1, 2), (3, 1, 0, 2, 1)]:
        s = Seed(ps=ps, pages=32, layers=layers, dtype=dtype, layout=layout,
                 kv_heads=kvh)
        for n in ["a", "b", "c"]:
            s.open(n); s.append(n, 5, t0=ord(n))
        s.build(0, ["a", "b", "c"], q="unwritten")
        s.write_kv(0); s.write_kv(0, layer=1); s.attention(0, qmul=2, lse=True)
        for step in range(3):
            for n in ["a", "b", "c"]:
                s.append(n, 1, t0=step)
            s.build(step % 2, ["a", "b", "c"])
            s.write_kv(step % 2); s.attention(step % 2, qmul=4, alibi=step == 1,
                                              window=step)
        s.flush()
        out["decode-ps%d-dt%d-l%d-h%d" % (ps, dtype, layout, kvh)] = s

    # Beam search: forks of a prompt, copy-on-write, release of beams.
    s = Seed(ps=4, pages=24)
    s.open("p"); s.append("p", 6); s.write_slots("p"); s.commit("p")
    s.fork("p", "b1"); s.fork("p", "b2")
    for b in ["p", "b1", "b2"]:
        s.append(b, 1, t0=ord(b[-1])); s.write_slots(b)
    s.build(0, ["p", "b1", "b2"]); s.attention(0)
    s.release("b1"); s.fork("b2", "b3"); s.append("b3", 3); s.write_slots("b3")
    s.flush()
    out["beams"] = s

    # Prefix reuse across requests and namespaces, eviction under pressure.
    s = Seed(ps=2, pages=8)
    s.open("a", ns=1); s.append("a", 6); s.write_slots("a"); s.commit("a")
    s.release("a")
    s.match_fresh("m", 0, ns=1, extra=6, session=True, t0=0)
    s.open("b", ns=2); s.append("b", 6); s.commit("b")
    s.ns_drop(1); s.open("c"); s.append("c", 12); s.flush()
    out["prefix-evict"] = s

    # Sessions: close, reopen, truncate, reopen after eviction.
    s = Seed(ps=4, pages=12)
    s.open("a"); s.append("a", 10); s.write_slots("a"); s.commit("a")
    s.close("a", 3); s.session_open("a2", 3); s.truncate("a2", 5)
    s.append("a2", 2); s.write_slots("a2"); s.close("a2", 3)
    s.open("hog"); s.append("hog", 40); s.release("hog")
    s.session_open("a3", 3); s.append("a3", 2); s.flush()
    out["sessions"] = s

    # Host tier: swap out and in around forks and decode steps.
    s = Seed(ps=4, pages=16, host=16, classes=2, reserved1=2)
    s.open("a"); s.append("a", 7); s.write_slots("a")
    s.open("b", cls=1); s.append("b", 5); s.write_slots("b")
    s.fork("a", "c"); s.swap(True, ["a", "b"]); s.append("c", 2)
    s.swap(False, ["b", "a"]); s.build(0, ["a", "b", "c"]); s.flush()
    s.set_class(1, 3); s.query(3, 1)
    out["host-tier"] = s

    # Injected allocation failures in front of each kind of call.
    s = Seed(ps=4, pages=16, host=8)
    s.open("a"); s.inject(1); s.append("a", 9); s.append("a", 9)
    s.inject(1, sticky=True); s.fork("a", "b")
    s.inject(2); s.build(0, ["a"]); s.build(0, ["a"])
    s.inject(1); s.swap(True, ["a"]); s.inject(3); s.swap(True, ["a"])
    s.inject(1); s.close("a", 1); s.inject(1); s.session_open("a2", 1)
    s.inject(2); s.attention(0)
    out["inject"] = s

    # Speculative decoding: reserve, draft tokens, cut the rejected ones
    # (into a page shared with a fork, an indexed page and a session).
    s = Seed(ps=4, pages=20)
    s.open("a"); s.append("a", 10); s.write_slots("a"); s.commit("a")
    s.reserve("a", 8); s.append("a", 3, t0=1); s.write_slots("a")
    s.truncate_back("a", 2); s.append("a", 1, t0=2); s.write_slots("a")
    s.build(0, ["a"]); s.write_kv(0); s.attention(0)
    s.fork("a", "b"); s.truncate_back("a", 3); s.append("a", 2, t0=1)
    s.write_slots("a"); s.truncate_back("b", 4); s.append("b", 1)
    s.write_slots("b"); s.close("b", 2); s.truncate_back("a", 1)
    s.append("a", 4); s.write_slots("a"); s.session_open("b2", 2)
    s.reserve("b2", 0); s.flush()
    out["speculative"] = s

    # KV events and a handover within the pool (issue 14): export a
    # committed sequence and import it with its ids (indexed again), in
    # both layouts, then reuse and drop; a short buffer and a swapped
    # sequence are refused.
    s = Seed(ps=4, pages=24, host=8)
    s.events(capacity=6)
    s.open("a", ns=1); s.append("a", 10); s.write_slots("a"); s.commit("a")
    s.transfer("a", "b", export_nhd=True, import_nhd=True)
    s.events(); s.transfer("a", "x", short=True)
    s.append("b", 2); s.write_slots("b"); s.build(0, ["a", "b"])
    s.write_kv(0); s.attention(0)
    s.transfer("b", "c", ids=False)
    s.match_fresh("m", "a", ns=1); s.release("a"); s.events(poll=2)
    s.swap(True, ["c"]); s.transfer("c", "y", short=True); s.swap(False, ["c"])
    s.ns_drop(1); s.events(capacity=-3); s.events(); s.flush()
    out["kv-transfer"] = s

    # Pages of one namespace imported into the others (issue 14): a chain
    # imported, imported again (skipped), matched in its new namespace,
    # then refused for a bad parent, a changed token and a short buffer,
    # and imported into a full pool (eviction, the chain's own pages kept).
    s = Seed(ps=2, pages=12)
    s.events(capacity=8)
    s.open("a", ns=0); s.append("a", 7); s.write_slots("a"); s.commit("a")
    s.pages_import("a"); s.pages_import("a", nhd=True)
    s.match_fresh("m", "a", ns=1); s.write_slots("m")
    s.pages_import("a", other_ns=1, bad_parent=True)
    s.pages_import("a", mismatch=True); s.pages_import("a", short=True)
    s.release("m"); s.ns_drop(1)
    s.open("f", ns=2); s.append("f", 8, ids=False)
    s.pages_import("a", other_ns=1); s.events(); s.flush()
    out["pages-import"] = s

    # Hostile arguments everywhere, on a small pool.
    s = Seed(ps=1, pages=4)
    s.op("append", 0xF0, 5, 1, 0)            # bad id
    s.open("a"); s.op("append", 0, 0xC8, 0, 0)  # n = -1
    s.op("append", 0, 0xCA, 0, 0)            # n = INT32_MAX
    s.op("commit", 0, 0xB0)                  # computed = len + 1
    s.op("truncate", 0, 0xC8, 0)             # max_tokens = -1
    s.op("swap_out", 1, 0, 0)                # same id twice, no host tier
    s.op("build", 0, 1, 0, 0, 0x40, 0)       # NULL seqs
    s.op("build", 0, 0, 0, 0x83, 0xC8)       # q_lens hostile
    s.op("match", 0, 1, 0, 0xA0)             # NULL reused
    s.op("write_kv", 0, 0x40); s.op("attention", 0, 7, 0x13, 0x14, 0x83)
    s.op("class", 0x85, 0xC8); s.op("session_open", 4, 0x80)
    for k in range(10):
        s.query(k, 0xF9)
    out["hostile"] = s
    return out


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(outdir, exist_ok=True)
    for name, s in sorted(seeds().items()):
        with open(os.path.join(outdir, name), "wb") as fp:
            fp.write(bytes(s.b))
    print("%d seeds in %s" % (len(seeds()), outdir))


if __name__ == "__main__":
    main()
