# SPDX-License-Identifier: Apache-2.0
"""examples/engine_loop.py: the continuous-batching loop runs and matches
torch attention at every layer of every step (its own check), with prefix
reuse, and with preemption when the pool is small; f32 and f16."""
import importlib.util
import os

from tap import Tap
from util import optional

t = Tap()
torch, why = optional("torch")
if torch is None:
    t.skip_all(why)

path = os.path.join(os.environ.get("PKV_SRCDIR", "."), "examples",
                    "engine_loop.py")
spec = importlib.util.spec_from_file_location("engine_loop", path)
loop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loop)

runs = [([], "defaults"),
        (["--dtype", "f16", "--pages", "9", "--steps", "60"],
         "f16, 9-page pool (preemption)"),
        (["--batch-attention", "--layers", "2", "--page-size", "1",
          "--pages", "200"], "pkv_attention, page_size 1")]
for argv, what in runs:
    args = loop.parse(argv)
    st = loop.run(args)
    tol = loop.TOL[args.dtype]
    t.ok(st["layers_checked"] > 0 and st["max_err"] <= tol,
         "%s (%s): %d steps, %d tokens, max |pagedkv - torch| %.2g <= %.2g"
         % (what, st["attention"], st["steps"], st["tokens"], st["max_err"],
            tol))
    t.eq(st["finished"], args.requests, "%s: every request finished" % what)
    if "--pages" in argv and "9" in argv:
        t.ok(st["preempted"] > 0, "%s: the full pool preempted %d times"
             % (what, st["preempted"]))
    else:
        t.ok(st["reused_tokens"] > 0, "%s: the shared system prompt was "
             "reused (%d tokens)" % (what, st["reused_tokens"]))
t.done()
