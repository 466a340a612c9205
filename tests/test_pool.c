/* SPDX-License-Identifier: Apache-2.0 */
/* Page pool: allocation, free list, exhaustion (all-or-nothing), page sizes
 * 1 and 1024, and a pool with more than 2^31 token slots. */
#include "cp_util.h"

#if defined(__SANITIZE_ADDRESS__)
/* The 256 GiB pool below must fail as PKV_ERR_NO_MEMORY (and skip) where
 * the backend cannot reserve it, not abort inside ASan's allocator. */
const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *
__asan_default_options(void) {
  return "allocator_may_return_null=1";
}
#endif

static void test_basic(pkv_context *ctx) {
  pkv_cache *c = cp_cache(ctx, 16, 8);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  is_int(st.pages_total, 8, "8 pages in the pool");
  is_int(st.pages_free, 8, "all free at first");
  pkv_seq_id a, b;
  ok(pkv_seq_open(c, NULL, &a) == PKV_OK && pkv_seq_open(c, NULL, &b) == PKV_OK,
     "two sequences opened");
  ok(a != b && a > 0 && b > 0, "distinct positive ids");
  ok(pkv_seq_append(c, a, 17, NULL, NULL) == PKV_OK, "17 tokens take 2 pages");
  pkv_cache_stats(c, &st);
  is_int(st.pages_free, 6, "6 free");
  is_int(st.pages_live, 2, "2 live");
  is_int(st.tokens_stored, 17, "17 tokens stored");
  is_int(st.waste_slots, 15, "15 unused slots in the last page");
  is_int(st.num_seqs, 2, "2 sequences");
  ok(pkv_seq_append(c, b, 16 * 6, NULL, NULL) == PKV_OK, "b takes the rest");
  pkv_cache_stats(c, &st);
  is_int(st.pages_free, 0, "pool full");
  ok(pkv_seq_append(c, a, 15, NULL, NULL) == PKV_OK,
     "a still fills its partial last page without a new page");

  pkv_seq_id ids[2] = {a, b};
  cp_snap before, after;
  cp_take(c, ids, 2, &before);
  pkv_status s = pkv_seq_append(c, a, 1, NULL, NULL);
  ok(s == PKV_ERR_NO_PAGES, "exhaustion is PKV_ERR_NO_PAGES");
  ok(strstr(pkv_last_error(ctx), "needs 1 pages") &&
         strstr(pkv_last_error(ctx), "free 0"),
     "message gives needed vs free: %s", pkv_last_error(ctx));
  cp_take(c, ids, 2, &after);
  before.st.alloc_failures++; /* the only counter a failure moves */
  ok(cp_same(&before, &after), "state unchanged after the failed append");

  ok(pkv_seq_release(c, b) == PKV_OK, "release b");
  pkv_cache_stats(c, &st);
  is_int(st.pages_free, 6, "b's pages are free again");
  is_int(st.pages_cached, 0, "nothing cached without commits");
  ok(pkv_seq_release(c, b) == PKV_ERR_NOT_FOUND, "releasing twice: not found");
  /* All-or-nothing over several pages: 7 needed, 6 free. */
  cp_take(c, ids, 1, &before);
  ok(pkv_seq_append(c, a, 16 * 7, NULL, NULL) == PKV_ERR_NO_PAGES,
     "an append needing 7 pages with 6 free fails");
  cp_take(c, ids, 1, &after);
  before.st.alloc_failures++;
  ok(cp_same(&before, &after), "no page was taken by the failed append");
  ok(pkv_seq_append(c, a, 16 * 6, NULL, NULL) == PKV_OK, "6 pages fit");
  ok(pkv_seq_release(c, a) == PKV_OK && cp_conserved(c), "pool whole again");
  pkv_cache_stats(c, &st);
  is_int(st.pages_free, 8, "all 8 free after releasing everything");
  pkv_cache_destroy(c);
}

static void test_page_sizes(pkv_context *ctx) {
  pkv_cache *c = cp_cache(ctx, 1, 100);
  pkv_seq_id a;
  int64_t slots[100];
  pkv_seq_open(c, NULL, &a);
  ok(pkv_seq_append(c, a, 100, NULL, slots) == PKV_OK, "page size 1: 100 tokens");
  int good = 1;
  for (int i = 0; i < 100; i++) good &= slots[i] == i;
  ok(good, "page size 1: slot = page");
  ok(pkv_seq_append(c, a, 1, NULL, slots) == PKV_ERR_NO_PAGES,
     "page size 1: the 101st token does not fit");
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  is_int(st.waste_slots, 0, "page size 1 wastes nothing");
  pkv_cache_destroy(c);

  c = cp_cache(ctx, 1024, 3);
  pkv_seq_open(c, NULL, &a);
  int64_t *sl = malloc(3072 * sizeof *sl);
  ok(pkv_seq_append(c, a, 1025, NULL, sl) == PKV_OK, "page size 1024: 1025 tokens");
  ok(sl[0] == 0 && sl[1023] == 1023 && sl[1024] == 1024, "slots run on");
  pkv_cache_stats(c, &st);
  is_int(st.waste_slots, 1023, "1023 slots unused in the second page");
  ok(pkv_seq_append(c, a, 2047, NULL, sl) == PKV_OK, "fill to 3072");
  ok(pkv_seq_append(c, a, 1, NULL, sl) == PKV_ERR_NO_PAGES, "then full");
  free(sl);
  pkv_cache_destroy(c);
}

/* Pages beyond 2^31 token slots: 64-bit slot arithmetic. */
static void test_huge(pkv_context *ctx) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.num_kv_heads = 1;
  d.num_layers = 1;
  d.page_size = 1024;
  d.dtype = PKV_DTYPE_F16;
  d.num_pages = ((int64_t)1 << 21) + 8;
  pkv_cache *c = NULL;
  pkv_status s = pkv_cache_create(ctx, &d, &c);
  if (s == PKV_ERR_NO_MEMORY) {
    diag("%s", pkv_last_error(ctx));
    skip(5, "the backend cannot reserve a 256 GiB pool on this machine");
    return;
  }
  ok(s == PKV_OK, "pool of 2^21+8 pages of 1024 tokens created");
  pkv_seq_id a, b, x;
  pkv_seq_open(c, NULL, &a);
  pkv_seq_open(c, NULL, &b);
  pkv_seq_open(c, NULL, &x);
  ok(pkv_seq_append(c, a, (int64_t)1 << 30, NULL, NULL) == PKV_OK &&
         pkv_seq_append(c, b, (int64_t)1 << 30, NULL, NULL) == PKV_OK,
     "2^31 tokens in two sequences");
  int64_t slots[3000];
  ok(pkv_seq_append(c, x, 3000, NULL, slots) == PKV_OK, "3000 more tokens");
  int64_t base = (int64_t)1 << 31;
  int good = 1;
  for (int i = 0; i < 3000; i++) good &= slots[i] == base + i;
  ok(good, "slots beyond 2^31 are exact (first %lld)", (long long)slots[0]);
  int32_t pages[3];
  int64_t np;
  ok(pkv_seq_pages(c, x, pages, 3, &np) == PKV_OK && np == 3 &&
         pages[0] == (1 << 21),
     "its first page is 2^21");
  pkv_cache_destroy(c);
}

int main(void) {
  pkv_context *ctx = cp_ctx();
  test_basic(ctx);
  test_page_sizes(ctx);
  test_huge(ctx);
  pkv_context_destroy(ctx);
  return done_testing();
}
