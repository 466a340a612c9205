/* SPDX-License-Identifier: Apache-2.0 */
/* Host tier: swap out and in, block tables follow, errors. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.page_size = 4;
  d.num_pages = 8;
  d.num_layers = 2;
  d.num_host_pages = 6;
  pkv_cache *c = cp_cache_desc(ctx, &d);
  pkv_cache *nohost = cp_cache(ctx, 4, 8);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(c, &g);

  pkv_seq_id a = cp_open(c, 0, 0), b = cp_open(c, 0, 0), f;
  pkv_seq_append(c, a, 10, NULL, NULL);
  pkv_seq_append(c, b, 3, NULL, NULL);
  int32_t pa[4], pa2[4];
  cp_pages(c, a, pa, 4);
  /* Write a pattern into a's pages of every pool. */
  for (int l = 0; l < 2; l++) {
    pkv_buffer *k, *v;
    pkv_cache_kv(c, l, &k, &v);
    for (int j = 0; j < 3; j++) {
      memset((char *)pkv_buffer_native(k) + (size_t)pa[j] * g.page_bytes,
             0x10 + 4 * l + j, g.page_bytes);
      memset((char *)pkv_buffer_native(v) + (size_t)pa[j] * g.page_bytes,
             0x80 + 4 * l + j, g.page_bytes);
    }
  }
  pkv_seq_id ids[2] = {a, a};
  ok(pkv_seq_swap_out(c, ids, 2) == PKV_ERR_DUPLICATE, "a twice refused");
  ok(pkv_seq_swap_out(nohost, &a, 1) == PKV_ERR_NO_HOST_PAGES,
     "a cache without host tier refuses");
  ok(pkv_seq_swap_out(c, NULL, 1) == PKV_ERR_NULL, "NULL seqs refused");
  ok(pkv_seq_swap_out(c, &a, 0) == PKV_ERR_INVALID, "n 0 refused");
  pkv_seq_id unk = 999;
  ok(pkv_seq_swap_out(c, &unk, 1) == PKV_ERR_NOT_FOUND, "unknown id refused");
  pkv_seq_fork(c, b, &f);
  ok(pkv_seq_is_swapped(c, a) == 0, "a is resident");
  ok(pkv_seq_is_swapped(c, 999) < 0, "is_swapped: unknown id negative");

  pkv_status s = pkv_seq_swap_out(c, &a, 1);
  if (s == PKV_ERR_UNSUPPORTED) {
    diag("%s", pkv_last_error(ctx));
    skip(19, "the CPU backend cannot move pages to the host yet");
  } else {
    ok(s == PKV_OK, "swap a out");
    ok(pkv_seq_is_swapped(c, a) == 1, "a is swapped");
    pkv_cache_stats(c, &st);
    ok(st.host_pages_used == 3 && st.pages_live == 1 && st.swaps_out == 1,
       "3 host pages used, only b's page live");
    ok(st.tokens_stored == 6, "swapped tokens are not in the pool");
    int64_t len;
    ok(pkv_seq_length(c, a, &len) == PKV_OK && len == 10, "a keeps its length");
    ok(pkv_seq_append(c, a, 1, NULL, NULL) == PKV_ERR_STATE,
       "appending to a swapped sequence refused");
    pkv_batch *bt;
    pkv_batch_create(c, &bt);
    ok(pkv_batch_build(bt, &a, 1, NULL) == PKV_ERR_STATE,
       "a swapped sequence cannot be in a batch");
    pkv_batch_destroy(bt);
    /* Scribble over the freed device pages, then bring a back. */
    pkv_seq_id x = cp_open(c, 0, 0);
    pkv_seq_append(c, x, 12, NULL, NULL);
    pkv_seq_release(c, x);
    ok(pkv_seq_swap_in(c, &a, 1) == PKV_OK, "swap a in");
    cp_pages(c, a, pa2, 4);
    int same = 1;
    for (int l = 0; l < 2; l++) {
      pkv_buffer *k, *v;
      pkv_cache_kv(c, l, &k, &v);
      for (int j = 0; j < 3; j++)
        for (size_t i = 0; i < g.page_bytes; i++) {
          same &= ((unsigned char *)pkv_buffer_native(
                      k))[(size_t)pa2[j] * g.page_bytes + i] == 0x10 + 4 * l + j;
          same &= ((unsigned char *)pkv_buffer_native(
                      v))[(size_t)pa2[j] * g.page_bytes + i] == 0x80 + 4 * l + j;
        }
    }
    ok(same, "every layer's K and V came back into the new pages");
    pkv_cache_stats(c, &st);
    ok(st.host_pages_used == 0 && st.swaps_in == 1 && st.tokens_stored == 16,
       "host pages free again, stats follow");
    ok(pkv_seq_swap_in(c, &a, 1) == PKV_ERR_STATE, "swap in twice refused");
    /* b shares its page with its fork f. */
    int32_t pb[2], pf[2], pb2[2];
    cp_pages(c, b, pb, 2);
    cp_pages(c, f, pf, 2);
    pkv_buffer *k0, *v0;
    pkv_cache_kv(c, 0, &k0, &v0);
    memset((char *)pkv_buffer_native(k0) + (size_t)pb[0] * g.page_bytes, 0x3c,
           g.page_bytes);
    ok(pb[0] == pf[0] && cp_ref(c, pb[0]) == 2, "b and its fork share a page");
    ok(pkv_seq_swap_out(c, &b, 1) == PKV_OK, "a sequence with a shared page swaps out");
    is_int(cp_ref(c, pf[0]), 1, "the fork keeps the page, refcount 1");
    ok(pkv_seq_swap_in(c, &b, 1) == PKV_OK, "and comes back");
    cp_pages(c, b, pb2, 2);
    ok(pb2[0] != pf[0] &&
           ((unsigned char *)pkv_buffer_native(k0))[(size_t)pb2[0] * g.page_bytes +
                                                    7] == 0x3c,
       "with a private copy of the shared page");
    is_int(cp_ref(c, pf[0]), 1, "the fork's page is untouched");
    pkv_seq_id big = cp_open(c, 0, 0);
    pkv_seq_release(c, a);
    pkv_seq_release(c, f);
    ok(pkv_seq_append(c, big, 28, NULL, NULL) == PKV_OK, "a 7-page sequence");
    ok(pkv_seq_swap_out(c, &big, 1) == PKV_ERR_NO_HOST_PAGES &&
           strstr(pkv_last_error(ctx), "6 free"),
       "7 pages do not fit 6 host pages: %s", pkv_last_error(ctx));
    ok(pkv_seq_is_swapped(c, big) == 0, "and it stays resident");
  }
  pkv_cache_destroy(c);
  pkv_cache_destroy(nohost);
  pkv_context_destroy(ctx);
  return done_testing();
}
