/* SPDX-License-Identifier: Apache-2.0 */
/* Plan-driven decode on OpenCL (PoCL on CI), with the CPU-shaped and the
 * GPU-shaped kernels (PKV_KERNELS=gpu: the emulated tile dialect):
 * - runs under plans of several chunk sizes (every request whole, a few
 *   split, every request split into one-page chunks) equal the CPU
 *   backend's pkv_kv_attention on the same data, for a skewed batch with
 *   an empty request, dense and CSR tables, ALiBi, sinks and a window;
 * - a run after the first allocates nothing (host: the allocation
 *   counter; device: the backend's buffer counter) and never makes the
 *   host wait (the backend's counter of blocking calls);
 * - a run with a view of another cache, a workspace too small, or q/out
 *   of another batch refuses with its status and launches nothing;
 * - with PKV_KERNELS=mma (the emulated fragment dialect), f16 and bf16
 *   caches and q/out, and an e5m2 cache with per-head scales, with GQA
 *   groups 4 and 8 run the matrix-unit kernel under the plan
 *   (pkv_prefill_mma_plan), split or not, = CPU reference. */
#include "alloc.h"
#include "dtype_convert.h"
#include "internal.h"
#include "ocl.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D 64
#define NKV 2
#define NQ 8
#define PS 16
#define NPAGES 96
#define NSEQ 5
#define MAXP 160

/* Skewed: one long request (longer than a CPU device's PKV_PART of 2048
 * keys, so that an unsplit item is taken in two passes), short ones, one
 * empty. */
static const int32_t seq_len[NSEQ] = {2500, 37, 0, 1, 130};

static uint64_t rng;
static float urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) / 4503599627370496.0 - 1.0);
}

typedef struct side {
  pkv_context *c;
  pkv_buffer *k, *v, *k2, *v2, *q, *out, *lse, *bt, *sl, *qi, *kvi, *kvx, *kvl;
} side;

static pkv_buffer *mk(pkv_context *c, const void *h, size_t bytes) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(c, bytes, &b) != PKV_OK) return NULL;
  if (h) pkv_buffer_upload(b, 0, h, bytes);
  return b;
}

static int32_t hbt[NSEQ * MAXP], hsl[NSEQ], hqi[NSEQ + 1];
static int32_t hkvi[NSEQ + 1], hkvx[NSEQ * MAXP], hkvl[NSEQ];
static float *hk, *hv, *hk2, *hv2, *hq;
static const size_t pool = (size_t)NPAGES * PS * NKV * D * 4;
static const size_t qbytes = (size_t)NSEQ * NQ * D * 4;
static const size_t lbytes = (size_t)NSEQ * NQ * 4;

static void host_data(void) {
  rng = 0x9e3779b97f4a7c15ull;
  hk = malloc(pool), hv = malloc(pool), hk2 = malloc(pool), hv2 = malloc(pool);
  hq = malloc(qbytes);
  for (size_t i = 0; i < pool / 4; i++)
    hk[i] = urand(), hv[i] = urand(), hk2[i] = urand(), hv2[i] = urand();
  for (size_t i = 0; i < qbytes / 4; i++) hq[i] = urand();
  hqi[0] = hkvi[0] = 0;
  for (int s = 0; s < NSEQ; s++) {
    hsl[s] = seq_len[s];
    hqi[s + 1] = hqi[s] + 1;
    int np = (seq_len[s] + PS - 1) / PS;
    for (int p = 0; p < MAXP; p++) hbt[s * MAXP + p] = (s * 29 + p * 7) % NPAGES;
    for (int p = 0; p < np; p++) hkvx[hkvi[s] + p] = hbt[s * MAXP + p];
    hkvi[s + 1] = hkvi[s] + np;
    hkvl[s] = np ? seq_len[s] - (np - 1) * PS : 0;
  }
}

static int side_make(side *x, pkv_context *c) {
  memset(x, 0, sizeof *x);
  x->c = c;
  x->k = mk(c, hk, pool), x->v = mk(c, hv, pool);
  x->k2 = mk(c, hk2, pool), x->v2 = mk(c, hv2, pool);
  x->q = mk(c, hq, qbytes);
  x->out = mk(c, NULL, qbytes), x->lse = mk(c, NULL, lbytes);
  x->bt = mk(c, hbt, sizeof hbt), x->sl = mk(c, hsl, sizeof hsl);
  x->qi = mk(c, hqi, sizeof hqi), x->kvi = mk(c, hkvi, sizeof hkvi);
  x->kvx = mk(c, hkvx, sizeof hkvx), x->kvl = mk(c, hkvl, sizeof hkvl);
  return x->k && x->v && x->k2 && x->v2 && x->q && x->out && x->lse &&
         x->bt && x->sl && x->qi && x->kvi && x->kvx && x->kvl;
}

static void side_free(side *x) {
  pkv_buffer *all[] = {x->k,   x->v,  x->k2, x->v2, x->q,   x->out, x->lse,
                       x->bt,  x->sl, x->qi, x->kvi, x->kvx, x->kvl};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    pkv_buffer_destroy(all[i]);
}

static pkv_kv_view view_of(const side *x, int layer) {
  pkv_kv_view v;
  pkv_kv_view_init(&v);
  v.k = layer ? x->k2 : x->k;
  v.v = layer ? x->v2 : x->v;
  v.page_size = PS;
  v.num_kv_heads = NKV;
  v.head_dim = D;
  v.num_pages = NPAGES;
  v.dtype = PKV_DTYPE_F32;
  return v;
}

static pkv_kv_table table_of(const side *x, int csr) {
  pkv_kv_table t;
  pkv_kv_table_init(&t);
  t.num_seqs = NSEQ;
  t.num_tokens = NSEQ;
  t.max_q_len = 1;
  t.max_kv_len = 2500;
  t.q_indptr = x->qi;
  t.host_q_indptr = hqi;
  if (csr) {
    t.kind = PKV_TABLE_CSR;
    t.kv_indptr = x->kvi;
    t.kv_indices = x->kvx;
    t.kv_last_page_len = x->kvl;
    t.num_kv_indices = hkvi[NSEQ];
    t.host_kv_indptr = hkvi;
    t.host_kv_indices = hkvx;
    t.host_kv_last_page_len = hkvl;
  } else {
    t.kind = PKV_TABLE_DENSE;
    t.block_table = x->bt;
    t.seq_lens = x->sl;
    t.max_pages = MAXP;
    t.host_block_table = hbt;
    t.host_seq_lens = hsl;
  }
  return t;
}

static pkv_tensor tensor(pkv_buffer *b) {
  pkv_tensor t;
  pkv_tensor_init(&t);
  t.buf = b;
  return t;
}

static double max_diff(pkv_buffer *a, pkv_buffer *b, size_t bytes) {
  float *x = malloc(bytes), *y = malloc(bytes);
  pkv_buffer_download(a, 0, x, bytes);
  pkv_buffer_download(b, 0, y, bytes);
  double e = 0;
  for (size_t i = 0; i < bytes / 4; i++)
    e = fmax(e, isinf(x[i]) && isinf(y[i]) && x[i] == y[i]
                    ? 0
                    : (isnan(x[i]) || isnan(y[i]) ? INFINITY
                                                   : fabs(x[i] - y[i])));
  free(x);
  free(y);
  return e;
}

static float slopes[NQ], sinks[NQ];

/* One configuration: plans of several chunk sizes on dev, each run
 * against the CPU backend's unplanned attention of the same inputs. */
static void equal_cases(side *dev, side *ref, const char *kern, int csr,
                        int alibi, int sink, int window) {
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  p.alibi_slopes = alibi ? slopes : NULL;
  p.sinks = sink ? sinks : NULL;
  p.window_left = window;
  p.causal = 1;
  const int32_t chunks[] = {PS, 256, 1024, 0};
  pkv_plan *pl = NULL;
  pkv_plan_create(dev->c, &pl);
  for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
    pkv_plan_options po;
    pkv_plan_options_init(&po);
    po.chunk_keys = chunks[ci];
    pkv_kv_view vd = view_of(dev, 0), vr = view_of(ref, 0);
    pkv_kv_table td = table_of(dev, csr), tr = table_of(ref, csr);
    pkv_status bs = pkv_plan_build(pl, &vd, &td, &p, &po);
    pkv_plan_info info;
    pkv_plan_info_init(&info);
    pkv_plan_get_info(pl, &info);
    size_t need = 0;
    pkv_plan_workspace_size(pl, &need);
    pkv_buffer *ws = need ? mk(dev->c, NULL, need) : NULL;
    double err = 0;
    pkv_status rs = PKV_OK, cs = PKV_OK;
    for (int l = 0; l < 2; l++) { /* two layers under one plan */
      vd = view_of(dev, l);
      vr = view_of(ref, l);
      pkv_tensor qd = tensor(dev->q), od = tensor(dev->out);
      pkv_tensor qr = tensor(ref->q), orf = tensor(ref->out);
      rs |= pkv_attention_run(pl, &vd, &qd, &od, dev->lse, ws, NULL);
      cs |= pkv_kv_attention(ref->c, &vr, &tr, &p, &qr, &orf, ref->lse);
      err = fmax(err, fmax(max_diff(dev->out, ref->out, qbytes),
                           max_diff(dev->lse, ref->lse, lbytes)));
    }
    ok(bs == PKV_OK && rs == PKV_OK && cs == PKV_OK && err < 2e-5,
       "%s kernel, %s%s%s%s, chunk %lld (%lld items, %d split): run = CPU "
       "reference (max |diff| %.2g)",
       kern, csr ? "CSR" : "dense", alibi ? ", ALiBi" : "",
       sink ? ", sinks" : "", window >= 0 ? ", window" : "",
       (long long)info.chunk_keys, (long long)info.num_items, info.num_split,
       err);
    pkv_buffer_destroy(ws);
  }
  pkv_plan_destroy(pl);
}

/* A run allocates nothing and never waits; bad runs launch nothing. */
static void run_rules(side *dev, const char *kern) {
  pkv_ocl *o = pkv_ocl_of(dev->c);
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  p.sinks = sinks;
  p.alibi_slopes = slopes;
  pkv_plan_options po;
  pkv_plan_options_init(&po);
  po.chunk_keys = 64; /* the long request split: the merge runs too */
  pkv_plan *pl = NULL;
  pkv_plan_create(dev->c, &pl);
  pkv_kv_view v0 = view_of(dev, 0), v1 = view_of(dev, 1);
  pkv_kv_table t = table_of(dev, 0);
  pkv_status bs = pkv_plan_build(pl, &v0, &t, &p, &po);
  size_t need = 0;
  pkv_plan_workspace_size(pl, &need);
  pkv_buffer *ws = mk(dev->c, NULL, need), *small = mk(dev->c, NULL, need - 4);
  pkv_tensor q = tensor(dev->q), out = tensor(dev->out);
  /* The first run builds the program (once per context). */
  pkv_status s0 = pkv_attention_run(pl, &v0, &q, &out, dev->lse, ws, NULL);
  pkv_context_synchronize(dev->c);
  int64_t h0 = pkv__alloc_count(), d0 = o->stat_allocs, w0 = o->stat_waits;
  pkv_status s1 = pkv_attention_run(pl, &v1, &q, &out, dev->lse, ws, NULL);
  pkv_status s2 = pkv_attention_run(pl, &v0, &q, &out, dev->lse, ws, NULL);
  int64_t h1 = pkv__alloc_count(), d1 = o->stat_allocs, w1 = o->stat_waits;
  ok(bs == PKV_OK && s0 == PKV_OK && s1 == PKV_OK && s2 == PKV_OK &&
         h1 == h0 && d1 == d0 && w1 == w0,
     "%s kernel: two runs made %lld host allocations, %lld device buffers, "
     "%lld blocking calls (want 0, 0, 0)",
     kern, (long long)(h1 - h0), (long long)(d1 - d0), (long long)(w1 - w0));

  /* Bad input: poison out, then each refusal must leave it. */
  pkv_context_synchronize(dev->c);
  unsigned char *fill = malloc(qbytes);
  memset(fill, 0x7f, qbytes);
  pkv_buffer_upload(dev->out, 0, fill, qbytes);
  pkv_kv_view other = v0;
  other.page_size = 8;
  other.num_pages = NPAGES * 2;
  pkv_buffer *q_short = mk(dev->c, NULL, qbytes / 2);
  pkv_tensor qs = tensor(q_short);
  int64_t d2 = o->stat_allocs;
  ok(pkv_attention_run(pl, &other, &q, &out, dev->lse, ws, NULL) ==
         PKV_ERR_STATE,
     "%s kernel: a view of another cache: PKV_ERR_STATE", kern);
  ok(pkv_attention_run(pl, &v0, &q, &out, dev->lse, small, NULL) ==
         PKV_ERR_SIZE,
     "%s kernel: a workspace 4 bytes short: PKV_ERR_SIZE", kern);
  ok(pkv_attention_run(pl, &v0, &qs, &out, dev->lse, ws, NULL) == PKV_ERR_SIZE,
     "%s kernel: q of another (smaller) batch: PKV_ERR_SIZE", kern);
  ok(pkv_attention_run(pl, &v0, &q, &out, dev->lse, NULL, NULL) ==
         PKV_ERR_NULL,
     "%s kernel: no workspace where the plan splits: PKV_ERR_NULL", kern);
  unsigned char *got = malloc(qbytes);
  pkv_buffer_download(dev->out, 0, got, qbytes);
  ok(!memcmp(got, fill, qbytes) && o->stat_allocs == d2,
     "%s kernel: refused runs launched nothing (out unchanged)", kern);
  free(got);
  free(fill);
  pkv_buffer_destroy(q_short);
  pkv_buffer_destroy(ws);
  pkv_buffer_destroy(small);
  pkv_plan_destroy(pl);
}

/* The unplanned call: a default plan plus a run, its workspace cached per
 * context, so that a repeated call allocates nothing. */
static void unplanned_cached(side *dev, const char *kern) {
  pkv_ocl *o = pkv_ocl_of(dev->c);
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  pkv_kv_view v = view_of(dev, 0);
  pkv_kv_table t = table_of(dev, 0);
  pkv_tensor q = tensor(dev->q), out = tensor(dev->out);
  pkv_status s0 = pkv_kv_attention(dev->c, &v, &t, &p, &q, &out, dev->lse);
  int64_t d0 = o->stat_allocs;
  pkv_status s1 = pkv_kv_attention(dev->c, &v, &t, &p, &q, &out, dev->lse);
  ok(s0 == PKV_OK && s1 == PKV_OK && o->stat_allocs == d0,
     "%s kernel: a repeated pkv_kv_attention creates no device buffer "
     "(%lld)", kern, (long long)(o->stat_allocs - d0));
}

static void one_backend(side *ref, const char *kern) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_OPENCL;
  pkv_context *c = NULL;
  side dev;
  if (pkv_context_create(&cd, &c) != PKV_OK || !side_make(&dev, c)) {
    ok(0, "%s kernel: OpenCL context and buffers: %s", kern,
       pkv_last_error(c));
    pkv_context_destroy(c);
    return;
  }
  equal_cases(&dev, ref, kern, 0, 0, 0, -1);
  equal_cases(&dev, ref, kern, 0, 1, 1, -1);
  equal_cases(&dev, ref, kern, 1, 0, 1, 100);
  run_rules(&dev, kern);
  unplanned_cached(&dev, kern);
  side_free(&dev);
  pkv_context_destroy(c);
}

/* The matrix-unit kernel under the plan: 16-bit caches and q/out, GQA
 * groups 4 and 8, chunks that split every long request (and none). The
 * values are multiples of 1/64, exact in f16 and bf16, so the reference
 * sees the same inputs; the tolerance is the kernel's rounding of P to
 * the 16-bit type before P.V plus the output's rounding. */
#define M_NSEQ 4
#define M_PAGES 40
#define M_MAXP 24
static const int32_t m_len[M_NSEQ] = {300, 37, 0, 129};

static uint16_t enc16(pkv_dtype dt, float f) {
  return dt == PKV_DTYPE_F16 ? pkv__f32_to_f16(f) : pkv__f32_to_bf16(f);
}
static float dec16(pkv_dtype dt, uint16_t h) {
  return dt == PKV_DTYPE_F16 ? pkv_f16_to_f32(h) : pkv_bf16_to_f32(h);
}

/* cdt: the cache's dtype, dt (f16/bf16) q's and out's; an e5m2 cache
 * holds multiples of 1/4 below 2 (exact in e5m2), with per-head scales. */
static void mma_case(pkv_context *dc, pkv_context *rc, pkv_dtype cdt,
                     pkv_dtype dt, int group, int sink, int window) {
  pkv_ocl *o = pkv_ocl_of(dc);
  const int nq = NKV * group, fp8 = cdt == PKV_DTYPE_FP8_E5M2;
  const size_t pool_n = (size_t)M_PAGES * PS * NKV * D, eb = fp8 ? 1 : 2;
  const size_t q_n = (size_t)M_NSEQ * nq * D;
  uint16_t *k = malloc(pool_n * 2), *v = malloc(pool_n * 2);
  const float ksc[NKV] = {0.5f, 2.0f}, vsc[NKV] = {1.5f, 0.25f};
  uint16_t *q = malloc(q_n * 2), *od = malloc(q_n * 2), *orf = malloc(q_n * 2);
  float *ld = malloc((size_t)M_NSEQ * nq * 4), *lr = malloc((size_t)M_NSEQ * nq * 4);
  int32_t bt[M_NSEQ * M_MAXP], sl[M_NSEQ], qi[M_NSEQ + 1];
  rng = 0x2545f4914f6cdd1dull + (uint64_t)group * 7 + (uint64_t)dt;
  for (size_t i = 0; i < pool_n; i++) {
    k[i] = enc16(cdt, (float)(int)(urand() * 64) / 64.0f);
    v[i] = enc16(cdt, (float)(int)(urand() * 64) / 64.0f);
  }
  if (fp8) { /* e5m2 codes: the high byte of the f16 of k/4, |k| < 8 */
    uint8_t *k8 = (uint8_t *)k, *v8 = (uint8_t *)v;
    for (size_t i = 0; i < pool_n; i++) {
      k8[i] = (uint8_t)(pkv__f32_to_f16((float)(int)(urand() * 8) / 4.0f) >> 8);
      v8[i] = (uint8_t)(pkv__f32_to_f16((float)(int)(urand() * 8) / 4.0f) >> 8);
    }
  }
  for (size_t i = 0; i < q_n; i++) q[i] = enc16(dt, (float)(int)(urand() * 64) / 64.0f);
  qi[0] = 0;
  for (int s = 0; s < M_NSEQ; s++) {
    sl[s] = m_len[s];
    qi[s + 1] = qi[s] + 1;
    for (int p = 0; p < M_MAXP; p++) bt[s * M_MAXP + p] = (s * 11 + p * 3) % M_PAGES;
  }
  float sk[2 * 8 * NKV];
  for (int h = 0; h < nq; h++) sk[h] = 0.125f * (float)h - 0.5f;
  pkv_context *cs[2] = {dc, rc};
  pkv_buffer *b[2][6];
  for (int i = 0; i < 2; i++) {
    b[i][0] = mk(cs[i], k, pool_n * eb), b[i][1] = mk(cs[i], v, pool_n * eb);
    b[i][2] = mk(cs[i], q, q_n * 2), b[i][3] = mk(cs[i], NULL, q_n * 2);
    b[i][4] = mk(cs[i], bt, sizeof bt);
    b[i][5] = mk(cs[i], NULL, (size_t)M_NSEQ * nq * 4);
  }
  pkv_buffer *sld = mk(dc, sl, sizeof sl), *qid = mk(dc, qi, sizeof qi);
  pkv_buffer *slr = mk(rc, sl, sizeof sl), *qir = mk(rc, qi, sizeof qi);
  pkv_attn_params p;
  pkv_attn_params_init(&p, nq);
  p.causal = 1;
  p.sinks = sink ? sk : NULL;
  p.window_left = window;
  pkv_kv_view vw[2];
  pkv_kv_table tb[2];
  pkv_tensor tq[2], to[2];
  for (int i = 0; i < 2; i++) {
    pkv_kv_view_init(&vw[i]);
    vw[i].k = b[i][0], vw[i].v = b[i][1];
    vw[i].page_size = PS, vw[i].num_kv_heads = NKV, vw[i].head_dim = D;
    vw[i].num_pages = M_PAGES, vw[i].dtype = cdt;
    if (fp8) vw[i].k_scales = ksc, vw[i].v_scales = vsc;
    pkv_kv_table_init(&tb[i]);
    tb[i].num_seqs = M_NSEQ, tb[i].num_tokens = M_NSEQ, tb[i].max_q_len = 1;
    tb[i].max_kv_len = 300;
    tb[i].q_indptr = i ? qir : qid, tb[i].host_q_indptr = qi;
    tb[i].kind = PKV_TABLE_DENSE;
    tb[i].block_table = b[i][4], tb[i].seq_lens = i ? slr : sld;
    tb[i].max_pages = M_MAXP, tb[i].host_block_table = bt;
    tb[i].host_seq_lens = sl;
    pkv_tensor_init(&tq[i]);
    tq[i].buf = b[i][2], tq[i].dtype = dt;
    pkv_tensor_init(&to[i]);
    to[i].buf = b[i][3], to[i].dtype = dt;
  }
  pkv_status cst = pkv_kv_attention(rc, &vw[1], &tb[1], &p, &tq[1], &to[1], b[1][5]);
  pkv_buffer_download(b[1][3], 0, orf, q_n * 2);
  pkv_buffer_download(b[1][5], 0, lr, (size_t)M_NSEQ * nq * 4);
  const int32_t chunks[] = {PS, 64, 0};
  for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
    pkv_plan *pl = NULL;
    pkv_plan_create(dc, &pl);
    pkv_plan_options po;
    pkv_plan_options_init(&po);
    po.chunk_keys = chunks[ci];
    pkv_status bs = pkv_plan_build(pl, &vw[0], &tb[0], &p, &po);
    pkv_plan_info info;
    pkv_plan_info_init(&info);
    pkv_plan_get_info(pl, &info);
    size_t need = 0;
    pkv_plan_workspace_size(pl, &need);
    pkv_buffer *ws = need ? mk(dc, NULL, need) : NULL;
    const int64_t n0 = o->stat_mma_plan;
    pkv_status rs = pkv_attention_run(pl, &vw[0], &tq[0], &to[0], b[0][5], ws, NULL);
    pkv_buffer_download(b[0][3], 0, od, q_n * 2);
    pkv_buffer_download(b[0][5], 0, ld, (size_t)M_NSEQ * nq * 4);
    double err = 0, lerr = 0;
    for (size_t i = 0; i < q_n; i++) {
      const double x = dec16(dt, od[i]), y = dec16(dt, orf[i]);
      err = fmax(err, isnan(x) || isnan(y) ? INFINITY : fabs(x - y));
    }
    for (int i = 0; i < M_NSEQ * nq; i++)
      lerr = fmax(lerr, isinf(ld[i]) && isinf(lr[i]) && ld[i] == lr[i]
                            ? 0
                            : (isnan(ld[i]) || isnan(lr[i]) ? INFINITY
                                                             : fabs(ld[i] - lr[i])));
    const double tol = (dt == PKV_DTYPE_F16 ? 4e-3 : 3e-2) * (fp8 ? 2 : 1);
    ok(bs == PKV_OK && rs == PKV_OK && cst == PKV_OK &&
           o->stat_mma_plan == n0 + 1 && err < tol && lerr < 1e-2,
       "mma kernel, %s%s, group %d%s%s, chunk %lld (%lld items, %d split): "
       "pkv_prefill_mma_plan ran %lld time(s), run = CPU reference (max "
       "|diff| out %.2g, lse %.2g)",
       fp8 ? "e5m2 cache, q/out " : "", dt == PKV_DTYPE_F16 ? "f16" : "bf16",
       group, sink ? ", sinks" : "",
       window >= 0 ? ", window" : "", (long long)info.chunk_keys,
       (long long)info.num_items, info.num_split,
       (long long)(o->stat_mma_plan - n0), err, lerr);
    pkv_buffer_destroy(ws);
    pkv_plan_destroy(pl);
  }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 6; j++) pkv_buffer_destroy(b[i][j]);
  pkv_buffer_destroy(sld), pkv_buffer_destroy(qid);
  pkv_buffer_destroy(slr), pkv_buffer_destroy(qir);
  free(k), free(v), free(q), free(od), free(orf), free(ld), free(lr);
}

static void mma_cases(pkv_context *rc) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_OPENCL;
  pkv_context *c = NULL;
  if (pkv_context_create(&cd, &c) != PKV_OK) {
    ok(0, "mma kernel: OpenCL context: %s", pkv_last_error(c));
    return;
  }
  mma_case(c, rc, PKV_DTYPE_F16, PKV_DTYPE_F16, 4, 0, -1);
  mma_case(c, rc, PKV_DTYPE_F16, PKV_DTYPE_F16, 8, 1, 100);
  mma_case(c, rc, PKV_DTYPE_BF16, PKV_DTYPE_BF16, 4, 1, -1);
  mma_case(c, rc, PKV_DTYPE_BF16, PKV_DTYPE_BF16, 8, 0, 100);
  mma_case(c, rc, PKV_DTYPE_FP8_E5M2, PKV_DTYPE_F16, 4, 1, -1);
  mma_case(c, rc, PKV_DTYPE_FP8_E5M2, PKV_DTYPE_BF16, 8, 0, 100);
  pkv_context_destroy(c);
}

int main(void) {
  int n = 0;
  if (!pkv_backend_available(PKV_BACKEND_OPENCL) ||
      pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &n) != PKV_OK || n == 0) {
    plan_skip_all("no OpenCL device");
    return 0;
  }
  for (int h = 0; h < NQ; h++) {
    slopes[h] = 0.5f / (float)(h + 1);
    sinks[h] = 0.25f * (float)h - 1.0f;
  }
  host_data();
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context *cpu = NULL;
  side ref;
  if (pkv_context_create(&cd, &cpu) != PKV_OK || !side_make(&ref, cpu)) {
    ok(0, "CPU reference context: %s", pkv_last_error(cpu));
    return done_testing();
  }
  setenv("PKV_KERNELS", "cpu", 1);
  one_backend(&ref, "cpu-shaped");
  setenv("PKV_KERNELS", "gpu", 1);
  one_backend(&ref, "gpu-shaped");
  setenv("PKV_KERNELS", "mma", 1);
  setenv("PKV_FRAG", "1", 1);
  mma_cases(cpu);
  unsetenv("PKV_FRAG");
  unsetenv("PKV_KERNELS");
  side_free(&ref);
  pkv_context_destroy(cpu);
  free(hk), free(hv), free(hk2), free(hv2), free(hq);
  return done_testing();
}
