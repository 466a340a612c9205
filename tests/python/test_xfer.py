# SPDX-License-Identifier: Apache-2.0
"""Page transfer from Python (pagedkv.xfer, cpu backend): two endpoints in
one process and one thread, progressed in turn over UCX's TCP loopback: a
corrupt blob and another geometry refused, pages fetched by key from an
HND cache into an NHD cache in batches, byte-equal to the source; a
sequence with a partial last page pushed and reported as an arrival,
byte-equal. Skips when the
transfer module is not built."""
import os

from tap import Tap

os.environ.setdefault("UCX_TLS", "tcp,self")
t = Tap()
import pagedkv  # noqa: E402
from pagedkv import kvevents as kv, xfer  # noqa: E402

if not xfer.available():
    t.skip_all("libpagedkv has no pkv_xfer_* calls")
ctx = pagedkv.Context("cpu")
geo = dict(num_layers=2, num_kv_heads=2, head_dim=64, page_size=4,
           num_pages=32, dtype="f32")
a = ctx.cache(layout="hnd", **geo)
b = ctx.cache(layout="nhd", **geo)
try:
    ea = xfer.Endpoint(a, staging_pages=2)
except pagedkv.NoBackendError as e:
    t.skip_all("UCX transfer module not available: %s" % e)
eb = xfer.Endpoint(b)

toks = [7 * i + 1 for i in range(22)]  # 5 full pages and a partial one
wire = kv.wire_bytes(a)
data = bytes((i * 37 + 11) % 251 for i in range(6 * wire))
seq = kv.import_seq(a, toks, data)
keys = kv.page_keys(a, seq)
t.eq(len(keys), 5, "5 keys for 22 tokens of page size 4")

blob = ea.blob()
bad = bytearray(blob)
bad[len(bad) // 2] ^= 0xff
t.raises(pagedkv.InvalidArgumentError, lambda: eb.connect(bytes(bad)),
         "a corrupt blob: InvalidArgumentError")
other = ctx.cache(layout="hnd", **dict(geo, head_dim=128))
eo = xfer.Endpoint(other)
t.raises(pagedkv.IncompatibleError, lambda: eo.connect(blob),
         "head_dim 128 against 64: IncompatibleError")
eo.close()


def drive(req, server):
    for _ in range(200000):
        server.progress()
        done, st = req.test()
        if done:
            return st
    return None


peer = eb.connect(blob)
req = eb.fetch(peer, keys, ns=0)
t.eq(drive(req, ea), 0, "fetch of 5 pages in batches of 2 completes")
t.eq(req.result()[:2], (5, 0), "5 imported, 0 skipped")
req.free()
t.eq(kv.export_pages(b, 0, keys, layout="hnd"),
     kv.export_pages(a, 0, keys, layout="hnd"),
     "the fetched pages equal the source (K/V and token ids)")

back = ea.connect(eb.blob())
short = kv.import_seq(a, toks[:6], data[:2 * wire])  # fits a's 2-page staging
# ea's staging is freed by the RELEASE of the fetch's last batch, which
# ea sees when it progresses: the documented "progress and retry"
req = None
for _ in range(100000):
    try:
        req = ea.push_seq(back, short, tag=42, namespace=3)
        break
    except pagedkv.StateError:
        ea.progress()
        eb.progress()
t.eq(drive(req, eb), 0, "push of a 6-token sequence completes")
arr = eb.poll_arrivals()
t.eq([tag for tag, _ in arr], [42], "one arrival with tag 42")
t.eq(arr[0][1] if arr else None, req.result()[2],
     "its id is the request's remote_seq")
req.free()
got = kv.export_seq(b, arr[0][1], layout="hnd") if arr else None
t.eq(got, kv.export_seq(a, short, layout="hnd"),
     "the pushed sequence equals the source")
eb.close()
ea.close()
t.done()
