# SPDX-License-Identifier: Apache-2.0
"""Plan/run from Python on the cpu backend: a plan with small chunks (so
that requests are split and merged) gives the same output as kv_attention;
a workspace too small is refused with PKV_ERR_SIZE and nothing written."""
from tap import Tap
from util import optional

t = Tap()
np, why = optional("numpy")
if np is None:
    t.skip_all(why)
import pagedkv  # noqa: E402

if not pagedkv.plan.available():
    t.skip_all("libpagedkv has no plan/run (pkv_plan_create)")
ctx = pagedkv.Context("cpu")
hq, hk, d, ps, npages = 4, 2, 64, 4, 32
rng = np.random.default_rng(5)
kpool = rng.standard_normal((npages, hk, ps, d)).astype(np.float32)
vpool = rng.standard_normal((npages, hk, ps, d)).astype(np.float32)
lens, q_lens = [30, 5, 0], [2, 1, 1]
bt = np.array([rng.permutation(npages)[:8] for _ in lens], np.int32)
view = pagedkv.KVView(ctx, kpool, vpool, page_size=ps, num_kv_heads=hk,
                      head_dim=d, num_pages=npages, dtype="f32")
table = pagedkv.KVTable.dense(ctx, np.cumsum([0] + q_lens), bt, lens)
nt = sum(q_lens)
q = rng.standard_normal((nt, hq, d)).astype(np.float32)
ref = np.zeros((nt, hq, d), np.float32)
pagedkv.kv_attention(ctx, view, table, q, ref, num_q_heads=hq)

p = pagedkv.Plan(ctx)
p.build(view, table, num_q_heads=hq, options={"chunk_keys": 8})
info = p.info()
t.ok(info["num_split"] == 1 and info["num_items"] == 4 + 1 + 1,
     "the 30-key request is cut into 4 chunks of 8: %r" % info)
ws = p.workspace_size()
t.ok(ws >= info["partial_rows"] * hq * (d + 1) * 4,
     "workspace_size %d holds %d partial rows" % (ws, info["partial_rows"]))
out = np.full((nt, hq, d), 7.0, np.float32)
small = np.zeros(max(ws // 4 - 1, 1), np.float32)
try:
    p.run(view, q, out, workspace=small)
    t.ok(False, "a workspace too small is refused")
except pagedkv.errors.PagedKVError as e:
    t.ok(e.status == pagedkv.lib.PKV_ERR_SIZE and (out == 7.0).all(),
         "a workspace too small: PKV_ERR_SIZE, out untouched")
work = np.zeros(ws // 4, np.float32)
p.run(view, q, out, workspace=work)
err = float(np.abs(out - ref).max())
t.ok(err < 1e-5, "run under the plan = kv_attention (max |diff| %.2g)" % err)
p.close()
t.done()
