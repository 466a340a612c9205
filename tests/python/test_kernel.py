# SPDX-License-Identifier: Apache-2.0
"""The kernel-level layer and DLPack from Python, when the library has
them: attention over a pool and a CSR table this test allocated itself (no
Cache), q as a strided slice of a fused QKV tensor, compared with torch;
pools and batch arrays exported through DLPack without a copy."""
import math

from tap import Tap
from util import optional

t = Tap()
torch, why = optional("torch")
if torch is None:
    t.skip_all(why)
import numpy as np  # noqa: E402  (torch needs it here)
import pagedkv  # noqa: E402

ctx = pagedkv.Context("cpu")


def torch_attention(q, k, v, scale):
    n, hq, _ = q.shape
    m, hk, _ = k.shape
    k = k.repeat_interleave(hq // hk, dim=1).transpose(0, 1)
    v = v.repeat_interleave(hq // hk, dim=1).transpose(0, 1)
    s = torch.matmul(q.transpose(0, 1), k.transpose(1, 2)) * scale
    i = torch.arange(n).unsqueeze(1) + (m - n)
    s = s.masked_fill(torch.arange(m).unsqueeze(0) > i, float("-inf"))
    return torch.matmul(torch.softmax(s, -1), v).transpose(0, 1)


if not pagedkv.kernel.available():
    t.skip("libpagedkv has no kernel-level layer (pkv_kv_attention)",
           "attention over a caller-owned pool and CSR table")
else:
    hq, hk, d, ps, npages = 4, 2, 64, 4, 32
    gen = torch.Generator().manual_seed(3)
    kpool = torch.zeros(npages, hk, ps, d)  # HND, owned by the test
    vpool = torch.zeros(npages, hk, ps, d)
    lens, q_lens = [7, 13, 1], [7, 2, 1]
    perm = torch.randperm(npages, generator=gen).tolist()
    pages, indptr, last = [], [0], []
    for n in lens:
        np_ = -(-n // ps)
        pages.append(perm[:np_])
        perm = perm[np_:]
        indptr.append(indptr[-1] + np_)
        last.append(n - (np_ - 1) * ps)
    kseq = [torch.randn(n, hk, d, generator=gen) for n in lens]
    vseq = [torch.randn(n, hk, d, generator=gen) for n in lens]
    slots = []
    for s, n in enumerate(lens):
        slots += [pages[s][i // ps] * ps + i % ps for i in range(n)]
    view = pagedkv.KVView(ctx, kpool, vpool, page_size=ps, num_kv_heads=hk,
                          head_dim=d, num_pages=npages, dtype="f32")
    pagedkv.kv_write(ctx, view, np.array(slots, np.int64),
                     torch.cat(kseq), torch.cat(vseq))
    ok = all(torch.equal(kpool[pages[s][i // ps], :, i % ps], kseq[s][i])
             for s, n in enumerate(lens) for i in range(n))
    t.ok(ok, "kv_write puts every row where its slot says")
    table = pagedkv.KVTable.csr(ctx, np.cumsum([0] + q_lens),
                                indptr, sum(pages, []), last, ps)
    nt = sum(q_lens)
    # q is a slice of a fused [tokens][q|k|v] projection: token stride 2x
    fused = torch.randn(nt, 2 * hq * d, generator=gen)
    qt = pagedkv.Tensor(ctx, fused, token_stride=2 * hq * d, head_stride=d)
    out = torch.zeros(nt, hq, d)
    pagedkv.kv_attention(ctx, view, table, qt, out, num_q_heads=hq)
    q = fused[:, :hq * d].reshape(nt, hq, d)
    err, start = 0.0, 0
    for s, ql in enumerate(q_lens):
        ref = torch_attention(q[start:start + ql], kseq[s], vseq[s],
                              1 / math.sqrt(d))
        err = max(err, float((out[start:start + ql] - ref).abs().max()))
        start += ql
    t.ok(err < 1e-5, "kv_attention over the test's own pool and CSR table, "
         "strided q: max |out - torch| = %.2g" % err)
    # q and out in their own dtype (bf16) over the f32 pool, with sinks
    has_sinks = pagedkv._ffi.has_field("pkv_attn_params", "sinks")
    sinks = [0.5, -1.0, 2.0, 0.0] if has_sinks else None
    qb = q.contiguous().to(torch.bfloat16)
    ob = torch.zeros(nt, hq, d, dtype=torch.bfloat16)
    extra = {"sinks": sinks} if has_sinks else {}
    pagedkv.kv_attention(ctx, view, table, qb, ob, num_q_heads=hq, **extra)
    err, start = 0.0, 0
    for s, ql in enumerate(q_lens):
        qq = qb[start:start + ql].float()
        n, m = ql, lens[s]
        kk = kseq[s].repeat_interleave(hq // hk, 1).transpose(0, 1)
        vv = vseq[s].repeat_interleave(hq // hk, 1).transpose(0, 1)
        sc = torch.matmul(qq.transpose(0, 1), kk.transpose(1, 2)) / math.sqrt(d)
        i = torch.arange(n).unsqueeze(1) + (m - n)
        sc = sc.masked_fill(torch.arange(m).unsqueeze(0) > i, float("-inf"))
        if has_sinks:  # a per-head logit in the denominator only
            sk = torch.tensor(sinks).view(hq, 1, 1).expand(hq, n, 1)
            p = torch.softmax(torch.cat([sc, sk], -1), -1)[..., :m]
        else:
            p = torch.softmax(sc, -1)
        ref = torch.matmul(p, vv).transpose(0, 1)
        err = max(err, float((ob[start:start + ql].float() - ref).abs().max()))
        start += ql
    t.ok(err < 2e-2, "bf16 q/out over an f32 pool%s: max |out - torch| = %.2g"
         % (" with attention sinks" if has_sinks else "", err))
    bad = pagedkv.KVTable.csr(ctx, np.cumsum([0] + q_lens), indptr,
                              [npages + 5] + sum(pages, [])[1:], last, ps)
    e = t.raises(pagedkv.PagedKVError,
                 lambda: pagedkv.kv_attention(ctx, view, bad, qt, out,
                                              num_q_heads=hq),
                 "a table naming a page outside the pool raises")
    if e is not None:
        t.diag(e.message)

if not pagedkv.has("pkv_cache_create_over"):
    t.skip("libpagedkv has no pkv_cache_create_over",
           "a Cache over pools the caller allocated")
else:
    ctx2 = pagedkv.Context("cpu")
    kp = [torch.zeros(8, 2, 4, 64) for _ in range(2)]
    vp = [torch.zeros(8, 2, 4, 64) for _ in range(2)]
    t.raises(ValueError,
             lambda: pagedkv.cache_over(ctx2, kp, vp, num_layers=2,
                                        num_kv_heads=2, head_dim=64,
                                        page_size=4, num_pages=8, dtype="f16"),
             "f32 pools for an f16 cache are refused")
    cache = pagedkv.cache_over(ctx2, kp, vp, num_layers=2, num_kv_heads=2,
                               head_dim=64, page_size=4, num_pages=8,
                               dtype="f32")
    s = cache.open_seq()
    s.append(6)
    b = cache.batch()
    b.build([s], [6])
    k = torch.randn(6, 2, 64)
    b.write_kv(1, k, -k)
    pages = s.pages()
    t.ok(all(torch.equal(kp[1][int(pages[i // 4]), :, i % 4], k[i]) and
             torch.equal(vp[1][int(pages[i // 4]), :, i % 4], -k[i])
             for i in range(6)),
         "write_kv lands in the caller's own torch pools (cache_over)")
    ctx2.close()
    t.ok(cache.closed and s.closed, "closing the context closes that cache")

if not pagedkv.dlpack.available():
    t.skip("libpagedkv has no DLPack export (pkv_cache_export_dlpack)",
           "DLPack export of pools and batch arrays")
else:
    cache = ctx.cache(num_layers=1, num_kv_heads=2, head_dim=64, page_size=8,
                      num_pages=8, dtype="f16")
    s = cache.open_seq()
    s.append(11)
    b = cache.batch()
    b.build([s], [11])
    k = torch.randn(11, 2, 64).half()
    b.write_kv(0, k, -k)
    K = pagedkv.dlpack.to_torch(cache.export_dlpack(0, 0))
    Kn, _ = cache.kv_arrays(0)
    t.eq(tuple(K.shape), Kn.shape, "DLPack pool has the geometry's shape")
    t.ok(K.data_ptr() == Kn.ctypes.data and
         torch.equal(K[int(s.pages()[0]), :, 0], k[0]),
         "DLPack pool is the pool's memory (no copy) with the written K")
    bt = pagedkv.dlpack.to_torch(
        b.export_dlpack(pagedkv.lib.PKV_BATCH_BLOCK_TABLE))
    t.eq(bt.tolist(), b.view().block_table.tolist(),
         "DLPack block table = the batch view's")
    cap = cache.export_dlpack(0, 1)
    del cap  # never consumed: the capsule calls the deleter (valgrind: no leak)
    cache.close()
ctx.close()
t.done()
