/* SPDX-License-Identifier: Apache-2.0 */
/* The CPU backend's page operations (copy-on-write copies, host-tier moves,
 * K/V writes), its large sparse allocations and the host dtype conversions,
 * driven through the backend struct directly on both layouts. */
#include "backend.h"
#include "dtype_convert.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static pkv_cache_geometry make_geom(pkv_layout layout, int32_t pages,
                                    int32_t ps, int32_t nkv, int32_t dim,
                                    pkv_dtype dt) {
  pkv_cache_geometry g;
  memset(&g, 0, sizeof g);
  g.num_layers = 2;
  g.num_kv_heads = nkv;
  g.head_dim = dim;
  g.page_size = ps;
  g.num_pages = pages;
  g.dtype = dt;
  g.layout = layout;
  g.page_stride = (int64_t)nkv * ps * dim;
  if (layout == PKV_LAYOUT_HND) {
    g.head_stride = (int64_t)ps * dim;
    g.token_stride = dim;
  } else {
    g.head_stride = dim;
    g.token_stride = (int64_t)nkv * dim;
  }
  g.page_bytes = (size_t)g.page_stride * pkv_dtype_size(dt);
  g.layer_bytes = g.page_bytes * (size_t)pages;
  return g;
}

static void fill_random(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rnd();
}

static void test_conversions(void) {
  is_int(pkv__f32_to_f16(1.0f), 0x3c00, "f16: 1.0");
  is_int(pkv__f32_to_f16(-2.0f), 0xc000, "f16: -2.0");
  is_int(pkv__f32_to_f16(65504.0f), 0x7bff, "f16: largest finite");
  is_int(pkv__f32_to_f16(65519.0f), 0x7bff, "f16: 65519 rounds down");
  is_int(pkv__f32_to_f16(65520.0f), 0x7c00, "f16: 65520 rounds to Inf");
  is_int(pkv__f32_to_f16(INFINITY), 0x7c00, "f16: Inf");
  is_int(pkv__f32_to_f16(-INFINITY), 0xfc00, "f16: -Inf");
  uint16_t hn = pkv__f32_to_f16(NAN);
  ok((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), "f16: NaN stays NaN (0x%04x)",
     hn);
  is_int(pkv__f32_to_f16(ldexpf(1.0f, -24)), 0x0001, "f16: smallest subnormal");
  is_int(pkv__f32_to_f16(ldexpf(1.0f, -25)), 0x0000,
         "f16: half the smallest subnormal ties to even (0)");
  is_int(pkv__f32_to_f16(ldexpf(3.0f, -25)), 0x0002,
         "f16: 1.5 subnormal quanta tie to even (2)");
  is_int(pkv__f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00,
         "f16: 1 + half ulp ties to even");
  is_int(pkv__f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02,
         "f16: 1 + 1.5 ulp ties to even (up)");
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = pkv_f16_to_f32((uint16_t)h);
    if (isnan(f) ? ((h & 0x7c00) != 0x7c00 || !(h & 0x3ff))
                 : pkv__f32_to_f16(f) != h)
      bad++;
  }
  is_int(bad, 0, "f16: every one of the 65536 values round-trips");
  ok(pkv_f16_to_f32(0x0001) == ldexpf(1.0f, -24) &&
         pkv_f16_to_f32(0x7bff) == 65504.0f && isinf(pkv_f16_to_f32(0xfc00)),
     "f16 -> f32: subnormal, max, -Inf");

  is_int(pkv__f32_to_bf16(1.0f), 0x3f80, "bf16: 1.0");
  is_int(pkv__f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80,
         "bf16: 1 + half ulp ties to even");
  is_int(pkv__f32_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82,
         "bf16: 1 + 1.5 ulp ties to even (up)");
  is_int(pkv__f32_to_bf16(INFINITY), 0x7f80, "bf16: Inf");
  ok(isnan(pkv_bf16_to_f32(pkv__f32_to_bf16(NAN))), "bf16: NaN stays NaN");
  uint32_t nb = 0x7f800001u; /* a NaN whose payload lies in the dropped bits */
  float fn;
  memcpy(&fn, &nb, 4);
  ok(isnan(pkv_bf16_to_f32(pkv__f32_to_bf16(fn))),
     "bf16: a low-payload NaN does not become Inf");
  is_int(pkv__f32_to_bf16(3.3895313892515355e38f), 0x7f7f, "bf16: largest finite");
  ok(pkv_bf16_to_f32(0xc040) == -3.0f, "bf16 -> f32: -3");
}

static void test_alloc(pkv_context *ctx) {
  const pkv_backend_ops *ops = &pkv__cpu_backend;
  void *small = NULL, *big = NULL;
  ok(ops->mem_alloc(ctx, 100, &small) == PKV_OK && small &&
         ((uintptr_t)small & 63) == 0,
     "small allocation is 64-byte aligned");
  memset(small, 1, 100);
  ops->mem_free(ctx, small);
  ok(ops->mem_alloc(ctx, (size_t)3 << 20, &big) == PKV_OK && big &&
         ((uintptr_t)big & 63) == 0,
     "1 MiB+ allocation (mapped) is 64-byte aligned");
  memset(big, 2, (size_t)3 << 20);
  ops->mem_free(ctx, big);

  /* A pool of 2^31 + 2^20 token slots of 64 f16 values: 256 GiB, which
   * exists only as a sparse mapping. */
  size_t huge = ((size_t)1 << 31) + ((size_t)1 << 20);
  huge *= 128;
  void *h = NULL;
  pkv_status st = ops->mem_alloc(ctx, huge, &h);
  if (st != PKV_OK) {
    diag("sparse allocation of %zu bytes refused: %s", huge,
         pkv_last_error(ctx));
    skip(1, "the kernel refuses a sparse 256 GiB mapping (overcommit policy)");
  } else {
    unsigned char *p = h;
    p[0] = 1;
    p[huge / 2] = 2;
    p[huge - 1] = 3;
    ok(p[0] == 1 && p[huge / 2] == 2 && p[huge - 1] == 3,
       "a 256 GiB sparse pool (2^31+ token slots) exists; touched ends work");
    ops->mem_free(ctx, h);
  }
}

/* Creates num_pools random pools of g->layer_bytes. */
static pkv_buffer **make_pools(pkv_context *ctx, const pkv_cache_geometry *g,
                               int n) {
  pkv_buffer **pools = calloc((size_t)n, sizeof *pools);
  for (int b = 0; b < n; b++) {
    if (pkv_buffer_create(ctx, g->layer_bytes, &pools[b]) != PKV_OK) abort();
    fill_random(pools[b]->native, g->layer_bytes);
  }
  return pools;
}

static void free_pools(pkv_buffer **pools, int n) {
  for (int b = 0; b < n; b++) pkv_buffer_destroy(pools[b]);
  free(pools);
}

static void test_copy_pages(pkv_context *ctx, pkv_layout layout) {
  const char *ln = layout == PKV_LAYOUT_HND ? "HND" : "NHD";
  pkv_cache_geometry g = make_geom(layout, 8, 4, 2, 64, PKV_DTYPE_F16);
  const int np = 4;
  pkv_buffer **pools = make_pools(ctx, &g, np);
  unsigned char *before[4];
  for (int b = 0; b < np; b++) {
    before[b] = malloc(g.layer_bytes);
    memcpy(before[b], pools[b]->native, g.layer_bytes);
  }
  int32_t pairs[3][2] = {{1, 5}, {2, 3}, {7, 0}};
  pkv_copy_args a = {&g, pools, np, &pairs[0][0], NULL, 3};
  ok(pkv__cpu_backend.copy_pages(ctx, &a) == PKV_OK, "%s: copy_pages runs", ln);
  int good = 1;
  for (int b = 0; b < np; b++) {
    for (int32_t p = 0; p < 8; p++) {
      int32_t src = p;
      for (int i = 0; i < 3; i++)
        if (pairs[i][1] == p) src = pairs[i][0];
      if (memcmp((unsigned char *)pools[b]->native + (size_t)p * g.page_bytes,
                 before[b] + (size_t)src * g.page_bytes, g.page_bytes))
        good = 0;
    }
  }
  ok(good, "%s: each destination page equals its source in all 4 pools, "
           "other pages untouched",
     ln);
  for (int b = 0; b < np; b++) free(before[b]);
  free_pools(pools, np);
}

static void test_host_moves(pkv_context *ctx, pkv_layout layout) {
  const char *ln = layout == PKV_LAYOUT_HND ? "HND" : "NHD";
  pkv_cache_geometry g = make_geom(layout, 8, 16, 4, 128, PKV_DTYPE_BF16);
  const int np = 2 * g.num_layers;
  pkv_buffer **pools = make_pools(ctx, &g, np);
  const int64_t host_pages = 3;
  unsigned char *host = calloc((size_t)host_pages * (size_t)np, g.page_bytes);
  int32_t dev[2] = {3, 6};
  int64_t hp[2] = {2, 0};
  pkv_host_move_args a = {&g, pools, np, dev, hp, 2, host};
  ok(pkv__cpu_backend.pages_to_host(ctx, &a) == PKV_OK, "%s: pages_to_host runs",
     ln);
  int good = 1;
  for (int i = 0; i < 2; i++)
    for (int b = 0; b < np; b++)
      if (memcmp(host + ((size_t)hp[i] * np + b) * g.page_bytes,
                 (unsigned char *)pools[b]->native +
                     (size_t)dev[i] * g.page_bytes,
                 g.page_bytes))
        good = 0;
  ok(good, "%s: host page hp of pool b sits at (hp*num_pools+b)*page_bytes",
     ln);
  unsigned char *zero = calloc(1, g.page_bytes);
  ok(memcmp(host + (size_t)1 * np * g.page_bytes, zero, g.page_bytes) == 0,
     "%s: an unused host page stays untouched", ln);

  /* Back into different device pages, as swap-in does. */
  unsigned char *keep = malloc(g.layer_bytes);
  memcpy(keep, pools[1]->native, g.layer_bytes);
  int32_t dev2[2] = {0, 7};
  pkv_host_move_args back = {&g, pools, np, dev2, hp, 2, host};
  ok(pkv__cpu_backend.pages_from_host(ctx, &back) == PKV_OK,
     "%s: pages_from_host runs", ln);
  good = 1;
  for (int i = 0; i < 2; i++)
    for (int b = 0; b < np; b++)
      if (memcmp(host + ((size_t)hp[i] * np + b) * g.page_bytes,
                 (unsigned char *)pools[b]->native +
                     (size_t)dev2[i] * g.page_bytes,
                 g.page_bytes))
        good = 0;
  for (int32_t p = 1; p < 7; p++)
    if (memcmp((unsigned char *)pools[1]->native + (size_t)p * g.page_bytes,
               keep + (size_t)p * g.page_bytes, g.page_bytes))
      good = 0;
  ok(good, "%s: pages come back where asked; other device pages untouched",
     ln);
  free(keep);
  free(zero);
  free(host);
  free_pools(pools, np);
}

static void test_write_kv(pkv_context *ctx, pkv_layout layout) {
  const char *ln = layout == PKV_LAYOUT_HND ? "HND" : "NHD";
  pkv_cache_geometry g = make_geom(layout, 5, 3, 2, 64, PKV_DTYPE_F32);
  pkv_buffer **pools = make_pools(ctx, &g, 2);
  const int64_t n = 4;
  const size_t row = (size_t)g.num_kv_heads * g.head_dim;
  pkv_buffer *k, *v, *slots;
  pkv_buffer_create(ctx, n * row * 4, &k);
  pkv_buffer_create(ctx, n * row * 4, &v);
  pkv_buffer_create(ctx, n * 8, &slots);
  float *kf = k->native, *vf = v->native;
  for (size_t i = 0; i < n * row; i++) {
    kf[i] = (float)i;
    vf[i] = -(float)i;
  }
  int64_t *sl = slots->native;
  sl[0] = 14; /* last slot of the pool: page 4, offset 2 */
  sl[1] = -1; /* padding */
  sl[2] = 0;
  sl[3] = 7;  /* page 2, offset 1 */

  unsigned char *kb = malloc(g.layer_bytes), *vb = malloc(g.layer_bytes);
  memcpy(kb, pools[0]->native, g.layer_bytes);
  memcpy(vb, pools[1]->native, g.layer_bytes);

  int64_t bad_slots[4] = {14, -1, 15, 7};
  pkv_write_args bad = {&g, pools[0], pools[1], k, v, slots, bad_slots, n, 0, 0, 0, 0, 0, 0, 0, PKV_DTYPE_F32};
  pkv_status st = pkv__cpu_backend.write_kv(ctx, &bad);
  ok(st == PKV_ERR_RANGE && strstr(pkv_last_error(ctx), "slots[2]") &&
         memcmp(kb, pools[0]->native, g.layer_bytes) == 0 &&
         memcmp(vb, pools[1]->native, g.layer_bytes) == 0,
     "%s: a slot past num_pages*page_size is refused before any write: %s",
     ln, pkv_last_error(ctx));

  pkv_write_args a = {&g, pools[0], pools[1], k, v, slots, NULL, n, 0, 0, 0, 0, 0, 0, 0, PKV_DTYPE_F32};
  ok(pkv__cpu_backend.write_kv(ctx, &a) == PKV_OK, "%s: write_kv runs", ln);
  const float *kp = pools[0]->native, *vp = pools[1]->native;
  int good = 1;
  for (int64_t i = 0; i < n; i++) {
    if (sl[i] < 0) continue;
    int64_t page = sl[i] / g.page_size, off = sl[i] % g.page_size;
    for (int32_t h = 0; h < g.num_kv_heads; h++)
      for (int32_t d = 0; d < g.head_dim; d++) {
        int64_t e = page * g.page_stride + h * g.head_stride +
                    off * g.token_stride + d;
        float want = (float)((i * g.num_kv_heads + h) * g.head_dim + d);
        if (kp[e] != want || vp[e] != -want) good = 0;
        /* mark as checked so that the rest can be compared to before */
        ((float *)kb)[e] = kp[e];
        ((float *)vb)[e] = vp[e];
      }
  }
  ok(good, "%s: each token's rows land at page*page_stride + h*head_stride "
           "+ off*token_stride",
     ln);
  ok(memcmp(kb, pools[0]->native, g.layer_bytes) == 0 &&
         memcmp(vb, pools[1]->native, g.layer_bytes) == 0,
     "%s: nothing else changed (the padding slot wrote nothing)", ln);
  free(kb);
  free(vb);
  pkv_buffer_destroy(k);
  pkv_buffer_destroy(v);
  pkv_buffer_destroy(slots);
  free_pools(pools, 2);
}

/* Attention through the backend with hand-made arguments: a sequence of
 * length 0 (reachable only this way: the API always gives q_len >= 1 keys)
 * yields zeros and lse -inf, and the result does not depend on the number
 * of threads. */
static void attention_args(pkv_context *c, const pkv_cache_geometry *g,
                           pkv_buffer *kp, pkv_buffer *vp, int32_t nseq,
                           const int32_t *bt, int32_t max_pages,
                           const int32_t *lens, const int32_t *qind,
                           int32_t nq, pkv_buffer *q, pkv_buffer *out,
                           pkv_buffer *lse) {
  pkv_attn_args a;
  memset(&a, 0, sizeof a);
  a.geom = g;
  a.k_pool = kp;
  a.v_pool = vp;
  a.num_seqs = nseq;
  a.max_pages = max_pages;
  a.num_tokens = qind[nseq];
  a.h_block_table = bt;
  a.h_seq_lens = lens;
  a.h_q_indptr = qind;
  a.q = q;
  a.out = out;
  a.lse = lse;
  a.q_dtype = a.o_dtype = g->dtype;
  a.num_q_heads = nq;
  a.scale = 0.125f;
  a.causal = 1;
  a.window_left = -1;
  for (int32_t s = 0; s < nseq; s++) {
    if (lens[s] > a.max_kv_len) a.max_kv_len = lens[s];
    if (qind[s + 1] - qind[s] > a.max_q_len) a.max_q_len = qind[s + 1] - qind[s];
  }
  if (pkv__cpu_backend.attention(c, &a) != PKV_OK) abort();
}

static void fill_floats(pkv_buffer *b, float v, int random) {
  float *f = b->native;
  for (size_t i = 0; i < b->bytes / 4; i++)
    f[i] = random ? (float)(rnd() / 2147483648.0 - 1.0) : v;
}

static void test_attention_edges(pkv_context *ctx1, pkv_context *ctx3) {
  pkv_cache_geometry g = make_geom(PKV_LAYOUT_NHD, 4, 4, 2, 64, PKV_DTYPE_F32);
  pkv_buffer **pools = make_pools(ctx1, &g, 2);
  fill_floats(pools[0], 0, 1);
  fill_floats(pools[1], 0, 1);
  const int32_t nq = 4;
  pkv_buffer *q, *out, *lse;
  pkv_buffer_create(ctx1, 2 * nq * 64 * 4, &q);
  pkv_buffer_create(ctx1, 2 * nq * 64 * 4, &out);
  pkv_buffer_create(ctx1, 2 * nq * 4, &lse);
  fill_floats(q, 0, 1);
  fill_floats(out, NAN, 0);
  fill_floats(lse, NAN, 0);
  int32_t bt[4] = {0, 0, 2, 3}, lens[2] = {0, 5}, qind[3] = {0, 1, 2};
  attention_args(ctx1, &g, pools[0], pools[1], 2, bt, 2, lens, qind, nq, q,
                 out, lse);
  const float *o = out->native, *l = lse->native;
  int zeros = 1, finite = 1;
  for (int i = 0; i < nq * 64; i++) zeros &= o[i] == 0.0f && !signbit(o[i]);
  for (int i = nq * 64; i < 2 * nq * 64; i++) finite &= isfinite(o[i]);
  ok(zeros && isinf(l[0]) && l[0] < 0 && isinf(l[nq - 1]),
     "a row with no key gives +0 output and lse -inf");
  ok(finite && isfinite(l[nq]), "its neighbour in the batch is unaffected");
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(out);
  pkv_buffer_destroy(lse);
  free_pools(pools, 2);

  /* Enough work to start threads: 1 thread and 3 give the same bytes. */
  pkv_cache_geometry h = make_geom(PKV_LAYOUT_HND, 130, 16, 2, 128,
                                   PKV_DTYPE_F32);
  pools = make_pools(ctx1, &h, 2);
  fill_floats(pools[0], 0, 1);
  fill_floats(pools[1], 0, 1);
  const int32_t nq2 = 8, qlen = 8, kv = 2048;
  int32_t bt2[128], lens2[1] = {kv}, qind2[2] = {0, qlen};
  for (int i = 0; i < 128; i++) bt2[i] = (i * 37 + 5) % 130;
  size_t ob = (size_t)qlen * nq2 * 128 * 4;
  pkv_buffer *q2, *o1, *o3;
  pkv_buffer_create(ctx1, ob, &q2);
  pkv_buffer_create(ctx1, ob, &o1);
  pkv_buffer_create(ctx1, ob, &o3);
  fill_floats(q2, 0, 1);
  attention_args(ctx1, &h, pools[0], pools[1], 1, bt2, 128, lens2, qind2, nq2,
                 q2, o1, NULL);
  attention_args(ctx3, &h, pools[0], pools[1], 1, bt2, 128, lens2, qind2, nq2,
                 q2, o3, NULL);
  ok(memcmp(o1->native, o3->native, ob) == 0,
     "1 and 3 worker threads give identical bytes (2048 keys, 8 queries)");
  pkv_buffer_destroy(q2);
  pkv_buffer_destroy(o1);
  pkv_buffer_destroy(o3);
  free_pools(pools, 2);
}

int main(void) {
  test_conversions();
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&d, &ctx) != PKV_OK)
    plan_skip_all("no CPU context");
  ok(ctx->ops == &pkv__cpu_backend && pkv__cpu_backend.write_kv &&
         pkv__cpu_backend.attention && pkv__cpu_backend.copy_pages &&
         pkv__cpu_backend.pages_to_host && pkv__cpu_backend.pages_from_host,
     "the CPU backend implements every operation");
  test_alloc(ctx);
  for (int l = 0; l < 2; l++) {
    pkv_layout layout = l ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND;
    test_copy_pages(ctx, layout);
    test_host_moves(ctx, layout);
    test_write_kv(ctx, layout);
  }
  pkv_context *ctx3 = NULL;
  d.cpu_threads = 3;
  if (pkv_context_create(&d, &ctx3) != PKV_OK) abort();
  ctx->desc.cpu_threads = 1;
  test_attention_edges(ctx, ctx3);
  pkv_context_destroy(ctx3);
  pkv_context_destroy(ctx);
  return done_testing();
}
