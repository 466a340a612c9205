/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions and front truncation. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 4, 8);
  int32_t T[16];
  for (int i = 0; i < 16; i++) T[i] = i + 1;
  int32_t pa[8], pb[8];
  pkv_stats st;
  pkv_stats_init(&st);

  pkv_seq_id a = cp_open(c, 0, 0);
  pkv_seq_append(c, a, 10, T, NULL);
  cp_pages(c, a, pa, 8);
  ok(pkv_seq_close_session(c, a, 42) == PKV_OK, "close a as session 42");
  int64_t len;
  ok(pkv_seq_length(c, a, &len) == PKV_ERR_NOT_FOUND, "a is gone");
  pkv_cache_stats(c, &st);
  ok(st.pages_cached == 3 && st.pages_live == 0 && st.num_seqs == 0,
     "its 3 pages are cached (the partial one too)");
  pkv_seq_id b;
  int64_t tokens = -1;
  ok(pkv_session_open(c, 42, NULL, &b, &tokens) == PKV_OK && tokens == 10,
     "reopen: 10 tokens survive");
  cp_pages(c, b, pb, 8);
  ok(!memcmp(pa, pb, 3 * sizeof *pa), "the same pages, in order");
  is_int(cp_ref(c, pa[0]), 1, "refcount 1 again");
  ok(pkv_session_open(c, 42, NULL, &b, &tokens) == PKV_ERR_NOT_FOUND,
     "a session opens once");
  ok(pkv_session_open(c, 7, NULL, &b, &tokens) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "session_key"),
     "an unknown key is PKV_ERR_NOT_FOUND");
  ok(pkv_seq_append(c, b, 2, T, NULL) == PKV_OK, "the conversation goes on");
  pkv_seq_length(c, b, &len);
  is_int(len, 12, "length 12");

  /* Evictions cut the chain at the first evicted page. */
  ok(pkv_seq_close_session(c, b, 43) == PKV_OK, "close as session 43");
  pkv_seq_id x = cp_open(c, 0, 0);
  ok(pkv_seq_append(c, x, 24, NULL, NULL) == PKV_OK,
     "6 pages: 5 free + the session's deepest page evicted");
  ok(pkv_session_open(c, 43, NULL, &b, &tokens) == PKV_OK && tokens == 8,
     "2 of 3 pages survive: 8 tokens (%lld)", (long long)tokens);
  pkv_seq_close_session(c, b, 44);
  pkv_seq_append(c, x, 8, NULL, NULL);
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, 8, "x now holds the whole pool");
  ok(pkv_session_open(c, 44, NULL, &b, &tokens) == PKV_OK && tokens == 0,
     "all pages evicted: 0 tokens, not an error");
  pkv_seq_length(c, b, &len);
  is_int(len, 0, "an empty sequence");
  pkv_seq_release(c, b);
  pkv_seq_release(c, x);

  /* Replacing a key drops the old session's hold. */
  a = cp_open(c, 0, 0);
  pkv_seq_append(c, a, 4, T, NULL);
  pkv_seq_close_session(c, a, 50);
  a = cp_open(c, 0, 0);
  pkv_seq_append(c, a, 8, T, NULL);
  pkv_seq_close_session(c, a, 50);
  pkv_cache_stats(c, &st);
  is_int(st.pages_cached, 2, "only the newer session's 2 pages stay cached");
  ok(pkv_session_open(c, 50, NULL, &b, &tokens) == PKV_OK && tokens == 8,
     "the key opens the newer session");
  pkv_seq_release(c, b);
  pkv_cache_stats(c, &st);
  ok(st.pages_free == 8 && st.pages_cached == 0,
     "released: the pages of a consumed session are free");

  /* Bad input. */
  ok(pkv_seq_close_session(c, 999, 1) == PKV_ERR_NOT_FOUND, "close: unknown");
  ok(pkv_seq_close_session(NULL, 1, 1) == PKV_ERR_NULL, "close: NULL cache");
  ok(pkv_session_open(c, 1, NULL, NULL, &tokens) == PKV_ERR_NULL, "open: NULL out");
  ok(pkv_session_open(c, 1, NULL, &b, NULL) == PKV_ERR_NULL, "open: NULL tokens");
  pkv_seq_desc bad = {.struct_size = sizeof bad, .priority_class = 5};
  ok(pkv_session_open(c, 1, &bad, &b, &tokens) == PKV_ERR_RANGE,
     "open: class out of range");

  /* Truncation drops whole pages from the front. */
  a = cp_open(c, 0, 0);
  pkv_seq_append(c, a, 10, T, NULL);
  cp_pages(c, a, pa, 8);
  int64_t dropped = -1;
  ok(pkv_seq_truncate_front(c, a, 5, &dropped) == PKV_OK && dropped == 8,
     "truncate to <= 5 drops 2 pages (8 tokens)");
  pkv_seq_length(c, a, &len);
  is_int(len, 2, "2 tokens remain");
  ok(cp_pages(c, a, pb, 8) == 1 && pb[0] == pa[2], "the last page remains");
  pkv_cache_stats(c, &st);
  ok(st.pages_free == 7 && st.tokens_stored == 2 && st.waste_slots == 2,
     "the dropped pages are free; stats follow");
  ok(pkv_seq_truncate_front(c, a, 5, &dropped) == PKV_OK && dropped == 0,
     "already short enough: nothing dropped");
  ok(pkv_seq_truncate_front(c, a, 0, &dropped) == PKV_OK && dropped == 2,
     "truncate to 0 drops the last page");
  ok(pkv_seq_truncate_front(c, a, -1, &dropped) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "max_tokens"),
     "negative max_tokens refused");
  ok(pkv_seq_truncate_front(c, 999, 1, NULL) == PKV_ERR_NOT_FOUND,
     "truncate: unknown id");
  pkv_seq_release(c, a);
  ok(cp_conserved(c), "conservation");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
