# SPDX-License-Identifier: Apache-2.0
"""pagedkv attention vs plain torch attention (matmul + softmax with the
causal mask) on K/V gathered from the pool into contiguous tensors; torch
tensors are handed to pagedkv directly (CPU tensors on the CPU backend)."""
import math

from tap import Tap
from util import optional

t = Tap()
torch, why = optional("torch")
if torch is None:
    t.skip_all(why)
np, why = optional("numpy")
if np is None:
    t.skip_all(why)
import pagedkv  # noqa: E402

TOL = {"f32": 1e-5, "f16": 5e-3, "bf16": 4e-2}


def torch_attention(q, k, v, scale, window_left=-1):
    """q [n][hq][d] (last n of m tokens), k/v [m][hk][d]: out, lse."""
    n, hq, _ = q.shape
    m, hk, _ = k.shape
    k = k.repeat_interleave(hq // hk, dim=1).transpose(0, 1)
    v = v.repeat_interleave(hq // hk, dim=1).transpose(0, 1)
    s = torch.matmul(q.transpose(0, 1), k.transpose(1, 2)) * scale
    i = torch.arange(n).unsqueeze(1) + (m - n)
    j = torch.arange(m).unsqueeze(0)
    mask = j > i
    if window_left >= 0:
        mask = mask | (j < i - window_left)
    s = s.masked_fill(mask, float("-inf"))
    return (torch.matmul(torch.softmax(s, -1), v).transpose(0, 1),
            torch.logsumexp(s, -1).transpose(0, 1))


def gather(cache, layer, seq):
    K, V = cache.kv_tensors(layer)
    g = cache.geometry
    pages = torch.from_numpy(seq.pages()).long()
    tok = torch.arange(len(seq))
    p, o = pages[tok // g.page_size], tok % g.page_size
    if g.layout == pagedkv.NHD:
        return K[p, o], V[p, o]
    return K[p, :, o], V[p, :, o]


def case(dtype, layout, hq, hk, d, page_size, lens, q_lens, window=-1):
    gen = torch.Generator().manual_seed(hash((dtype, layout, hq)) % 1000)
    tdt = pagedkv.interop.torch_dtype(dtype)
    with pagedkv.Context("cpu") as ctx:
        cache = ctx.cache(num_layers=2, num_kv_heads=hk, head_dim=d,
                          page_size=page_size, num_pages=64, dtype=dtype,
                          layout=layout)
        seqs = [cache.open_seq() for _ in lens]
        batch = cache.batch()
        # history first (as earlier steps would), then this step's queries
        for s, n, ql in zip(seqs, lens, q_lens):
            s.append(n - ql)
        if any(n > ql for n, ql in zip(lens, q_lens)):
            batch.build(seqs, [n - ql for n, ql in zip(lens, q_lens)])
            m = sum(n - ql for n, ql in zip(lens, q_lens))
            kh = torch.randn(m, hk, d, generator=gen).to(tdt)
            vh = torch.randn(m, hk, d, generator=gen).to(tdt)
            batch.write_kv(1, kh, vh)
        for s, ql in zip(seqs, q_lens):
            s.append(ql)
        batch.build(seqs, q_lens)
        nt = sum(q_lens)
        k = torch.randn(nt, hk, d, generator=gen).to(tdt)
        v = torch.randn(nt, hk, d, generator=gen).to(tdt)
        q = torch.randn(nt, hq, d, generator=gen).to(tdt)
        out = torch.zeros(nt, hq, d, dtype=tdt)
        lse = torch.zeros(nt, hq, dtype=torch.float32)
        batch.write_kv(1, k, v)
        scale = 1.0 / math.sqrt(d)
        batch.attention(1, q, out, lse, num_q_heads=hq, scale=scale,
                        window_left=window)
        err = lerr = 0.0
        start = 0
        for s, ql in zip(seqs, q_lens):
            gk, gv = gather(cache, 1, s)
            ro, rl = torch_attention(q[start:start + ql].float(), gk.float(),
                                     gv.float(), scale, window)
            err = max(err, float((out[start:start + ql].float() - ro)
                                 .abs().max()))
            lerr = max(lerr, float((lse[start:start + ql] - rl).abs().max()))
            start += ql
        cache.close()
    return err, lerr


for dtype in ("f32", "f16", "bf16"):
    for layout in ("hnd", "nhd"):
        lens, q_lens = [37, 5, 64, 20], [1, 5, 17, 1]  # decode, prefill, extend
        err, lerr = case(dtype, layout, 8, 2, 64, 16, lens, q_lens)
        t.ok(err <= TOL[dtype] and lerr <= max(TOL[dtype], 1e-4),
             "%s %s GQA 8/2 mixed batch: max |out - torch| %.2g, "
             "|lse - torch| %.2g" % (dtype, layout, err, lerr))
err, lerr = case("f32", "hnd", 4, 4, 128, 1, [9, 30], [9, 3])
t.ok(err <= TOL["f32"], "page_size 1, MHA, head_dim 128: %.2g" % err)
err, lerr = case("f32", "hnd", 6, 1, 80, 8, [50, 12], [1, 12], window=7)
t.ok(err <= TOL["f32"], "MQA, head_dim 80, sliding window 7: %.2g" % err)
t.done()
