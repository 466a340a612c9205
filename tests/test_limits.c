/* SPDX-License-Identifier: Apache-2.0 */
/* The documented limits of every count (PKV_MAX_* in pagedkv.h, doc/api.md
 * "Limits"): a value at the limit is accepted, one past it is refused with a
 * distinct status and a message naming the argument and the limit, and
 * nothing changes. Also the checked size helpers that every size computed
 * from counts goes through (issue 8, bug 7: 2 * num_layers in int32, the CPU
 * attention scratch wrapping to 512 bytes with 2^30 q heads). */
#include "internal.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static pkv_cache_desc small_desc(void) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = 1;
  d.num_kv_heads = 1;
  d.head_dim = 64;
  d.page_size = 16;
  d.num_pages = 4;
  d.dtype = PKV_DTYPE_F32;
  return d;
}

static pkv_status make(pkv_context *ctx, const pkv_cache_desc *d) {
  pkv_cache *c = NULL;
  pkv_status st = pkv_cache_create(ctx, d, &c);
  pkv_cache_destroy(c);
  return st;
}

static int names(const pkv_context *ctx, const char *a, const char *b) {
  const char *m = pkv_last_error(ctx);
  return strstr(m, a) != NULL && (!b || strstr(m, b) != NULL);
}

static void helpers(void) {
  size_t r = 7;
  const size_t M = (size_t)-1;
  ok(pkv__add_size(M - 1, 1, &r) && r == M, "add_size: SIZE_MAX-1 + 1 fits");
  r = 7;
  ok(!pkv__add_size(M, 1, &r) && r == 7, "add_size: SIZE_MAX + 1 refused, "
     "output untouched");
  ok(pkv__muladd_size(3, 5, 7, &r) && r == 22, "muladd_size: 3*5+7 = 22");
  ok(!pkv__muladd_size(M / 2 + 1, 2, 0, &r), "muladd_size: product overflow");
  ok(!pkv__muladd_size(M / 2, 2, 2, &r), "muladd_size: sum overflow");
  ok(!pkv__mul3_size((size_t)1 << 32, (size_t)1 << 31, 4, &r),
     "mul3_size: 2^32 * 2^31 * 4 overflows");
  /* The case: the CPU scratch per thread with 2^30 q heads over one
   * kv head and 2^31-130 keys wrapped to 512 bytes when computed unchecked;
   * the checked form refuses it. */
  size_t G = (size_t)1 << 30, kv = ((size_t)1 << 31) - 130, D = 64, per;
  int fits = pkv__muladd_size(G, kv, 2 * G * D + D + 2 * G, &per) &&
             pkv__mul3_size(256, per, sizeof(double), &r);
  ok(!fits, "CPU scratch of the issue's reproducer is refused as overflow");
}

static void cache_limits(pkv_context *ctx) {
  pkv_cache_desc d = small_desc();
  ok(make(ctx, &d) == PKV_OK, "the small cache is created");

  d = small_desc();
  d.num_layers = PKV_MAX_LAYERS + 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE && names(ctx, "num_layers", "PKV_MAX_LAYERS"),
     "num_layers PKV_MAX_LAYERS+1 refused: %s", pkv_last_error(ctx));
  d.num_layers = INT32_MAX;
  ok(make(ctx, &d) == PKV_ERR_RANGE && names(ctx, "num_layers", NULL),
     "num_layers INT32_MAX (2*num_layers overflows int32) refused: %s",
     pkv_last_error(ctx));
  d.num_layers = (INT32_MAX / 2) + 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE,
     "num_layers 2^30 (2*num_layers = INT32_MIN) refused");
  d.num_layers = PKV_MAX_LAYERS;
  d.num_pages = 1;
  d.page_size = 1;
  ok(make(ctx, &d) == PKV_OK, "num_layers == PKV_MAX_LAYERS accepted");

  d = small_desc();
  d.num_kv_heads = PKV_MAX_KV_HEADS + 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE &&
         names(ctx, "num_kv_heads", "PKV_MAX_KV_HEADS"),
     "num_kv_heads past the limit refused: %s", pkv_last_error(ctx));
  d.num_kv_heads = PKV_MAX_KV_HEADS;
  d.num_pages = 1;
  d.page_size = 1;
  ok(make(ctx, &d) == PKV_OK, "num_kv_heads == PKV_MAX_KV_HEADS accepted");

  d = small_desc();
  d.page_size = PKV_MAX_PAGE_SIZE + 1;
  ok(make(ctx, &d) == PKV_ERR_INVALID &&
         names(ctx, "page_size", "PKV_MAX_PAGE_SIZE"),
     "page_size past the limit refused: %s", pkv_last_error(ctx));
  d.page_size = PKV_MAX_PAGE_SIZE;
  d.num_pages = 1;
  ok(make(ctx, &d) == PKV_OK, "page_size == PKV_MAX_PAGE_SIZE accepted");

  d = small_desc();
  d.head_dim = PKV_MAX_HEAD_DIM * 2;
  ok(make(ctx, &d) == PKV_ERR_INVALID && names(ctx, "head_dim", NULL),
     "head_dim past PKV_MAX_HEAD_DIM refused");
  d.head_dim = PKV_MAX_HEAD_DIM;
  ok(make(ctx, &d) == PKV_OK, "head_dim == PKV_MAX_HEAD_DIM accepted");

  d = small_desc();
  d.num_pages = PKV_MAX_PAGES + 1;
  ok(make(ctx, &d) == PKV_ERR_OVERFLOW && names(ctx, "num_pages", "PKV_MAX_PAGES"),
     "num_pages past PKV_MAX_PAGES refused: %s", pkv_last_error(ctx));

  d = small_desc();
  d.num_host_pages = PKV_MAX_PAGES + 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE &&
         names(ctx, "num_host_pages", "PKV_MAX_PAGES"),
     "num_host_pages past PKV_MAX_PAGES refused: %s", pkv_last_error(ctx));

  /* Within every limit the byte sizes can still overflow: that stays an
   * overflow, never a wrap. */
  d = small_desc();
  d.num_layers = PKV_MAX_LAYERS;
  d.num_kv_heads = PKV_MAX_KV_HEADS;
  d.head_dim = PKV_MAX_HEAD_DIM;
  d.page_size = PKV_MAX_PAGE_SIZE;
  d.num_pages = PKV_MAX_PAGES;
  ok(make(ctx, &d) == PKV_ERR_OVERFLOW && names(ctx, "overflow", NULL),
     "pool bytes at every limit overflow cleanly: %s", pkv_last_error(ctx));
  d.num_pages = 1;
  d.num_host_pages = PKV_MAX_PAGES;
  ok(make(ctx, &d) == PKV_ERR_OVERFLOW && names(ctx, "num_host_pages", NULL),
     "host tier bytes at every limit overflow cleanly: %s",
     pkv_last_error(ctx));
}

static void context_limits(void) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  cd.cpu_threads = PKV_MAX_CPU_THREADS + 1;
  pkv_context *c = NULL;
  ok(pkv_context_create(&cd, &c) == PKV_ERR_RANGE && c == NULL &&
         names(NULL, "cpu_threads", "PKV_MAX_CPU_THREADS"),
     "cpu_threads past the limit refused: %s", pkv_last_error(NULL));
  cd.cpu_threads = INT32_MAX;
  ok(pkv_context_create(&cd, &c) == PKV_ERR_RANGE, "cpu_threads INT32_MAX refused");
  cd.cpu_threads = PKV_MAX_CPU_THREADS;
  ok(pkv_context_create(&cd, &c) == PKV_OK, "cpu_threads at the limit accepted");
  pkv_context_destroy(c);
}

/* The kernel-level layer takes the same counts from the engine's own view
 * and table: the same limits. */
static void kv_layer_limits(pkv_context *ctx, pkv_cache *c, pkv_batch *b) {
  pkv_kv_view v, v0;
  pkv_kv_table t, t0;
  pkv_tensor q, o;
  pkv_attn_params p;
  pkv_buffer *qb = NULL, *ob = NULL;
  pkv_attn_params_init(&p, 1);
  pkv_kv_view_init(&v0);
  pkv_kv_table_init(&t0);
  int ready = pkv_cache_kv_view(c, 0, &v0) == PKV_OK &&
              pkv_batch_get_table(b, PKV_TABLE_DENSE, &t0) == PKV_OK &&
              pkv_buffer_create(ctx, 64 * sizeof(float), &qb) == PKV_OK &&
              pkv_buffer_create(ctx, 64 * sizeof(float), &ob) == PKV_OK;
  pkv_tensor_init(&q);
  q.buf = qb;
  pkv_tensor_init(&o);
  o.buf = ob;
  v = v0;
  t = t0;
  pkv_status st0 =
      ready ? pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) : PKV_ERR_NULL;
  ok(st0 == PKV_OK,
     "kernel-level attention over the cache's view and the batch's table: %s",
     pkv_status_name(st0));
  v.num_kv_heads = PKV_MAX_KV_HEADS + 1;
  ok(pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) == PKV_ERR_RANGE &&
         names(ctx, "num_kv_heads", "PKV_MAX_KV_HEADS"),
     "view num_kv_heads past the limit refused: %s", pkv_last_error(ctx));
  v = v0;
  t.num_seqs = PKV_MAX_BATCH_SEQS + 1;
  ok(pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) == PKV_ERR_RANGE &&
         names(ctx, "num_seqs", "PKV_MAX_BATCH_SEQS"),
     "table num_seqs past the limit refused: %s", pkv_last_error(ctx));
  t = t0;
  t.max_kv_len = INT32_MAX;
  ok(pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) == PKV_ERR_RANGE &&
         names(ctx, "max_kv_len", "PKV_MAX_SEQ_TOKENS"),
     "table max_kv_len past PKV_MAX_SEQ_TOKENS refused (the CPU scratch "
     "grows with it): %s", pkv_last_error(ctx));
  t = t0;
  t.num_tokens = PKV_MAX_BATCH_TOKENS + 1;
  ok(pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) == PKV_ERR_RANGE,
     "table num_tokens past PKV_MAX_BATCH_TOKENS refused");
  t = t0;
  p.num_q_heads = PKV_MAX_Q_HEADS + 1;
  ok(pkv_kv_attention(ctx, &v, &t, &p, &q, &o, NULL) == PKV_ERR_RANGE &&
         names(ctx, "num_q_heads", "PKV_MAX_Q_HEADS"),
     "kernel-level num_q_heads past the limit refused");
  pkv_buffer_destroy(qb);
  pkv_buffer_destroy(ob);
}

static void seq_and_batch_limits(pkv_context *ctx) {
  pkv_cache_desc d = small_desc();
  pkv_cache *c = NULL;
  if (pkv_cache_create(ctx, &d, &c) != PKV_OK) {
    ok(0, "cache for the sequence limits: %s", pkv_last_error(ctx));
    return;
  }
  pkv_seq_id s;
  pkv_seq_open(c, NULL, &s);
  pkv_stats before, after;
  pkv_stats_init(&before);
  pkv_stats_init(&after);
  pkv_cache_stats(c, &before);
  ok(pkv_seq_append(c, s, PKV_MAX_SEQ_TOKENS + 1, NULL, NULL) == PKV_ERR_RANGE &&
         names(ctx, "PKV_MAX_SEQ_TOKENS", NULL),
     "append past PKV_MAX_SEQ_TOKENS refused before the pool is asked: %s",
     pkv_last_error(ctx));
  pkv_cache_stats(c, &after);
  ok(memcmp(&before, &after, sizeof before) == 0, "... and nothing changed");
  ok(pkv_seq_append(c, s, 5, NULL, NULL) == PKV_OK, "a small append works");
  ok(pkv_seq_append(c, s, PKV_MAX_SEQ_TOKENS - 4, NULL, NULL) == PKV_ERR_RANGE,
     "length 5 + (limit - 4) refused as past the limit");
  ok(pkv_seq_reserve(c, s, PKV_MAX_SEQ_TOKENS - 4) == PKV_ERR_RANGE &&
         names(ctx, "PKV_MAX_SEQ_TOKENS", NULL),
     "reserve past PKV_MAX_SEQ_TOKENS refused too: %s", pkv_last_error(ctx));

  pkv_batch *b = NULL;
  pkv_batch_create(c, &b);
  int32_t n = PKV_MAX_BATCH_SEQS + 1;
  pkv_seq_id *ids = calloc((size_t)n, sizeof *ids);
  for (int32_t i = 0; i < n; i++) ids[i] = s;
  ok(pkv_batch_build(b, ids, n, NULL) == PKV_ERR_RANGE &&
         names(ctx, "num_seqs", "PKV_MAX_BATCH_SEQS"),
     "batch of PKV_MAX_BATCH_SEQS+1 rows refused: %s", pkv_last_error(ctx));
  ok(pkv_batch_build(b, ids, INT32_MAX, NULL) == PKV_ERR_RANGE,
     "batch of INT32_MAX rows refused");
  free(ids);
  ok(pkv_batch_build(b, &s, 1, NULL) == PKV_OK, "a one-row batch builds");
  kv_layer_limits(ctx, c, b);

  /* Attention with q heads past the limit: the q and out buffers claim
   * enough bytes (wrapped host memory the library must never touch), so
   * only the head count can refuse it. */
  pkv_attn_params p;
  pkv_attn_params_init(&p, 1 << 30);
  static float tiny[64];
  pkv_buffer *q = NULL, *o = NULL;
  size_t huge = (size_t)1 << 40;
  pkv_buffer_wrap(ctx, tiny, huge, &q);
  pkv_buffer_wrap(ctx, tiny, huge, &o);
  ok(q && o && pkv_attention(b, 0, &p, q, o, NULL) == PKV_ERR_RANGE &&
         names(ctx, "num_q_heads", "PKV_MAX_Q_HEADS"),
     "attention with 2^30 q heads refused: %s", pkv_last_error(ctx));
  p.num_q_heads = PKV_MAX_Q_HEADS + 1;
  ok(pkv_attention(b, 0, &p, q, o, NULL) == PKV_ERR_RANGE,
     "attention with PKV_MAX_Q_HEADS+1 q heads refused");
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(o);

  /* At the q-head limit the CPU reference runs (and its scratch size is
   * computed without wrapping). */
  p.num_q_heads = PKV_MAX_Q_HEADS;
  size_t bytes = (size_t)PKV_MAX_Q_HEADS * 64 * sizeof(float);
  pkv_buffer_create(ctx, bytes, &q);
  pkv_buffer_create(ctx, bytes, &o);
  pkv_status st = q && o ? pkv_attention(b, 0, &p, q, o, NULL) : PKV_ERR_NULL;
  ok(st == PKV_OK, "attention with PKV_MAX_Q_HEADS q heads runs: %s",
     pkv_status_name(st));
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(o);
  pkv_batch_destroy(b);
  pkv_cache_destroy(c);
}

int main(void) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&cd, &ctx) != PKV_OK) {
    printf("Bail out! CPU context: %s\n", pkv_last_error(NULL));
    return 1;
  }
  helpers();
  cache_limits(ctx);
  context_limits();
  seq_and_batch_limits(ctx);
  pkv_context_destroy(ctx);
  return done_testing();
}
