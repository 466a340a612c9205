# SPDX-License-Identifier: Apache-2.0
"""Page keys, KV events and page export/import from Python (cpu backend):
keys equal across caches, STORED/EVICTED/DROPPED events from the queue
and the callback, pages exported from an HND cache and imported into an
NHD cache reused by a prefix match, a key mismatch raised as
KeyMismatchError, and a sequence handed over whole."""
from tap import Tap

t = Tap()
import pagedkv  # noqa: E402
from pagedkv import kvevents as kv  # noqa: E402

if not kv.available():
    t.skip_all("libpagedkv has no page keys (pkv_seq_page_keys)")
ctx = pagedkv.Context("cpu")
geo = dict(num_layers=2, num_kv_heads=2, head_dim=64, page_size=4,
           num_pages=16, dtype="f32")
a = ctx.cache(layout="hnd", **geo)
b = ctx.cache(layout="nhd", **geo)
toks = [11 * i + 3 for i in range(14)]

sa = a.open_seq(namespace_id=5)
sa.append(token_ids=toks)
keys = kv.page_keys(a, sa)
t.eq(len(keys), 3, "3 keys for 14 tokens of page size 4")
sb = b.open_seq(namespace_id=5)
sb.append(token_ids=toks)
t.eq(kv.page_keys(b, sb), keys, "same keys in a cache of another layout")
t.eq(kv.page_keys(a, sa, first_page=1, max_pages=1), keys[1:2],
     "first_page / max_pages")
sb.close()

kv.set_event_queue(a, 32)
seen = []
kv.set_event_callback(a, seen.append)
sa.commit(14)
evs, lost = kv.poll_events(a)
t.eq([e["kind"] for e in evs], [kv.STORED] * 3, "commit: 3 STORED events")
t.eq([e["key"] for e in evs], keys, "with the pages' keys, in order")
t.eq(evs[1]["parent_key"], keys[0], "page 1's parent is page 0")
t.eq(seen, evs, "the callback saw the same events")
kv.set_event_callback(a, None)

t.eq(kv.wire_bytes(a), 2 * 2 * 2 * 4 * 64 * 4, "wire bytes per page")
data, ids = kv.export_pages(a, 5, keys, layout="nhd")
t.eq(ids, toks[:12], "exported token ids")
t.eq(kv.import_pages(b, 5, keys, ids, data, layout="nhd"), (3, 0),
     "3 pages imported into the NHD cache")
t.eq(kv.import_pages(b, 5, keys, ids, data, layout="nhd"), (0, 3),
     "a second import skips them")
back, _ = kv.export_pages(b, 5, keys, layout="hnd")
ref, _ = kv.export_pages(a, 5, keys, layout="hnd")
t.ok(back == ref, "read back in HND: bitwise the source's pages")
m = b.open_seq(namespace_id=5)
t.eq(m.match_prefix(toks), 12, "the prefix match reuses the imported pages")
m.close()
bad = list(ids)
bad[5] += 1
t.raises(pagedkv.KeyMismatchError,
         lambda: kv.import_pages(b, 6, keys, bad, data, layout="nhd"),
         "a changed token id: KeyMismatchError")
t.raises(pagedkv.NotFoundError,
         lambda: kv.import_pages(b, 5, keys[1:], ids[4:], data[:2 * len(data) // 3],
                                 parent=(1, 2), layout="nhd"),
         "an unknown parent: NotFoundError")

sdata, sids = kv.export_seq(a, sa, layout="nhd")
t.eq(sids, toks, "export_seq: the 14 ids")
c = kv.import_seq(b, sids, sdata, layout="nhd", namespace_id=5)
t.eq(c.length, 14, "import_seq: a sequence of 14 tokens")
t.ok(kv.export_seq(b, c, layout="hnd")[0] == kv.export_seq(a, sa, layout="hnd")[0],
     "exported again: bitwise the source's")

sa.close()
kv.poll_events(a)
f = a.open_seq(namespace_id=9)
f.append(64)  # every page: the 3 cached ones are evicted
evs, lost = kv.poll_events(a)
t.eq(sorted(e["key"] for e in evs if e["kind"] == kv.EVICTED), sorted(keys),
     "filling the pool: 3 EVICTED events")
a.namespace_drop(5)
evs, lost = kv.poll_events(a)
t.eq([(e["kind"], e["namespace_id"]) for e in evs],
     [(kv.NAMESPACE_DROPPED, 5)], "namespace drop: one event")
t.done()
