/* SPDX-License-Identifier: Apache-2.0 */
/* pkv-conformance: runs the paged-attention conformance grid on one
 * backend and compares every output and LSE with the CPU reference
 * backend, printing TAP. Both contexts get identical caches, identical
 * operation sequences (so identical page assignments) and identical random
 * data; pools, spare pages and outputs are NaN-filled first.
 *
 *   pkv-conformance [--backend opencl|hip|cpu] [--device N] [--full]
 *                   [--quick] [--decode-only] [--list]
 *
 * The default is a representative subset sized for CI; --full or
 * PKV_CONFORMANCE=full runs the whole grid (every head dim x dtype x layout,
 * every page size, GQA 1/4/5/8, query lengths 1..577, lengths to 16k).
 * Exit status 0 when every case passes. An operator runs it once per GPU
 * model of a fleet to certify it. */
#include "tool_common.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXS 8

typedef struct ccase {
  int dim, ps, nkv, group;
  pkv_dtype dt;
  pkv_layout layout;
  int nseq;
  int32_t kv[MAXS], ql[MAXS];
  int causal, window;
  float softcap;
  int alibi;
  int big_logits; /* every logit near -5e5: the output is the mean of V */
  int repeat;     /* run this many times: bitwise identical outputs */
  /* through the kernel-level layer (pkv_kv_attention): */
  int csr;        /* the batch's CSR table instead of the block table */
  int sinks;      /* per-head attention sinks */
  int strided;    /* q a slice of a fused QKV row; out rows and heads padded */
  int io;         /* q/out dtype + 1; 0 = the cache dtype */
  /* quantized (fp8) K/V: per-head scales are set (not 1), and special
   * rows: 1 = one outlier per row beyond the format's range (saturates),
   * 2 = every third row all zeros, 3 = NaN and +-Inf in K and V (the
   * rows are f32, quantized on write; see nan_expected) */
  int special;
  /* the quantization error itself: attention over the quantized cache
   * against attention over an f32 cache of the same f32 input, within a
   * bound computed from the format and the case's data (qerr_bound) */
  int qerr;
} ccase;

static int is_fp8(pkv_dtype d) {
  return d == PKV_DTYPE_FP8_E4M3 || d == PKV_DTYPE_FP8_E5M2;
}
/* The dtype of the generated K/V/q rows: the cache's, except int8, whose
 * rows are f32 quantized by the library on write (a scale per row), and
 * the quantization-error and NaN/Inf cases, whose f32 rows the backend's
 * write quantizes (so its rounding and special-value rules are tested). */
static pkv_dtype data_dt(const ccase *c) {
  return (c->dt == PKV_DTYPE_INT8 || c->qerr || c->special == 3) ? PKV_DTYPE_F32 : c->dt;
}

/* The dtype of q and out of a case. */
static pkv_dtype io_dt(const ccase *c) { return c->io ? (pkv_dtype)(c->io - 1) : c->dt; }
static int layer_path(const ccase *c) { return c->csr || c->sinks || c->strided || c->io; }

/* ------------------------------------------------------------ data */
static uint64_t rng_state;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}
static float urand(void) { return (float)(rnd() / 2147483648.0 - 1.0); } /* [-1,1) */

/* Element i of an array of dt, through the library's own conversions: the
 * backend and the reference read the same stored values either way. */
static void put(void *raw, pkv_dtype dt, size_t i, float v) {
  pkv_convert_from_f32(dt, &v, (char *)raw + i * pkv_dtype_size(dt), 1);
}
static float get(const void *raw, pkv_dtype dt, size_t i) {
  float v = 0.0f;
  pkv_convert_to_f32(dt, (const char *)raw + i * pkv_dtype_size(dt), &v, 1);
  return v;
}

static const char *dt_name(pkv_dtype d) {
  switch (d) {
  case PKV_DTYPE_F32: return "f32";
  case PKV_DTYPE_F16: return "f16";
  case PKV_DTYPE_BF16: return "bf16";
  case PKV_DTYPE_FP8_E4M3: return "e4m3";
  case PKV_DTYPE_FP8_E5M2: return "e5m2";
  case PKV_DTYPE_INT8: return "int8";
  }
  return "?";
}

/* Inputs of one case, generated once and given to both backends. */
typedef struct cdata {
  int ntok, nhist[MAXS], ndummy, dummy_len[6], dummy_keep[6];
  void *hist_k[MAXS], *hist_v[MAXS]; /* [kv - ql][nkv][dim] */
  void *new_k, *new_v;               /* [ntok][nkv][dim], batch order */
  void *q;                           /* [ntok][nq][dim] */
  float alibi[64];
  float sinks[64];
  int64_t pages;
} cdata;

static void *rand_rows(const ccase *c, size_t rows, int heads, float value) {
  size_t n = rows * (size_t)heads * (size_t)c->dim;
  const pkv_dtype dd = data_dt(c);
  void *p = malloc(n * pkv_dtype_size(dd) + 1);
  for (size_t i = 0; i < n; i++) {
    float x = value != 0 ? value : urand();
    const size_t r = i / (size_t)c->dim, e = i % (size_t)c->dim;
    /* fp8/int8 special rows (fp8 stored unscaled: the codes the kernels
     * read; int8: the outlier sets its row's scale) */
    if (c->special == 1 && e == (r * 7) % (size_t)c->dim)
      x = (r & 1) ? -1e6f : 1e6f; /* saturates to +-max */
    if (c->special == 2 && r % 3 == 0) x = 0.0f;
    put(p, dd, i, x);
  }
  return p;
}

static void make_data(const ccase *c, uint64_t seed, cdata *d) {
  memset(d, 0, sizeof *d);
  rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
  int nq = c->nkv * c->group;
  int64_t pages = 4;
  for (int s = 0; s < c->nseq; s++) {
    d->nhist[s] = c->kv[s] - c->ql[s];
    d->ntok += c->ql[s];
    pages += (c->kv[s] + c->ps - 1) / c->ps;
    /* -5e5 case: identical keys of ones, queries of -x with scale*dim*x
     * = 5e5, so every logit is -5e5. */
    d->hist_k[s] = rand_rows(c, (size_t)d->nhist[s], c->nkv, c->big_logits ? 1.0f : 0);
    d->hist_v[s] = rand_rows(c, (size_t)d->nhist[s], c->nkv, 0);
  }
  d->new_k = rand_rows(c, (size_t)d->ntok, c->nkv, c->big_logits ? 1.0f : 0);
  d->new_v = rand_rows(c, (size_t)d->ntok, c->nkv, 0);
  d->q = rand_rows(c, (size_t)d->ntok, nq,
                   c->big_logits ? -5e5f / (float)sqrt((double)c->dim) : 0);
  if (c->special == 3) {
    /* kv head 0 only: a NaN in K of sequence 0's first key; +Inf in V of
     * sequence 1's first key and -Inf in K of its second (every query of
     * a sequence attends its history). Rows are f32 here. */
    ((float *)d->hist_k[0])[3] = NAN;
    ((float *)d->hist_v[1])[5] = INFINITY;
    ((float *)d->hist_k[1])[(size_t)c->nkv * c->dim + 7] = -INFINITY;
  }
  for (int h = 0; h < nq && h < 64; h++) d->alibi[h] = exp2f(-8.0f * (float)(h + 1) / (float)nq);
  for (int h = 0; h < nq && h < 64; h++) d->sinks[h] = 3.0f * urand();
  /* Dummy sequences scramble the pool so block tables are not the identity. */
  d->ndummy = 4;
  for (int i = 0; i < d->ndummy; i++) {
    d->dummy_len[i] = 1 + (int)(rnd() % (uint32_t)(3 * c->ps));
    d->dummy_keep[i] = i & 1;
    pages += (d->dummy_len[i] + c->ps - 1) / c->ps;
  }
  d->pages = pages;
}

static void free_data(cdata *d) {
  for (int s = 0; s < MAXS; s++) {
    free(d->hist_k[s]);
    free(d->hist_v[s]);
  }
  free(d->new_k);
  free(d->new_v);
  free(d->q);
}

/* ------------------------------------------------------------ one run */
typedef struct result {
  void *out;  /* [ntok][nq][dim] + spare, cache dtype */
  float *lse; /* [ntok][nq] + 1 spare */
  int spare_nan; /* the spare element past the output stayed NaN */
  int identical; /* repeated runs bitwise equal */
  double seconds;
} result;

#define CHECK(expr)                                                            \
  do {                                                                         \
    pkv_status st_ = (expr);                                                   \
    if (st_ != PKV_OK) {                                                       \
      snprintf(err, errcap, "%s: %s", #expr, pkv_last_error(ctx));             \
      goto done;                                                               \
    }                                                                          \
  } while (0)

static pkv_buffer *nan_buffer(pkv_context *ctx, pkv_dtype dt, size_t elems) {
  pkv_buffer *b = NULL;
  size_t es = pkv_dtype_size(dt);
  if (pkv_buffer_create(ctx, elems * es, &b) != PKV_OK) return NULL;
  void *tmp = malloc(elems * es);
  for (size_t i = 0; i < elems; i++) put(tmp, dt, i, NAN);
  pkv_buffer_upload(b, 0, tmp, elems * es);
  free(tmp);
  return b;
}

static pkv_buffer *upload(pkv_context *ctx, const void *src, size_t bytes) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(ctx, bytes ? bytes : 16, &b) != PKV_OK) return NULL;
  if (bytes && pkv_buffer_upload(b, 0, src, bytes) != PKV_OK) {
    pkv_buffer_destroy(b);
    return NULL;
  }
  return b;
}

/* int8: f32 rows written through the kernel-level layer (quantized by
 * the library, one scale per row) into slots. */
static pkv_status write_f32_rows(pkv_context *ctx, pkv_cache *cache,
                                 pkv_buffer *kb, pkv_buffer *vb,
                                 pkv_buffer *slots, int64_t n) {
  pkv_kv_view view;
  pkv_tensor kt, vt;
  pkv_kv_view_init(&view);
  pkv_tensor_init(&kt);
  pkv_tensor_init(&vt);
  kt.buf = kb;
  vt.buf = vb;
  pkv_status st = pkv_cache_flush(cache);
  if (st == PKV_OK) st = pkv_cache_kv_view(cache, 0, &view);
  if (st == PKV_OK) st = pkv_kv_write(ctx, &view, slots, NULL, n, &kt, &vt);
  return st;
}

static int run(pkv_context *ctx, const ccase *c, const cdata *d, result *r,
               char *err, size_t errcap) {
  const size_t es = pkv_dtype_size(data_dt(c));
  const size_t pes = pkv_dtype_size(c->dt); /* pool element */
  const int nq = c->nkv * c->group;
  const size_t row = (size_t)c->nkv * c->dim, qrow = (size_t)nq * c->dim;
  const size_t on = (size_t)d->ntok * qrow;
  int good = 0;
  pkv_cache *cache = NULL;
  pkv_batch *batch = NULL;
  pkv_buffer *kb = NULL, *vb = NULL, *qb = NULL, *ob = NULL, *lb = NULL,
             *sb = NULL;
  int64_t *slots = NULL;
  void *again = NULL; /* freed at done: a failed repeat must not leak it */
  pkv_seq_id seqs[MAXS], dummy[6];
  memset(r, 0, sizeof *r);

  pkv_cache_desc cd;
  pkv_cache_desc_init(&cd);
  cd.num_layers = 1;
  cd.num_kv_heads = c->nkv;
  cd.head_dim = c->dim;
  cd.page_size = c->ps;
  cd.num_pages = d->pages;
  cd.dtype = c->dt;
  cd.layout = c->layout;
  CHECK(pkv_cache_create(ctx, &cd, &cache));
  if (is_fp8(c->dt)) {
    /* scales of different magnitudes per head, K and V apart */
    float ks[64], vs[64];
    for (int h = 0; h < c->nkv && h < 64; h++) {
      ks[h] = 0.25f * (float)(h + 1);
      vs[h] = 2.0f / (float)(h + 1);
    }
    CHECK(pkv_cache_set_kv_scales(cache, 0, ks, vs));
  }
  pkv_buffer *pools[2];
  CHECK(pkv_cache_kv(cache, 0, &pools[0], &pools[1]));
  for (int i = 0; i < 2; i++) {
    size_t n = pkv_buffer_size(pools[i]) / pes;
    void *tmp = malloc(n * pes);
    if (c->dt == PKV_DTYPE_INT8) /* codes -1, scales -NaN: never read */
      memset(tmp, 0xff, n);
    else
      for (size_t j = 0; j < n; j++) put(tmp, c->dt, j, NAN);
    pkv_status st = pkv_buffer_upload(pools[i], 0, tmp, n * pes);
    free(tmp);
    CHECK(st);
  }
  for (int i = 0; i < d->ndummy; i++) {
    CHECK(pkv_seq_open(cache, NULL, &dummy[i]));
    CHECK(pkv_seq_append(cache, dummy[i], d->dummy_len[i], NULL, NULL));
  }
  for (int i = 0; i < d->ndummy; i++)
    if (!d->dummy_keep[i]) CHECK(pkv_seq_release(cache, dummy[i]));
  for (int s = 0; s < c->nseq; s++) {
    CHECK(pkv_seq_open(cache, NULL, &seqs[s]));
    int h = d->nhist[s];
    if (h == 0) continue;
    slots = malloc(sizeof(int64_t) * (size_t)h);
    CHECK(pkv_seq_append(cache, seqs[s], h, NULL, slots));
    kb = upload(ctx, d->hist_k[s], (size_t)h * row * es);
    vb = upload(ctx, d->hist_v[s], (size_t)h * row * es);
    sb = upload(ctx, slots, sizeof(int64_t) * (size_t)h);
    if (!kb || !vb || !sb) CHECK(PKV_ERR_NO_MEMORY);
    if (data_dt(c) != c->dt)
      CHECK(write_f32_rows(ctx, cache, kb, vb, sb, h));
    else
      CHECK(pkv_write_kv_slots(cache, 0, kb, vb, sb, h));
    pkv_buffer_destroy(kb);
    pkv_buffer_destroy(vb);
    pkv_buffer_destroy(sb);
    kb = vb = sb = NULL;
    free(slots);
    slots = NULL;
  }
  for (int s = 0; s < c->nseq; s++)
    if (c->ql[s] > 0) CHECK(pkv_seq_append(cache, seqs[s], c->ql[s], NULL, NULL));
  CHECK(pkv_batch_create(cache, &batch));
  CHECK(pkv_batch_build(batch, seqs, c->nseq, c->ql));
  if (d->ntok > 0) {
    kb = upload(ctx, d->new_k, (size_t)d->ntok * row * es);
    vb = upload(ctx, d->new_v, (size_t)d->ntok * row * es);
    if (!kb || !vb) CHECK(PKV_ERR_NO_MEMORY);
    if (data_dt(c) != c->dt) {
      pkv_batch_device dev;
      pkv_batch_device_init(&dev);
      CHECK(pkv_batch_get_device(batch, &dev));
      CHECK(write_f32_rows(ctx, cache, kb, vb, dev.slot_mapping, d->ntok));
    } else {
      CHECK(pkv_write_kv(batch, 0, kb, vb));
    }
  }
  pkv_attn_params p;
  pkv_attn_params_init(&p, nq);
  p.causal = c->causal;
  p.window_left = c->window;
  p.softcap = c->softcap;
  p.alibi_slopes = c->alibi ? d->alibi : NULL;
  p.sinks = c->sinks ? d->sinks : NULL;
  double t0 = 0; /* tool_now_s() at the start of the timed attention */
  if (layer_path(c)) {
    /* q/out in their own dtype, possibly strided, through the layer. */
    const pkv_dtype io = io_dt(c);
    const size_t ies = pkv_dtype_size(io);
    const int64_t q_ts = c->strided ? (int64_t)(qrow + 2 * row) : (int64_t)qrow;
    const int64_t o_hs = c->strided ? c->dim + 8 : c->dim;
    const int64_t o_ts = c->strided ? nq * o_hs + 8 : (int64_t)qrow;
    const size_t q_elems = (size_t)d->ntok * (size_t)q_ts + 1;
    const size_t o_elems = (size_t)d->ntok * (size_t)o_ts + 8;
    void *qh = malloc(q_elems * ies);
    for (size_t i = 0; i < q_elems; i++) put(qh, io, i, 0.5f);
    for (int t = 0; t < d->ntok; t++)
      for (size_t e = 0; e < qrow; e++)
        put(qh, io, (size_t)t * (size_t)q_ts + e, get(d->q, data_dt(c), (size_t)t * qrow + e));
    qb = upload(ctx, qh, q_elems * ies);
    free(qh);
    ob = nan_buffer(ctx, io, o_elems);
    lb = nan_buffer(ctx, PKV_DTYPE_F32, (size_t)d->ntok * nq + 1);
    if (!qb || !ob || !lb) CHECK(PKV_ERR_NO_MEMORY);
    pkv_kv_view view;
    pkv_kv_table table;
    pkv_tensor qt, ot;
    pkv_kv_view_init(&view);
    pkv_kv_table_init(&table);
    CHECK(pkv_cache_kv_view(cache, 0, &view));
    CHECK(pkv_batch_get_table(batch, c->csr ? PKV_TABLE_CSR : PKV_TABLE_DENSE, &table));
    if (c->csr) { /* as an engine with its own tables passes them: device only */
      table.host_kv_indptr = table.host_kv_indices = table.host_kv_last_page_len = NULL;
      table.host_q_indptr = NULL;
    }
    pkv_tensor_init(&qt);
    qt.buf = qb;
    qt.dtype = io;
    qt.token_stride = q_ts;
    pkv_tensor_init(&ot);
    ot.buf = ob;
    ot.dtype = io;
    ot.token_stride = o_ts;
    ot.head_stride = o_hs;
    t0 = tool_now_s();
    CHECK(pkv_kv_attention(ctx, &view, &table, &p, &qt, &ot, lb));
    CHECK(pkv_context_synchronize(ctx));
    r->seconds = tool_now_s() - t0;
    void *oh = malloc(o_elems * ies);
    r->out = malloc((on + 8) * ies);
    r->lse = malloc(sizeof(float) * ((size_t)d->ntok * nq + 1));
    pkv_status st_dl = pkv_buffer_download(ob, 0, oh, o_elems * ies);
    if (st_dl != PKV_OK) free(oh);
    CHECK(st_dl);
    /* gathered contiguous in the q/out dtype; the
     * padding of every row must still be NaN */
    int pad_nan = 1;
    for (int t = 0; t < d->ntok; t++)
      for (int h = 0; h < nq; h++) {
        size_t o0 = (size_t)t * (size_t)o_ts + (size_t)h * (size_t)o_hs;
        for (int e = 0; e < c->dim; e++)
          put(r->out, io, ((size_t)t * nq + h) * c->dim + e, get(oh, io, o0 + e));
        for (int e = c->dim; e < o_hs; e++) pad_nan &= isnan(get(oh, io, o0 + e));
      }
    pad_nan &= isnan(get(oh, io, o_elems - 1));
    free(oh);
    put(r->out, io, on, pad_nan ? NAN : 0.0f);
    CHECK(pkv_buffer_download(lb, 0, r->lse, sizeof(float) * ((size_t)d->ntok * nq + 1)));
  } else {
  qb = upload(ctx, d->q, on * es);
  ob = nan_buffer(ctx, c->dt, on + 8);
  lb = nan_buffer(ctx, PKV_DTYPE_F32, (size_t)d->ntok * nq + 1);
  if (!qb || !ob || !lb) CHECK(PKV_ERR_NO_MEMORY);
  r->out = malloc((on + 8) * es);
  r->lse = malloc(sizeof(float) * ((size_t)d->ntok * nq + 1));
  t0 = tool_now_s();
  CHECK(pkv_attention(batch, 0, &p, qb, ob, lb));
  CHECK(pkv_context_synchronize(ctx));
  r->seconds = tool_now_s() - t0;
  CHECK(pkv_buffer_download(ob, 0, r->out, (on + 8) * es));
  CHECK(pkv_buffer_download(lb, 0, r->lse, sizeof(float) * ((size_t)d->ntok * nq + 1)));
  }
  r->spare_nan = isnan(get(r->out, io_dt(c), on)) && isnan(r->lse[(size_t)d->ntok * nq]);
  r->identical = 1;
  if (layer_path(c)) goto done_ok; /* one run, through the layer */
  again = c->repeat > 1 ? malloc((on + 8) * es) : NULL;
  for (int i = 1; i < c->repeat; i++) {
    CHECK(pkv_attention(batch, 0, &p, qb, ob, lb));
    CHECK(pkv_buffer_download(ob, 0, again, (on + 8) * es));
    if (memcmp(again, r->out, on * es) != 0) r->identical = 0;
  }
done_ok:
  good = 1;
done:
  free(again);
  free(slots);
  pkv_buffer *bufs[] = {kb, vb, sb, qb, ob, lb};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pkv_buffer_destroy(bufs[i]);
  pkv_batch_destroy(batch);
  pkv_cache_destroy(cache);
  return good;
}

/* ------------------------------------------------------------ compare */
static int tap_n = 0, tap_fail = 0;

static void case_name(const ccase *c, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "D%d %s %s ps%d kv%dxG%d %s%s", c->dim, dt_name(c->dt),
                   c->layout == PKV_LAYOUT_HND ? "HND" : "NHD", c->ps, c->nkv, c->group,
                   c->causal ? "causal" : "non-causal",
                   c->big_logits ? " logits=-5e5" : "");
  if (c->window >= 0) n += snprintf(buf + n, cap - (size_t)n, " win%d", c->window);
  if (c->softcap > 0) n += snprintf(buf + n, cap - (size_t)n, " cap%g", (double)c->softcap);
  if (c->alibi) n += snprintf(buf + n, cap - (size_t)n, " alibi");
  if (c->repeat > 1) n += snprintf(buf + n, cap - (size_t)n, " x%d", c->repeat);
  if (c->csr) n += snprintf(buf + n, cap - (size_t)n, " csr");
  if (c->sinks) n += snprintf(buf + n, cap - (size_t)n, " sinks");
  if (c->strided) n += snprintf(buf + n, cap - (size_t)n, " strided-q/out");
  if (c->io) n += snprintf(buf + n, cap - (size_t)n, " q/out %s", dt_name(io_dt(c)));
  if (is_fp8(c->dt)) n += snprintf(buf + n, cap - (size_t)n, " scales");
  if (c->dt == PKV_DTYPE_INT8) n += snprintf(buf + n, cap - (size_t)n, " row-scales");
  if (c->special == 1) n += snprintf(buf + n, cap - (size_t)n, " outliers>max");
  if (c->special == 2) n += snprintf(buf + n, cap - (size_t)n, " zero-rows");
  if (c->special == 3) n += snprintf(buf + n, cap - (size_t)n, " nan+inf-input");
  if (c->qerr) n += snprintf(buf + n, cap - (size_t)n, " vs-f32-cache");
  n += snprintf(buf + n, cap - (size_t)n, " kv/q:");
  for (int s = 0; s < c->nseq && n < (int)cap - 16; s++)
    n += snprintf(buf + n, cap - (size_t)n, " %d/%d", c->kv[s], c->ql[s]);
}

/* ------------------------------------------------------------ format bounds */
/* The per-head fp8 scales run() sets (K and V apart). */
static double fp8_scale(int kv, int h) { return kv ? 2.0 / (h + 1) : 0.25 * (h + 1); }

/* The largest error of storing x in dtype dt (doc/quantized.md): fp8 with
 * m mantissa bits, bias b and scale sc rounds x / sc to nearest, an error
 * of at most 2^-(m+1) of the value in the normal range and half the
 * smallest subnormal, 2^(1-b-m-1), below it (times sc); beyond the largest
 * finite value it saturates. int8 with row scale sc = max|row| / 127 is off
 * by at most sc / 2. The f32 rounding of x / sc (and of sc) adds 2^-22
 * relative. */
static double qerr_elem(pkv_dtype dt, double x, double sc) {
  const double a = fabs(x), slack = a * 0x1p-22;
  if (dt == PKV_DTYPE_INT8) return 0.5 * sc * (1 + 0x1p-20) + slack;
  const int m = dt == PKV_DTYPE_FP8_E4M3 ? 3 : 2, bias = dt == PKV_DTYPE_FP8_E4M3 ? 7 : 15;
  const double maxv = dt == PKV_DTYPE_FP8_E4M3 ? 448.0 : 57344.0, y = a / sc;
  if (y > maxv) return a - sc * maxv + slack;
  return sc * fmax(ldexp(y, -(m + 1)), ldexp(1.0, 1 - bias - m - 1)) + slack;
}

/* Key j of sequence s (history first, then its new tokens in batch order),
 * kv head h, element e, of K (kv 0) or V (kv 1); rows are f32 here. */
static double key_at(const ccase *c, const cdata *d, int s, int tok0, int kv, int j, int h, int e) {
  const size_t row = (size_t)c->nkv * c->dim;
  if (j < d->nhist[s])
    return ((const float *)(kv ? d->hist_v[s] : d->hist_k[s]))[(size_t)j * row + (size_t)h * c->dim + e];
  const size_t t = (size_t)(tok0 + j - d->nhist[s]);
  return ((const float *)(kv ? d->new_v : d->new_k))[t * row + (size_t)h * c->dim + e];
}

/* The bound of |attention(quantized) - attention(f32)| per output element
 * (qerr cases: f32 rows, causal or not, no window, ALiBi, soft-cap or
 * sinks). With eK, eV the element bounds above, query q and softmax scale
 * tau, key j's score moves by at most delta_j = tau * sum_d |q_d| eK_jd;
 * with D = max_j delta_j every softmax weight moves by a factor within
 * e^(+-2D), so with the exact weights p_j and output o (double, here)
 *   |o' - o|_d <= e^(2D) sum_j p_j eV_jd + (e^(2D) - 1) sum_j p_j |v_jd - o_d|
 * (the first term: the V error under the moved weights; the second: the
 * moved weights, whose changes sum to 0, against v - o). bound[] gets it
 * per element; the caller adds the compute tolerance. */
static void qerr_bound(const ccase *c, const cdata *d, double *bound) {
  const int nq = c->nkv * c->group, D = c->dim;
  const double tau = 1.0 / sqrt((double)D);
  int tok0 = 0;
  for (int s = 0; s < c->nseq; s++) {
    const int kv = c->kv[s];
    double *ek = malloc(sizeof(double) * (size_t)kv * D), *ev = malloc(sizeof(double) * (size_t)kv * D);
    double *p = malloc(sizeof(double) * (size_t)kv);
    for (int h = 0; h < c->nkv; h++) {
      for (int j = 0; j < kv; j++)
        for (int t = 0; t < 2; t++) {
          double sc = 0;
          if (c->dt == PKV_DTYPE_INT8) { /* the row's scale, rounded to f32 */
            double mx = 0;
            for (int e = 0; e < D; e++) mx = fmax(mx, fabs(key_at(c, d, s, tok0, t, j, h, e)));
            sc = (float)(mx / 127.0);
          } else {
            sc = fp8_scale(t, h);
          }
          for (int e = 0; e < D; e++)
            (t ? ev : ek)[(size_t)j * D + e] = qerr_elem(c->dt, key_at(c, d, s, tok0, t, j, h, e), sc);
        }
      for (int i = 0; i < c->ql[s]; i++)
        for (int g = 0; g < c->group; g++) {
          const int qh = h * c->group + g, qpos = d->nhist[s] + i;
          const int n = c->causal ? qpos + 1 : kv;
          const float *q = (const float *)d->q + ((size_t)(tok0 + i) * nq + qh) * D;
          double mx = -INFINITY, dl = 0, sum = 0;
          for (int j = 0; j < n; j++) {
            double dot = 0, de = 0;
            for (int e = 0; e < D; e++) {
              dot += q[e] * key_at(c, d, s, tok0, 0, j, h, e);
              de += fabs(q[e]) * ek[(size_t)j * D + e];
            }
            p[j] = tau * dot;
            mx = fmax(mx, p[j]);
            dl = fmax(dl, tau * de);
          }
          for (int j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
          const double grow = exp(2 * dl);
          for (int e = 0; e < D; e++) {
            double o = 0, ve = 0, dev = 0;
            for (int j = 0; j < n; j++) o += p[j] / sum * key_at(c, d, s, tok0, 1, j, h, e);
            for (int j = 0; j < n; j++) {
              ve += p[j] / sum * ev[(size_t)j * D + e];
              dev += p[j] / sum * fabs(key_at(c, d, s, tok0, 1, j, h, e) - o);
            }
            bound[((size_t)(tok0 + i) * nq + qh) * D + e] = grow * ve + (grow - 1) * dev;
          }
        }
    }
    free(ek);
    free(ev);
    free(p);
    tok0 += c->ql[s];
  }
}

/* NaN/Inf cases: whether output row (token t, q head qh) must be NaN.
 * fp8 saturates +-Inf to +-max (the rows of sequence 1 stay finite) and
 * keeps NaN; int8 turns a row with NaN or +-Inf into a NaN scale. So the
 * heads of kv head 0 of sequence 0 are NaN everywhere, those of sequence
 * 1 for int8 only, every other row is finite. */
static int nan_expected(const ccase *c, int t, int qh) {
  int s = 0, tok0 = 0;
  while (s < c->nseq && t >= tok0 + c->ql[s]) tok0 += c->ql[s++];
  if (qh / c->group != 0) return 0;
  return s == 0 || (s == 1 && c->dt == PKV_DTYPE_INT8);
}

static void check_case(pkv_context *test, pkv_context *ref, const ccase *c,
                       uint64_t seed, int verbose) {
  char name[300], err[2300] = "";
  case_name(c, name, sizeof name);
  cdata d;
  make_data(c, seed, &d);
  result rt, rr;
  int okt = run(test, c, &d, &rt, err, sizeof err);
  /* qerr: the reference reads an f32 cache of the same input */
  ccase rc = *c;
  if (c->qerr) rc.dt = PKV_DTYPE_F32;
  if (okt) okt = run(ref, &rc, &d, &rr, err, sizeof err) ? 1 : 0;
  int pass = okt;
  double worst = 0, lworst = 0, ratio = 0, nbound = 0;
  long bad = 0, nan_out = 0, nan_bad = 0;
  if (okt) {
    const int nq = c->nkv * c->group;
    const size_t on = (size_t)d.ntok * nq * c->dim;
    /* Both sides read the same stored values (an fp8 cache: the same
     * codes, dequantized exactly), so the tolerance is that of the
     * compute and of the q/out dtype: f32 outputs 1e-4 (plus 1e-4
     * relative for fp8, whose saturated outliers times their scale reach
     * ~1e3), f16/bf16 outputs 1.5e-2 + 1e-2 relative (their rounding). */
    const pkv_dtype od = io_dt(c);
    const double atol = od == PKV_DTYPE_F32 ? 1e-4 : 1.5e-2,
                 rtol = od == PKV_DTYPE_F32 ? (is_fp8(c->dt) || c->dt == PKV_DTYPE_INT8 ? 1e-4 : 0) : 1e-2;
    /* Saturated fp8 outliers (up to 57344 x scale) make scores of ~1e3
     * and V values of ~1e5: the f32 rounding of such a score (~1e-4
     * relative after the softmax) reaches every output through the
     * largest V, so those cases add 2e-4 of the largest output. */
    double big = 0;
    if (c->special == 1)
      for (size_t i = 0; i < on; i++) {
        double w = fabs(get(rr.out, io_dt(c), i));
        if (w > big) big = w;
      }
    double *qb = NULL;
    if (c->qerr) {
      qb = calloc(on, sizeof(double));
      qerr_bound(c, &d, qb);
    }
    for (size_t i = 0; i < on; i++) {
      double g = get(rt.out, io_dt(c), i), w = get(rr.out, io_dt(c), i), e = fabs(g - w);
      if (c->special == 3) {
        /* the NaN rule: exactly the expected rows NaN, on both sides */
        const int want = nan_expected(c, (int)(i / c->dim / (size_t)nq), (int)(i / c->dim % (size_t)nq));
        if (isnan(g) != want || isnan(w) != want) nan_bad++;
        if (want) continue;
      }
      if (isnan(g)) nan_out++;
      double tol = atol + rtol * fabs(w) + 2e-4 * big;
      if (qb) {
        tol += qb[i];
        nbound = fmax(nbound, qb[i]);
        if (e / tol > ratio) ratio = e / tol;
      }
      if (!(e <= tol)) bad++;
      if (!(e <= worst)) worst = e;
    }
    free(qb);
    for (size_t i = 0; i < (size_t)d.ntok * nq; i++) {
      if (c->special == 3 && nan_expected(c, (int)(i / (size_t)nq), (int)(i % (size_t)nq)))
        continue; /* a NaN row's LSE is NaN too */
      double g = rt.lse[i], w = rr.lse[i];
      if (isinf(w) && w < 0) {
        if (!(isinf(g) && g < 0)) bad++;
        continue;
      }
      double e = fabs(g - w);
      /* qerr: the LSE moves with the scores, by at most their largest
       * bound (2D); a generous stand-in is 1/8 absolute */
      if (!(e <= fmax(atol, 1e-3) + 1e-5 * fabs(w) + (c->qerr ? 0.125 : 0))) bad++;
      if (!(e <= lworst)) lworst = e;
    }
    pass = bad == 0 && nan_out == 0 && nan_bad == 0 && rt.spare_nan && rt.identical;
  }
  tap_n++;
  if (!pass) tap_fail++;
  printf("%sok %d - %s", pass ? "" : "not ", tap_n, name);
  if (okt)
    printf(": max err %.3g, lse %.3g%s", worst, lworst, c->repeat > 1 ? ", bitwise repeatable" : "");
  if (okt && c->qerr)
    printf(", format bound up to %.3g, worst err/bound %.3f", nbound, ratio);
  if (okt && c->special == 3) printf(", NaN exactly where the rule says: %s", nan_bad ? "NO" : "yes");
  printf("\n");
  if (!okt) printf("#   %s\n", err);
  else if (!pass)
    printf("#   %ld values out of tolerance, %ld NaN, %ld against the NaN rule, spare %s, repeat %s\n", bad, nan_out, nan_bad,
           rt.spare_nan ? "untouched" : "OVERWRITTEN", rt.identical ? "identical" : "DIFFERS");
  if (verbose && okt) printf("#   time %.4f s (reference %.4f s)\n", rt.seconds, rr.seconds);
  fflush(stdout);
  if (okt) {
    free(rt.out); free(rt.lse); free(rr.out); free(rr.lse);
  } else {
    free(rt.out); free(rt.lse);
  }
  free_data(&d);
}

/* ------------------------------------------------------------ the grid */
static ccase cases[4096];
static int ncases;

static ccase base(int dim, pkv_dtype dt, pkv_layout layout, int ps, int nkv, int group) {
  ccase c;
  memset(&c, 0, sizeof c);
  c.dim = dim; c.dt = dt; c.layout = layout; c.ps = ps; c.nkv = nkv; c.group = group;
  c.causal = 1; c.window = -1; c.repeat = 1;
  return c;
}
static void add(ccase c) {
  if (ncases < (int)(sizeof cases / sizeof cases[0])) cases[ncases++] = c;
}
static void seq(ccase *c, int kv, int ql) {
  c->kv[c->nseq] = kv;
  c->ql[c->nseq] = ql;
  c->nseq++;
}

static const int dims[5] = {64, 80, 96, 128, 256};
static const int page_sizes[5] = {1, 8, 16, 32, 128};
static const int groups[4] = {1, 4, 8, 5};
static const int qlens[5] = {1, 5, 17, 129, 577};

/* One (dim, dtype) program's share of the grid; i rotates the other axes
 * so that together the programs cover every value of every axis. */
static void program_cases(int dim, pkv_dtype dt, int i, int full) {
  for (int lay = 0; lay < 2; lay++) {
    pkv_layout L = lay ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND;
    int k = i + lay;
    int ps = page_sizes[k % 5], grp = groups[k % 4], nkv = grp >= 5 ? 1 : 2;
    /* Decode: a mixed batch with page boundaries +-1, an empty sequence,
     * a long one split into partitions. */
    ccase c = base(dim, dt, L, ps, nkv, grp);
    seq(&c, 1, 1);
    if (ps > 1) seq(&c, ps - 1, 1);
    seq(&c, ps, 1);
    seq(&c, ps + 1, 1);
    seq(&c, 0, 0);
    seq(&c, 2 * ps + 1, 1);
    seq(&c, full ? 1500 + 37 * k : 700, 1);
    c.window = (k % 3 == 1) ? 100 : -1;
    c.softcap = (k % 3 == 2) ? 30.0f : 0;
    c.alibi = k % 2;
    add(c);
    /* Prefill / extend: query lengths rotate, causal on and off. */
    for (int j = 0; j < (full ? 5 : 2); j++) {
      int ql = qlens[(k + j) % 5];
      if (!full && ql > 129) ql = 17;
      ccase p = base(dim, dt, L, ps, nkv, grp);
      int hist = (j % 3 == 0) ? 0 : (j % 3 == 1) ? ps + 1 : 300;
      seq(&p, ql + hist, ql);
      seq(&p, 3 + j, 1 + j % 3);
      p.causal = (j + k) % 2 == 0;
      p.window = (j == 2) ? 64 : -1;
      p.softcap = (j == 3) ? 20.0f : 0;
      p.alibi = (j == 1);
      add(p);
    }
  }
}

static void build_grid(int full) {
  ncases = 0;
  int i = 0;
  for (int di = 0; di < 5; di++)
    for (int t = 0; t < 3; t++, i++) {
      pkv_dtype dt = (pkv_dtype)t;
      /* The default run keeps to four programs (each is a device compile). */
      if (!full && !((dims[di] == 128 && dt == PKV_DTYPE_F16) ||
                     (dims[di] == 64 && dt == PKV_DTYPE_F32) ||
                     (dims[di] == 80 && dt == PKV_DTYPE_BF16) ||
                     (dims[di] == 256 && dt == PKV_DTYPE_F16)))
        continue;
      program_cases(dims[di], dt, i, full);
      /* -5e5 logits: a single key gives V, several give their mean. */
      ccase b = base(dims[di], dt, PKV_LAYOUT_HND, 16, 1, 4);
      seq(&b, 1, 1);
      seq(&b, 40, 1);
      b.big_logits = 1;
      add(b);
      ccase bp = base(dims[di], dt, PKV_LAYOUT_NHD, 8, 1, 1);
      seq(&bp, 20, 7);
      bp.big_logits = 1;
      add(bp);
    }
  /* Every page size at its boundaries, every GQA ratio. */
  for (int p = 0; p < 5; p++)
    for (int g = 0; g < 4; g++) {
      if (!full && g != p % 4) continue;
      int ps = page_sizes[p];
      ccase c = base(128, PKV_DTYPE_F16, p % 2 ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND, ps,
                     groups[g] == 5 ? 1 : 2, groups[g]);
      seq(&c, ps, 1);
      seq(&c, ps + 1, 1);
      if (ps > 1) seq(&c, ps - 1, 1);
      seq(&c, 3 * ps + 1, 2);
      seq(&c, 4 * ps, 4 * ps < 5 ? 4 * ps : 5);
      add(c);
    }
  /* Long mixed batches up to 16k keys, decode and extend. */
  ccase l = base(128, PKV_DTYPE_F16, PKV_LAYOUT_HND, 16, 2, 4);
  seq(&l, 16384, 1);
  seq(&l, 4097, 1);
  seq(&l, 1, 1);
  seq(&l, 513, 1);
  add(l);
  ccase lf = base(64, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 32, 1, 4);
  seq(&lf, 16384, 1);
  seq(&lf, 9000, 1);
  lf.window = 4000;
  lf.alibi = 1;
  add(lf);
  ccase lp = base(128, PKV_DTYPE_F16, PKV_LAYOUT_NHD, 16, 1, 4);
  seq(&lp, full ? 16384 : 4096, full ? 577 : 129);
  seq(&lp, 700, 17);
  add(lp);
  ccase lq = base(80, PKV_DTYPE_BF16, PKV_LAYOUT_HND, 8, 1, 5);
  seq(&lq, 577, 577);
  lq.causal = 0;
  if (full) add(lq);
  lq.causal = 1;
  add(lq);
  /* The kernel-level layer: CSR tables read by the kernels, attention
   * sinks, non-contiguous q/out and q/out dtypes other than the cache's. */
  ccase k1 = base(128, PKV_DTYPE_F16, PKV_LAYOUT_HND, 16, 2, 4);
  seq(&k1, 1000, 1);
  seq(&k1, 77, 1);
  seq(&k1, 1, 1);
  k1.csr = 1;
  k1.sinks = 1;
  add(k1);
  ccase k2 = base(128, PKV_DTYPE_F16, PKV_LAYOUT_NHD, 16, 2, 4);
  seq(&k2, 100, 33);
  seq(&k2, 20, 7);
  k2.csr = 1;
  k2.sinks = 1;
  k2.strided = 1;
  add(k2);
  ccase k3 = base(128, PKV_DTYPE_F16, PKV_LAYOUT_HND, 16, 2, 4);
  seq(&k3, 600, 1);
  seq(&k3, 30, 1);
  k3.strided = 1;
  k3.io = 1 + PKV_DTYPE_BF16; /* bf16 q and out over an f16 cache */
  add(k3);
  ccase k4 = k3;
  k4.nseq = 0;
  seq(&k4, 64, 9);
  seq(&k4, 9, 9);
  k4.sinks = 1;
  add(k4);
  ccase k5 = base(64, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 8, 1, 4);
  seq(&k5, 100, 33);
  seq(&k5, 5, 1);
  k5.strided = 1;
  k5.io = 1 + PKV_DTYPE_F16;
  k5.sinks = 1;
  k5.window = 20;
  add(k5);
  ccase k6 = base(80, PKV_DTYPE_BF16, PKV_LAYOUT_HND, 8, 1, 5);
  seq(&k6, 700, 1);
  seq(&k6, 3, 1);
  k6.csr = 1;
  k6.io = 1 + PKV_DTYPE_F32;
  k6.sinks = 1;
  k6.softcap = 30.0f;
  add(k6);
  /* Quantized K/V (fp8, per-head scales): decode with partitions and
   * prefill, both layouts, q/out f32 or f16; outliers beyond the format's
   * range (saturated on store), zero rows. */
  for (int t = 0; t < 2; t++) {
    const pkv_dtype qd = t ? PKV_DTYPE_FP8_E5M2 : PKV_DTYPE_FP8_E4M3;
    ccase q1 = base(128, qd, t ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND, 16, 2, 4);
    seq(&q1, 1, 1);
    seq(&q1, 17, 1);
    seq(&q1, full ? 5000 : 2600, 1); /* past one decode partition */
    q1.io = 1 + PKV_DTYPE_F32;
    add(q1);
    ccase q2 = base(64, qd, t ? PKV_LAYOUT_HND : PKV_LAYOUT_NHD, 8, 1, 5);
    seq(&q2, 100, 33);
    seq(&q2, 9, 9);
    q2.io = 1 + PKV_DTYPE_F16;
    q2.alibi = 1;
    add(q2);
    ccase q3 = base(128, qd, PKV_LAYOUT_HND, 16, 2, 4);
    seq(&q3, 300, 1);
    seq(&q3, 40, 7);
    q3.io = 1 + PKV_DTYPE_F32;
    q3.special = 1;
    add(q3);
    ccase q4 = q3;
    q4.special = 2;
    q4.csr = 1;
    q4.sinks = 1;
    add(q4);
  }
  /* int8 (a scale per token and head in the page; rows written from f32
   * by the library on both sides): decode past a partition, prefill,
   * outliers and zero rows. */
  {
    ccase i1 = base(128, PKV_DTYPE_INT8, PKV_LAYOUT_HND, 16, 2, 4);
    seq(&i1, 1, 1);
    seq(&i1, 33, 1);
    seq(&i1, full ? 5000 : 2600, 1);
    i1.io = 1 + PKV_DTYPE_F16;
    add(i1);
    ccase i2 = base(64, PKV_DTYPE_INT8, PKV_LAYOUT_NHD, 8, 1, 5);
    seq(&i2, 100, 33);
    seq(&i2, 9, 9);
    i2.io = 1 + PKV_DTYPE_F32;
    i2.special = 1;
    add(i2);
    ccase i3 = base(128, PKV_DTYPE_INT8, PKV_LAYOUT_NHD, 16, 2, 4);
    seq(&i3, 300, 1);
    seq(&i3, 40, 7);
    i3.io = 1 + PKV_DTYPE_F32;
    i3.special = 2;
    i3.csr = 1;
    i3.sinks = 1;
    add(i3);
  }
  /* Quantized decode (every query length 1, so the GPU-shaped decode
   * runs them too: tests/conformance-opencl-gpu32/64.sh): outliers and
   * zero rows, head dims whose rows are not a whole number of 32-byte
   * lane pairs, q/out in each io dtype, a GQA group past one chunk. */
  for (int t = 0; t < 3; t++) {
    const pkv_dtype qd = t == 0 ? PKV_DTYPE_FP8_E4M3 : t == 1 ? PKV_DTYPE_FP8_E5M2 : PKV_DTYPE_INT8;
    ccase d1 = base(80, qd, t == 1 ? PKV_LAYOUT_HND : PKV_LAYOUT_NHD, 8, 1, 5);
    seq(&d1, 1, 1);
    seq(&d1, 9, 1);
    seq(&d1, 700, 1);
    d1.io = 1 + PKV_DTYPE_F32; /* q has outliers too: 1e6 is Inf in f16 */
    d1.special = 1;
    add(d1);
    ccase d2 = base(t == 2 ? 64 : 256, qd, t == 2 ? PKV_LAYOUT_HND : PKV_LAYOUT_NHD, t == 2 ? 32 : 16, 2, t == 2 ? 12 : 4);
    seq(&d2, 33, 1);
    seq(&d2, 1200, 1);
    d2.io = 1 + (t == 1 ? PKV_DTYPE_BF16 : PKV_DTYPE_F32);
    d2.special = 2;
    d2.alibi = t == 0;
    d2.softcap = t == 2 ? 30.0f : 0;
    add(d2);
  }
  /* The quantization error itself (vs-f32-cache: the reference reads an
   * f32 cache of the same f32 input; the bound comes from the format,
   * qerr_bound), and NaN/Inf input (nan+inf-input: the rule of
   * doc/quantized.md, on both backends). Decode and prefill. */
  for (int t = 0; t < 3; t++) {
    const pkv_dtype qd = t == 0 ? PKV_DTYPE_FP8_E4M3 : t == 1 ? PKV_DTYPE_FP8_E5M2 : PKV_DTYPE_INT8;
    ccase e1 = base(128, qd, t == 1 ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND, 16, 2, 4);
    seq(&e1, 1, 1);
    seq(&e1, 17, 1);
    seq(&e1, 700, 1);
    e1.io = 1 + PKV_DTYPE_F32;
    e1.qerr = 1;
    add(e1);
    ccase e2 = base(64, qd, t == 1 ? PKV_LAYOUT_HND : PKV_LAYOUT_NHD, 8, 1, 5);
    seq(&e2, 100, 33);
    seq(&e2, 9, 9);
    e2.io = 1 + PKV_DTYPE_F32;
    e2.qerr = 1;
    add(e2);
    ccase n1 = base(128, qd, PKV_LAYOUT_HND, 16, 2, 4);
    seq(&n1, 40, 1);
    seq(&n1, 9, 1);
    seq(&n1, 20, 1);
    n1.io = 1 + PKV_DTYPE_F32;
    n1.special = 3;
    add(n1);
    ccase n2 = base(64, qd, PKV_LAYOUT_NHD, 8, 2, 3);
    seq(&n2, 40, 7);
    seq(&n2, 9, 3);
    seq(&n2, 20, 2);
    n2.io = 1 + (t == 2 ? PKV_DTYPE_F16 : PKV_DTYPE_F32);
    n2.special = 3;
    add(n2);
  }
  /* 50 repeated runs, bitwise identical: decode with a merge, and prefill. */
  ccase r = base(128, PKV_DTYPE_F16, PKV_LAYOUT_HND, 16, 2, 4);
  seq(&r, 5000, 1);
  seq(&r, 77, 1);
  r.repeat = 50;
  add(r);
  ccase rp = base(64, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 8, 1, 4);
  seq(&rp, 100, 33);
  rp.repeat = 50;
  add(rp);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: pkv-conformance [--backend opencl|hip|cpu] [--device N]\n"
          "                       [--full|--quick] [--decode-only] [--match TEXT]\n"
          "                       [--list] [--verbose]\n"
          "Runs the paged-attention conformance grid on one backend and\n"
          "compares every output and LSE with the CPU reference, printing TAP.\n"
          "Exit status 0 when every case passes, 1 when one fails, 2 on a\n"
          "usage error. PKV_CONFORMANCE=full selects the full grid.\n");
}

int main(int argc, char **argv) {
  pkv_backend_kind kind = PKV_BACKEND_OPENCL;
  int device = -1, full = 0, list = 0, verbose = 0, decode_only = 0;
  const char *match = NULL; /* only the cases whose name contains it */
  const char *env = getenv("PKV_CONFORMANCE");
  if (env && strcmp(env, "full") == 0) full = 1;
  for (int i = 1; i < argc; i++) {
    long long v = 0;
    if (tool_std_option("pkv-conformance", argv[i], usage)) return 0;
    if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
      if (!tool_parse_backend("pkv-conformance", argv[++i], &kind)) return 2;
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      if (!tool_parse_ll(argv[++i], 0, 1024, &v)) {
        fprintf(stderr, "pkv-conformance: --device %s: expected 0..1024\n",
                argv[i]);
        return 2;
      }
      device = (int)v;
    } else if (!strcmp(argv[i], "--full")) {
      full = 1;
    } else if (!strcmp(argv[i], "--quick")) {
      full = 0;
    } else if (!strcmp(argv[i], "--decode-only")) {
      decode_only = 1;
    } else if (!strcmp(argv[i], "--match") && i + 1 < argc) {
      match = argv[++i];
    } else if (!strcmp(argv[i], "--list")) {
      list = 1;
    } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
      verbose = 1;
    } else {
      fprintf(stderr, "pkv-conformance: unknown option %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  build_grid(full);
  if (decode_only) { /* the cases where every query length is 0 or 1 */
    int w = 0;
    for (int i = 0; i < ncases; i++) {
      int dec = 1;
      for (int j = 0; j < cases[i].nseq; j++)
        if (cases[i].ql[j] > 1) dec = 0;
      if (dec) cases[w++] = cases[i];
    }
    ncases = w;
  }
  if (match) {
    char name[300];
    int w = 0;
    for (int i = 0; i < ncases; i++) {
      case_name(&cases[i], name, sizeof name);
      if (strstr(name, match)) cases[w++] = cases[i];
    }
    ncases = w;
  }
  if (list) {
    char name[300];
    for (int i = 0; i < ncases; i++) {
      case_name(&cases[i], name, sizeof name);
      printf("%s\n", name);
    }
    return 0;
  }
  const char *bname = pkv_backend_name(kind);
  int ndev = 0;
  if (!pkv_backend_available(kind)) {
    /* not built, or its module did not load: say which, with the reason */
    printf("1..0 # SKIP no %s device: backend not available: %s\n", bname,
           pkv_last_error(NULL));
    return 0;
  }
  if (pkv_list_devices(kind, NULL, 0, &ndev) != PKV_OK || ndev == 0) {
    printf("1..0 # SKIP no %s device\n", bname);
    return 0;
  }
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = kind;
  d.device = device;
  pkv_context *test = NULL, *ref = NULL;
  if (pkv_context_create(&d, &test) != PKV_OK) {
    printf("1..1\nnot ok 1 - %s context: %s\n", bname, pkv_last_error(NULL));
    return 1;
  }
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  if (pkv_context_create(&d, &ref) != PKV_OK) {
    printf("1..1\nnot ok 1 - CPU reference context: %s\n", pkv_last_error(NULL));
    pkv_context_destroy(test);
    return 1;
  }
  pkv_device_info info;
  pkv_device_info_init(&info);
  pkv_context_device_info(test, &info);
  printf("1..%d\n", ncases);
  printf("# pkv-conformance %s: %s backend, device %d '%s' (%s%s%s), %s grid\n",
         pkv_version_string(), bname, info.index, info.name, info.driver,
         info.platform[0] ? ", " : "", info.platform, full ? "full" : "default");
  for (int i = 0; i < ncases; i++) check_case(test, ref, &cases[i], (uint64_t)i + 1, verbose);
  printf("# %d of %d cases passed on %s\n", tap_n - tap_fail, tap_n, info.name);
  pkv_context_destroy(test);
  pkv_context_destroy(ref);
  return tap_fail ? 1 : 0;
}
