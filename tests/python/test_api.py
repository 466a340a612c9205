# SPDX-License-Identifier: Apache-2.0
"""API coverage: every public function of pagedkv.h is bound, and the
package's objects reach the whole API on the CPU backend (checked against
what the library reports, not against fixed numbers)."""
import os
import re

from tap import Tap
from util import optional

t = Tap()
import pagedkv  # noqa: E402
from pagedkv import _cdef, lib, ffi  # noqa: E402

np, np_why = optional("numpy")

header = os.path.join(os.environ.get("PKV_SRCDIR", "."), "lib", "pagedkv.h")
with open(header) as f:
    text = f.read()
declared = sorted(set(re.findall(r"PKV_API\s[^;(]*?\b(pkv_\w+)\s*\(", text)))
t.ok(len(declared) > 40, "found %d public functions in pagedkv.h"
     % len(declared))
missing = [n for n in declared if not pagedkv.has(n)]
t.eq(missing, [], "every public function is bound in pagedkv.lib")
t.eq(_cdef.DROPPED, [], "the cdef generator dropped no declaration")

# The package wraps each function: its sources name every one of them.
pkgdir = os.path.dirname(pagedkv.__file__)
src = ""
for fn in os.listdir(pkgdir):
    if fn.endswith(".py") and not fn.startswith("_cdef"):
        with open(os.path.join(pkgdir, fn)) as f:
            src += f.read()
raw_only = {"pkv_cache_context", "pkv_batch_cache"}  # Python objects know
unwrapped = [n for n in declared if n not in raw_only and
             not re.search(r"\b%s\b" % n, src) and
             not (n.endswith("_init") or n.endswith("_init_sized"))]
t.eq(unwrapped, [], "the package wraps every public function")


@t.case
def version(t):
    major, minor, patch = pagedkv.version()
    t.eq("%d.%d.%d" % (major, minor, patch), pagedkv.version_string(),
         "version() matches version_string()")
    t.eq(major, lib.PKV_VERSION_MAJOR, "run-time major = header major")


@t.case
def backends(t):
    t.eq(pagedkv.backend_name(pagedkv.CPU), "cpu", "backend_name(CPU)")
    t.eq(pagedkv.backend_from_name("OpenCL"), pagedkv.OPENCL,
         "backend_from_name is case-insensitive")
    t.ok(pagedkv.backend_available("cpu"), "the cpu backend is built in")
    t.eq(pagedkv.backend_name(99), None, "unknown backend has no name")
    devs = pagedkv.list_devices("cpu")
    t.ok(len(devs) >= 1 and devs[0].backend == pagedkv.CPU,
         "list_devices(cpu) lists the CPU device: %s"
         % (devs[0].name if devs else "none"))
    for b in ("opencl", "hip"):
        if pagedkv.backend_available(b):
            t.ok(isinstance(pagedkv.list_devices(b), list),
                 "list_devices(%s) answers" % b)
        else:
            t.raises(pagedkv.NoBackendError, lambda: pagedkv.list_devices(b),
                     "list_devices(%s) without the backend: NoBackendError"
                     % b)
    t.eq(pagedkv.dtype_size("f16"), 2, "dtype_size(f16)")
    t.eq(pagedkv.dtype_size(99), 0, "dtype_size(unknown) is 0")


@t.case
def context_and_buffers(t):
    with pagedkv.Context("cpu", cpu_threads=1) as ctx:
        t.eq(ctx.backend_name, "cpu", "Context('cpu') runs on cpu")
        t.eq(ctx.device_info().backend, pagedkv.CPU, "device_info")
        ctx.synchronize()
        t.eq(ctx.last_error(), "", "no error yet")
        b = ctx.buffer(64)
        t.eq(b.size, 64, "Buffer.size")
        t.ok(b.native != 0, "Buffer.native is a host pointer")
        b.upload(bytes(range(64)))
        t.eq(b.download(), bytes(range(64)), "upload/download round trip")
        c = ctx.buffer(64)
        c.copy_from(b, dst_offset=8, src_offset=0, nbytes=16)
        t.eq(c.download(offset=8, nbytes=16), bytes(range(16)),
             "copy_from copies device to device")
        b.close()
        t.ok(b.closed, "Buffer.close")


@t.case
def control_plane(t):
    if np is None:
        t.skip(np_why, "control plane (slots as numpy)")
        return
    ctx = pagedkv.Context("cpu")
    cache = ctx.cache(num_layers=2, num_kv_heads=2, head_dim=64,
                      page_size=4, num_pages=32, dtype="f16",
                      num_classes=2, class_reserved=[0, 4],
                      num_host_pages=16)
    g = cache.geometry
    t.eq((g.num_pages, g.page_size, g.dtype), (32, 4, pagedkv.F16),
         "geometry follows the description")
    t.eq(lib.pkv_cache_context(cache._h()), ctx._h(),
         "pkv_cache_context (raw) is the Context's handle")
    k, v = cache.kv(1)
    t.eq(k.size, g.layer_bytes, "kv(layer) buffers hold one layer")
    tokens = list(range(100, 110))
    s = cache.open_seq(namespace_id=7)
    slots = s.append(token_ids=tokens)
    pages = s.pages()
    t.eq(len(s), 10, "append(token_ids) grows the sequence")
    t.eq([int(x) // 4 for x in slots], [int(pages[i // 4]) for i in range(10)],
         "slots = page * page_size + offset")
    s.commit(10)
    s2 = cache.open_seq(namespace_id=7)
    reused = s2.match_prefix(tokens)
    t.eq(reused, 8, "match_prefix reuses the two full committed pages")
    t.eq(list(s2.pages()), list(pages[:2]), "the reused pages are shared")
    info = cache.page_info(int(pages[0]))
    t.eq((info.state, info.refcount), (pagedkv.PAGE_LIVE, 2),
         "page_info: live, two holders")
    child = s.fork()
    t.eq(list(child.pages()), list(pages), "fork shares every page")
    child.append(1)
    st = cache.stats()
    t.ok(st.cow_copies >= 1 or st.pages_live > len(pages),
         "appending to a fork copies its shared last page")
    cache.flush()
    dropped = s.truncate_front(5)
    t.eq((dropped, len(s)), (8, 2), "truncate_front drops whole pages")
    s2.close_session(42)
    t.ok(s2.closed, "close_session closes the Sequence")
    s3, survived = cache.session_open(42)
    t.eq(survived, 8, "session_open attaches the surviving tokens")
    cache.namespace_drop(7)
    cache.class_set_reserved(1, 2)
    t.eq(cache.stats().classes[1].reserved, 2, "class_set_reserved")
    hi = cache.open_seq(priority_class=1)
    try:
        hi.append(4 * 32)
        t.ok(False, "an over-large append raises NoPagesError")
    except pagedkv.NoPagesError:
        cand = cache.preemption_candidates(1)
        t.ok(len(cand) > 0 and all(cache.seq(c).id == c for c in cand),
             "preemption_candidates names open sequences: %s" % cand)
    cache.swap_out([child])
    t.ok(child.is_swapped, "swap_out moves the sequence to the host tier")
    child.swap_in()
    t.ok(not child.is_swapped, "swap_in brings it back")
    b = cache.batch()
    t.eq(lib.pkv_batch_cache(b._h()), cache._h(),
         "pkv_batch_cache (raw) is the Cache's handle")
    ls, lc = len(s), len(child)
    b.build([s, child], q_lens=[ls, lc])  # every token: all K/V written
    view = b.view()
    t.eq(list(view.q_indptr), [0, ls, ls + lc], "view().q_indptr from q_lens")
    t.eq(list(view.seq_lens), [len(s), len(child)], "view().seq_lens")
    t.eq(list(view.kv_indices), list(s.pages()) + list(child.pages()),
         "view().kv_indices: the sequences' pages (CSR)")
    dev = b.device()
    t.eq(dev.slot_mapping.to_numpy("int64").tolist()[:ls + lc],
         view.slot_mapping.tolist(), "device().slot_mapping = view's")
    kk = np.ones((ls + lc, 2, 64), np.float16)
    b.write_kv(0, kk, kk)
    sl = np.array(view.slot_mapping, dtype=np.int64)
    cache.write_kv_slots(1, kk, kk, sl)
    K, _ = cache.kv_arrays(1)
    p, o = divmod(int(sl[0]), 4)
    t.ok(np.all(K[p, :, o] == 1), "write_kv_slots lands in the pool")
    q = np.ones((ls + lc, 4, 64), np.float16)
    out = np.zeros_like(q)
    b.attention(0, q, out, num_q_heads=4, scale=0.125, causal=1,
                window_left=-1, softcap=0, alibi_slopes=[0.0] * 4)
    t.ok(np.allclose(out, 1.0), "attention with every parameter: the mean "
         "of all-ones V is one")
    ctx.close()
    t.ok(cache.closed and s.closed and b.closed and k.closed,
         "closing the context closes the cache, sequences, batch, views")


@t.case
def streams(t):
    class FakeStream:  # what torch.cuda.Stream offers: .cuda_stream
        cuda_stream = 0x1234
    h = pagedkv.context._stream_handle(FakeStream())
    t.eq(int(ffi.cast("uintptr_t", h)), 0x1234,
         "a torch stream's cuda_stream becomes the native queue pointer")
    t.eq(int(ffi.cast("uintptr_t", pagedkv.context._stream_handle(77))), 77,
         "an int stream handle is taken as is")
    fs = FakeStream()
    with pagedkv.Context("cpu", stream=fs) as ctx:
        t.ok(any(k is fs for k in ctx._keep),
             "the context keeps the stream object alive")


@t.case
def speculative(t):
    if not (pagedkv.has("pkv_seq_truncate_back") and
            pagedkv.has("pkv_seq_reserve")):
        t.skip("libpagedkv has no pkv_seq_truncate_back/pkv_seq_reserve",
               "speculative decoding: truncate_back, reserve")
        return
    with pagedkv.Context("cpu") as ctx:
        cache = ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64,
                          page_size=4, num_pages=8)
        s = cache.open_seq()
        s.append(10)
        free0 = cache.stats().pages_free
        s.reserve(4)  # tokens 11..14 need a fourth page
        free1 = cache.stats().pages_free
        t.eq(free0 - free1, 1, "reserve(4) takes the one page ahead")
        s.append(4)
        t.eq(cache.stats().pages_free, free1,
             "the reserved appends take no further page")
        s.truncate_back(11)
        t.eq((len(s), len(s.pages())), (3, 1),
             "truncate_back(11) of 14 tokens keeps 3 tokens in 1 page")
        t.raises(pagedkv.PagedKVError, lambda: s.truncate_back(4),
                 "truncate_back past the start raises")
        t.eq(len(s), 3, "... and changes nothing")


t.done()
