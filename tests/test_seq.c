/* SPDX-License-Identifier: Apache-2.0 */
/* Sequences: slots, page lists, lengths, release, and bad input. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 4, 32);
  pkv_seq_id a, b;
  ok(pkv_seq_open(c, NULL, &a) == PKV_OK, "open a");
  ok(pkv_seq_open(c, NULL, &b) == PKV_OK, "open b");
  int64_t slots[64];
  ok(pkv_seq_append(c, a, 6, NULL, slots) == PKV_OK, "a: 6 tokens");
  ok(pkv_seq_append(c, b, 3, NULL, slots + 6) == PKV_OK, "b: 3 tokens");
  ok(pkv_seq_append(c, a, 3, NULL, slots + 9) == PKV_OK, "a: 3 more");
  int32_t pa[8], pb[8];
  int64_t na, nb, la;
  pkv_seq_pages(c, a, pa, 8, &na);
  pkv_seq_pages(c, b, pb, 8, &nb);
  is_int(na, 3, "a holds 3 pages");
  is_int(nb, 1, "b holds 1 page");
  int good = 1;
  for (int i = 0; i < 6; i++) good &= slots[i] == (int64_t)pa[i / 4] * 4 + i % 4;
  for (int i = 0; i < 3; i++) good &= slots[6 + i] == (int64_t)pb[0] * 4 + i;
  for (int i = 0; i < 3; i++)
    good &= slots[9 + i] == (int64_t)pa[(6 + i) / 4] * 4 + (6 + i) % 4;
  ok(good, "every slot is page * page_size + offset of its position");
  ok(pkv_seq_length(c, a, &la) == PKV_OK && la == 9, "a has length 9");
  ok(pa[0] != pb[0] && pa[1] != pb[0] && pa[2] != pb[0], "no page shared");
  int64_t cnt = -1;
  ok(pkv_seq_pages(c, a, NULL, 0, &cnt) == PKV_OK && cnt == 3,
     "page count query with capacity 0");
  ok(pkv_seq_append(c, a, 0, NULL, NULL) == PKV_OK, "appending 0 is a no-op");

  /* Released pages are reused. */
  ok(pkv_seq_release(c, b) == PKV_OK, "release b");
  pkv_seq_id d;
  pkv_seq_open(c, NULL, &d);
  pkv_seq_append(c, d, 1, NULL, slots);
  ok(slots[0] == (int64_t)pb[0] * 4, "the freed page is reused first");

  /* Bad input: specific status, argument named, state unchanged. */
  pkv_seq_id ids[2] = {a, d};
  cp_snap s0, s1;
  cp_take(c, ids, 2, &s0);
  ok(pkv_seq_open(NULL, NULL, &b) == PKV_ERR_NULL, "open: NULL cache");
  ok(pkv_seq_open(c, NULL, NULL) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "out"),
     "open: NULL out names out");
  pkv_seq_desc sd = {.struct_size = sizeof sd, .priority_class = 3};
  ok(pkv_seq_open(c, &sd, &b) == PKV_ERR_RANGE &&
         strstr(pkv_last_error(ctx), "priority_class"),
     "open: class out of range: %s", pkv_last_error(ctx));
  ok(pkv_seq_append(NULL, a, 1, NULL, NULL) == PKV_ERR_NULL,
     "append: NULL cache");
  ok(pkv_seq_append(c, 999, 1, NULL, NULL) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "999"),
     "append: unknown id named: %s", pkv_last_error(ctx));
  ok(pkv_seq_append(c, -5, 1, NULL, NULL) == PKV_ERR_NOT_FOUND,
     "append: negative id");
  ok(pkv_seq_append(c, a, -1, NULL, NULL) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "n "),
     "append: negative n named: %s", pkv_last_error(ctx));
  ok(pkv_seq_append(c, a, INT32_MAX, NULL, NULL) == PKV_ERR_OVERFLOW &&
         strstr(pkv_last_error(ctx), "int32"),
     "append: length past INT32_MAX: %s", pkv_last_error(ctx));
  ok(pkv_seq_append(c, a, INT64_MAX, NULL, NULL) == PKV_ERR_OVERFLOW,
     "append: n = INT64_MAX overflows, no wrap");
  ok(pkv_seq_release(c, 12345) == PKV_ERR_NOT_FOUND, "release: unknown id");
  ok(pkv_seq_release(NULL, a) == PKV_ERR_NULL, "release: NULL cache");
  ok(pkv_seq_length(c, a, NULL) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "len"),
     "length: NULL len named");
  ok(pkv_seq_length(c, 0, &la) == PKV_ERR_NOT_FOUND, "length: id 0");
  ok(pkv_seq_length(NULL, a, &la) == PKV_ERR_NULL, "length: NULL cache");
  ok(pkv_seq_pages(c, a, NULL, 4, &cnt) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "pages"),
     "pages: NULL pages with capacity");
  ok(pkv_seq_pages(c, a, pa, -1, &cnt) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "capacity"),
     "pages: negative capacity");
  ok(pkv_seq_pages(c, a, pa, 4, NULL) == PKV_ERR_NULL, "pages: NULL count");
  ok(pkv_seq_pages(c, 77, pa, 4, &cnt) == PKV_ERR_NOT_FOUND, "pages: unknown");
  cp_take(c, ids, 2, &s1);
  ok(cp_same(&s0, &s1), "no bad call changed any state");

  /* A short page buffer gets a prefix and the full count. */
  int32_t one[1] = {-1};
  ok(pkv_seq_pages(c, a, one, 1, &cnt) == PKV_OK && cnt == 3 && one[0] == pa[0],
     "pages: capacity 1 copies one page, reports 3");
  pkv_seq_release(c, a);
  pkv_seq_release(c, d);
  ok(cp_conserved(c), "conservation after releasing all");
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  ok(st.pages_free == 32 && st.tokens_stored == 0 && st.num_seqs == 0 &&
         st.waste_slots == 0,
     "the pool is whole and empty");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
