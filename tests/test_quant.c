/* SPDX-License-Identifier: Apache-2.0 */
/* Quantized K/V storage (fp8 e4m3 / e5m2 with per-(layer, kv head) scales).
 * The fp8 codes are checked exhaustively against a decoder written here
 * from the format's definition, and the rounding against a brute-force
 * nearest-code search (ties to the even code, saturation). Then a CPU
 * cache in each fp8 dtype: writes quantize f32 input (checked against the
 * brute force), prefill and decode attention equal attention computed
 * here in double over the dequantized pool, pages survive swap and
 * copy-on-write bit for bit, and the bad-input rules (bad scales, fp8 q)
 * give their own status and change nothing. */
#include "pagedkv.h"
#include "pkv_dlpack.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fmt {
  pkv_dtype dt;
  const char *name;
  int mbits, bias;
  int has_inf; /* e5m2: exponent all ones is Inf/NaN; e4m3fn: only S.1111.111 NaN */
  double max;
  int is_int8; /* PKV_DTYPE_INT8: codes with a scale per (token, head) */
} fmt;

static const fmt FMTS[3] = {
    {PKV_DTYPE_FP8_E4M3, "e4m3", 3, 7, 0, 448.0, 0},
    {PKV_DTYPE_FP8_E5M2, "e5m2", 2, 15, 1, 57344.0, 0},
    {PKV_DTYPE_INT8, "int8", 0, 0, 0, 127.0, 1},
};

/* The value of a code from the format's definition; NAN for NaN codes,
 * +-INFINITY for e5m2's Inf. */
static double decode(const fmt *f, unsigned c) {
  int sign = (c >> 7) & 1, e = (int)((c & 0x7f) >> f->mbits);
  int m = (int)(c & ((1u << f->mbits) - 1));
  int emax = (1 << (7 - f->mbits)) - 1;
  double v;
  if (f->has_inf && e == emax) v = m ? NAN : INFINITY;
  else if (!f->has_inf && e == emax && m == (1 << f->mbits) - 1) v = NAN;
  else if (e == 0) v = ldexp((double)m, 1 - f->bias - f->mbits);
  else v = ldexp(1.0 + ldexp((double)m, -f->mbits), e - f->bias);
  return sign ? -v : v;
}

/* Nearest finite code to x by search: ties to the even code (mantissa lsb
 * 0), beyond +-max saturated, NaN -> NAN marker (returns 256). */
static unsigned nearest(const fmt *f, double x) {
  const int neg = signbit(x) != 0;
  if (isnan(x)) return 256;
  unsigned best = 0;
  double bd = INFINITY;
  for (unsigned c = 0; c < 256; c++) {
    double v = decode(f, c);
    if (!isfinite(v)) continue;
    if (v == 0.0 && (c & 0x80)) continue; /* +0 for zero; sign handled below */
    double d = fabs(v - x);
    if (d < bd || (d == bd && (c & 1) == 0)) {
      bd = d;
      best = c;
    }
  }
  if (neg && decode(f, best) == 0.0) best |= 0x80; /* -0 keeps its sign */
  return best;
}

static unsigned enc(const fmt *f, float x) {
  uint8_t b = 0;
  pkv_convert_from_f32(f->dt, &x, &b, 1);
  return b;
}

static float dec(const fmt *f, uint8_t b) {
  float x = 0;
  pkv_convert_to_f32(f->dt, &b, &x, 1);
  return x;
}

static void test_codes(const fmt *f) {
  int bad_dec = 0, bad_rt = 0, bad_rne = 0, bad_sat = 0, bad_search = 0;
  for (unsigned c = 0; c < 256; c++) {
    double want = decode(f, c);
    float got = dec(f, (uint8_t)c);
    if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want))
      bad_dec++;
    unsigned back = enc(f, got);
    if (isnan(want)) {
      if (!isnan(dec(f, (uint8_t)back))) bad_rt++;
    } else if (isinf(want)) {
      /* Inf saturates to +-max (documented) */
      if (dec(f, (uint8_t)back) != (want > 0 ? f->max : -f->max)) bad_rt++;
    } else if (back != c) {
      bad_rt++;
    }
  }
  /* Round to nearest even between every pair of neighbouring finite
   * codes, both signs: the midpoint, and one f32 ulp either side. */
  for (unsigned c = 0; c < 0x7f; c++) {
    double a = decode(f, c), b = decode(f, c + 1);
    if (!isfinite(a) || !isfinite(b)) continue;
    for (int s = 0; s < 2; s++) {
      float mid = (float)((a + b) / 2), lo = nextafterf(mid, 0.0f),
            hi = nextafterf(mid, INFINITY);
      unsigned even = (c & 1) ? c + 1 : c, sg = s ? 0x80u : 0u;
      if (s) mid = -mid, lo = -lo, hi = -hi;
      if (enc(f, mid) != (even | sg) || enc(f, lo) != (c | sg) ||
          enc(f, hi) != ((c + 1) | sg))
        bad_rne++;
    }
  }
  /* Saturation: past max, at the midpoint above max, huge, Inf. */
  const float big[] = {(float)f->max * 1.01f, (float)f->max * 1.0625f + 1.0f,
                       1e30f, 3.0e38f, INFINITY};
  unsigned maxc = nearest(f, f->max);
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
    if (enc(f, big[i]) != maxc || enc(f, -big[i]) != (maxc | 0x80)) bad_sat++;
  if (!isnan(dec(f, (uint8_t)enc(f, NAN)))) bad_sat++;
  /* Random f32 values (normal, subnormal, out of range) against the
   * brute-force search. */
  uint64_t r = 0x1234567u;
  for (int i = 0; i < 20000; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    double e = ldexp(1.0, (int)((r >> 33) % 40) - 24 + (f->bias > 7 ? 0 : 4));
    float x = (float)(((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0) *
                      e * 8.0);
    if (enc(f, x) != nearest(f, x)) bad_search++;
  }
  ok(bad_dec == 0, "%s: all 256 codes decode to the format's values (%d bad)",
     f->name, bad_dec);
  ok(bad_rt == 0,
     "%s: every code round-trips (NaN stays NaN, Inf saturates) (%d bad)",
     f->name, bad_rt);
  ok(bad_rne == 0, "%s: ties go to the even code, neighbours round to nearest "
                   "(%d bad pairs)",
     f->name, bad_rne);
  ok(bad_sat == 0, "%s: beyond max and +-Inf saturate to +-%g, NaN stays NaN",
     f->name, f->max);
  ok(bad_search == 0, "%s: 20000 random f32 equal the brute-force nearest code "
                      "(%d differ)",
     f->name, bad_search);
}

/* ------------------------------------------------------------ cache */

#define NL 2
#define NKV 2
#define D 64
#define G 2
#define NQ (NKV * G)
#define PS 4
#define NPAGES 32

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) / 4503599627370496.0 - 1.0);
}

/* One value of K or V of (token, head, d): random within +-3, with an
 * outlier per row, an all-zero row and values beyond the fp8 range. */
static float kv_value(int tok, int h, int d, int which) {
  if (tok == 3) return 0.0f;                       /* zero row */
  if (d == (tok * 7 + h) % D) return which ? -1e6f : 2e4f; /* outlier */
  return 3.0f * urand();
}

/* Element d of (page, kv head h, token t) dequantized: fp8 code times the
 * head's scale, or int8 code times the (token, head) scale of the page. */
static double deq(const fmt *f, const uint8_t *pool,
                  const pkv_cache_geometry *g, const float *sc, int64_t page,
                  int h, int64_t t, int d) {
  const uint8_t b = pool[page * g->page_stride + h * g->head_stride +
                         t * g->token_stride + d];
  if (!f->is_int8) return decode(f, b) * sc[h];
  float s;
  memcpy(&s, pool + page * g->page_stride + g->scale_offset +
                 ((int64_t)h * g->page_size + t) * 4,
         4);
  return (double)(int8_t)b * s;
}

/* Attention over the dequantized pool, in double: one query row. */
static void ref_row(const fmt *f, const uint8_t *kp, const uint8_t *vp,
                    const pkv_cache_geometry *g, const float *ks,
                    const float *vs, const int32_t *pages, int64_t nkeys,
                    int h, const float *q, double *out, double *smax) {
  const double scale = 1.0 / sqrt((double)D);
  double *l = malloc(sizeof(double) * (size_t)(nkeys ? nkeys : 1));
  double m = -INFINITY, sum = 0;
  int kvh = h / G;
  for (int64_t j = 0; j < nkeys; j++) {
    double s = 0, sa = 0;
    for (int d = 0; d < D; d++) {
      const double t = (double)q[d] * deq(f, kp, g, ks, pages[j / PS], kvh, j % PS, d);
      s += t;
      sa += fabs(t);
    }
    if (sa * scale > *smax) *smax = sa * scale;
    l[j] = s * scale;
    if (l[j] > m) m = l[j];
  }
  for (int d = 0; d < D; d++) out[d] = 0;
  for (int64_t j = 0; j < nkeys; j++) {
    double p = exp(l[j] - m);
    sum += p;
    for (int d = 0; d < D; d++)
      out[d] += p * deq(f, vp, g, vs, pages[j / PS], kvh, j % PS, d);
  }
  for (int d = 0; d < D; d++) out[d] /= sum;
  free(l);
}

/* A host copy of a whole buffer (malloc'd). */
static void *host_copy(pkv_buffer *b) {
  size_t n = pkv_buffer_size(b);
  void *h = malloc(n);
  pkv_buffer_download(b, 0, h, n);
  return h;
}

/* An int8 row against its definition: scale = max|x|/127 (f32), every
 * code within half a step of x / scale (the nearest integer; ties are
 * measure-zero for random input), |code| <= 127 and 127 reached by the
 * largest element. Returns 1 when the row breaks any of it. */
static int int8_row_bad(const uint8_t *pool, const pkv_cache_geometry *g,
                        int64_t slot, int h, const float *x) {
  const int64_t page = slot / PS, t = slot % PS;
  float s;
  memcpy(&s, pool + page * g->page_stride + g->scale_offset +
                 ((int64_t)h * g->page_size + t) * 4,
         4);
  double amax = 0;
  for (int d = 0; d < D; d++)
    if (fabs(x[d]) > amax) amax = fabs(x[d]);
  /* the quotient rounded to f32 (an f32 division on a device: within an
   * ulp) */
  if (!(fabs((double)s - amax / 127.0) <= 1.2e-7 * amax / 127.0)) return 1;
  int top = 0;
  for (int d = 0; d < D; d++) {
    int c = (int8_t)pool[page * g->page_stride + h * g->head_stride +
                         t * g->token_stride + d];
    if (c < -127 || c > 127) return 1;
    if (s == 0) {
      if (c != 0) return 1;
      continue;
    }
    if (fabs((double)c - x[d] / (double)s) > 0.5 + 1e-6) return 1;
    if (c == 127 || c == -127) top = 1;
  }
  return s != 0 && !top;
}

typedef struct world {
  pkv_context *ctx;
  /* output tolerance against ref_row, relative to 1 + |ref|: tol plus
   * score_eps times the largest sum of |q_d k_d| * scale of the row (an
   * f32 backend's rounding of the scores, which the softmax turns into a
   * relative error of the weights) */
  double tol, score_eps;
  pkv_cache *c;
  pkv_batch *b;
  pkv_seq_id s[2];
} world;

/* Writes the batch's new tokens into `layer` (f32 input, quantized by the
 * library) and runs attention with f32 q/out; returns the max abs error
 * against ref_row, and (in *qerr) the count of stored codes that differ
 * from the brute-force quantization of value / scale. */
static double step(const fmt *f, world *w, int layer, const int32_t *q_lens,
                   int *first_tok, int *qerr) {
  pkv_batch_view bv;
  pkv_batch_view_init(&bv);
  pkv_batch_device bd;
  pkv_batch_device_init(&bd);
  pkv_batch_get_view(w->b, &bv);
  pkv_batch_get_device(w->b, &bd);
  const int64_t T = bv.num_tokens;
  pkv_buffer *kb, *vb, *qb, *ob;
  pkv_buffer_create(w->ctx, (size_t)T * NKV * D * 4, &kb);
  pkv_buffer_create(w->ctx, (size_t)T * NKV * D * 4, &vb);
  pkv_buffer_create(w->ctx, (size_t)T * NQ * D * 4, &qb);
  pkv_buffer_create(w->ctx, (size_t)T * NQ * D * 4, &ob);
  float *k = malloc((size_t)T * NKV * D * 4), *v = malloc((size_t)T * NKV * D * 4);
  float *q = malloc((size_t)T * NQ * D * 4);
  int tok = 0;
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < q_lens[s]; i++, tok++)
      for (int h = 0; h < NKV; h++)
        for (int d = 0; d < D; d++) {
          k[(tok * NKV + h) * D + d] = kv_value(first_tok[s] + i, h, d, 0);
          v[(tok * NKV + h) * D + d] = kv_value(first_tok[s] + i, h, d, 1);
        }
  for (int64_t i = 0; i < T * NQ * D; i++) q[i] = urand();
  pkv_buffer_upload(kb, 0, k, (size_t)T * NKV * D * 4);
  pkv_buffer_upload(vb, 0, v, (size_t)T * NKV * D * 4);
  pkv_buffer_upload(qb, 0, q, (size_t)T * NQ * D * 4);
  pkv_kv_view view;
  pkv_kv_table table;
  pkv_tensor kt, vt, qt, ot;
  pkv_kv_view_init(&view);
  pkv_kv_table_init(&table);
  pkv_tensor_init(&kt);
  pkv_tensor_init(&vt);
  pkv_tensor_init(&qt);
  pkv_tensor_init(&ot);
  kt.buf = kb, vt.buf = vb, qt.buf = qb, ot.buf = ob;
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  p.causal = 1;
  pkv_status st = pkv_cache_kv_view(w->c, layer, &view);
  if (st == PKV_OK) st = pkv_batch_get_table(w->b, PKV_TABLE_DENSE, &table);
  if (st == PKV_OK)
    st = pkv_kv_write(w->ctx, &view, bd.slot_mapping, NULL, T, &kt, &vt);
  if (st == PKV_OK) st = pkv_kv_attention(w->ctx, &view, &table, &p, &qt, &ot, NULL);
  double err = st == PKV_OK ? 0 : INFINITY;
  if (st != PKV_OK) diag("step: %s: %s", pkv_status_name(st), pkv_last_error(w->ctx));
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(w->c, &g);
  uint8_t *kp = host_copy(view.k), *vp = host_copy(view.v);
  float *o = host_copy(ob);
  float ks[NKV], vs[NKV];
  pkv_cache_get_kv_scales(w->c, layer, ks, vs);
  tok = 0;
  *qerr = 0;
  for (int s = 0; s < 2 && st == PKV_OK; s++) {
    int32_t pages[64];
    int64_t np = 0, len = 0;
    pkv_seq_pages(w->c, w->s[s], pages, 64, &np);
    pkv_seq_length(w->c, w->s[s], &len);
    for (int i = 0; i < q_lens[s]; i++, tok++) {
      const int64_t pos = len - q_lens[s] + i;
      const int64_t slot = bv.slot_mapping[tok];
      for (int h = 0; h < NKV; h++) {
        int64_t base = (slot / PS) * g.page_stride + h * g.head_stride +
                       (slot % PS) * g.token_stride;
        if (f->is_int8) {
          *qerr += int8_row_bad(kp, &g, slot, h, k + (tok * NKV + h) * D) +
                   int8_row_bad(vp, &g, slot, h, v + (tok * NKV + h) * D);
          continue;
        }
        for (int d = 0; d < D; d++) {
          if (kp[base + d] != nearest(f, (double)(k[(tok * NKV + h) * D + d] / ks[h])) ||
              vp[base + d] != nearest(f, (double)(v[(tok * NKV + h) * D + d] / vs[h])))
            (*qerr)++;
        }
      }
      for (int h = 0; h < NQ; h++) {
        double r[D], smax = 0;
        ref_row(f, kp, vp, &g, ks, vs, pages, pos + 1, h, q + (tok * NQ + h) * D, r,
                &smax);
        for (int d = 0; d < D; d++) {
          double e = fabs(r[d] - (double)o[(tok * NQ + h) * D + d]) /
                     (1.0 + fabs(r[d])) / (w->tol + w->score_eps * smax);
          if (!(e <= err)) err = e;
        }
      }
    }
  }
  for (int s = 0; s < 2; s++) first_tok[s] += q_lens[s];
  free(k), free(v), free(q), free(o), free(kp), free(vp);
  pkv_buffer_destroy(kb);
  pkv_buffer_destroy(vb);
  pkv_buffer_destroy(qb);
  pkv_buffer_destroy(ob);
  return err;
}

/* Bytes of the first n tokens' rows of one sequence in every pool. */
static void seq_rows(world *w, pkv_seq_id s, int64_t n, uint8_t *dst) {
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(w->c, &g);
  int32_t pages[64];
  int64_t np = 0;
  pkv_seq_pages(w->c, s, pages, 64, &np);
  for (int l = 0; l < NL; l++) {
    pkv_buffer *k, *v;
    pkv_cache_kv(w->c, l, &k, &v);
    for (int which = 0; which < 2; which++) {
      uint8_t *p = host_copy(which ? v : k);
      for (int64_t t = 0; t < n; t++)
        for (int h = 0; h < NKV; h++) {
          memcpy(dst, p + pages[t / PS] * g.page_stride + h * g.head_stride +
                          (t % PS) * g.token_stride,
                 D);
          dst += D;
          /* int8: the row's scale, from the page's scale block */
          memset(dst, 0, 4);
          if (g.scale_offset)
            memcpy(dst, p + pages[t / PS] * g.page_stride + g.scale_offset +
                            ((int64_t)h * PS + t % PS) * 4,
                   4);
          dst += 4;
        }
      free(p);
    }
  }
}

#define CACHE_TESTS 13

static void test_cache(const fmt *f, pkv_backend_kind be) {
  world w;
  memset(&w, 0, sizeof w);
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = be;
  if (pkv_context_create(&cd, &w.ctx) != PKV_OK) {
    skip(CACHE_TESTS, "no OpenCL device");
    return;
  }
  const char *bn = be == PKV_BACKEND_CPU ? "CPU" : "OpenCL";
  char nm[32];
  snprintf(nm, sizeof nm, "%s %s", bn, f->name);
  /* Output tolerance: both sides read the same fp8 codes; the CPU
   * reference computes in double (only the f32 rounding of q and out
   * differs), OpenCL in f32 with the K scale folded into the softmax
   * scale: the f32 rounding of a score is a few ulps of sum |q_d k_d| *
   * scale (up to ~7000 with saturated e5m2 outliers), and the softmax
   * turns it into the same relative error of the weights; 64 ulps of
   * that sum plus 1e-5, far below fp8's own 6-12 % step. */
  w.tol = be == PKV_BACKEND_CPU ? 1e-6 : 1e-5;
  w.score_eps = be == PKV_BACKEND_CPU ? 0.0 : 64.0 / 16777216.0; /* 64 f32 ulps */
  pkv_cache_desc desc;
  pkv_cache_desc_init(&desc);
  desc.num_layers = NL;
  desc.num_kv_heads = NKV;
  desc.head_dim = D;
  desc.page_size = PS;
  desc.num_pages = NPAGES;
  desc.dtype = f->dt;
  desc.num_host_pages = 16;
  pkv_status st = pkv_cache_create(w.ctx, &desc, &w.c);
  ok(st == PKV_OK, "%s: cache created (%s)", nm, pkv_status_name(st));
  if (st != PKV_OK) {
    skip(CACHE_TESTS - 1, "no cache");
    pkv_context_destroy(w.ctx);
    return;
  }
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(w.c, &g);
  if (f->is_int8) {
    ok(g.page_bytes == (size_t)PS * NKV * D + (size_t)PS * NKV * 4 &&
           g.scale_offset == (size_t)PS * NKV * D &&
           g.page_stride == (int64_t)g.page_bytes,
       "%s: one byte per element + f32 scales [heads][tokens] at the page's "
       "end: page_bytes %zu, scale_offset %zu",
       nm, g.page_bytes, g.scale_offset);
    const float one[NKV] = {1, 1};
    ok(pkv_cache_set_kv_scales(w.c, 1, one, one) == PKV_ERR_INVALID,
       "%s: per-layer scales are PKV_ERR_INVALID (the scales are per token)",
       nm);
    pkv_kv_view bv;
    pkv_kv_view_init(&bv);
    pkv_cache_kv_view(w.c, 0, &bv);
    bv.scale_offset = 2;
    pkv_buffer *sl;
    pkv_buffer_create(w.ctx, 8, &sl);
    pkv_tensor kt;
    pkv_tensor_init(&kt);
    kt.buf = sl;
    st = pkv_kv_write(w.ctx, &bv, sl, NULL, 0, &kt, &kt);
    ok(st == PKV_ERR_INVALID && strstr(pkv_last_error(w.ctx), "scale_offset"),
       "%s: a view with scale_offset 2 (misaligned) is PKV_ERR_INVALID: %s",
       nm, pkv_last_error(w.ctx));
    pkv_buffer_destroy(sl);
  } else {
  ok(g.page_bytes == (size_t)PS * NKV * D,
     "%s: one byte per element: page_bytes %zu", nm, g.page_bytes);

  /* Scales: layer 1 small K scale so the outliers saturate. */
  const float ks1[NKV] = {0.05f, 2.0f}, vs1[NKV] = {0.125f, 0.5f};
  st = pkv_cache_set_kv_scales(w.c, 1, ks1, vs1);
  float kg[NKV], vg[NKV];
  pkv_cache_get_kv_scales(w.c, 1, kg, vg);
  ok(st == PKV_OK && kg[0] == 0.05f && kg[1] == 2.0f && vg[1] == 0.5f,
     "%s: pkv_cache_set_kv_scales stores the layer's scales", nm);
  const float bad[4] = {0.0f, -1.0f, NAN, INFINITY};
  int all_bad = 1;
  for (int i = 0; i < 4; i++) {
    float ks[NKV] = {1.0f, bad[i]};
    pkv_status s1 = pkv_cache_set_kv_scales(w.c, 1, ks, NULL);
    int named = strstr(pkv_last_error(w.ctx), "k_scales[1]") != NULL;
    pkv_status s2 = pkv_cache_set_kv_scales(w.c, 1, vs1, ks);
    named &= strstr(pkv_last_error(w.ctx), "v_scales[1]") != NULL;
    pkv_cache_get_kv_scales(w.c, 1, kg, vg);
    if (s1 != PKV_ERR_SCALE || s2 != PKV_ERR_SCALE || !named ||
        kg[0] != 0.05f || vg[1] != 0.5f)
      all_bad = 0;
  }
  ok(all_bad, "%s: a scale of 0, -1, NaN, Inf is PKV_ERR_SCALE naming "
              "k_scales[1] / v_scales[1]; nothing changes",
     nm);
  }

  pkv_batch_create(w.c, &w.b);
  int first[2] = {0, 0};
  int qe = 0;
  const int32_t pre[2] = {9, 6}, dec1[2] = {1, 1};
  pkv_seq_open(w.c, NULL, &w.s[0]);
  pkv_seq_open(w.c, NULL, &w.s[1]);
  pkv_seq_append(w.c, w.s[0], pre[0], NULL, NULL);
  pkv_seq_append(w.c, w.s[1], pre[1], NULL, NULL);
  pkv_batch_build(w.b, w.s, 2, pre);
  const double tol = 1.0; /* step() returns the error over its tolerance */
  for (int layer = 0; layer < NL; layer++) {
    int f0[2] = {first[0], first[1]};
    double e = step(f, &w, layer, pre, f0, &qe);
    ok(e <= tol && qe == 0,
       "%s: prefill layer %d: writes quantize to the nearest code (%d differ), "
       "attention = double reference (err / tolerance %.3g)",
       nm, layer, qe, e);
  }
  first[0] += pre[0], first[1] += pre[1];
  pkv_seq_append(w.c, w.s[0], 1, NULL, NULL);
  pkv_seq_append(w.c, w.s[1], 1, NULL, NULL);
  pkv_batch_build(w.b, w.s, 2, dec1);
  for (int layer = 0; layer < NL; layer++) {
    int f0[2] = {first[0], first[1]};
    double e = step(f, &w, layer, dec1, f0, &qe);
    ok(e <= tol && qe == 0, "%s: decode layer %d: err / tolerance %.3g, %d codes differ",
       nm, layer, e, qe);
  }

  /* fp8 q / out, or pkv_attention on the fp8 cache: PKV_ERR_QUANT_DTYPE. */
  pkv_buffer *qb, *ob;
  pkv_buffer_create(w.ctx, 2 * NQ * D * 4, &qb);
  pkv_buffer_create(w.ctx, 2 * NQ * D * 4, &ob);
  uint8_t *pat = malloc(2 * NQ * D * 4), first_byte = 0;
  memset(pat, 0x5a, 2 * NQ * D * 4);
  pkv_buffer_upload(ob, 0, pat, 2 * NQ * D * 4);
  free(pat);
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  st = pkv_attention(w.b, 0, &p, qb, ob, NULL);
  pkv_buffer_download(ob, 0, &first_byte, 1);
  ok(st == PKV_ERR_QUANT_DTYPE && first_byte == 0x5a,
     "%s: pkv_attention (q in the cache dtype) is PKV_ERR_QUANT_DTYPE: %s",
     nm, pkv_last_error(w.ctx));
  pkv_kv_view view;
  pkv_kv_table table;
  pkv_tensor qt, ot;
  pkv_kv_view_init(&view);
  pkv_kv_table_init(&table);
  pkv_tensor_init(&qt);
  pkv_tensor_init(&ot);
  pkv_cache_kv_view(w.c, 0, &view);
  pkv_batch_get_table(w.b, PKV_TABLE_DENSE, &table);
  qt.buf = qb, ot.buf = ob;
  qt.dtype = f->dt;
  st = pkv_kv_attention(w.ctx, &view, &table, &p, &qt, &ot, NULL);
  ok(st == PKV_ERR_QUANT_DTYPE, "%s: pkv_kv_attention with q in the cache "
                                "dtype is PKV_ERR_QUANT_DTYPE: %s",
     nm, pkv_last_error(w.ctx));
  qt.dtype = PKV_DTYPE_F32;
  if (f->is_int8) {
    /* the scales would reach past the page */
    view.scale_offset = view.page_stride - 4;
    st = pkv_kv_attention(w.ctx, &view, &table, &p, &qt, &ot, NULL);
    pkv_buffer_download(ob, 0, &first_byte, 1);
    ok(st == PKV_ERR_INVALID && first_byte == 0x5a,
       "%s: scales past the page are PKV_ERR_INVALID, out untouched: %s", nm,
       pkv_last_error(w.ctx));
  } else {
  const float neg[NKV] = {1.0f, -0.5f};
  view.v_scales = neg;
  st = pkv_kv_attention(w.ctx, &view, &table, &p, &qt, &ot, NULL);
  pkv_buffer_download(ob, 0, &first_byte, 1);
  ok(st == PKV_ERR_SCALE && strstr(pkv_last_error(w.ctx), "view->v_scales[1]") &&
         first_byte == 0x5a,
     "%s: a view with v_scales[1] = -0.5 is PKV_ERR_SCALE, out untouched: %s",
     nm, pkv_last_error(w.ctx));
  }
  pkv_buffer_destroy(qb);
  pkv_buffer_destroy(ob);

  /* Pages survive swap out/in and copy-on-write bit for bit. */
  const int64_t n0 = pre[0] + 1;
  const size_t rows = (size_t)NL * 2 * n0 * NKV * (D + 4);
  uint8_t *before = malloc(rows), *after = malloc(rows);
  seq_rows(&w, w.s[0], n0, before);
  st = pkv_seq_swap_out(w.c, &w.s[0], 1);
  if (st == PKV_OK) st = pkv_seq_swap_in(w.c, &w.s[0], 1);
  if (st == PKV_OK) seq_rows(&w, w.s[0], n0, after);
  ok(st == PKV_OK && memcmp(before, after, rows) == 0,
     "%s: swap out and in keeps every code and scale (%s)", nm,
     pkv_status_name(st));
  pkv_seq_id child;
  st = pkv_seq_fork(w.c, w.s[0], &child);
  if (st == PKV_OK) st = pkv_seq_append(w.c, child, 1, NULL, NULL);
  if (st == PKV_OK) st = pkv_cache_flush(w.c);
  memset(after, 0, rows);
  if (st == PKV_OK) seq_rows(&w, child, n0, after);
  int32_t pp[8], pc[8];
  int64_t np = 0, nc = 0;
  pkv_seq_pages(w.c, w.s[0], pp, 8, &np);
  pkv_seq_pages(w.c, child, pc, 8, &nc);
  ok(st == PKV_OK && memcmp(before, after, rows) == 0 && pp[2] != pc[2],
     "%s: copy-on-write of the shared last page keeps codes and scales (%s)",
     nm, pkv_status_name(st));
  free(before);
  free(after);

  pkv_batch_destroy(w.b);
  pkv_cache_destroy(w.c);
  pkv_context_destroy(w.ctx);
}

/* A float cache has no scales; a backend without fp8 refuses the dtype. */
static void test_refusals(void) {
  pkv_context *ctx = NULL;
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context_create(&cd, &ctx);
  pkv_cache_desc desc;
  pkv_cache_desc_init(&desc);
  desc.num_layers = 1;
  desc.num_kv_heads = NKV;
  desc.head_dim = D;
  desc.page_size = PS;
  desc.num_pages = 4;
  desc.dtype = PKV_DTYPE_F16;
  pkv_cache *c = NULL;
  pkv_cache_create(ctx, &desc, &c);
  const float one[NKV] = {1, 1};
  ok(pkv_cache_set_kv_scales(c, 0, one, one) == PKV_ERR_INVALID,
     "an f16 cache has no scales: PKV_ERR_INVALID");
  pkv_cache_destroy(c);
  desc.dtype = (pkv_dtype)9;
  ok(pkv_cache_create(ctx, &desc, &c) == PKV_ERR_INVALID, "dtype 9 is unknown");
  float x = 1.0f;
  uint8_t b;
  ok(pkv_convert_from_f32((pkv_dtype)9, &x, &b, 1) == PKV_ERR_INVALID &&
         pkv_dtype_size(PKV_DTYPE_FP8_E4M3) == 1 &&
         pkv_dtype_size(PKV_DTYPE_FP8_E5M2) == 1,
     "fp8 elements are one byte; an unknown dtype does not convert");
  /* DLPack: quantized pools export their codes as bytes */
  int dl_ok = 1;
  const pkv_dtype qd[3] = {PKV_DTYPE_FP8_E4M3, PKV_DTYPE_FP8_E5M2, PKV_DTYPE_INT8};
  for (int i = 0; i < 3; i++) {
    desc.dtype = qd[i];
    DLManagedTensor *t = NULL;
    if (pkv_cache_create(ctx, &desc, &c) != PKV_OK ||
        pkv_cache_export_dlpack(c, 0, PKV_POOL_V, &t) != PKV_OK) {
      dl_ok = 0;
    } else {
      pkv_cache_geometry g;
      pkv_cache_geometry_init(&g);
      pkv_cache_get_geometry(c, &g);
      dl_ok &= t->dl_tensor.dtype.bits == 8 &&
               t->dl_tensor.dtype.code == (i < 2 ? kDLUInt : kDLInt) &&
               t->dl_tensor.strides[0] == g.page_stride;
      t->deleter(t);
    }
    pkv_cache_destroy(c);
  }
  ok(dl_ok, "DLPack export of fp8 pools is uint8 codes, of int8 pools int8 "
            "codes with the page stride over the scales");
  pkv_context_destroy(ctx);
}

int main(void) {
  plan(2 * 5 + 6 * CACHE_TESTS + 4);
  for (int i = 0; i < 2; i++) test_codes(&FMTS[i]);
  for (int i = 0; i < 3; i++) test_cache(&FMTS[i], PKV_BACKEND_CPU);
  for (int i = 0; i < 3; i++) test_cache(&FMTS[i], PKV_BACKEND_OPENCL);
  test_refusals();
  return done_testing();
}
