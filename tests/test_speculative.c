/* SPDX-License-Identifier: Apache-2.0 */
/* Speculative decoding: pkv_seq_truncate_back (drop rejected draft tokens)
 * and pkv_seq_reserve (lookahead pages). Content is read back from the CPU
 * pool, so a page written in place that should have been copied shows. */
#include "cp_util.h"

#define PS 4
#define DIM 64

static pkv_context *ctx;
static pkv_cache *c;
static pkv_buffer *kb, *vb, *sb;
static const float *kpool;

static void put(int64_t slot, float val) {
  float row[DIM];
  for (int i = 0; i < DIM; i++) row[i] = val;
  pkv_buffer_upload(kb, 0, row, sizeof row);
  pkv_buffer_upload(vb, 0, row, sizeof row);
  pkv_buffer_upload(sb, 0, &slot, sizeof slot);
  pkv_write_kv_slots(c, 0, kb, vb, sb, 1);
}

static float get(pkv_seq_id s, int64_t pos) {
  int32_t pages[64];
  if (cp_pages(c, s, pages, 64) <= pos / PS) return -1;
  return kpool[((size_t)pages[pos / PS] * PS + (size_t)(pos % PS)) * DIM];
}

static pkv_status app(pkv_seq_id s, int64_t n, const int32_t *ids,
                      float first) {
  int64_t slots[64];
  pkv_status st = pkv_seq_append(c, s, n, ids, slots);
  for (int64_t i = 0; st == PKV_OK && i < n; i++) put(slots[i], first + (float)i);
  return st;
}

static void setup(int64_t pages) {
  ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = DIM;
  d.page_size = PS;
  d.num_pages = pages;
  d.dtype = PKV_DTYPE_F32;
  c = cp_cache_desc(ctx, &d);
  pkv_buffer_create(ctx, DIM * sizeof(float), &kb);
  pkv_buffer_create(ctx, DIM * sizeof(float), &vb);
  pkv_buffer_create(ctx, sizeof(int64_t), &sb);
  pkv_buffer *kp = NULL;
  pkv_cache_kv(c, 0, &kp, NULL);
  kpool = pkv_buffer_native(kp);
}

static void teardown(void) {
  pkv_buffer_destroy(kb);
  pkv_buffer_destroy(vb);
  pkv_buffer_destroy(sb);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
}

static void truncate_back(void) {
  setup(16);
  int32_t T[16];
  for (int i = 0; i < 16; i++) T[i] = 50 + i;
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_seq_id a = cp_open(c, 0, 0);
  app(a, 6, T, 0);
  /* Draft of 5 tokens: 2 pages more; reject 4. */
  app(a, 5, T + 6, 100);
  ok(pkv_seq_truncate_back(c, a, 4) == PKV_OK, "drop 4 rejected tokens");
  int64_t len;
  pkv_seq_length(c, a, &len);
  is_int(len, 7, "length 7");
  is_int(cp_pages(c, a, NULL, 0), 2, "the emptied page went back");
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, 2, "2 live pages");
  is_int(st.waste_slots, 1, "waste counts the new partial page");
  int64_t slot;
  pkv_seq_append(c, a, 1, T + 7, &slot);
  int32_t pg[4];
  cp_pages(c, a, pg, 4);
  is_int(slot, (int64_t)pg[1] * PS + 3, "the next token goes to offset 3 in place");
  pkv_cache_stats(c, &st);
  is_int(st.cow_copies, 0, "a private page is written in place");
  put(slot, 7);
  ok(get(a, 6) == 100 && get(a, 7) == 7 && get(a, 5) == 5,
     "accepted tokens kept, the replacement written");

  /* Shared with a fork: the cut page is copied before the next append. */
  pkv_seq_id f;
  pkv_seq_fork(c, a, &f);
  ok(pkv_seq_truncate_back(c, f, 2) == PKV_OK, "the fork drops 2");
  app(f, 1, T, 200);
  ok(get(a, 6) == 100 && get(a, 7) == 7, "the parent's tokens are untouched");
  ok(get(f, 6) == 200 && get(f, 5) == 5, "the fork reads its own token");
  pkv_cache_stats(c, &st);
  is_int(st.cow_copies, 1, "one copy for the shared page");

  /* Indexed page: appended without ids after the cut, it must be copied,
   * or a later match gets K/V of other tokens. */
  pkv_seq_id b = cp_open(c, 0, 1);
  app(b, 8, T, 300);
  pkv_seq_commit(c, b, 8);
  ok(pkv_seq_truncate_back(c, b, 2) == PKV_OK, "cut into an indexed page");
  app(b, 2, NULL, 400);
  pkv_seq_id m = cp_open(c, 0, 1);
  int64_t reused = -1;
  pkv_seq_match_prefix(c, m, T, 8, &reused);
  is_int(reused, 8, "the indexed pages still match");
  ok(get(m, 6) == 306 && get(m, 7) == 307,
     "a match reads the committed K/V, not the replacement");
  ok(get(b, 6) == 400 && get(b, 7) == 401, "the truncated sequence reads its own");

  /* Errors change nothing. */
  cp_snap s0, s1;
  pkv_seq_id ids[3] = {a, f, b};
  cp_take(c, ids, 3, &s0);
  ok(pkv_seq_truncate_back(c, a, 99) == PKV_ERR_RANGE, "more than the length: %s",
     pkv_last_error(ctx));
  ok(pkv_seq_truncate_back(c, a, -1) == PKV_ERR_RANGE, "negative");
  ok(pkv_seq_truncate_back(c, 999, 1) == PKV_ERR_NOT_FOUND, "unknown seq");
  ok(pkv_seq_truncate_back(NULL, a, 1) == PKV_ERR_NULL, "NULL cache");
  ok(pkv_seq_truncate_back(c, a, 0) == PKV_OK, "0 is a no-op");
  cp_take(c, ids, 3, &s1);
  ok(cp_same(&s0, &s1), "no failed call changed anything");
  ok(pkv_seq_truncate_back(c, a, 8) == PKV_OK, "drop everything");
  is_int(cp_pages(c, a, NULL, 0), 0, "no page left");
  teardown();
}

static void reserve(void) {
  setup(8);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_seq_id a = cp_open(c, 0, 0), other = cp_open(c, 0, 0);
  app(a, 2, NULL, 0);
  ok(pkv_seq_reserve(c, a, 7) == PKV_OK, "reserve 7 tokens");
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, 3, "2 pages taken ahead (2 slots left in the last)");
  ok(app(other, 20, NULL, 0) == PKV_OK, "another sequence takes the rest");
  ok(app(other, 1, NULL, 0) == PKV_ERR_NO_PAGES, "the pool is exhausted");
  ok(app(a, 3, NULL, 10) == PKV_OK && app(a, 4, NULL, 20) == PKV_OK,
     "the reserved appends still succeed");
  ok(get(a, 4) == 12 && get(a, 8) == 23, "and land where their slots say");
  ok(app(a, 4, NULL, 0) == PKV_ERR_NO_PAGES, "beyond the reservation: no pages");
  pkv_seq_release(c, other);

  /* A shared partial last page: the copy is reserved too. */
  pkv_seq_id f;
  pkv_seq_fork(c, a, &f);
  pkv_cache_stats(c, &st);
  int64_t live0 = st.pages_live;
  ok(pkv_seq_reserve(c, f, 1) == PKV_OK, "reserve 1 token on the fork");
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, live0 + 1, "one page for the copy");
  pkv_seq_id g = cp_open(c, 0, 0);
  app(g, (8 - st.pages_live) * PS, NULL, 0);
  ok(app(f, 1, NULL, 50) == PKV_OK, "the copy-on-write append succeeds");
  ok(get(f, 9) == 50 && get(a, 8) == 23, "with its own token, the parent untouched");

  /* Shrinking and cancelling give pages back; release frees the rest. */
  pkv_seq_release(c, g);
  ok(pkv_seq_reserve(c, a, 12) == PKV_OK, "reserve 12");
  pkv_cache_stats(c, &st);
  live0 = st.pages_live;
  ok(pkv_seq_reserve(c, a, 0) == PKV_OK, "cancel");
  pkv_cache_stats(c, &st);
  ok(st.pages_live < live0, "cancelling gave %lld pages back",
     (long long)(live0 - st.pages_live));
  ok(pkv_seq_reserve(c, a, 100) == PKV_ERR_NO_PAGES, "more than the pool");
  ok(pkv_seq_reserve(c, a, -1) == PKV_ERR_INVALID, "negative");
  ok(pkv_seq_reserve(c, 999, 1) == PKV_ERR_NOT_FOUND, "unknown seq");
  ok(pkv_seq_reserve(NULL, a, 1) == PKV_ERR_NULL, "NULL cache");
  pkv_seq_reserve(c, a, 4);
  pkv_seq_release(c, a);
  pkv_seq_release(c, f);
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, 0, "reserved pages are freed with the sequence");
  ok(cp_conserved(c), "pages conserved");
  teardown();
}

int main(void) {
  truncate_back();
  reserve();
  return done_testing();
}
