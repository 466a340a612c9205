/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel-level layer without a pkv_cache: the test allocates the K/V
 * pools (NHD with padded rows, padding filled with NaN so that a stray
 * read shows), a dense and a CSR table, a fused QKV buffer whose q slice is
 * strided, and a strided bf16 output over the f16 pool. On the CPU backend
 * the result is compared with attention computed here in double; on every
 * OpenCL device with the CPU backend's (the reference). Then the bad-input
 * rules: each a distinct status naming the argument, nothing written. */
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D 64
#define NKV 2
#define G 2
#define NQ (NKV * G)
#define PS 8
#define NPAGES 24
#define NSEQ 4
#define QKV_ROW ((NQ + 2 * NKV) * D) /* fused [q heads][k heads][v heads] */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) / 4503599627370496.0 - 1.0);
}

/* Pool layout: NHD rows with pad elements after each token's heads. */
typedef struct layout {
  int64_t ts, hs, ps, elems;
} layout;

static layout make_layout(int pad) {
  layout l;
  l.hs = D;
  l.ts = NKV * D + pad;
  l.ps = PS * l.ts + 8;
  l.elems = NPAGES * l.ps;
  return l;
}

/* Host data shared by every backend. */
static const int32_t kv_len[NSEQ] = {37, 1, 50, 0};
static const int32_t q_prefill[NSEQ] = {5, 1, 7, 0};
static int32_t pages[NSEQ][8];
static float sinks[NQ];
static uint16_t *qkv_h; /* f16 [T][QKV_ROW] */
static int32_t max_tokens = 16;

static void fill_pool(uint16_t *pool, const layout *l) {
  float *f = malloc(sizeof(float) * (size_t)l->elems);
  for (int64_t i = 0; i < l->elems; i++) f[i] = NAN;
  for (int p = 0; p < NPAGES; p++)
    for (int t = 0; t < PS; t++)
      for (int h = 0; h < NKV; h++)
        for (int d = 0; d < D; d++)
          f[p * l->ps + t * l->ts + h * l->hs + d] = urand();
  pkv_convert_from_f32(PKV_DTYPE_F16, f, pool, (size_t)l->elems);
  free(f);
}

static float f16(const uint16_t *p, int64_t i) {
  float f;
  pkv_convert_to_f32(PKV_DTYPE_F16, p + i, &f, 1);
  return f;
}

/* Attention computed here: causal (bottom-right), sinks in the
 * denominator, out in double. */
static void reference(const uint16_t *kp, const uint16_t *vp, const layout *l,
                      const int32_t *ql, int use_sinks, double *out,
                      double *lse) {
  int tok = 0;
  const double scale = 1.0 / sqrt((double)D);
  for (int s = 0; s < NSEQ; s++)
    for (int i = 0; i < ql[s]; i++, tok++)
      for (int hq = 0; hq < NQ; hq++) {
        int kvh = hq / G, qpos = i + kv_len[s] - ql[s];
        double q[D], acc[D] = {0}, lg[64];
        for (int d = 0; d < D; d++) q[d] = f16(qkv_h, (int64_t)tok * QKV_ROW + hq * D + d);
        double m = use_sinks ? sinks[hq] : -INFINITY;
        int n = 0;
        for (int j = 0; j <= qpos && j < kv_len[s]; j++, n++) {
          int64_t off = pages[s][j / PS] * l->ps + (j % PS) * l->ts + kvh * l->hs;
          double dot = 0;
          for (int d = 0; d < D; d++) dot += q[d] * f16(kp, off + d);
          lg[j] = dot * scale;
          if (lg[j] > m) m = lg[j];
        }
        double den = use_sinks ? exp(sinks[hq] - m) : 0.0;
        for (int j = 0; j < n; j++) {
          int64_t off = pages[s][j / PS] * l->ps + (j % PS) * l->ts + kvh * l->hs;
          double p = exp(lg[j] - m);
          den += p;
          for (int d = 0; d < D; d++) acc[d] += p * f16(vp, off + d);
        }
        for (int d = 0; d < D; d++)
          out[((int64_t)tok * NQ + hq) * D + d] = den > 0 ? acc[d] / den : 0.0;
        lse[tok * NQ + hq] = den > 0 ? m + log(den) : -INFINITY;
      }
}

static pkv_buffer *up(pkv_context *c, const void *src, size_t bytes) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(c, bytes, &b) != PKV_OK) return NULL;
  if (src) pkv_buffer_upload(b, 0, src, bytes);
  return b;
}

/* Everything one backend needs, uploaded from the host data. */
typedef struct env {
  pkv_context *c;
  layout l;
  uint16_t *kh, *vh;
  pkv_buffer *k, *v, *qkv, *out, *lse;
  pkv_buffer *bt, *sl, *qi, *kvi, *kvx, *kvl;
  int32_t h_bt[NSEQ * 8], h_sl[NSEQ], h_qi[NSEQ + 1], h_kvi[NSEQ + 1],
      h_kvx[NSEQ * 8], h_kvl[NSEQ];
  int64_t nidx;
  int32_t ntok, max_q;
} env;

#define OUT_TS (NQ * D + 32) /* bf16 output rows padded */
#define OUT_BYTES ((size_t)max_tokens * OUT_TS * 2)

static void env_tables(env *e, const int32_t *ql) {
  e->h_qi[0] = e->h_kvi[0] = 0;
  e->max_q = 0;
  for (int s = 0; s < NSEQ; s++) {
    int np = (kv_len[s] + PS - 1) / PS;
    for (int p = 0; p < 8; p++) e->h_bt[s * 8 + p] = p < np ? pages[s][p] : 0;
    for (int p = 0; p < np; p++) e->h_kvx[e->h_kvi[s] + p] = pages[s][p];
    e->h_kvi[s + 1] = e->h_kvi[s] + np;
    e->h_kvl[s] = np ? kv_len[s] - (np - 1) * PS : 0;
    e->h_sl[s] = kv_len[s];
    e->h_qi[s + 1] = e->h_qi[s] + ql[s];
    if (ql[s] > e->max_q) e->max_q = ql[s];
  }
  e->nidx = e->h_kvi[NSEQ];
  e->ntok = e->h_qi[NSEQ];
  pkv_buffer_upload(e->bt, 0, e->h_bt, sizeof e->h_bt);
  pkv_buffer_upload(e->sl, 0, e->h_sl, sizeof e->h_sl);
  pkv_buffer_upload(e->qi, 0, e->h_qi, sizeof e->h_qi);
  pkv_buffer_upload(e->kvi, 0, e->h_kvi, sizeof e->h_kvi);
  pkv_buffer_upload(e->kvx, 0, e->h_kvx, sizeof e->h_kvx);
  pkv_buffer_upload(e->kvl, 0, e->h_kvl, sizeof e->h_kvl);
}

static int env_init(env *e, pkv_context *c, int pad) {
  memset(e, 0, sizeof *e);
  e->c = c;
  e->l = make_layout(pad);
  size_t pb = (size_t)e->l.elems * 2;
  e->kh = malloc(pb);
  e->vh = malloc(pb);
  uint64_t save = rng;
  rng = 0x1234567ull + (uint64_t)pad; /* same pools on every backend */
  fill_pool(e->kh, &e->l);
  fill_pool(e->vh, &e->l);
  rng = save;
  e->k = up(c, e->kh, pb);
  e->v = up(c, e->vh, pb);
  e->qkv = up(c, qkv_h, (size_t)max_tokens * QKV_ROW * 2);
  e->out = up(c, NULL, OUT_BYTES);
  e->lse = up(c, NULL, sizeof(float) * (size_t)max_tokens * NQ);
  e->bt = up(c, NULL, sizeof e->h_bt);
  e->sl = up(c, NULL, sizeof e->h_sl);
  e->qi = up(c, NULL, sizeof e->h_qi);
  e->kvi = up(c, NULL, sizeof e->h_kvi);
  e->kvx = up(c, NULL, sizeof e->h_kvx);
  e->kvl = up(c, NULL, sizeof e->h_kvl);
  return e->k && e->v && e->qkv && e->out && e->lse && e->bt && e->sl &&
         e->qi && e->kvi && e->kvx && e->kvl;
}

static void env_free(env *e) {
  pkv_buffer *all[] = {e->k, e->v, e->qkv, e->out, e->lse, e->bt,
                       e->sl, e->qi, e->kvi, e->kvx, e->kvl};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pkv_buffer_destroy(all[i]);
  free(e->kh);
  free(e->vh);
}

static void view_of(const env *e, pkv_kv_view *v) {
  pkv_kv_view_init(v);
  v->k = e->k;
  v->v = e->v;
  v->page_size = PS;
  v->num_kv_heads = NKV;
  v->head_dim = D;
  v->num_pages = NPAGES;
  v->dtype = PKV_DTYPE_F16;
  v->page_stride = e->l.ps;
  v->token_stride = e->l.ts;
  v->head_stride = e->l.hs;
}

static void table_of(const env *e, int csr, int host, pkv_kv_table *t) {
  pkv_kv_table_init(t);
  t->kind = csr ? PKV_TABLE_CSR : PKV_TABLE_DENSE;
  t->num_seqs = NSEQ;
  t->num_tokens = e->ntok;
  t->max_q_len = e->max_q;
  t->max_kv_len = 50;
  t->q_indptr = e->qi;
  if (csr) {
    t->kv_indptr = e->kvi;
    t->kv_indices = e->kvx;
    t->kv_last_page_len = e->kvl;
    t->num_kv_indices = e->nidx;
  } else {
    t->block_table = e->bt;
    t->seq_lens = e->sl;
    t->max_pages = 8;
  }
  if (host) {
    t->host_q_indptr = e->h_qi;
    t->host_block_table = e->h_bt;
    t->host_seq_lens = e->h_sl;
    t->host_kv_indptr = e->h_kvi;
    t->host_kv_indices = e->h_kvx;
    t->host_kv_last_page_len = e->h_kvl;
  }
}

static void q_of(const env *e, pkv_tensor *q, pkv_tensor *o) {
  pkv_tensor_init(q);
  q->buf = e->qkv;
  q->dtype = PKV_DTYPE_F16;
  q->token_stride = QKV_ROW;
  pkv_tensor_init(o);
  o->buf = e->out;
  o->dtype = PKV_DTYPE_BF16;
  o->offset = 64; /* past a bf16 canary of 32 elements */
  o->token_stride = OUT_TS;
}

/* Runs attention; *out gets [ntok][NQ][D] in f32, lse [ntok][NQ]. The
 * output buffer is NaN first, so an unwritten element shows. */
static pkv_status run(env *e, int csr, int host, int use_sinks, float *out,
                      float *lse) {
  pkv_kv_view v;
  pkv_kv_table t;
  pkv_tensor q, o;
  view_of(e, &v);
  table_of(e, csr, host, &t);
  q_of(e, &q, &o);
  uint16_t *nan = malloc(OUT_BYTES);
  memset(nan, 0xff, OUT_BYTES);
  pkv_buffer_upload(e->out, 0, nan, OUT_BYTES);
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  p.sinks = use_sinks ? sinks : NULL;
  pkv_status st = pkv_kv_attention(e->c, &v, &t, &p, &q, &o, e->lse);
  pkv_context_synchronize(e->c);
  pkv_buffer_download(e->out, 0, nan, OUT_BYTES);
  for (int i = 0; i < e->ntok; i++)
    pkv_convert_to_f32(PKV_DTYPE_BF16, nan + 32 + (size_t)i * OUT_TS,
                       out + (size_t)i * NQ * D, NQ * D);
  /* the canary before the offset and the row padding stay NaN */
  int untouched = 1;
  for (int i = 0; i < 32; i++) untouched &= nan[i] == 0xffff;
  for (int i = 0; i < e->ntok; i++)
    for (int k = NQ * D; k < OUT_TS; k++)
      untouched &= nan[32 + (size_t)i * OUT_TS + k] == 0xffff;
  if (!untouched) st = PKV_ERR_DEVICE;
  pkv_buffer_download(e->lse, 0, lse, sizeof(float) * (size_t)e->ntok * NQ);
  free(nan);
  return st;
}

static double worst(const float *a, const double *b, size_t n) {
  double w = 0;
  for (size_t i = 0; i < n; i++) {
    double err = fabs(a[i] - b[i]) / (1e-2 + 1e-2 * fabs(b[i]));
    if (!(err <= w)) w = err; /* NaN wins */
  }
  return w;
}

static double worst_f(const float *a, const float *b, size_t n) {
  double w = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(a[i]) && a[i] == b[i]) continue;
    double err = fabs(a[i] - b[i]) / (1e-2 + 1e-2 * fabs(b[i]));
    if (!(err <= w)) w = err;
  }
  return w;
}

#define NOUT ((size_t)16 * NQ * D)
static float cpu_out[2][2][NOUT], cpu_lse[2][2][16 * NQ]; /* [prefill][pad] */

/* Every case on one backend: decode and prefill, dense and CSR, sinks,
 * aligned and misaligned rows. */
static void attention_cases(pkv_context *c, const char *name, int is_cpu) {
  for (int pad = 0; pad < 2; pad++) {
    env e;
    if (!env_init(&e, c, pad ? 3 : 8)) {
      ok(0, "%s: buffers for the test", name);
      continue;
    }
    for (int pre = 0; pre < 2; pre++) {
      static const int32_t decode_q[NSEQ] = {1, 1, 1, 1};
      const int32_t *ql = pre ? q_prefill : decode_q;
      env_tables(&e, ql);
      static float out[2][NOUT], lse[2][16 * NQ];
      pkv_status s1 = run(&e, 1, !is_cpu, 1, out[1], lse[1]);
      pkv_status s0 = run(&e, 0, 0, 1, out[0], lse[0]);
      const char *what = pre ? "prefill" : "decode";
      const char *al = pad ? "misaligned rows" : "aligned rows";
      const size_t n = (size_t)e.ntok * NQ * D, nl = (size_t)e.ntok * NQ;
      ok(s0 == PKV_OK && s1 == PKV_OK && memcmp(out[0], out[1], n * 4) == 0 &&
             memcmp(lse[0], lse[1], nl * 4) == 0,
         "%s %s, %s: CSR table and dense table give the same bits (%s)", name,
         what, al, pkv_last_error(c));
      if (is_cpu) {
        double *ref = malloc(n * sizeof(double)), *rl = malloc(nl * sizeof(double));
        reference(e.kh, e.vh, &e.l, ql, 1, ref, rl);
        double w = worst(out[1], ref, n), wl = 0;
        for (size_t i = 0; i < nl; i++) {
          double err = isinf(rl[i]) ? (lse[1][i] == rl[i] ? 0 : 1e9)
                                    : fabs(lse[1][i] - rl[i]) / 1e-3;
          if (!(err <= wl)) wl = err;
        }
        ok(w <= 1 && wl <= 1,
           "cpu %s, %s: strided f16 q, bf16 out, sinks, CSR match attention "
           "in double (worst %.3g, lse %.3g of tolerance)",
           what, al, w, wl);
        memcpy(cpu_out[pre][pad], out[1], n * 4);
        memcpy(cpu_lse[pre][pad], lse[1], nl * 4);
        /* without sinks: the LSE is the plain one, and differs */
        pkv_status s2 = run(&e, 1, 0, 0, out[0], lse[0]);
        reference(e.kh, e.vh, &e.l, ql, 0, ref, rl);
        ok(s2 == PKV_OK && worst(out[0], ref, n) <= 1 &&
               memcmp(out[0], out[1], n * 4) != 0,
           "cpu %s, %s: without sinks matches too, and differs from with",
           what, al);
        free(ref);
        free(rl);
      } else {
        double w = worst_f(out[1], cpu_out[pre][pad], n),
               wl = worst_f(lse[1], cpu_lse[pre][pad], nl);
        ok(w <= 1 && wl <= 1,
           "%s %s, %s: matches the CPU reference (worst %.3g, lse %.3g of "
           "tolerance)",
           name, what, al, w, wl);
      }
    }
    env_free(&e);
  }
}

/* The write through a strided slice of the fused QKV buffer. */
static void write_case(pkv_context *c, const char *name) {
  env e;
  if (!env_init(&e, c, 8)) {
    ok(0, "%s: write buffers", name);
    return;
  }
  int64_t slots[5] = {3, -1, 17, 100, 191};
  pkv_buffer *sb = up(c, slots, sizeof slots);
  pkv_kv_view v;
  view_of(&e, &v);
  pkv_tensor k, vv;
  pkv_tensor_init(&k);
  k.buf = e.qkv;
  k.dtype = PKV_DTYPE_F16;
  k.offset = NQ * D * 2;
  k.token_stride = QKV_ROW;
  vv = k;
  vv.offset = (NQ + NKV) * D * 2;
  pkv_status st = pkv_kv_write(c, &v, sb, NULL, 5, &k, &vv);
  pkv_context_synchronize(c);
  size_t pb = (size_t)e.l.elems * 2;
  uint16_t *kg = malloc(pb), *vg = malloc(pb);
  pkv_buffer_download(e.k, 0, kg, pb);
  pkv_buffer_download(e.v, 0, vg, pb);
  /* expected: the host pools with the rows written */
  for (int i = 0; i < 5; i++) {
    if (slots[i] < 0) continue;
    int64_t pg = slots[i] / PS, t = slots[i] % PS;
    for (int h = 0; h < NKV; h++)
      for (int d = 0; d < D; d++) {
        int64_t dst = pg * e.l.ps + t * e.l.ts + h * e.l.hs + d;
        e.kh[dst] = qkv_h[(size_t)i * QKV_ROW + (NQ + h) * D + d];
        e.vh[dst] = qkv_h[(size_t)i * QKV_ROW + (NQ + NKV + h) * D + d];
      }
  }
  ok(st == PKV_OK && memcmp(kg, e.kh, pb) == 0 && memcmp(vg, e.vh, pb) == 0,
     "%s: pkv_kv_write from strided k/v slices lands bitwise in the padded "
     "pool, slot -1 skipped, padding untouched (%s)",
     name, pkv_last_error(c));
  /* A slot past the pool on the host list: refused before any write. */
  int64_t bad[5] = {3, 4, 5, 192, 6};
  pkv_buffer_upload(sb, 0, bad, sizeof bad); /* the CPU reads this one */
  st = pkv_kv_write(c, &v, sb, bad, 5, &k, &vv);
  pkv_context_synchronize(c);
  pkv_buffer_download(e.k, 0, kg, pb);
  ok(st == PKV_ERR_RANGE && strstr(pkv_last_error(c), "slots[3]") &&
         memcmp(kg, e.kh, pb) == 0,
     "%s: a host slot past num_pages*page_size is PKV_ERR_RANGE naming it, "
     "nothing written: %s",
     name, pkv_last_error(c));

  /* bf16 k/v into the f16 pool: converted through f32, nearest even */
  size_t ne = (size_t)max_tokens * QKV_ROW;
  float *f = malloc(ne * sizeof(float));
  uint16_t *bf = malloc(ne * 2);
  pkv_convert_to_f32(PKV_DTYPE_F16, qkv_h, f, ne);
  for (size_t i = 0; i < ne; i++) f[i] = f[i] * 1.37f + 0.01f; /* off the f16 grid */
  pkv_convert_from_f32(PKV_DTYPE_BF16, f, bf, ne);
  pkv_convert_to_f32(PKV_DTYPE_BF16, bf, f, ne);
  pkv_buffer *bb = up(c, bf, ne * 2);
  int64_t s2[2] = {40, 41};
  pkv_buffer_upload(sb, 0, s2, sizeof s2);
  k.buf = vv.buf = bb;
  k.dtype = vv.dtype = PKV_DTYPE_BF16;
  st = pkv_kv_write(c, &v, sb, s2, 2, &k, &vv);
  pkv_context_synchronize(c);
  pkv_buffer_download(e.k, 0, kg, pb);
  pkv_buffer_download(e.v, 0, vg, pb);
  for (int i = 0; i < 2; i++) {
    int64_t pg = s2[i] / PS, t = s2[i] % PS;
    for (int h = 0; h < NKV; h++) {
      int64_t dst = pg * e.l.ps + t * e.l.ts + h * e.l.hs;
      pkv_convert_from_f32(PKV_DTYPE_F16, f + (size_t)i * QKV_ROW + (NQ + h) * D,
                           e.kh + dst, D);
      pkv_convert_from_f32(PKV_DTYPE_F16,
                           f + (size_t)i * QKV_ROW + (NQ + NKV + h) * D,
                           e.vh + dst, D);
    }
  }
  ok(st == PKV_OK && memcmp(kg, e.kh, pb) == 0 && memcmp(vg, e.vh, pb) == 0,
     "%s: pkv_kv_write converts bf16 k/v into the f16 pool (nearest even), "
     "nothing else touched (%s)",
     name, pkv_last_error(c));
  vv.dtype = PKV_DTYPE_F16;
  ok(pkv_kv_write(c, &v, sb, s2, 2, &k, &vv) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(c), "v->dtype"),
     "%s: k and v of different dtypes are PKV_ERR_INVALID: %s", name,
     pkv_last_error(c));
  pkv_buffer_destroy(bb);
  free(bf);
  free(f);
  pkv_buffer_destroy(sb);
  free(kg);
  free(vg);
  env_free(&e);
}

static void expect(pkv_status got, pkv_status want, pkv_context *c,
                   const char *what, const char *needle) {
  const char *m = pkv_last_error(c);
  ok(got == want && strstr(m, needle) != NULL, "%s, %s: %s naming \"%s\": %s",
     pkv_backend_name(pkv_context_backend(c)), what, pkv_status_name(want),
     needle, m);
}

/* Item 6: bad views and tables; the output stays untouched. */
static void bad_input(pkv_context *c, const char *name, int is_cpu) {
  env e;
  if (!env_init(&e, c, 8)) {
    ok(0, "%s: buffers", name);
    return;
  }
  env_tables(&e, q_prefill);
  pkv_kv_view v;
  pkv_kv_table t;
  pkv_tensor q, o;
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  float out[NOUT], lse[16 * NQ];

  view_of(&e, &v);
  v.page_stride += 1; /* the last page now ends past the buffer */
  table_of(&e, 1, 1, &t);
  q_of(&e, &q, &o);
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_SIZE, c,
         "view strides past the K buffer", "view->k");
  view_of(&e, &v);
  v.num_pages = NPAGES + 1;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_SIZE, c,
         "view num_pages past the buffers", "view->k");
  view_of(&e, &v);
  v.token_stride = 10;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_INVALID, c,
         "view token stride below head_dim", "head_dim");
  view_of(&e, &v);
  v.struct_size = 0;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_INVALID, c,
         "view without struct_size", "struct_size");
  view_of(&e, &v);

  /* a page outside the pool in a host-checked table */
  int32_t keep = e.h_kvx[2];
  e.h_kvx[2] = NPAGES;
  if (is_cpu) pkv_buffer_upload(e.kvx, 0, e.h_kvx, sizeof e.h_kvx);
  expect(run(&e, 1, 1, 0, out, lse), PKV_ERR_RANGE, c,
         "CSR entry outside the pool (host table)", "outside the pool");
  e.h_kvx[2] = keep;
  pkv_buffer_upload(e.kvx, 0, e.h_kvx, sizeof e.h_kvx);
  keep = e.h_bt[8];
  e.h_bt[8] = -1;
  if (is_cpu) pkv_buffer_upload(e.bt, 0, e.h_bt, sizeof e.h_bt);
  expect(run(&e, 0, 1, 0, out, lse), PKV_ERR_RANGE, c,
         "block_table entry -1 (host table)", "page 0 is -1");
  e.h_bt[8] = keep;
  pkv_buffer_upload(e.bt, 0, e.h_bt, sizeof e.h_bt);

  /* seq_lens past its row */
  e.h_sl[1] = 8 * PS + 1;
  if (is_cpu) pkv_buffer_upload(e.sl, 0, e.h_sl, sizeof e.h_sl);
  expect(run(&e, 0, 1, 0, out, lse), PKV_ERR_INVALID, c,
         "seq_lens longer than the block_table row", "seq_lens[1]");
  e.h_sl[1] = kv_len[1];
  pkv_buffer_upload(e.sl, 0, e.h_sl, sizeof e.h_sl);

  /* kv_last_page_len out of 1..page_size */
  e.h_kvl[0] = PS + 1;
  if (is_cpu) pkv_buffer_upload(e.kvl, 0, e.h_kvl, sizeof e.h_kvl);
  expect(run(&e, 1, 1, 0, out, lse), PKV_ERR_INVALID, c,
         "kv_last_page_len past page_size", "kv_last_page_len[0]");
  e.h_kvl[0] = (int32_t)(kv_len[0] - 4 * PS);
  pkv_buffer_upload(e.kvl, 0, e.h_kvl, sizeof e.h_kvl);

  /* q too small, offset not a whole element, lse too small */
  table_of(&e, 1, 1, &t);
  q_of(&e, &q, &o);
  q.offset = (size_t)max_tokens * QKV_ROW * 2 - 64;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_SIZE, c,
         "q slice past its buffer", "q holds");
  q_of(&e, &q, &o);
  o.offset = 3;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_INVALID, c,
         "out offset inside an element", "out->offset");
  q_of(&e, &q, &o);
  t.max_q_len = 2;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_INVALID, c,
         "max_q_len below a query run", "max_q_len");
  float nan_sink[NQ] = {0, NAN, 0, 0};
  table_of(&e, 1, 1, &t);
  p.sinks = nan_sink;
  expect(pkv_kv_attention(c, &v, &t, &p, &q, &o, NULL), PKV_ERR_INVALID, c,
         "a NaN sink", "sinks[1]");
  p.sinks = NULL;

  /* Device tables the host cannot check: pages outside the pool, a
   * length past the row and a query run past num_tokens are bounded in
   * the kernel (no crash, no write outside out). */
  if (!is_cpu) {
    e.h_kvx[1] = 1 << 30;
    e.h_kvx[3] = -7;
    e.h_kvl[2] = 1000;
    e.h_qi[3] = 1000;
    pkv_buffer_upload(e.kvx, 0, e.h_kvx, sizeof e.h_kvx);
    pkv_buffer_upload(e.kvl, 0, e.h_kvl, sizeof e.h_kvl);
    pkv_buffer_upload(e.qi, 0, e.h_qi, sizeof e.h_qi);
    pkv_status st = run(&e, 1, 0, 0, out, lse);
    ok(st == PKV_OK,
       "%s: a device CSR table with pages outside the pool, a last-page "
       "length past the page and a q run past num_tokens runs bounded, "
       "nothing written outside out (%s)",
       name, pkv_status_name(st));
  } else {
    ok(1, "%s: device-side bounds are for device backends (the CPU checks "
          "every table)", name);
  }
  env_free(&e);
}

int main(void) {
  qkv_h = malloc((size_t)max_tokens * QKV_ROW * 2);
  float *f = malloc(sizeof(float) * (size_t)max_tokens * QKV_ROW);
  for (int i = 0; i < max_tokens * QKV_ROW; i++) f[i] = urand();
  pkv_convert_from_f32(PKV_DTYPE_F16, f, qkv_h, (size_t)max_tokens * QKV_ROW);
  free(f);
  for (int h = 0; h < NQ; h++) sinks[h] = 2.0f * urand();
  /* pages: a fixed scramble of the pool */
  int perm[NPAGES];
  for (int i = 0; i < NPAGES; i++) perm[i] = (i * 7 + 5) % NPAGES;
  int k = 0;
  for (int s = 0; s < NSEQ; s++)
    for (int p = 0; p < (kv_len[s] + PS - 1) / PS; p++) pages[s][p] = perm[k++];

  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  pkv_context *cpu = NULL;
  if (pkv_context_create(&d, &cpu) != PKV_OK) plan_skip_all("no CPU context");
  int ocl_n = 0;
  pkv_context *ocl = NULL;
  if (pkv_backend_available(PKV_BACKEND_OPENCL) &&
      pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &ocl_n) == PKV_OK &&
      ocl_n > 0) {
    d.backend = PKV_BACKEND_OPENCL;
    if (pkv_context_create(&d, &ocl) != PKV_OK) ocl = NULL;
  }
  plan(29 + (ocl ? 25 : 1));
  attention_cases(cpu, "cpu", 1);
  write_case(cpu, "cpu");
  bad_input(cpu, "cpu", 1);
  if (ocl) {
    attention_cases(ocl, "opencl", 0);
    write_case(ocl, "opencl");
    bad_input(ocl, "opencl", 0);
    pkv_context_destroy(ocl);
  } else {
    printf("ok %d - # SKIP no OpenCL device\n", ++tap_n);
  }
  pkv_context_destroy(cpu);
  free(qkv_h);
  return tap_failed ? 1 : 0;
}
