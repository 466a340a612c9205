/* SPDX-License-Identifier: Apache-2.0 */
/* Eviction: cached pages stay until an allocation needs them, then the
 * least recently used go first, deepest page of a chain before its parents;
 * a failed allocation evicts nothing. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 2, 6);
  int32_t TA[6] = {1, 2, 3, 4, 5, 6}, TB[4] = {7, 8, 9, 10};
  int32_t pa[3], pb[2], px[6];
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_seq_id a = cp_open(c, 0, 0), b = cp_open(c, 0, 0);
  pkv_seq_append(c, a, 6, TA, NULL);
  pkv_seq_append(c, b, 4, TB, NULL);
  pkv_seq_commit(c, a, 6);
  pkv_seq_commit(c, b, 4);
  cp_pages(c, a, pa, 3);
  cp_pages(c, b, pb, 2);
  pkv_seq_release(c, a); /* LRU: a2 a1 a0 */
  pkv_seq_release(c, b); /* LRU: a2 a1 a0 b1 b0 */
  pkv_cache_stats(c, &st);
  ok(st.pages_cached == 5 && st.pages_free == 1 && st.pages_live == 0,
     "5 cached, 1 free, none live");

  /* A failed allocation evicts nothing and changes no refcount. */
  pkv_seq_id x = cp_open(c, 0, 0);
  pkv_page_info *before = cp_all_pages(c);
  pkv_stats s0;
  pkv_stats_init(&s0);
  pkv_cache_stats(c, &s0);
  ok(pkv_seq_append(c, x, 13, NULL, NULL) == PKV_ERR_NO_PAGES,
     "7 pages from a pool of 6 fails");
  pkv_page_info *after = cp_all_pages(c);
  ok(!memcmp(before, after, 6 * sizeof *before),
     "every page's state and refcount unchanged");
  pkv_cache_stats(c, &st);
  s0.alloc_failures++;
  ok(!memcmp(&s0, &st, sizeof st), "every counter unchanged but alloc_failures");
  free(before);
  free(after);

  /* 3 pages: the free one, then a2 and a1 (deepest of the oldest chain). */
  int64_t slots[6];
  ok(pkv_seq_append(c, x, 6, NULL, slots) == PKV_OK, "x takes 3 pages");
  cp_pages(c, x, px, 6);
  ok(px[1] == pa[2] && px[2] == pa[1],
     "evicted in order a2 then a1 (got %d %d, a = %d %d %d)", px[1], px[2],
     pa[0], pa[1], pa[2]);
  pkv_cache_stats(c, &st);
  is_int(st.evictions, 2, "2 evictions counted");
  is_int(cp_state(c, pa[0]), PKV_PAGE_CACHED, "a0 still cached");
  is_int(cp_state(c, pb[0]), PKV_PAGE_CACHED, "b0 still cached");
  pkv_seq_id y = cp_open(c, 0, 0);
  int64_t reused;
  ok(pkv_seq_match_prefix(c, y, TA, 6, &reused) == PKV_OK && reused == 2,
     "a's root page still matches, its evicted children do not");
  /* y touched a0; releasing it makes a0 the most recent: b1 goes next. */
  pkv_seq_release(c, y);
  pkv_seq_append(c, x, 2, NULL, NULL);
  cp_pages(c, x, px, 6);
  ok(px[3] == pb[1], "next eviction takes b1 (LRU), not a0 (just used)");
  pkv_seq_append(c, x, 2, NULL, NULL);
  cp_pages(c, x, px, 6);
  ok(px[4] == pb[0], "then b0");
  pkv_seq_append(c, x, 2, NULL, NULL);
  cp_pages(c, x, px, 6);
  ok(px[5] == pa[0], "then a0");
  pkv_cache_stats(c, &st);
  ok(st.evictions == 5 && st.pages_cached == 0 && st.pages_live == 6,
     "all evicted, pool full of live pages");
  pkv_seq_release(c, x);
  pkv_cache_stats(c, &st);
  ok(st.pages_free == 6, "released: all free");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
