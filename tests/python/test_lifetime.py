# SPDX-License-Identifier: Apache-2.0
"""Objects close themselves: `with`, close() (idempotent), the garbage
collector and interpreter exit, children before parents, in any order the
Python side drops them."""
import gc
import os
import subprocess
import sys

from tap import Tap
from util import optional

t = Tap()
import pagedkv  # noqa: E402

np, np_why = optional("numpy")


def mk(ctx, pages=8):
    return ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64, page_size=4,
                     num_pages=pages)


with pagedkv.Context("cpu") as ctx:
    with mk(ctx) as cache:
        with cache.open_seq() as s:
            s.append(4)
            t.eq(cache.stats().num_seqs, 1, "a sequence is open in `with`")
        t.ok(s.closed, "leaving `with` closes the Sequence")
        t.eq(cache.stats().num_seqs, 0, "... and releases it in the library")
        with cache.batch() as b:
            pass
        t.ok(b.closed, "leaving `with` closes the Batch")
    t.ok(cache.closed, "leaving `with` closes the Cache")
    cache.close()
    t.ok(True, "close() twice is harmless")
    t.raises(pagedkv.ClosedError, lambda: cache.stats(),
             "a closed Cache raises ClosedError")
t.ok(ctx.closed, "leaving `with` closes the Context")

# garbage collection releases sequences and batches of a live cache
ctx = pagedkv.Context("cpu")
cache = mk(ctx)
s = cache.open_seq()
s.append(8)
fin_s = s._fin
b = cache.batch()
fin_b = b._fin
t.eq(cache.stats().pages_live, 2, "two pages live")
del s, b
gc.collect()
t.ok(not fin_s.alive and not fin_b.alive,
     "dropping a Sequence and a Batch runs their finalizers")
st = cache.stats()
t.eq((st.num_seqs, st.pages_live), (0, 0),
     "the collected Sequence was released (its pages are free)")

# children keep their parents alive
s = cache.open_seq()
fin_ctx, fin_cache = ctx._fin, cache._fin
del ctx, cache
gc.collect()
t.ok(fin_ctx.alive and fin_cache.alive,
     "a live Sequence keeps its Cache and Context alive")
s.append(4)
t.eq(len(s), 4, "... and usable")
del s
gc.collect()
t.ok(not fin_cache.alive and not fin_ctx.alive,
     "dropping the last Sequence collects Cache, then Context")

# a reference cycle through every object type: collected, no crash
ctx = pagedkv.Context("cpu")
cache = mk(ctx)
s = cache.open_seq()
s.append(3)
b = cache.batch()
buf = ctx.buffer(16)
ctx.cycle = [cache, s, b, buf]
cache.cycle = ctx
s.cycle = s
fins = [o._fin for o in (ctx, cache, s, b, buf)]
del ctx, cache, s, b, buf
gc.collect()
t.ok(not any(f.alive for f in fins),
     "a reference cycle of context, cache, sequence, batch and buffer is "
     "collected")

# explicit close of a parent closes children; they fail cleanly afterwards
ctx = pagedkv.Context("cpu")
cache = mk(ctx)
s = cache.open_seq()
b = cache.batch()
kbuf, _ = cache.kv(0)
ctx.close()
t.ok(all(o.closed for o in (cache, s, b, kbuf)),
     "Context.close() closes its cache, sequences, batch and views")
t.raises(pagedkv.ClosedError, lambda: s.append(1),
         "a Sequence of a closed cache raises ClosedError")
t.raises(pagedkv.ClosedError, lambda: kbuf.size,
         "a pool view of a closed cache raises ClosedError")

# a wrapped array stays alive as long as its Buffer
if np is None:
    t.skip(np_why, "wrapped numpy array lifetime")
else:
    ctx = pagedkv.Context("cpu")
    a = np.arange(16, dtype=np.float32)
    buf = ctx.wrap(a)
    del a
    gc.collect()
    t.eq(buf.to_numpy("float32").tolist(), list(range(16)),
         "a wrapped numpy array outlives the caller's reference")
    ctx.close()

# interpreter exit with everything still open
code = ("import pagedkv\n"
        "ctx = pagedkv.Context('cpu')\n"
        "c = ctx.cache(num_layers=1, num_kv_heads=1, head_dim=64, "
        "page_size=4, num_pages=8)\n"
        "s = c.open_seq(); s.append(5); b = c.batch(); b.build([s])\n"
        "f = s.fork(); buf = ctx.buffer(64)\n"
        "print('done')\n")
r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                   text=True, env=os.environ, timeout=120)
t.ok(r.returncode == 0 and r.stdout.strip() == "done" and r.stderr == "",
     "exit with open objects finalizes cleanly (rc %d)" % r.returncode)
if r.returncode != 0 or r.stderr:
    t.diag(r.stderr)
t.done()
