/* SPDX-License-Identifier: Apache-2.0 */
/* Regression tests for the control-plane bugs of issue 8 (1-6 and 8), one
 * block per bug, each the shortest program that showed the bug. K/V
 * content is written with pkv_write_kv_slots and read back from the CPU
 * pool's memory, so a test sees which token a slot really holds. */
#include "alloc.h"
#include "cp_util.h"

#define PS 4
#define DIM 64

typedef struct rig {
  pkv_context *ctx;
  pkv_cache *c;
  pkv_buffer *k, *v, *slots;
  float *kp; /* K pool of layer 0 */
} rig;

static void rig_open(rig *r, int64_t num_pages, int64_t host_pages) {
  r->ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = DIM;
  d.page_size = PS;
  d.num_pages = num_pages;
  d.dtype = PKV_DTYPE_F32;
  d.num_host_pages = host_pages;
  r->c = cp_cache_desc(r->ctx, &d);
  pkv_buffer_create(r->ctx, DIM * sizeof(float), &r->k);
  pkv_buffer_create(r->ctx, DIM * sizeof(float), &r->v);
  pkv_buffer_create(r->ctx, sizeof(int64_t), &r->slots);
  pkv_buffer *kp = NULL;
  pkv_cache_kv(r->c, 0, &kp, NULL);
  r->kp = pkv_buffer_native(kp);
}

static void rig_close(rig *r) {
  pkv_buffer_destroy(r->k);
  pkv_buffer_destroy(r->v);
  pkv_buffer_destroy(r->slots);
  pkv_cache_destroy(r->c);
  pkv_context_destroy(r->ctx);
}

/* Writes `val` as the K/V of one slot (the engine's step for one token). */
static pkv_status put(rig *r, int64_t slot, float val) {
  float row[DIM];
  for (int i = 0; i < DIM; i++) row[i] = val;
  pkv_buffer_upload(r->k, 0, row, sizeof row);
  pkv_buffer_upload(r->v, 0, row, sizeof row);
  pkv_buffer_upload(r->slots, 0, &slot, sizeof slot);
  return pkv_write_kv_slots(r->c, 0, r->k, r->v, r->slots, 1);
}

/* What token position pos of a sequence holds, read from the pool. */
static float get(rig *r, pkv_seq_id s, int64_t pos) {
  int32_t pages[64];
  if (cp_pages(r->c, s, pages, 64) <= pos / PS) return -1;
  return r->kp[((size_t)pages[pos / PS] * PS + (size_t)(pos % PS)) * DIM];
}

/* Appends n tokens (ids may be NULL) and writes vals[i] for each. */
static pkv_status app(rig *r, pkv_seq_id s, int64_t n, const int32_t *ids,
                      const float *vals) {
  int64_t slots[64];
  pkv_status st = pkv_seq_append(r->c, s, n, ids, slots);
  for (int64_t i = 0; st == PKV_OK && i < n; i++) st = put(r, slots[i], vals[i]);
  return st;
}

/* Bug 1: copy-on-write ignored session holds, so a closed session's
 * token was overwritten by an append of a reopened sibling. */
static void bug1_session_hold(void) {
  rig r;
  rig_open(&r, 32, 0);
  const float v3[3] = {1, 2, 3}, v100 = 100, v200 = 200;
  pkv_seq_id a = cp_open(r.c, 0, 0), b, a2, b2;
  int64_t n;
  app(&r, a, 3, NULL, v3);
  pkv_seq_fork(r.c, a, &b);
  pkv_seq_close_session(r.c, a, 1);
  app(&r, b, 1, NULL, &v100);
  pkv_seq_close_session(r.c, b, 2);
  pkv_session_open(r.c, 1, NULL, &a2, &n);
  app(&r, a2, 1, NULL, &v200);
  ok(pkv_session_open(r.c, 2, NULL, &b2, &n) == PKV_OK && n == 4,
     "bug 1: session 2 reopens with its 4 tokens");
  is_int((int64_t)get(&r, b2, 3), 100,
         "bug 1: the closed session's token 3 survives its sibling's append");
  is_int((int64_t)get(&r, a2, 3), 200, "bug 1: the sibling reads its own token");
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(r.c, &st);
  ok(st.cow_copies >= 1, "bug 1: the held page was copied (%lld copies)",
     (long long)st.cow_copies);
  rig_close(&r);
}

/* Bug 2: a reopened session wrote in place into a page that had become an
 * indexed prefix page, so a match handed out K/V of other tokens. */
static void bug2_indexed_page(void) {
  rig r;
  rig_open(&r, 32, 0);
  const int32_t ids[4] = {11, 12, 13, 14};
  const float v3[3] = {1, 2, 3}, v40 = 40, v99 = 99;
  pkv_seq_id a = cp_open(r.c, 0, 0), a2, x, a3;
  int64_t n;
  app(&r, a, 3, ids, v3);
  pkv_seq_close_session(r.c, a, 1);
  pkv_session_open(r.c, 1, NULL, &a2, &n);
  pkv_seq_fork(r.c, a2, &x);
  pkv_seq_close_session(r.c, a2, 1);
  /* The sibling fills the partial page and commits it: it is indexed. */
  app(&r, x, 1, ids + 3, &v40);
  pkv_seq_commit(r.c, x, 4);
  pkv_seq_release(r.c, x);
  /* The reopened session appends a different token without ids. */
  pkv_session_open(r.c, 1, NULL, &a3, &n);
  app(&r, a3, 1, NULL, &v99);
  pkv_seq_id m = cp_open(r.c, 0, 0);
  int64_t reused = -1;
  pkv_seq_match_prefix(r.c, m, ids, 4, &reused);
  is_int(reused, 4, "bug 2: the committed page matches");
  is_int((int64_t)get(&r, m, 3), 40,
         "bug 2: the matched page holds the committed token, not the "
         "session's later append");
  is_int((int64_t)get(&r, a3, 3), 99, "bug 2: the session reads its own token");
  rig_close(&r);
}

/* Bug 3: a queued copy-on-write ran at the next build and overwrote a
 * token written with pkv_write_kv_slots before any flush. */
static void bug3_queued_copy(void) {
  rig r;
  rig_open(&r, 32, 0);
  const float v2[2] = {1, 2}, v7 = 7;
  pkv_seq_id p = cp_open(r.c, 0, 0), ch;
  app(&r, p, 2, NULL, v2);
  pkv_seq_fork(r.c, p, &ch);
  app(&r, ch, 1, NULL, &v7); /* copy-on-write queued; the write comes next */
  pkv_batch *b = NULL;
  pkv_batch_create(r.c, &b);
  ok(pkv_batch_build(b, &ch, 1, NULL) == PKV_OK, "bug 3: build after the write");
  is_int((int64_t)get(&r, ch, 2), 7, "bug 3: the written token survives the copy");
  ok(get(&r, ch, 0) == 1 && get(&r, ch, 1) == 2,
     "bug 3: the copy brought the shared tokens");
  is_int((int64_t)get(&r, p, 1), 2, "bug 3: the parent is untouched");
  pkv_batch_destroy(b);
  rig_close(&r);
}

/* Bug 4: pages computed after dropped context were indexed (as children
 * of the full chain, or after a session round trip as a new root). */
static void bug4_truncation(void) {
  rig r;
  rig_open(&r, 32, 0);
  int32_t T[16];
  float V[16];
  for (int i = 0; i < 16; i++) T[i] = 100 + i, V[i] = (float)i;
  int64_t n, reused, dropped;
  /* Through a session. */
  pkv_seq_id a = cp_open(r.c, 0, 0), a2;
  app(&r, a, 8, T, V);
  pkv_seq_truncate_front(r.c, a, 0, &dropped);
  pkv_seq_close_session(r.c, a, 1);
  pkv_session_open(r.c, 1, NULL, &a2, &n);
  is_int(n, 0, "bug 4: the truncated session reopens empty");
  app(&r, a2, 8, T, V);
  pkv_seq_commit(r.c, a2, 8);
  pkv_seq_id m = cp_open(r.c, 0, 0);
  pkv_seq_match_prefix(r.c, m, T, 8, &reused);
  is_int(reused, 0, "bug 4: tokens computed after a truncation never match "
                    "(session round trip)");
  pkv_seq_release(r.c, m);
  pkv_seq_release(r.c, a2);
  pkv_namespace_drop(r.c, 0);
  /* Without a session. */
  pkv_seq_id b = cp_open(r.c, 0, 0);
  app(&r, b, 8, T, V);
  pkv_seq_commit(r.c, b, 8);
  pkv_seq_truncate_front(r.c, b, 4, &dropped);
  is_int(dropped, 4, "bug 4: one page dropped");
  app(&r, b, 4, T + 8, V + 8);
  pkv_seq_commit(r.c, b, 8);
  m = cp_open(r.c, 0, 0);
  pkv_seq_match_prefix(r.c, m, T, 12, &reused);
  is_int(reused, 8, "bug 4: the page appended after the truncation is not "
                    "indexed under the full chain");
  /* Forks inherit the detachment. */
  pkv_seq_id f;
  pkv_seq_fork(r.c, b, &f);
  app(&r, f, 4, T + 12, V + 12);
  pkv_seq_commit(r.c, f, 12);
  pkv_seq_id m2 = cp_open(r.c, 0, 0);
  pkv_seq_match_prefix(r.c, m2, T, 16, &reused);
  is_int(reused, 8, "bug 4: a fork of a truncated sequence is not indexed");
  rig_close(&r);
}

/* Bug 5: a batch kept its slots after a sequence was released or swapped
 * out, and wrote into pages another sequence owned by then. */
static void bug5_stale_batch(void) {
  rig r;
  rig_open(&r, 4, 8);
  const float v[4] = {1, 2, 3, 4}, w[4] = {9, 9, 9, 9};
  pkv_buffer *k = NULL, *vv = NULL;
  pkv_buffer_create(r.ctx, 4 * DIM * sizeof(float), &k);
  pkv_buffer_create(r.ctx, 4 * DIM * sizeof(float), &vv);
  float rows[4 * DIM];
  for (int i = 0; i < 4 * DIM; i++) rows[i] = 55;
  pkv_buffer_upload(k, 0, rows, sizeof rows);
  pkv_buffer_upload(vv, 0, rows, sizeof rows);
  pkv_batch *bt = NULL;
  pkv_batch_create(r.c, &bt);

  pkv_seq_id x = cp_open(r.c, 0, 0), o = cp_open(r.c, 0, 0);
  app(&r, x, 3, NULL, v);
  app(&r, o, 1, NULL, v);
  const int32_t q3 = 3;
  pkv_batch_build(bt, &x, 1, &q3);
  /* Changes elsewhere, or an append to x itself, keep the batch usable. */
  pkv_seq_release(r.c, o);
  app(&r, x, 1, NULL, v + 3);
  ok(pkv_write_kv(bt, 0, k, vv) == PKV_OK,
     "bug 5: a batch stays usable after other sequences change and after "
     "an append");
  /* x released, y takes its page. */
  pkv_seq_release(r.c, x);
  pkv_seq_id y = cp_open(r.c, 0, 0);
  app(&r, y, 4, NULL, w);
  pkv_status st = pkv_write_kv(bt, 0, k, vv);
  ok(st == PKV_ERR_STATE, "bug 5: write on a batch of a released sequence: %s",
     pkv_last_error(r.ctx));
  ok(get(&r, y, 0) == 9 && get(&r, y, 2) == 9,
     "bug 5: the other sequence's page was not written");
  pkv_attn_params ap;
  pkv_attn_params_init(&ap, 1);
  pkv_buffer *q = NULL, *out = NULL;
  pkv_buffer_create(r.ctx, 4 * DIM * sizeof(float), &q);
  pkv_buffer_create(r.ctx, 4 * DIM * sizeof(float), &out);
  ok(pkv_attention(bt, 0, &ap, q, out, NULL) == PKV_ERR_STATE,
     "bug 5: attention on it is refused too");
  ok(pkv_batch_build(bt, &y, 1, &q3) == PKV_OK &&
         pkv_write_kv(bt, 0, k, vv) == PKV_OK,
     "bug 5: a rebuilt batch writes");
  /* Swapped out. */
  pkv_seq_swap_out(r.c, &y, 1);
  pkv_seq_id z = cp_open(r.c, 0, 0);
  app(&r, z, 4, NULL, w);
  ok(pkv_write_kv(bt, 0, k, vv) == PKV_ERR_STATE &&
         get(&r, z, 0) == 9 && get(&r, z, 3) == 9,
     "bug 5: a swapped-out sequence's batch is refused, nothing written");
  pkv_seq_release(r.c, z);
  pkv_seq_swap_in(r.c, &y, 1);
  ok(pkv_write_kv(bt, 0, k, vv) == PKV_ERR_STATE,
     "bug 5: after swap-in its pages changed: still refused");
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(out);
  pkv_buffer_destroy(k);
  pkv_buffer_destroy(vv);
  pkv_batch_destroy(bt);
  rig_close(&r);
}

static int same_pages(const pkv_page_info *a, const pkv_page_info *b, int n) {
  return !memcmp(a, b, (size_t)n * sizeof *a);
}

/* Bug 6: a swap that failed had already run the pending copies, changing
 * refcounts, page states and stats. */
static void bug6_failed_swap(void) {
  rig r;
  rig_open(&r, 8, 1);
  const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  pkv_seq_id p = cp_open(r.c, 0, 0), ch;
  app(&r, p, 6, NULL, v);
  pkv_seq_fork(r.c, p, &ch);
  app(&r, ch, 1, NULL, v); /* a copy is pending */
  pkv_stats s0, s1;
  pkv_stats_init(&s0);
  pkv_stats_init(&s1);
  pkv_cache_stats(r.c, &s0);
  pkv_page_info *i0 = cp_all_pages(r.c);
  ok(pkv_seq_swap_out(r.c, &p, 1) == PKV_ERR_NO_HOST_PAGES,
     "bug 6: swap-out of 2 pages into 1 host page fails");
  pkv_cache_stats(r.c, &s1);
  pkv_page_info *i1 = cp_all_pages(r.c);
  ok(same_pages(i0, i1, 8) && !memcmp(&s0, &s1, sizeof s0),
     "bug 6: the failed swap-out changed no page and no counter");
  free(i0);
  free(i1);
  rig_close(&r);

  /* Swap-in refused for want of pages, with a copy pending. */
  rig_open(&r, 4, 4);
  pkv_seq_id x = cp_open(r.c, 0, 0), y = cp_open(r.c, 0, 0), yc;
  app(&r, x, 8, NULL, v);
  pkv_seq_swap_out(r.c, &x, 1);
  app(&r, y, 6, NULL, v);
  pkv_seq_fork(r.c, y, &yc);
  app(&r, yc, 1, NULL, v); /* 3 live pages + the queue's hold */
  pkv_cache_stats(r.c, &s0);
  i0 = cp_all_pages(r.c);
  ok(pkv_seq_swap_in(r.c, &x, 1) == PKV_ERR_NO_PAGES,
     "bug 6: swap-in of 2 pages with 1 free fails");
  pkv_cache_stats(r.c, &s1);
  i1 = cp_all_pages(r.c);
  s0.alloc_failures++; /* the one counter that counts failures */
  ok(same_pages(i0, i1, 4) && !memcmp(&s0, &s1, sizeof s0),
     "bug 6: the failed swap-in changed no page and no other counter");
  free(i0);
  free(i1);
  /* The released fork's page is free again, though its copy is still
   * queued: the swap-in flushes the copy first, then takes it. */
  pkv_seq_release(r.c, yc);
  ok(pkv_seq_swap_in(r.c, &x, 1) == PKV_OK,
     "bug 6: with a page released (its copy still queued) the swap-in fits");
  is_int((int64_t)get(&r, x, 7), 8, "bug 6: and brings the tokens back");
  rig_close(&r);
}

/* Bug 8: one failed index insertion during a commit returned PKV_OK and
 * switched indexing off for the sequence for good. */
static void bug8_commit_oom(void) {
  rig r;
  rig_open(&r, 64, 0);
  int32_t T[12];
  float V[12];
  for (int i = 0; i < 12; i++) T[i] = 7 + i, V[i] = (float)i;
  int bad = 0, fails = 0, n;
  for (n = 1; n < 200; n++) {
    pkv_seq_id a = cp_open(r.c, 0, 0);
    app(&r, a, 12, T, V);
    pkv_page_info *i0 = cp_all_pages(r.c);
    pkv__fail_alloc(n, 1);
    pkv_status st = pkv_seq_commit(r.c, a, 12);
    pkv__fail_alloc(0, 0);
    pkv_page_info *i1 = cp_all_pages(r.c);
    if (st == PKV_ERR_NO_MEMORY) {
      fails++;
      if (!same_pages(i0, i1, 64)) bad++;
      st = pkv_seq_commit(r.c, a, 12); /* the engine retries */
    }
    pkv_seq_id m = cp_open(r.c, 0, 0);
    int64_t reused = -1;
    pkv_seq_match_prefix(r.c, m, T, 12, &reused);
    if (st != PKV_OK || reused != 12) bad++;
    free(i0);
    free(i1);
    pkv_seq_release(r.c, m);
    pkv_seq_release(r.c, a);
    pkv_namespace_drop(r.c, 0);
    if (fails > 0 && fails < n) break; /* the commit ran out of allocations */
  }
  ok(fails > 0, "bug 8: out-of-memory injected into %d commits", fails);
  is_int(bad, 0, "bug 8: each failed commit changed nothing, and the retry "
                 "indexed all 12 tokens");
  rig_close(&r);
}

int main(void) {
  bug1_session_hold();
  bug2_indexed_page();
  bug3_queued_copy();
  bug4_truncation();
  bug5_stale_batch();
  bug6_failed_swap();
  bug8_commit_oom();
  done_testing();
}
