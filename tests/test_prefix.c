/* SPDX-License-Identifier: Apache-2.0 */
/* Prefix reuse: hits need equal tokens and equal namespace, only committed
 * full pages match, refcounts are exact, namespaces drop at once. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 4, 32);
  int32_t T[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  int32_t pa[8], pb[8], pd[8];
  pkv_stats st;
  pkv_stats_init(&st);

  pkv_seq_id a = cp_open(c, 0, 1);
  ok(pkv_seq_append(c, a, 10, T, NULL) == PKV_OK, "a: 10 tokens with ids");
  ok(pkv_seq_commit(c, a, 10) == PKV_OK, "a: commit 10");
  cp_pages(c, a, pa, 8);
  pkv_page_info pi;
  pkv_page_info_init(&pi);
  pkv_page_get_info(c, pa[0], &pi);
  ok(pi.indexed && pi.state == PKV_PAGE_LIVE && pi.refcount == 1,
     "a's first page is indexed and live with refcount 1");
  pkv_page_get_info(c, pa[2], &pi);
  ok(!pi.indexed, "a's partial last page is not indexed");

  /* Positive case first, so a disabled cache fails here. */
  pkv_seq_id b = cp_open(c, 0, 1);
  int64_t reused = -1;
  ok(pkv_seq_match_prefix(c, b, T, 12, &reused) == PKV_OK, "b: match");
  is_int(reused, 8, "b reuses a's two full pages (8 tokens)");
  cp_pages(c, b, pb, 8);
  ok(pb[0] == pa[0] && pb[1] == pa[1], "b holds a's pages");
  is_int(cp_ref(c, pa[0]), 2, "refcount 2 after the match");
  is_int(cp_ref(c, pa[2]), 1, "a's last page still refcount 1");
  int64_t len;
  pkv_seq_length(c, b, &len);
  is_int(len, 8, "b has length 8");
  pkv_cache_stats(c, &st);
  is_int(st.prefix_lookups, 1, "one lookup");
  is_int(st.prefix_hit_tokens, 8, "8 hit tokens");
  is_int(st.pages_live, 3, "3 live pages: sharing costs no page");
  is_int(st.tokens_stored, 18, "tokens stored counts each sequence");

  /* Same tokens, other namespace: no hit. */
  pkv_seq_id x = cp_open(c, 0, 2);
  ok(pkv_seq_match_prefix(c, x, T, 12, &reused) == PKV_OK && reused == 0,
     "another namespace with equal tokens: no hit");
  /* Same namespace, a token differs in the second page. */
  int32_t U[12];
  memcpy(U, T, sizeof U);
  U[6] = 99;
  pkv_seq_id d = cp_open(c, 0, 1);
  ok(pkv_seq_match_prefix(c, d, U, 12, &reused) == PKV_OK && reused == 4,
     "one token differs in page 2: only page 1 hits (%lld)", (long long)reused);
  cp_pages(c, d, pd, 8);
  is_int(cp_ref(c, pa[0]), 3, "first page refcount 3");
  is_int(cp_ref(c, pa[1]), 2, "second page refcount 2");
  U[6] = 7;
  U[0] = 0;
  pkv_seq_id e = cp_open(c, 0, 1);
  ok(pkv_seq_match_prefix(c, e, U, 12, &reused) == PKV_OK && reused == 0,
     "first token differs: no hit");
  /* Fewer tokens than a page: nothing to match. */
  pkv_seq_id f = cp_open(c, 0, 1);
  ok(pkv_seq_match_prefix(c, f, T, 3, &reused) == PKV_OK && reused == 0,
     "less than a page: no hit");

  /* Bad input. */
  ok(pkv_seq_match_prefix(c, b, T, 12, &reused) == PKV_ERR_STATE,
     "match on a non-empty sequence refused");
  ok(pkv_seq_match_prefix(c, f, NULL, 12, &reused) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "tokens"),
     "NULL tokens refused");
  ok(pkv_seq_match_prefix(c, f, T, -1, &reused) == PKV_ERR_INVALID,
     "negative n refused");
  ok(pkv_seq_match_prefix(c, f, T, 4, NULL) == PKV_ERR_NULL, "NULL reused");
  ok(pkv_seq_match_prefix(c, 999, T, 4, &reused) == PKV_ERR_NOT_FOUND,
     "unknown sequence");
  ok(pkv_seq_commit(c, a, 11) == PKV_ERR_RANGE &&
         strstr(pkv_last_error(ctx), "computed"),
     "commit beyond the length refused");
  ok(pkv_seq_commit(c, a, -1) == PKV_ERR_RANGE, "negative commit refused");
  ok(pkv_seq_commit(NULL, a, 1) == PKV_ERR_NULL, "commit: NULL cache");

  /* Release everything: indexed pages stay cached, the pool is whole. */
  pkv_seq_release(c, a);
  pkv_seq_release(c, b);
  pkv_seq_release(c, x);
  pkv_seq_release(c, d);
  pkv_seq_release(c, e);
  pkv_seq_release(c, f);
  pkv_cache_stats(c, &st);
  is_int(st.pages_cached, 2, "two indexed pages stay cached");
  is_int(st.pages_live, 0, "nothing live");
  ok(st.pages_free + st.pages_cached == st.pages_total,
     "free + cached == total after releasing everything");
  is_int(cp_state(c, pa[0]), PKV_PAGE_CACHED, "page 1 cached");
  is_int(cp_state(c, pa[2]), PKV_PAGE_FREE, "the unindexed page is free");
  pkv_seq_id g = cp_open(c, 0, 1);
  ok(pkv_seq_match_prefix(c, g, T, 12, &reused) == PKV_OK && reused == 8,
     "cached pages still match after their sequences are gone");
  is_int(cp_ref(c, pa[0]), 1, "a cached page revived with refcount 1");
  pkv_seq_release(c, g);

  /* Namespace drop invalidates all of its pages at once. */
  ok(pkv_namespace_drop(c, 1) == PKV_OK, "drop namespace 1");
  pkv_cache_stats(c, &st);
  is_int(st.pages_cached, 0, "no cached page left");
  is_int(st.pages_free, 32, "all free");
  g = cp_open(c, 0, 1);
  ok(pkv_seq_match_prefix(c, g, T, 12, &reused) == PKV_OK && reused == 0,
     "dropped pages no longer match");
  ok(pkv_namespace_drop(NULL, 1) == PKV_ERR_NULL, "drop: NULL cache");
  ok(pkv_namespace_drop(c, 12345) == PKV_OK, "dropping an unknown namespace is fine");
  pkv_seq_release(c, g);

  /* Only committed pages with known ids become matchable. */
  pkv_seq_id h = cp_open(c, 0, 3);
  pkv_seq_append(c, h, 8, T, NULL);
  pkv_seq_commit(c, h, 5);
  pkv_seq_id i = cp_open(c, 0, 3);
  ok(pkv_seq_match_prefix(c, i, T, 8, &reused) == PKV_OK && reused == 4,
     "only the page committed as computed matches (%lld)", (long long)reused);
  pkv_seq_id j = cp_open(c, 0, 4);
  pkv_seq_append(c, j, 8, NULL, NULL);
  pkv_seq_commit(c, j, 8);
  pkv_seq_id k = cp_open(c, 0, 4);
  int32_t zeros[8] = {0};
  ok(pkv_seq_match_prefix(c, k, zeros, 8, &reused) == PKV_OK && reused == 0,
     "pages appended without token ids never match");
  /* Two sequences that computed the same prefix: the second chain goes on
   * from the first one's pages. */
  pkv_seq_id m1 = cp_open(c, 0, 5), m2 = cp_open(c, 0, 5), m3 = cp_open(c, 0, 5);
  pkv_seq_append(c, m1, 8, T, NULL);
  pkv_seq_append(c, m2, 12, T, NULL);
  pkv_seq_commit(c, m1, 8);
  pkv_seq_commit(c, m2, 12);
  ok(pkv_seq_match_prefix(c, m3, T, 12, &reused) == PKV_OK && reused == 12,
     "a duplicate prefix still leads to the longer chain (%lld)",
     (long long)reused);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
