/* SPDX-License-Identifier: Apache-2.0 */
/* Batch descriptor: dense and CSR forms agree with the sequences, slot
 * mapping is exact, incremental builds equal from-scratch ones, device
 * copies match the host view, bad input leaves the previous view. */
#include "cp_util.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

/* Checks a view against the sequences, computed here from scratch. */
static int check_view(pkv_cache *c, const pkv_batch_view *v,
                      const pkv_seq_id *ids, int n, const int32_t *q) {
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(c, &g);
  const int32_t ps = g.page_size;
  if (v->num_seqs != n) return 0;
  int64_t tok = 0, kvp = 0;
  int32_t mq = 0, mkv = 0;
  if (v->q_indptr[0] != 0 || v->kv_indptr[0] != 0) return 0;
  for (int i = 0; i < n; i++) {
    int64_t len, np;
    static int32_t pages[4096];
    pkv_seq_length(c, ids[i], &len);
    pkv_seq_pages(c, ids[i], pages, 4096, &np);
    if (np > v->max_pages) return 0;
    const int32_t *row = v->block_table + (size_t)i * v->max_pages;
    for (int j = 0; j < v->max_pages; j++)
      if (row[j] != (j < np ? pages[j] : 0)) return 0;
    if (v->seq_lens[i] != len) return 0;
    int32_t qi = q ? q[i] : (len > 0);
    if (v->q_indptr[i + 1] - v->q_indptr[i] != qi) return 0;
    if (v->kv_indptr[i + 1] - v->kv_indptr[i] != np) return 0;
    for (int j = 0; j < np; j++)
      if (v->kv_indices[v->kv_indptr[i] + j] != pages[j]) return 0;
    int32_t last = np ? (int32_t)(len - (np - 1) * ps) : 0;
    if (v->kv_last_page_len[i] != last) return 0;
    for (int j = 0; j < qi; j++) {
      int64_t pos = len - qi + j;
      if (v->slot_mapping[tok + j] != (int64_t)pages[pos / ps] * ps + pos % ps)
        return 0;
    }
    tok += qi;
    kvp += np;
    if (qi > mq) mq = qi;
    if (len > mkv) mkv = (int32_t)len;
  }
  return v->num_tokens == tok && v->q_indptr[n] == tok &&
         v->kv_indptr[n] == kvp && v->max_q_len == mq && v->max_kv_len == mkv;
}

static int check_device(pkv_batch *b, const pkv_batch_view *v) {
  pkv_batch_device d;
  pkv_batch_device_init(&d);
  if (pkv_batch_get_device(b, &d) != PKV_OK) return 0;
  int n = v->num_seqs;
  struct {
    pkv_buffer *buf;
    const void *host;
    size_t bytes;
  } a[7] = {{d.block_table, v->block_table, (size_t)n * v->max_pages * 4},
            {d.seq_lens, v->seq_lens, (size_t)n * 4},
            {d.q_indptr, v->q_indptr, (size_t)(n + 1) * 4},
            {d.kv_indptr, v->kv_indptr, (size_t)(n + 1) * 4},
            {d.kv_indices, v->kv_indices, (size_t)v->kv_indptr[n] * 4},
            {d.kv_last_page_len, v->kv_last_page_len, (size_t)n * 4},
            {d.slot_mapping, v->slot_mapping, (size_t)v->num_tokens * 8}};
  for (int i = 0; i < 7; i++) {
    if (!a[i].bytes) continue;
    void *tmp = malloc(a[i].bytes);
    int same = pkv_buffer_download(a[i].buf, 0, tmp, a[i].bytes) == PKV_OK &&
               !memcmp(tmp, a[i].host, a[i].bytes);
    free(tmp);
    if (!same) return 0;
  }
  return 1;
}

static void test_basic(pkv_context *ctx) {
  pkv_cache *c = cp_cache(ctx, 4, 64);
  pkv_batch *b = NULL;
  ok(pkv_batch_create(c, &b) == PKV_OK && pkv_batch_cache(b) == c, "batch");
  pkv_batch_view v;
  pkv_batch_view_init(&v);
  ok(pkv_batch_get_view(b, &v) == PKV_ERR_STATE, "no view before a build");
  pkv_seq_id s[4];
  for (int i = 0; i < 4; i++) pkv_seq_open(c, NULL, &s[i]);
  pkv_seq_append(c, s[0], 9, NULL, NULL);
  pkv_seq_append(c, s[1], 4, NULL, NULL);
  pkv_seq_append(c, s[2], 1, NULL, NULL);
  /* s[3] stays empty */
  ok(pkv_batch_build(b, s, 4, NULL) == PKV_OK, "decode build of 4");
  ok(pkv_batch_get_view(b, &v) == PKV_OK && check_view(c, &v, s, 4, NULL),
     "view agrees with the sequences (dense, CSR, slots)");
  is_int(v.kv_last_page_len[0], 1, "last page of 9 tokens holds 1");
  is_int(v.kv_last_page_len[1], 4, "last page of 4 tokens holds 4");
  is_int(v.kv_last_page_len[3], 0, "empty sequence: last page length 0");
  is_int(v.num_tokens, 3, "three query tokens (empty sequence has none)");
  ok(check_device(b, &v), "device copy equals the host view");
  int32_t q[4] = {9, 2, 1, 0};
  ok(pkv_batch_build(b, s, 4, q) == PKV_OK, "prefill build");
  pkv_batch_get_view(b, &v);
  ok(check_view(c, &v, s, 4, q), "q_indptr and slot mapping of q_lens runs");
  ok(check_device(b, &v), "device copy after a prefill build");

  /* Bad input, previous view intact. */
  pkv_batch_view keep = v;
  int32_t *bt_copy = malloc((size_t)v.num_seqs * v.max_pages * 4);
  memcpy(bt_copy, v.block_table, (size_t)v.num_seqs * v.max_pages * 4);
  pkv_seq_id dup[3] = {s[0], s[1], s[0]};
  ok(pkv_batch_build(b, dup, 3, NULL) == PKV_ERR_DUPLICATE &&
         strstr(pkv_last_error(ctx), "seqs[0]") &&
         strstr(pkv_last_error(ctx), "seqs[2]"),
     "a sequence twice is refused naming both positions: %s",
     pkv_last_error(ctx));
  pkv_seq_id unk[2] = {s[0], 4242};
  ok(pkv_batch_build(b, unk, 2, NULL) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "seqs[1]"),
     "an unknown id is refused naming its position");
  int32_t badq[4] = {1, 5, 1, 0};
  ok(pkv_batch_build(b, s, 4, badq) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "q_lens[1]"),
     "q_lens beyond the length refused: %s", pkv_last_error(ctx));
  int32_t zq[4] = {0, 1, 1, 0};
  ok(pkv_batch_build(b, s, 4, zq) == PKV_ERR_INVALID,
     "q_lens 0 on a non-empty sequence refused");
  ok(pkv_batch_build(b, s, 0, NULL) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "num_seqs"),
     "num_seqs 0 refused");
  ok(pkv_batch_build(b, NULL, 1, NULL) == PKV_ERR_NULL, "NULL seqs refused");
  ok(pkv_batch_build(NULL, s, 1, NULL) == PKV_ERR_NULL, "NULL batch refused");
  ok(pkv_batch_get_view(b, &v) == PKV_OK && v.num_seqs == keep.num_seqs &&
         v.block_table == keep.block_table && v.num_tokens == keep.num_tokens &&
         !memcmp(bt_copy, v.block_table, (size_t)v.num_seqs * v.max_pages * 4) &&
         check_view(c, &v, s, 4, q),
     "every failed build left the previous view intact");
  free(bt_copy);
  ok(pkv_batch_get_view(b, NULL) == PKV_ERR_NULL, "view: NULL out");
  ok(pkv_batch_get_view(NULL, &v) == PKV_ERR_NULL, "view: NULL batch");
  pkv_batch_device dv;
  pkv_batch_device_init(&dv);
  ok(pkv_batch_get_device(b, NULL) == PKV_ERR_NULL &&
         pkv_batch_get_device(NULL, &dv) == PKV_ERR_NULL,
     "device: NULL arguments");
  ok(pkv_batch_create(NULL, &b) == PKV_ERR_NULL, "create: NULL cache");
  ok(pkv_batch_create(c, NULL) == PKV_ERR_NULL, "create: NULL out");
  ok(pkv_batch_cache(NULL) == NULL, "cache of NULL batch");

  /* An unchanged row is not rewritten: a mark in its padding survives. */
  pkv_batch_build(b, s, 3, NULL);
  pkv_batch_get_view(b, &v);
  int32_t *row1 = (int32_t *)v.block_table + v.max_pages;
  int pad = v.max_pages > 1 ? v.max_pages - 1 : -1;
  if (pad > 0) row1[pad] = -77;
  pkv_seq_append(c, s[0], 1, NULL, NULL);
  pkv_seq_append(c, s[2], 4, NULL, NULL);
  ok(pkv_batch_build(b, s, 3, NULL) == PKV_OK, "next decode step");
  pkv_batch_get_view(b, &v);
  row1 = (int32_t *)v.block_table + v.max_pages;
  ok(pad > 0 && row1[pad] == -77, "the unchanged row was not copied again");
  if (pad > 0) row1[pad] = 0;
  ok(check_view(c, &v, s, 3, NULL) && check_device(b, &v),
     "the changed rows are right, host and device");

  pkv_batch_destroy(b);
  pkv_batch_destroy(NULL);
  pkv_cache_destroy(c);
}

/* Random steps; every build compared with a from-scratch computation and
 * with a fresh batch object, host and device. */
static void test_random(pkv_context *ctx, int steps) {
  pkv_cache *c = cp_cache(ctx, 3, 400);
  pkv_batch *inc = NULL;
  pkv_batch_create(c, &inc);
  enum { N = 24 };
  pkv_seq_id s[N];
  for (int i = 0; i < N; i++) pkv_seq_open(c, NULL, &s[i]);
  int bad = 0, dev_bad = 0, fresh_bad = 0, builds = 0;
  for (int step = 0; step < steps; step++) {
    int op = rnd(10);
    int i = rnd(N);
    if (op < 6) {
      pkv_seq_append(c, s[i], 1 + (op == 5 ? rnd(10) : 0), NULL, NULL);
    } else if (op == 6) {
      pkv_seq_release(c, s[i]);
      pkv_seq_open(c, NULL, &s[i]);
    } else if (op == 7) {
      int64_t len;
      pkv_seq_length(c, s[i], &len);
      pkv_seq_truncate_front(c, s[i], len / 2, NULL);
    } else if (op == 8) {
      /* A fork replaces another slot: appends into its shared partial
       * page then copy on write, which rewrites that row. */
      int j = rnd(N);
      if (j != i) {
        pkv_seq_release(c, s[j]);
        pkv_seq_fork(c, s[i], &s[j]);
      }
    }
    /* A random subset in random order. */
    pkv_seq_id ids[N];
    int32_t q[N];
    int n = 1 + rnd(N);
    int perm[N];
    for (int k = 0; k < N; k++) perm[k] = k;
    for (int k = N - 1; k > 0; k--) {
      int r = rnd(k + 1), t = perm[k];
      perm[k] = perm[r];
      perm[r] = t;
    }
    for (int k = 0; k < n; k++) {
      ids[k] = s[perm[k]];
      int64_t len;
      pkv_seq_length(c, ids[k], &len);
      q[k] = len ? 1 + rnd((uint32_t)len) : 0;
    }
    /* Mostly the same batch as before, as a real decode loop. */
    if (step % 4) {
      n = N;
      for (int k = 0; k < N; k++) {
        ids[k] = s[k];
        int64_t len;
        pkv_seq_length(c, ids[k], &len);
        q[k] = len > 0;
      }
    }
    const int32_t *qp = rnd(2) ? q : NULL;
    if (!qp)
      for (int k = 0; k < n; k++) {
        int64_t len;
        pkv_seq_length(c, ids[k], &len);
        q[k] = len > 0;
      }
    if (pkv_batch_build(inc, ids, n, qp) != PKV_OK) {
      bad++;
      continue;
    }
    builds++;
    pkv_batch_view v;
    pkv_batch_view_init(&v);
    pkv_batch_get_view(inc, &v);
    if (!check_view(c, &v, ids, n, q)) bad++;
    if (!check_device(inc, &v)) dev_bad++;
    if (step % 50 == 0) {
      pkv_batch *fr = NULL;
      pkv_batch_view w;
      pkv_batch_view_init(&w);
      pkv_batch_create(c, &fr);
      pkv_batch_build(fr, ids, n, qp);
      pkv_batch_get_view(fr, &w);
      int same = w.num_tokens == v.num_tokens &&
                 !memcmp(w.seq_lens, v.seq_lens, (size_t)n * 4) &&
                 !memcmp(w.kv_indptr, v.kv_indptr, (size_t)(n + 1) * 4) &&
                 !memcmp(w.kv_indices, v.kv_indices,
                         (size_t)v.kv_indptr[n] * 4) &&
                 !memcmp(w.slot_mapping, v.slot_mapping,
                         (size_t)v.num_tokens * 8);
      for (int r = 0; r < n; r++)
        for (int j = 0; j < (w.max_pages > v.max_pages ? w.max_pages
                                                       : v.max_pages);
             j++) {
          int32_t a = j < w.max_pages ? w.block_table[r * w.max_pages + j] : 0;
          int32_t bb = j < v.max_pages ? v.block_table[r * v.max_pages + j] : 0;
          same &= a == bb;
        }
      if (!same) fresh_bad++;
      pkv_batch_destroy(fr);
    }
  }
  ok(builds > steps / 2, "%d random builds succeeded", builds);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  ok(st.cow_copies > 0, "copy-on-write happened along the way (%lld)",
     (long long)st.cow_copies);
  is_int(bad, 0, "every incremental build equals the from-scratch answer");
  is_int(dev_bad, 0, "every device copy equals its host view");
  is_int(fresh_bad, 0, "incremental builds equal a fresh batch's build");
  pkv_batch_destroy(inc);
  pkv_cache_destroy(c);
}

int main(void) {
  pkv_context *ctx = cp_ctx();
  test_basic(ctx);
  const char *env = getenv("PKV_STRESS");
  int steps = 3000 * (env && atoi(env) > 0 ? atoi(env) : 1);
  test_random(ctx, steps);
  pkv_context_destroy(ctx);
  return done_testing();
}
