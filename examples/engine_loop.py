#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small continuous-batching engine loop on pagedkv (CPU backend default).

A toy transformer (random weights, a few layers, no MLP: attention and a
residual) serves a stream of requests that share a system prompt. Each step
the loop admits waiting requests (prefix reuse through match_prefix, then a
prefill of the rest), decodes one token for every running request, and
builds ONE mixed batch (q_lens) for all of them; per layer it projects
q/k/v, writes K/V into the pages (write_kv) and runs paged attention (the
kernel-level layer pkv_kv_attention when the library has it, else
pkv_attention). Finished requests close their sequence and commit their
pages for reuse; when the pool runs out, the loop preempts what
preemption_candidates names and requeues it.

Every layer of every step is checked against plain torch attention
(matmul + softmax with the causal mask) over K/V gathered from the pool
through the block table into contiguous tensors, and the rows written this
step are compared with the projections. Exits 1 on a mismatch.

    python3 examples/engine_loop.py [--backend cpu] [--dtype f32] [--steps 24]
"""
import argparse
import math
import sys

import torch

import pagedkv

TOL = {"f32": 2e-4, "f16": 2e-2, "bf16": 1e-1}


def reference_attention(q, k, v, num_q_heads, scale):
    """q [n][hq][d] (the last n tokens), k/v [m][hk][d] -> [n][hq][d]."""
    n, m = q.shape[0], k.shape[0]
    g = num_q_heads // k.shape[1]
    k = k.repeat_interleave(g, dim=1).transpose(0, 1)  # [hq][m][d]
    v = v.repeat_interleave(g, dim=1).transpose(0, 1)
    s = torch.matmul(q.transpose(0, 1), k.transpose(1, 2)) * scale  # [hq][n][m]
    pos = torch.arange(n).unsqueeze(1) + (m - n)
    s = s.masked_fill(torch.arange(m).unsqueeze(0) > pos, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v).transpose(0, 1)


class Request:
    def __init__(self, rid, prompt, max_new):
        self.rid, self.prompt, self.max_new = rid, prompt, max_new
        self.reset()

    def reset(self):
        self.seq = None
        self.tokens = list(self.prompt)
        self.generated = 0
        self.pending = None  # tokens to run this step


class Engine:
    def __init__(self, args):
        self.args = a = args
        torch.manual_seed(args.seed)
        stream = None
        if args.backend in ("hip", "cuda") and torch.cuda.is_available():
            # pagedkv's kernels run on torch's stream, ordered with its ops
            stream = torch.cuda.current_stream()
        self.ctx = pagedkv.Context(args.backend, stream=stream)
        self.dev = "cuda" if self.ctx.backend == pagedkv.HIP else "cpu"
        self.tdtype = pagedkv.interop.torch_dtype(args.dtype)
        self.cache = self.ctx.cache(
            num_layers=a.layers, num_kv_heads=a.kv_heads, head_dim=a.head_dim,
            page_size=a.page_size, num_pages=a.pages, dtype=a.dtype)
        self.batch = self.cache.batch()
        d = a.q_heads * a.head_dim
        self.hidden = d
        g = torch.Generator().manual_seed(args.seed)

        def w(*shape):
            return (torch.randn(*shape, generator=g) / math.sqrt(shape[0]))
        self.emb = torch.randn(a.vocab, d, generator=g) * 0.5
        self.wq = [w(d, d) for _ in range(a.layers)]
        self.wk = [w(d, a.kv_heads * a.head_dim) for _ in range(a.layers)]
        self.wv = [w(d, a.kv_heads * a.head_dim) for _ in range(a.layers)]
        self.wo = [w(d, d) for _ in range(a.layers)]
        self.scale = 1.0 / math.sqrt(a.head_dim)
        self.use_kernel_layer = pagedkv.kernel.available() and \
            not args.batch_attention
        self.max_err = 0.0
        self.stats = {"steps": 0, "tokens": 0, "finished": 0, "preempted": 0,
                      "reused_tokens": 0, "layers_checked": 0}

    # -- device transfers: wrap where the backend can, else copy ------------
    def to_buffer(self, x):
        x = x.to(self.dev).contiguous()
        return x, self.ctx.buffer_from(x)

    def attend(self, layer, q):
        """Paged attention of this step's queries over `layer`."""
        out = torch.zeros(q.shape, dtype=q.dtype, device=self.dev)
        wrap_out = self.dev == "cuda" or self.ctx.backend == pagedkv.CPU
        ob = self.ctx.wrap(out) if wrap_out else self.ctx.buffer(
            out.numel() * out.element_size())
        _, qb = self.to_buffer(q)
        if self.use_kernel_layer:
            dt = self.args.dtype  # q and out may differ from the pool's
            pagedkv.kv_attention(self.ctx, self.cache.kv_view(layer),
                                 self.batch.table("csr"),
                                 pagedkv.Tensor(self.ctx, qb, dtype=dt),
                                 pagedkv.Tensor(self.ctx, ob, dtype=dt),
                                 num_q_heads=self.args.q_heads,
                                 scale=self.scale)
        else:
            self.batch.attention(layer, qb, ob, num_q_heads=self.args.q_heads,
                                 scale=self.scale)
        if not wrap_out:
            ob.download(out)
        return out

    def gather(self, layer, seq):
        """Contiguous [len][kv_heads][dim] K and V of seq from the pool."""
        K, V = self.cache.kv(layer)
        g = self.cache.geometry
        pages = seq.pages()
        n = len(seq)
        es = pagedkv.dtype_size(g.dtype)
        k = torch.empty(n, g.num_kv_heads, g.head_dim, dtype=self.tdtype)
        v = torch.empty_like(k)
        for t in range(n):  # element addressing of the geometry's strides
            for h in range(g.num_kv_heads):
                off = (int(pages[t // g.page_size]) * g.page_stride +
                       h * g.head_stride + (t % g.page_size) * g.token_stride)
                K.download(k[t, h], off * es)
                V.download(v[t, h], off * es)
        return k, v

    # -- one step ------------------------------------------------------------
    def admit(self, req):
        """Opens the request's sequence: prefix reuse, then the rest."""
        seq = self.cache.open_seq()
        reused = seq.match_prefix(req.tokens)
        try:
            seq.append(token_ids=req.tokens[reused:])
        except pagedkv.NoPagesError:
            seq.close()
            return False
        req.seq, req.pending = seq, req.tokens[reused:]
        self.stats["reused_tokens"] += reused
        return True

    def step(self, running, waiting):
        a = self.args
        for req in list(running):  # decode: the last sampled token
            req.pending = [req.tokens[-1]]
            self.append_or_preempt(req, running, waiting)
        running[:] = [r for r in running if r.seq is not None]
        while waiting and len(running) < a.max_running and \
                self.admit(waiting[0]):
            running.append(waiting.pop(0))
        if not running:
            return
        seqs = [r.seq for r in running]
        q_lens = [len(r.pending) for r in running]
        self.batch.build(seqs, q_lens)
        toks = torch.tensor([t for r in running for t in r.pending])
        x = self.emb[toks]  # [num_tokens][hidden], f32 residual stream
        n = x.shape[0]
        for layer in range(a.layers):
            q = (x @ self.wq[layer]).view(n, a.q_heads, a.head_dim)
            k = (x @ self.wk[layer]).view(n, a.kv_heads, a.head_dim)
            v = (x @ self.wv[layer]).view(n, a.kv_heads, a.head_dim)
            q, k, v = (t.to(self.tdtype) for t in (q, k, v))
            _, kb = self.to_buffer(k)
            _, vb = self.to_buffer(v)
            self.batch.write_kv(layer, kb, vb)
            out = self.attend(layer, q).cpu()
            self.check(layer, running, q, k, v, out)
            x = x + out.float().reshape(n, -1) @ self.wo[layer]
        # sample greedily from the last position of each request
        logits = x @ self.emb.T
        ends = torch.cumsum(torch.tensor(q_lens), 0) - 1
        for req, e in zip(running, ends.tolist()):
            req.tokens.append(int(torch.argmax(logits[e])))
            req.generated += 1
        self.stats["steps"] += 1
        self.stats["tokens"] += n
        for req in [r for r in running if r.generated >= r.max_new]:
            req.seq.commit(len(req.seq))  # its full pages become reusable
            req.seq.close()
            running.remove(req)
            self.stats["finished"] += 1

    def append_or_preempt(self, req, running, waiting):
        """Appends req's decode token; when the pool is full, preempts what
        preemption_candidates names (req itself last) and requeues it."""
        while True:
            try:
                req.seq.append(token_ids=req.pending)
                return
            except pagedkv.NoPagesError:
                cands = self.cache.preemption_candidates(0)
                victim = next((r for sid in cands for r in running
                               if r is not req and r.seq is not None and
                               r.seq.id == sid), req)
                victim.seq.close()
                victim.reset()
                waiting.insert(0, victim)
                self.stats["preempted"] += 1
                if victim is req:
                    return

    def check(self, layer, running, q, k, v, out):
        """pagedkv vs torch on gathered contiguous K/V, for every request."""
        start = 0
        for req in running:
            n = len(req.pending)
            gk, gv = self.gather(layer, req.seq)
            m = gk.shape[0]
            # the rows this step wrote are the projections
            self.max_err = max(self.max_err, float(
                (gk[m - n:].float() - k[start:start + n].float()).abs().max()),
                float((gv[m - n:].float() -
                       v[start:start + n].float()).abs().max()))
            ref = reference_attention(q[start:start + n].float(), gk.float(),
                                      gv.float(), self.args.q_heads,
                                      self.scale)
            err = float((out[start:start + n].float() - ref).abs().max())
            self.max_err = max(self.max_err, err)
            start += n
        self.stats["layers_checked"] += 1


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--dtype", default="f32", choices=sorted(TOL))
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--q-heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--page-size", type=int, default=8)
    p.add_argument("--pages", type=int, default=40)
    p.add_argument("--vocab", type=int, default=97)
    p.add_argument("--max-running", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-attention", action="store_true",
                   help="use pkv_attention even when the kernel layer exists")
    return p.parse_args(argv)


def run(args):
    eng = Engine(args)
    g = torch.Generator().manual_seed(args.seed + 1)
    system = torch.randint(0, args.vocab, (2 * args.page_size,),
                           generator=g).tolist()
    waiting = []
    for i in range(args.requests):
        tail = torch.randint(0, args.vocab,
                             (int(torch.randint(1, 20, (1,), generator=g)),),
                             generator=g).tolist()
        waiting.append(Request(i, system + tail,
                               int(torch.randint(2, 8, (1,), generator=g))))
    running = []
    for _ in range(args.steps):
        if not running and not waiting:
            break
        eng.step(running, waiting)
    eng.stats["max_err"] = eng.max_err
    eng.stats["attention"] = ("pkv_kv_attention" if eng.use_kernel_layer
                              else "pkv_attention")
    eng.ctx.close()
    return eng.stats


def main(argv=None):
    args = parse(argv)
    st = run(args)
    print("engine_loop: %s backend, %s, %s: %d steps, %d tokens, %d finished, "
          "%d preempted, %d prompt tokens reused, %d layer-steps checked, "
          "max |pagedkv - torch| = %.3g (tolerance %.3g)"
          % (args.backend, args.dtype, st["attention"], st["steps"],
             st["tokens"], st["finished"], st["preempted"],
             st["reused_tokens"], st["layers_checked"], st["max_err"],
             TOL[args.dtype]))
    return 0 if st["max_err"] <= TOL[args.dtype] and st["layers_checked"] \
        else 1


if __name__ == "__main__":
    sys.exit(main())
