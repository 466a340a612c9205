/* SPDX-License-Identifier: Apache-2.0 */
/* Fork and copy-on-write. */
#include "cp_util.h"

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache *c = cp_cache(ctx, 4, 16);
  int32_t T[16];
  for (int i = 0; i < 16; i++) T[i] = i + 1;
  int32_t pp[8], pc[8];
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_seq_id p = cp_open(c, 0, 0), ch;
  pkv_seq_append(c, p, 6, T, NULL);
  cp_pages(c, p, pp, 8);
  /* Mark the parent's partial page in the pool so that the copy shows. */
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(c, &g);
  pkv_buffer *k0 = NULL;
  pkv_cache_kv(c, 0, &k0, NULL);
  unsigned char *pool = pkv_buffer_native(k0);
  memset(pool + (size_t)pp[1] * g.page_bytes, 0x5a, g.page_bytes);

  ok(pkv_seq_fork(c, p, &ch) == PKV_OK, "fork");
  cp_pages(c, ch, pc, 8);
  ok(pc[0] == pp[0] && pc[1] == pp[1], "the child shares the parent's pages");
  is_int(cp_ref(c, pp[0]), 2, "refcount 2 on a full page");
  is_int(cp_ref(c, pp[1]), 2, "refcount 2 on the partial page");
  int64_t len;
  pkv_seq_length(c, ch, &len);
  is_int(len, 6, "the child has the parent's length");
  pkv_cache_stats(c, &st);
  is_int(st.pages_live, 2, "no page copied by the fork itself");

  int64_t slot;
  ok(pkv_seq_append(c, ch, 1, T, &slot) == PKV_OK, "child appends 1");
  cp_pages(c, ch, pc, 8);
  ok(pc[0] == pp[0] && pc[1] != pp[1], "its partial page was replaced");
  is_int(slot, (int64_t)pc[1] * 4 + 2, "the new token goes to the copy");
  pkv_cache_stats(c, &st);
  is_int(st.cow_copies, 1, "one copy-on-write copy counted");
  is_int(cp_ref(c, pc[1]), 1, "the copy has refcount 1");
  is_int(cp_ref(c, pp[0]), 2, "the shared full page keeps refcount 2");
  pkv_status fs = pkv_cache_flush(c);
  if (fs == PKV_ERR_UNSUPPORTED) {
    diag("%s", pkv_last_error(ctx));
    is_int(cp_ref(c, pp[1]), 2, "the source stays held until the copy runs");
    skip(2, "the CPU backend has no copy_pages yet");
  } else {
    ok(fs == PKV_OK, "flush runs the copy");
    is_int(cp_ref(c, pp[1]), 1, "after the copy the source has refcount 1");
    int same = 1;
    for (size_t i = 0; i < g.page_bytes; i++)
      same &= pool[(size_t)pc[1] * g.page_bytes + i] == 0x5a;
    ok(same, "the copy holds the parent's page content");
  }
  ok(pkv_seq_append(c, p, 1, T, &slot) == PKV_OK, "the parent appends 1");
  int32_t pp2[8];
  cp_pages(c, p, pp2, 8);
  if (fs == PKV_OK)
    ok(pp2[1] == pp[1], "no copy when the page is no longer shared");
  else
    skip(1, "the pending copy still holds the source");

  /* Full last page: a fork's appends need no copy. */
  pkv_seq_id q = cp_open(c, 0, 0), qc;
  pkv_seq_append(c, q, 8, T, NULL);
  pkv_seq_fork(c, q, &qc);
  pkv_cache_stats(c, &st);
  int64_t cow0 = st.cow_copies;
  pkv_seq_append(c, qc, 3, T, NULL);
  pkv_cache_stats(c, &st);
  is_int(st.cow_copies, cow0, "appending after a full shared page copies nothing");

  /* Bad input. */
  ok(pkv_seq_fork(c, 999, &ch) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "parent"),
     "fork: unknown parent named");
  ok(pkv_seq_fork(c, p, NULL) == PKV_ERR_NULL, "fork: NULL child");
  ok(pkv_seq_fork(NULL, p, &ch) == PKV_ERR_NULL, "fork: NULL cache");
  ok(pkv_cache_flush(NULL) == PKV_ERR_NULL, "flush: NULL cache");

  pkv_seq_release(c, p);
  pkv_seq_release(c, ch);
  pkv_seq_release(c, q);
  pkv_seq_release(c, qc);
  pkv_cache_flush(c);
  pkv_cache_stats(c, &st);
  if (fs == PKV_OK)
    ok(st.pages_free == 16, "everything released: all free");
  else
    ok(cp_conserved(c), "conservation with a copy pending");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
