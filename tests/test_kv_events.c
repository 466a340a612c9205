/* SPDX-License-Identifier: Apache-2.0 */
/* Page keys and KV events (doc/kv-events.md): keys equal across caches fed
 * equal tokens; STORED / EVICTED / NAMESPACE_DROPPED in order with their
 * contents; a full queue drops the oldest and counts them; the callback
 * sees what the queue sees; bad arguments each get their own status. */
#include "cp_util.h"

static int same_key(pkv_page_key a, pkv_page_key b) {
  return a.lo == b.lo && a.hi == b.hi;
}

typedef struct recorder {
  pkv_kv_event ev[64];
  int n;
} recorder;

static void record(void *user, const pkv_kv_event *ev) {
  recorder *r = user;
  if (r->n < 64) r->ev[r->n++] = *ev;
}

static int64_t poll_all(pkv_cache *c, pkv_kv_event *ev, int64_t max,
                        int64_t *lost) {
  pkv_kv_event_init(&ev[0]);
  int64_t n = -1;
  if (pkv_cache_poll_events(c, ev, max, &n, lost) != PKV_OK) return -1;
  return n;
}

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 4, 8);
  int32_t T[16];
  for (int i = 0; i < 16; i++) T[i] = 1000 + 7 * i;
  pkv_kv_event ev[16];
  int64_t n, lost;

  /* ---- keys ---- */
  pkv_seq_id a = cp_open(c, 0, 1);
  ok(pkv_seq_append(c, a, 10, T, NULL) == PKV_OK, "a: 10 tokens with ids");
  pkv_page_key ka[4];
  ok(pkv_seq_page_keys(c, a, 0, 4, ka, &n) == PKV_OK && n == 2,
     "keys of a's two full pages, before any commit (n=%lld)", (long long)n);
  ok(!same_key(ka[0], ka[1]), "the two pages' keys differ");
  pkv_page_key k1;
  ok(pkv_seq_page_keys(c, a, 1, 1, &k1, &n) == PKV_OK && n == 1 &&
         same_key(k1, ka[1]),
     "first_page 1: the chained key of page 1, not a root key");
  ok(pkv_seq_page_keys(c, a, 2, 4, ka + 2, &n) == PKV_OK && n == 0,
     "the partial last page has no key");

  /* A second cache of another geometry, same tokens: same keys. */
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 128;
  d.page_size = 4;
  d.num_pages = 32;
  d.num_layers = 3;
  d.layout = PKV_LAYOUT_NHD;
  d.dtype = PKV_DTYPE_F32;
  pkv_cache *c2 = cp_cache_desc(ctx, &d);
  pkv_seq_id a2 = cp_open(c2, 0, 1), o2 = cp_open(c2, 0, 2),
             u2 = cp_open(c2, 0, 1);
  pkv_seq_append(c2, a2, 12, T, NULL);
  pkv_seq_append(c2, o2, 12, T, NULL);
  pkv_seq_append(c2, u2, 12, NULL, NULL);
  pkv_page_key kb[4], ko[4];
  ok(pkv_seq_page_keys(c2, a2, 0, 4, kb, &n) == PKV_OK && n == 3 &&
         same_key(kb[0], ka[0]) && same_key(kb[1], ka[1]),
     "another cache (layout, head dim, layers) fed the same tokens: equal "
     "keys");
  ok(pkv_seq_page_keys(c2, o2, 0, 4, ko, &n) == PKV_OK && n == 3 &&
         !same_key(ko[0], kb[0]) && !same_key(ko[2], kb[2]),
     "another namespace: other keys");
  ok(pkv_seq_page_keys(c2, u2, 0, 4, ko, &n) == PKV_OK && n == 0,
     "pages appended without token ids have no key");

  /* ---- STORED ---- */
  ok(pkv_cache_set_event_queue(c, 16) == PKV_OK, "queue of 16 events");
  ok(poll_all(c, ev, 16, &lost) == 0 && lost == 0, "nothing queued yet");
  ok(pkv_seq_commit(c, a, 10) == PKV_OK, "a: commit 10");
  n = poll_all(c, ev, 16, &lost);
  ok(n == 2 && lost == 0, "commit sent 2 events (%lld)", (long long)n);
  ok(ev[0].kind == PKV_EVENT_PAGE_STORED && ev[1].kind == PKV_EVENT_PAGE_STORED,
     "both PAGE_STORED");
  ok(same_key(ev[0].key, ka[0]) && same_key(ev[1].key, ka[1]),
     "in chain order, with the keys pkv_seq_page_keys gives");
  ok(!ev[0].has_parent && ev[1].has_parent && same_key(ev[1].parent_key, ka[0]),
     "page 0 has no parent; page 1's parent key is page 0's");
  ok(ev[0].namespace_id == 1 && ev[0].num_tokens == 4 &&
         ev[0].struct_size == sizeof(pkv_kv_event),
     "namespace, page size, struct_size");
  ok(ev[1].seqno == ev[0].seqno + 1 && ev[0].seqno >= 1,
     "seqno +1 per event (%llu, %llu)", (unsigned long long)ev[0].seqno,
     (unsigned long long)ev[1].seqno);
  uint64_t last_seq = ev[1].seqno;

  /* A match reuses pages (no event); a commit of equal pages by another
   * sequence indexes nothing new. */
  pkv_seq_id b = cp_open(c, 0, 1);
  int64_t reused = 0;
  pkv_seq_match_prefix(c, b, T, 10, &reused);
  pkv_seq_append(c, b, 2, T + 8, NULL);
  pkv_seq_commit(c, b, 10);
  ok(poll_all(c, ev, 16, &lost) == 0, "match and commit of indexed pages: no "
                                      "event");
  pkv_seq_release(c, b);

  /* ---- EVICTED ---- */
  ok(pkv_seq_release(c, a) == PKV_OK, "a released: its 2 indexed pages stay "
                                      "cached");
  pkv_seq_id f = cp_open(c, 0, 5);
  ok(pkv_seq_append(c, f, 32, NULL, NULL) == PKV_OK,
     "filling the pool evicts both cached pages");
  n = poll_all(c, ev, 16, &lost);
  ok(n == 2 && ev[0].kind == PKV_EVENT_PAGE_EVICTED &&
         ev[1].kind == PKV_EVENT_PAGE_EVICTED,
     "two PAGE_EVICTED events (%lld)", (long long)n);
  ok(n == 2 && same_key(ev[0].key, ka[1]) && same_key(ev[1].key, ka[0]) &&
         ev[0].has_parent && same_key(ev[0].parent_key, ka[0]),
     "deepest first, keys and parent key as stored");
  ok(n == 2 && ev[0].seqno == last_seq + 1 && ev[0].namespace_id == 1,
     "seqno goes on; namespace kept");
  pkv_seq_release(c, f);

  /* ---- NAMESPACE_DROPPED ---- */
  pkv_seq_id g = cp_open(c, 0, 9);
  pkv_seq_append(c, g, 12, T, NULL);
  pkv_seq_commit(c, g, 12);
  pkv_seq_release(c, g);
  n = poll_all(c, ev, 16, &lost);
  ok(n == 3 && ev[2].kind == PKV_EVENT_PAGE_STORED, "3 pages stored in "
                                                    "namespace 9");
  ok(pkv_namespace_drop(c, 9) == PKV_OK, "drop namespace 9");
  n = poll_all(c, ev, 16, &lost);
  ok(n == 1 && ev[0].kind == PKV_EVENT_NAMESPACE_DROPPED &&
         ev[0].namespace_id == 9 && ev[0].key.lo == 0 && ev[0].key.hi == 0 &&
         ev[0].num_tokens == 0,
     "one NAMESPACE_DROPPED event, no per-page events (%lld)", (long long)n);

  /* ---- overflow ---- */
  ok(pkv_cache_set_event_queue(c, 3) == PKV_OK, "queue of 3");
  pkv_seq_id h = cp_open(c, 0, 3);
  pkv_seq_append(c, h, 16, T, NULL);
  pkv_seq_commit(c, h, 16); /* 4 STORED */
  pkv_namespace_drop(c, 3); /* 1 DROPPED */
  n = poll_all(c, ev, 16, &lost);
  ok(n == 3 && lost == 2, "5 events into a queue of 3: 3 kept, 2 lost "
                          "(%lld, %lld)", (long long)n, (long long)lost);
  ok(n == 3 && ev[2].kind == PKV_EVENT_NAMESPACE_DROPPED &&
         ev[1].seqno + 1 == ev[2].seqno && ev[0].seqno + 1 == ev[1].seqno,
     "the newest are kept, oldest first");
  ok(poll_all(c, ev, 16, &lost) == 0 && lost == 0, "the lost count restarts "
                                                   "after a poll");
  pkv_seq_release(c, h);
  /* Partial polls and shrinking. */
  ok(pkv_cache_set_event_queue(c, 8) == PKV_OK, "queue of 8");
  pkv_namespace_drop(c, 100);
  pkv_namespace_drop(c, 101);
  pkv_namespace_drop(c, 102);
  ok(poll_all(c, ev, 1, &lost) == 1 && ev[0].namespace_id == 100,
     "max 1: the oldest");
  ok(pkv_cache_set_event_queue(c, 1) == PKV_OK, "shrunk to 1");
  n = poll_all(c, ev, 16, &lost);
  ok(n == 1 && ev[0].namespace_id == 102 && lost == 1,
     "shrinking keeps the newest, the rest count as lost");
  /* A larger caller struct: entries at its stride, extra bytes zero. */
  struct {
    pkv_kv_event e;
    uint64_t future;
  } big[2];
  memset(big, 0xab, sizeof big);
  pkv_kv_event_init_sized(&big[0].e, sizeof big[0]);
  pkv_namespace_drop(c, 7);
  ok(pkv_cache_poll_events(c, &big[0].e, 2, &n, NULL) == PKV_OK && n == 1 &&
         big[0].e.namespace_id == 7 && big[0].future == 0 &&
         big[0].e.struct_size == sizeof big[0],
     "a newer caller's larger struct: filled, unknown fields 0");

  /* ---- callback ---- */
  recorder r;
  memset(&r, 0, sizeof r);
  ok(pkv_cache_set_event_callback(c, record, &r) == PKV_OK, "callback set");
  ok(pkv_cache_set_event_queue(c, 16) == PKV_OK, "queue of 16 too");
  pkv_seq_id k = cp_open(c, 0, 4);
  pkv_seq_append(c, k, 8, T, NULL);
  pkv_seq_commit(c, k, 8);
  ok(r.n == 2 && r.ev[0].kind == PKV_EVENT_PAGE_STORED && r.ev[0].namespace_id == 4,
     "the callback saw the 2 STORED events inside the commit (%d)", r.n);
  n = poll_all(c, ev, 16, &lost);
  ok(n == 2 && ev[0].seqno == r.ev[0].seqno && same_key(ev[1].key, r.ev[1].key),
     "the queue holds the same events");
  ok(pkv_cache_set_event_callback(c, NULL, NULL) == PKV_OK, "callback removed");
  pkv_namespace_drop(c, 4);
  ok(r.n == 2, "no call after removal");
  /* The queue off: events still count in seqno. */
  ok(pkv_cache_set_event_queue(c, 0) == PKV_OK, "queue off");
  uint64_t before = r.ev[1].seqno;
  pkv_namespace_drop(c, 4);
  pkv_cache_set_event_queue(c, 4);
  pkv_namespace_drop(c, 4);
  n = poll_all(c, ev, 4, &lost);
  ok(n == 1 && ev[0].seqno == before + 3 && lost == 0,
     "seqno counts unseen events too (%llu after %llu)",
     (unsigned long long)ev[0].seqno, (unsigned long long)before);
  pkv_seq_release(c, k);

  /* ---- bad arguments ---- */
  ok(pkv_cache_set_event_queue(NULL, 4) == PKV_ERR_NULL, "queue: NULL cache");
  ok(pkv_cache_set_event_queue(c, -1) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "capacity"),
     "queue: negative capacity");
  ok(pkv_cache_set_event_queue(c, 1LL << 40) == PKV_ERR_RANGE,
     "queue: capacity past the limit");
  ok(pkv_cache_poll_events(c, ev, 4, NULL, NULL) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "n_out"),
     "poll: NULL n_out");
  ok(pkv_cache_poll_events(c, NULL, 4, &n, NULL) == PKV_ERR_NULL,
     "poll: NULL out");
  ok(pkv_cache_poll_events(c, ev, -1, &n, NULL) == PKV_ERR_INVALID,
     "poll: negative max");
  pkv_namespace_drop(c, 4);
  ev[0].struct_size = 8;
  ok(pkv_cache_poll_events(c, ev, 4, &n, NULL) == PKV_ERR_INVALID &&
         poll_all(c, ev, 4, &lost) == 1,
     "poll: struct_size too small refused, the event stays queued");
  ok(pkv_cache_poll_events(c, NULL, 0, &n, NULL) == PKV_OK && n == 0,
     "poll: max 0 with NULL out");
  ok(pkv_cache_set_event_callback(NULL, record, &r) == PKV_ERR_NULL,
     "callback: NULL cache");
  ok(pkv_seq_page_keys(NULL, a2, 0, 1, kb, &n) == PKV_ERR_NULL,
     "keys: NULL cache");
  ok(pkv_seq_page_keys(c2, a2, 0, 1, kb, NULL) == PKV_ERR_NULL, "keys: NULL n_out");
  ok(pkv_seq_page_keys(c2, a2, 0, 1, NULL, &n) == PKV_ERR_NULL, "keys: NULL keys");
  ok(pkv_seq_page_keys(c2, a2, -1, 1, kb, &n) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "first_page"),
     "keys: negative first_page");
  ok(pkv_seq_page_keys(c2, a2, 0, -1, kb, &n) == PKV_ERR_INVALID,
     "keys: negative max");
  ok(pkv_seq_page_keys(c2, 12345, 0, 1, kb, &n) == PKV_ERR_NOT_FOUND,
     "keys: unknown sequence");
  ok(pkv_seq_page_keys(c2, a2, 0, 0, NULL, &n) == PKV_OK && n == 0,
     "keys: max 0 with NULL keys");
  ok(pkv_seq_page_keys(c2, a2, INT64_MAX, INT64_MAX, kb, &n) == PKV_OK && n == 0,
     "keys: first_page and max at INT64_MAX: none, no overflow");
  ok(pkv_seq_page_keys(c2, a2, 2, INT64_MAX, kb, &n) == PKV_OK && n == 1,
     "keys: max INT64_MAX from page 2: the one key left");
  /* Truncation from the front detaches the chain: no key any more. */
  int64_t dropped = 0;
  pkv_seq_truncate_front(c2, a2, 8, &dropped);
  ok(pkv_seq_page_keys(c2, a2, 0, 4, kb, &n) == PKV_OK && n == 0,
     "a sequence truncated from the front has no keys");

  pkv_cache_destroy(c2);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
