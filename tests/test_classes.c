/* SPDX-License-Identifier: Apache-2.0 */
/* Priority classes: reserves are never taken by a lower class, borrowing
 * from the shared part, preemption candidates, cached-page rules. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.page_size = 1;
  d.num_pages = 20;
  d.num_classes = 2;
  d.class_reserved[1] = 5;
  pkv_cache *c = cp_cache_desc(ctx, &d);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  ok(st.num_classes == 2 && st.classes[1].reserved == 5, "class 1 reserves 5");

  pkv_seq_id lo1 = cp_open(c, 0, 0), lo2 = cp_open(c, 0, 0);
  ok(pkv_seq_append(c, lo1, 10, NULL, NULL) == PKV_OK, "class 0 takes 10");
  ok(pkv_seq_append(c, lo2, 5, NULL, NULL) == PKV_OK, "class 0 takes 5 more");
  ok(pkv_seq_append(c, lo2, 1, NULL, NULL) == PKV_ERR_NO_PAGES,
     "class 0 never takes class 1's reserve");
  pkv_cache_stats(c, &st);
  ok(st.pages_free == 5 && st.classes[0].in_use == 15 &&
         st.classes[0].borrowed == 15,
     "5 free pages left, all reserved; class 0 borrows 15");
  is_int(st.alloc_failures, 1, "one allocation failure counted");
  pkv_seq_id hi = cp_open(c, 1, 0);
  ok(pkv_seq_append(c, hi, 5, NULL, NULL) == PKV_OK, "class 1 gets its reserve");
  ok(pkv_seq_append(c, hi, 1, NULL, NULL) == PKV_ERR_NO_PAGES,
     "then the pool is exhausted for class 1 too");
  pkv_seq_id cand[4];
  int64_t n = -1;
  ok(pkv_preemption_candidates(c, 1, cand, 4, &n) == PKV_OK && n == 2 &&
         cand[0] == lo2 && cand[1] == lo1,
     "candidates: class 0, most recently admitted first");
  ok(pkv_preemption_candidates(c, 0, cand, 4, &n) == PKV_OK && n == 0,
     "no candidates for the lowest class");
  pkv_cache_stats(c, &st);
  is_int(st.preemptions_suggested, 2, "2 preemptions suggested");
  ok(pkv_preemption_candidates(c, 2, cand, 4, &n) == PKV_ERR_RANGE,
     "class out of range refused");
  ok(pkv_preemption_candidates(c, 1, NULL, 4, &n) == PKV_ERR_NULL,
     "NULL out with capacity refused");
  ok(pkv_preemption_candidates(c, 1, cand, 4, NULL) == PKV_ERR_NULL,
     "NULL count refused");
  /* Preempt: release lo2; class 1 borrows from the shared part. */
  pkv_seq_release(c, lo2);
  ok(pkv_seq_append(c, hi, 3, NULL, NULL) == PKV_OK, "class 1 borrows 3");
  pkv_cache_stats(c, &st);
  ok(st.classes[1].in_use == 8 && st.classes[1].borrowed == 3,
     "class 1: 8 in use, 3 borrowed");

  /* Resizing. */
  ok(pkv_class_set_reserved(c, 1, 4) == PKV_ERR_STATE,
     "class 1 cannot shrink its reserve below its current use (8)");
  ok(pkv_class_set_reserved(c, 0, 19) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "cap"),
     "reserves over the cap refused: %s", pkv_last_error(ctx));
  pkv_seq_release(c, hi);
  pkv_seq_release(c, lo1);
  hi = cp_open(c, 1, 0);
  pkv_seq_append(c, hi, 3, NULL, NULL);
  ok(pkv_class_set_reserved(c, 1, 2) == PKV_ERR_STATE &&
         strstr(pkv_last_error(ctx), "current use"),
     "shrinking below the current use refused: %s", pkv_last_error(ctx));
  ok(pkv_class_set_reserved(c, 1, 3) == PKV_OK, "shrinking to the use is fine");
  ok(pkv_class_set_reserved(c, 1, 10) == PKV_OK, "growing within the cap");
  ok(pkv_class_set_reserved(c, 2, 1) == PKV_ERR_RANGE, "unknown class refused");
  ok(pkv_class_set_reserved(c, 1, -1) == PKV_ERR_INVALID, "negative refused");
  ok(pkv_class_set_reserved(NULL, 1, 1) == PKV_ERR_NULL, "NULL cache refused");
  /* class 0 may use 20 - 10 = 10 pages now */
  pkv_seq_id lo = cp_open(c, 0, 0);
  ok(pkv_seq_append(c, lo, 10, NULL, NULL) == PKV_OK &&
         pkv_seq_append(c, lo, 1, NULL, NULL) == PKV_ERR_NO_PAGES,
     "the grown reserve (7 unused) holds against class 0");
  ok(pkv_class_set_reserved(c, 1, 11) == PKV_ERR_NO_PAGES,
     "a reserve the pool cannot honour now is refused");
  pkv_seq_release(c, lo);
  pkv_seq_release(c, hi);

  /* Cached pages: class 1's cached pages are not evictable by class 0;
   * class 1 may evict class 0's. */
  pkv_class_set_reserved(c, 1, 2);
  int32_t T[20];
  for (int i = 0; i < 20; i++) T[i] = i + 100;
  hi = cp_open(c, 1, 7);
  pkv_seq_append(c, hi, 8, T, NULL);
  pkv_seq_commit(c, hi, 8);
  pkv_seq_release(c, hi);
  pkv_cache_stats(c, &st);
  ok(st.pages_cached == 8 && st.pages_free == 12, "8 class-1 pages cached");
  lo = cp_open(c, 0, 0);
  ok(pkv_seq_append(c, lo, 12, NULL, NULL) == PKV_OK, "class 0 takes the 12 free");
  ok(pkv_seq_append(c, lo, 1, NULL, NULL) == PKV_ERR_NO_PAGES,
     "class 0 cannot evict class 1's cached pages");
  pkv_seq_release(c, lo);
  lo = cp_open(c, 0, 8);
  pkv_seq_append(c, lo, 12, T, NULL);
  pkv_seq_commit(c, lo, 12);
  pkv_seq_release(c, lo);
  pkv_cache_stats(c, &st);
  ok(st.pages_cached == 20 && st.pages_free == 0, "whole pool cached");
  hi = cp_open(c, 1, 9);
  int32_t pg[4];
  ok(pkv_seq_append(c, hi, 4, NULL, NULL) == PKV_OK,
     "class 1 evicts class 0's cached pages");
  cp_pages(c, hi, pg, 4);
  pkv_page_info pi;
  pkv_page_info_init(&pi);
  pkv_page_get_info(c, pg[0], &pi);
  is_int(pi.priority_class, 1, "the page is charged to class 1 now");
  pkv_cache_stats(c, &st);
  is_int(st.evictions, 4, "4 evictions");
  lo = cp_open(c, 0, 8);
  int64_t reused = -1;
  pkv_seq_match_prefix(c, lo, T, 12, &reused);
  is_int(reused, 8, "class 0's surviving chain head (8 of 12) still matches");
  pkv_seq_release(c, lo);
  pkv_seq_release(c, hi);
  pkv_cache_stats(c, &st);
  ok(st.pages_free + st.pages_cached == st.pages_total && st.pages_live == 0,
     "free + cached == total after releasing everything");
  pkv_cache_destroy(c);

  /* A reopened session revives cached pages only within its class quota. */
  d.num_pages = 10;
  d.class_reserved[1] = 4;
  c = cp_cache_desc(ctx, &d);
  lo = cp_open(c, 0, 0);
  ok(pkv_seq_append(c, lo, 6, T, NULL) == PKV_OK, "class 0 fills its share");
  pkv_seq_close_session(c, lo, 77);
  pkv_seq_id other = cp_open(c, 0, 0);
  pkv_seq_append(c, other, 2, NULL, NULL);
  int64_t tokens = -1;
  ok(pkv_session_open(c, 77, NULL, &lo, &tokens) == PKV_OK && tokens == 4,
     "the session reopens with the 4 pages class 0 may still take (%lld)",
     (long long)tokens);
  pkv_cache_stats(c, &st);
  ok(st.classes[0].in_use == 6 && st.pages_free + st.pages_cached == 4,
     "class 1's reserve is untouched");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
