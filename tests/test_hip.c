/* SPDX-License-Identifier: Apache-2.0 */
/* HIP backend (AMD or NVIDIA build): device listing, contexts on an engine
 * stream or our own, device memory, and end-to-end K/V write + decode +
 * prefill against the CPU reference. Without a GPU: SKIP. */
#include "ocl_ref.h" /* dtype conversions of the test references */
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_buffers(pkv_context *ctx) {
  enum { N = 4096 };
  unsigned char *src = malloc(N), *dst = malloc(N);
  for (int i = 0; i < N; i++) src[i] = (unsigned char)(i * 7 + 3);
  pkv_buffer *a = NULL, *b = NULL;
  ok(pkv_buffer_create(ctx, N, &a) == PKV_OK && a, "device buffer of %d bytes",
     N);
  ok(pkv_buffer_create(ctx, N, &b) == PKV_OK && b, "second device buffer");
  ok(pkv_buffer_upload(a, 0, src, N) == PKV_OK, "upload");
  ok(pkv_buffer_copy(b, 16, a, 0, N - 16) == PKV_OK, "device-to-device copy");
  memset(dst, 0, N);
  ok(pkv_buffer_download(b, 16, dst, N - 16) == PKV_OK &&
         !memcmp(dst, src, N - 16),
     "download returns the copied bytes");
  /* wrapping: the pointer is the engine's and is never freed by us */
  pkv_buffer *w = NULL;
  ok(pkv_buffer_wrap(ctx, pkv_buffer_native(a), N, &w) == PKV_OK &&
         pkv_buffer_native(w) == pkv_buffer_native(a),
     "wrap keeps the device pointer");
  pkv_buffer_destroy(w);
  memset(dst, 0, N);
  ok(pkv_buffer_download(a, 0, dst, N) == PKV_OK && !memcmp(dst, src, N),
     "the wrapped memory survives destroying the wrapper");
  size_t huge = (size_t)1 << 62;
  pkv_buffer *h = NULL;
  pkv_status st = pkv_buffer_create(ctx, huge, &h);
  ok(st == PKV_ERR_DEVICE && !h && strstr(pkv_last_error(ctx), "Malloc"),
     "an impossible allocation is PKV_ERR_DEVICE naming the call: %s",
     pkv_last_error(ctx));
  pkv_buffer_destroy(a);
  pkv_buffer_destroy(b);
  free(src);
  free(dst);
}


/* ------------------------------------------------------------ twin runs */
/* The same cache, sequences and steps on the CPU reference and on the
 * backend under test; every output is compared. */
enum { LAYERS = 2, KVH = 2, QH = 8, NSEQ = 3, PAGES = 160, HOST_PAGES = 64 };
static const int prompt_len[NSEQ] = {5, 37, 700}; /* 700: several partitions */

typedef struct side {
  pkv_context *ctx;
  pkv_cache *cache;
  pkv_batch *batch;
  pkv_seq_id seq[NSEQ];
  pkv_buffer *k, *v, *q, *out, *lse;
} side;

static pkv_status side_open(side *s, pkv_backend_kind kind,
                            const pkv_cache_desc *cd, size_t max_tokens) {
  memset(s, 0, sizeof *s);
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = kind;
  pkv_status st = pkv_context_create(&d, &s->ctx);
  if (st == PKV_OK) st = pkv_cache_create(s->ctx, cd, &s->cache);
  if (st == PKV_OK) st = pkv_batch_create(s->cache, &s->batch);
  size_t es = pkv_dtype_size(cd->dtype);
  size_t kvb = max_tokens * KVH * (size_t)cd->head_dim * es;
  size_t qb = max_tokens * QH * (size_t)cd->head_dim * es;
  if (st == PKV_OK) st = pkv_buffer_create(s->ctx, kvb, &s->k);
  if (st == PKV_OK) st = pkv_buffer_create(s->ctx, kvb, &s->v);
  if (st == PKV_OK) st = pkv_buffer_create(s->ctx, qb, &s->q);
  if (st == PKV_OK) st = pkv_buffer_create(s->ctx, qb, &s->out);
  if (st == PKV_OK)
    st = pkv_buffer_create(s->ctx, max_tokens * QH * sizeof(float), &s->lse);
  for (int i = 0; i < NSEQ && st == PKV_OK; i++)
    st = pkv_seq_open(s->cache, NULL, &s->seq[i]);
  return st;
}

static void side_close(side *s) {
  pkv_buffer_destroy(s->k);
  pkv_buffer_destroy(s->v);
  pkv_buffer_destroy(s->q);
  pkv_buffer_destroy(s->out);
  pkv_buffer_destroy(s->lse);
  pkv_batch_destroy(s->batch);
  pkv_cache_destroy(s->cache);
  pkv_context_destroy(s->ctx);
}

/* One step on one side: append q_lens[i] tokens to each sequence, build,
 * write K/V of every layer and attend over the last layer. */
static pkv_status side_step(side *s, const int32_t *q_lens, int64_t tokens,
                            const void *k, const void *v, const void *q,
                            size_t kv_bytes, size_t q_bytes, float softcap) {
  pkv_status st = PKV_OK;
  for (int i = 0; i < NSEQ && st == PKV_OK; i++)
    st = pkv_seq_append(s->cache, s->seq[i], q_lens[i], NULL, NULL);
  if (st == PKV_OK) st = pkv_batch_build(s->batch, s->seq, NSEQ, q_lens);
  if (st == PKV_OK) st = pkv_buffer_upload(s->k, 0, k, kv_bytes);
  if (st == PKV_OK) st = pkv_buffer_upload(s->v, 0, v, kv_bytes);
  if (st == PKV_OK) st = pkv_buffer_upload(s->q, 0, q, q_bytes);
  for (int layer = 0; layer < LAYERS && st == PKV_OK; layer++)
    st = pkv_write_kv(s->batch, layer, s->k, s->v);
  pkv_attn_params p;
  pkv_attn_params_init(&p, QH);
  p.softcap = softcap;
  if (st == PKV_OK)
    st = pkv_attention(s->batch, LAYERS - 1, &p, s->q, s->out, s->lse);
  (void)tokens;
  return st;
}

static void fill_random(void *raw, pkv_dtype dt, size_t n) {
  for (size_t i = 0; i < n; i++) ref_put(raw, dt, i, (float)ref_uniform());
}

/* Largest difference of outputs (storage dtype) and of LSEs. */
static void compare(side *a, side *b, pkv_dtype dt, int hd, int64_t tokens,
                    double *out_err, double *lse_err) {
  size_t n = (size_t)tokens * QH * (size_t)hd, es = pkv_dtype_size(dt);
  unsigned char *oa = malloc(n * es), *ob = malloc(n * es);
  float *la = malloc((size_t)tokens * QH * sizeof(float));
  float *lb = malloc((size_t)tokens * QH * sizeof(float));
  *out_err = *lse_err = INFINITY;
  if (pkv_buffer_download(a->out, 0, oa, n * es) == PKV_OK &&
      pkv_buffer_download(b->out, 0, ob, n * es) == PKV_OK &&
      pkv_buffer_download(a->lse, 0, la, (size_t)tokens * QH * 4) == PKV_OK &&
      pkv_buffer_download(b->lse, 0, lb, (size_t)tokens * QH * 4) == PKV_OK) {
    *out_err = *lse_err = 0;
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)ref_get(oa, dt, i) - ref_get(ob, dt, i));
      if (!(d <= *out_err)) *out_err = d; /* NaN sticks */
    }
    for (size_t i = 0; i < (size_t)tokens * QH; i++) {
      double d = fabs((double)la[i] - lb[i]) / (fabs((double)la[i]) > 1 ? fabs((double)la[i]) : 1);
      if (!(d <= *lse_err)) *lse_err = d;
    }
  }
  free(oa);
  free(ob);
  free(la);
  free(lb);
}

static void twin(pkv_backend_kind kind, pkv_dtype dt, int hd, int page,
                 pkv_layout layout) {
  const char *dn = dt == PKV_DTYPE_F32 ? "f32" : dt == PKV_DTYPE_F16 ? "f16" : "bf16";
  const double tol = dt == PKV_DTYPE_BF16 ? 2e-2 : dt == PKV_DTYPE_F16 ? 4e-3 : 1e-4;
  pkv_cache_desc cd;
  pkv_cache_desc_init(&cd);
  cd.num_layers = LAYERS;
  cd.num_kv_heads = KVH;
  cd.head_dim = hd;
  cd.page_size = page;
  cd.num_pages = (PAGES * 16 + page - 1) / page;
  cd.dtype = dt;
  cd.layout = layout;
  cd.num_host_pages = (HOST_PAGES * 16 + page - 1) / page;
  int64_t prefill_tokens = 0;
  for (int i = 0; i < NSEQ; i++) prefill_tokens += prompt_len[i];
  side cpu, dev;
  pkv_status sc = side_open(&cpu, PKV_BACKEND_CPU, &cd, (size_t)prefill_tokens);
  pkv_status sd = side_open(&dev, kind, &cd, (size_t)prefill_tokens);
  if (!ok(sc == PKV_OK && sd == PKV_OK, "%s hd %d page %d %s: twin set-up: %s",
          dn, hd, page, layout == PKV_LAYOUT_HND ? "HND" : "NHD",
          sd != PKV_OK ? pkv_last_error(dev.ctx) : pkv_last_error(cpu.ctx))) {
    side_close(&cpu);
    side_close(&dev);
    return;
  }
  size_t es = pkv_dtype_size(dt);
  size_t kv_bytes = (size_t)prefill_tokens * KVH * hd * es;
  size_t q_bytes = (size_t)prefill_tokens * QH * hd * es;
  void *k = malloc(kv_bytes), *v = malloc(kv_bytes), *q = malloc(q_bytes);
  double oe, le;

  /* prefill of every prompt (with a soft-cap, so that path runs too) */
  fill_random(k, dt, kv_bytes / es);
  fill_random(v, dt, kv_bytes / es);
  fill_random(q, dt, q_bytes / es);
  int32_t q_lens[NSEQ];
  for (int i = 0; i < NSEQ; i++) q_lens[i] = prompt_len[i];
  sc = side_step(&cpu, q_lens, prefill_tokens, k, v, q, kv_bytes, q_bytes, 30.f);
  sd = side_step(&dev, q_lens, prefill_tokens, k, v, q, kv_bytes, q_bytes, 30.f);
  ok(sc == PKV_OK && sd == PKV_OK, "%s hd %d: prefill runs on both: %s", dn,
     hd, sd != PKV_OK ? pkv_last_error(dev.ctx) : pkv_last_error(cpu.ctx));
  compare(&cpu, &dev, dt, hd, prefill_tokens, &oe, &le);
  ok(oe <= tol && le <= 1e-3, "%s hd %d: prefill matches the CPU reference "
     "(max |out| diff %.2g, tol %.2g; lse rel diff %.2g)", dn, hd, oe, tol, le);

  /* a decode step; then a fork (copy-on-write of the shared last page) and
   * a swap out and in through the host tier before the next one */
  for (int step = 0; step < 2; step++) {
    for (int i = 0; i < NSEQ; i++) q_lens[i] = 1;
    if (step == 1) {
      pkv_seq_id child[2];
      pkv_status f0 = pkv_seq_fork(cpu.cache, cpu.seq[1], &child[0]);
      pkv_status f1 = pkv_seq_fork(dev.cache, dev.seq[1], &child[1]);
      pkv_status w0 = pkv_seq_swap_out(cpu.cache, &cpu.seq[2], 1);
      pkv_status w1 = pkv_seq_swap_out(dev.cache, &dev.seq[2], 1);
      pkv_status i0 = pkv_seq_swap_in(cpu.cache, &cpu.seq[2], 1);
      pkv_status i1 = pkv_seq_swap_in(dev.cache, &dev.seq[2], 1);
      ok(f0 == PKV_OK && f1 == PKV_OK && w0 == PKV_OK && w1 == PKV_OK &&
             i0 == PKV_OK && i1 == PKV_OK,
         "%s hd %d: fork, swap out, swap in: %s", dn, hd,
         pkv_last_error(dev.ctx));
      /* the parent now appends into a shared page: copy-on-write */
    }
    sc = side_step(&cpu, q_lens, NSEQ, k, v, q, (size_t)NSEQ * KVH * hd * es,
                   (size_t)NSEQ * QH * hd * es, 0.f);
    sd = side_step(&dev, q_lens, NSEQ, k, v, q, (size_t)NSEQ * KVH * hd * es,
                   (size_t)NSEQ * QH * hd * es, 0.f);
    ok(sc == PKV_OK && sd == PKV_OK, "%s hd %d: decode step %d runs on both: %s",
       dn, hd, step, sd != PKV_OK ? pkv_last_error(dev.ctx) : pkv_last_error(cpu.ctx));
    compare(&cpu, &dev, dt, hd, NSEQ, &oe, &le);
    ok(oe <= tol && le <= 1e-3, "%s hd %d: decode step %d matches the CPU "
       "reference (max |out| diff %.2g, tol %.2g; lse rel diff %.2g)", dn, hd,
       step, oe, tol, le);
  }
  free(k);
  free(v);
  free(q);
  side_close(&cpu);
  side_close(&dev);
}

static void run_twins(pkv_backend_kind kind) {
  twin(kind, PKV_DTYPE_F16, 128, 16, PKV_LAYOUT_HND);
  twin(kind, PKV_DTYPE_BF16, 64, 1, PKV_LAYOUT_NHD);
  twin(kind, PKV_DTYPE_F32, 80, 7, PKV_LAYOUT_HND);
}

int main(void) {
  /* For checking this test itself where no GPU is: PKV_TEST_HIP_TWIN=opencl
   * runs the twin part against another backend (same portable kernels). */
  const char *twin_env = getenv("PKV_TEST_HIP_TWIN");
  pkv_backend_kind twin_kind;
  if (twin_env && pkv_backend_from_name(twin_env, &twin_kind) == PKV_OK) {
    run_twins(twin_kind);
    return done_testing();
  }
  if (!pkv_backend_available(PKV_BACKEND_HIP))
    plan_skip_all("the HIP backend is not built (configure --with-hip or "
                  "--with-cuda)");
  int n = -1;
  pkv_device_info info[8];
  for (size_t i_ = 0; i_ < sizeof info / sizeof info[0]; i_++)
    pkv_device_info_init(&info[i_]);
  pkv_status st = pkv_list_devices(PKV_BACKEND_HIP, info, 8, &n);
  if (st != PKV_OK || n <= 0) {
    /* no device must be an empty list and PKV_ERR_NO_BACKEND for a context,
     * never another error, so that AUTO falls through to the next backend */
    int list_ok = st == PKV_OK && n == 0;
    pkv_context_desc d;
    pkv_context_desc_init(&d);
    d.backend = PKV_BACKEND_HIP;
    pkv_context *c = NULL;
    int ctx_ok = pkv_context_create(&d, &c) == PKV_ERR_NO_BACKEND && !c;
    pkv_context *a = NULL;
    int auto_ok = pkv_context_create(NULL, &a) == PKV_OK &&
                  pkv_context_backend(a) != PKV_BACKEND_HIP;
    pkv_context_destroy(a);
    if (list_ok && ctx_ok && auto_ok)
      plan_skip_all("no GPU: the HIP runtime lists no device");
    ok(list_ok, "listing HIP devices without a GPU: PKV_OK, count 0");
    ok(ctx_ok, "a HIP context without a device: PKV_ERR_NO_BACKEND");
    ok(auto_ok, "AUTO without a HIP device picks another backend");
    return done_testing();
  }
  ok(n >= 1, "%d HIP device(s)", n);
  for (int i = 0; i < n && i < 8; i++)
    diag("device %d: %s, %s, %s, %d CUs, wave %d, %llu MiB", i, info[i].name,
         info[i].vendor, info[i].driver, info[i].compute_units,
         info[i].wave_size,
         (unsigned long long)(info[i].global_mem_bytes >> 20));
  ok(info[0].wave_size == 32 || info[0].wave_size == 64,
     "wave size %d read from the device", info[0].wave_size);
  ok(info[0].type == PKV_DEVICE_GPU && info[0].backend == PKV_BACKEND_HIP,
     "listed as a HIP GPU");

  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_HIP;
  d.device = n;
  pkv_context *ctx = NULL;
  ok(pkv_context_create(&d, &ctx) == PKV_ERR_RANGE && !ctx,
     "device %d out of range refused: %s", n, pkv_last_error(NULL));
  d.device = -1;
  d.device_name = "no-such-gpu-name";
  ok(pkv_context_create(&d, &ctx) == PKV_ERR_NOT_FOUND && !ctx,
     "an unmatched device name refused: %s", pkv_last_error(NULL));
  d.device_name = NULL;
  ok(pkv_context_create(&d, &ctx) == PKV_OK && ctx, "HIP context created");
  if (!ctx) return done_testing();
  ok(pkv_context_backend(ctx) == PKV_BACKEND_HIP, "context reports hip");
  test_buffers(ctx);
  ok(pkv_context_synchronize(ctx) == PKV_OK, "synchronize");
  pkv_context_destroy(ctx);
  run_twins(PKV_BACKEND_HIP);
  return done_testing();
}
