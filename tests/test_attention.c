/* SPDX-License-Identifier: Apache-2.0 */
/* Paged attention on the CPU backend against a dense attention computed
 * here, on contiguous copies of the same Q/K/V, with code that shares
 * nothing with the library's except the dtype rounding. Pools, unused slots
 * and outputs are filled with NaN first; pages are scrambled by dummy
 * sequences so that block tables are not the identity. */
#include "dtype_convert.h"
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 8

typedef struct tcase {
  const char *name;
  pkv_dtype dt;
  pkv_layout layout;
  int32_t ps, nkv, group, dim;
  int nseq;
  int32_t kv[MAX_SEQS], ql[MAX_SEQS];
  int32_t causal, window;
  float softcap, scale;
  int alibi;
  int big_logits; /* all logits near -5e5 */
  int huge;       /* 2^31 token slots taken first: the sequences lie beyond */
} tcase;

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}
static float urand(void) { return (float)(rnd() / 2147483648.0 - 1.0); }

static pkv_context *ctx;

static const char *dt_name(pkv_dtype d) {
  return d == PKV_DTYPE_F32 ? "f32" : d == PKV_DTYPE_F16 ? "f16" : "bf16";
}

/* The value as the cache stores it. */
static float round_dt(pkv_dtype dt, float f) {
  if (dt == PKV_DTYPE_F16) return pkv_f16_to_f32(pkv__f32_to_f16(f));
  if (dt == PKV_DTYPE_BF16) return pkv_bf16_to_f32(pkv__f32_to_bf16(f));
  return f;
}

static void *encode(pkv_dtype dt, const float *src, size_t n) {
  void *p = malloc(n * pkv_dtype_size(dt) + 1);
  pkv__from_f32(dt, src, p, n);
  return p;
}

static pkv_buffer *upload_new(const void *src, size_t bytes) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(ctx, bytes, &b) != PKV_OK) abort();
  if (bytes && pkv_buffer_upload(b, 0, src, bytes) != PKV_OK) abort();
  return b;
}

static void fill_nan(pkv_buffer *b, pkv_dtype dt) {
  size_t esz = pkv_dtype_size(dt), n = pkv_buffer_size(b) / esz;
  float nan = NAN;
  unsigned char one[4], *tmp = malloc(n * esz + 1);
  pkv__from_f32(dt, &nan, one, 1);
  for (size_t i = 0; i < n; i++) memcpy(tmp + i * esz, one, esz);
  pkv_buffer_upload(b, 0, tmp, n * esz);
  free(tmp);
}

/* Dense reference of one row: q [dim], K/V [kv_len][nkv][dim] (f32 values
 * exactly as stored), kv head h. Returns lse (-inf when no key). */
static double dense_row(const tcase *c, const float *q, const float *K,
                        const float *V, int32_t kv_len, int32_t qpos,
                        int32_t kvh, int32_t qh, const float *slopes,
                        double *o) {
  double scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->dim);
  double *lg = malloc(sizeof(double) * (size_t)(kv_len + 1));
  int *vis = malloc(sizeof(int) * (size_t)(kv_len + 1));
  double m = -INFINITY;
  for (int32_t j = 0; j < kv_len; j++) {
    vis[j] = (!c->causal || j <= qpos) &&
             (c->window < 0 || j >= qpos - c->window);
    if (!vis[j]) continue;
    const float *k = K + ((size_t)j * c->nkv + kvh) * c->dim;
    double s = 0;
    for (int32_t d = 0; d < c->dim; d++) s += (double)q[d] * k[d];
    s *= scale;
    if (c->softcap > 0) s = c->softcap * tanh(s / c->softcap);
    if (slopes) s += slopes[qh] * (double)(j - qpos);
    lg[j] = s;
    if (s > m) m = s;
  }
  for (int32_t d = 0; d < c->dim; d++) o[d] = 0;
  double sum = 0;
  for (int32_t j = 0; j < kv_len; j++) {
    if (!vis[j]) continue;
    double p = exp(lg[j] - m);
    sum += p;
    const float *v = V + ((size_t)j * c->nkv + kvh) * c->dim;
    for (int32_t d = 0; d < c->dim; d++) o[d] += p * v[d];
  }
  free(lg);
  free(vis);
  if (sum == 0) return -INFINITY;
  for (int32_t d = 0; d < c->dim; d++) o[d] /= sum;
  return m + log(sum);
}

static void gen_kv(const tcase *c, float *K, float *V, int32_t n) {
  size_t cnt = (size_t)n * c->nkv * c->dim;
  for (size_t i = 0; i < cnt; i++) {
    K[i] = round_dt(c->dt, c->big_logits ? -78.125f : urand());
    V[i] = round_dt(c->dt, urand());
  }
}

static void run_case(const tcase *c) {
  char name[256];
  snprintf(name, sizeof name, "%s [%s %s ps=%d kv_heads=%d group=%d dim=%d]",
           c->name, dt_name(c->dt), c->layout ? "NHD" : "HND", c->ps, c->nkv,
           c->group, c->dim);
  const int32_t nq = c->nkv * c->group;
  const size_t esz = pkv_dtype_size(c->dt);
  const size_t row = (size_t)c->nkv * c->dim;

  int64_t need_pages = 0;
  for (int s = 0; s < c->nseq; s++) need_pages += (c->kv[s] + c->ps - 1) / c->ps;
  const int ndummy = 6;
  pkv_cache_desc cd;
  pkv_cache_desc_init(&cd);
  cd.num_layers = 2;
  cd.num_kv_heads = c->nkv;
  cd.head_dim = c->dim;
  cd.page_size = c->ps;
  const int32_t dummy_max = c->ps <= 16 ? 3 * c->ps : c->ps; /* tokens */
  cd.num_pages = need_pages + ndummy * ((dummy_max + c->ps - 1) / c->ps) + 2;
  cd.dtype = c->dt;
  cd.layout = c->layout;
  const int64_t huge_tokens = (int64_t)1 << 31;
  if (c->huge) {
    cd.num_layers = 1;
    cd.num_pages += huge_tokens / c->ps;
  }
  pkv_cache *cache = NULL;
  pkv_status st = pkv_cache_create(ctx, &cd, &cache);
  if (st == PKV_ERR_NO_MEMORY && c->huge) {
    diag("%s", pkv_last_error(ctx));
    skip(3, "the CPU backend cannot map a sparse pool of 2^31+ token slots here");
    return;
  }
  if (st != PKV_OK) {
    ok(0, "%s: cache created: %s", name, pkv_last_error(ctx));
    return;
  }
  const int32_t layer = cd.num_layers - 1;
  /* A huge pool stays sparse: its untouched slots read as zeros, not NaN. */
  for (int32_t l = 0; l < cd.num_layers && !c->huge; l++) {
    pkv_buffer *kp, *vp;
    pkv_cache_kv(cache, l, &kp, &vp);
    fill_nan(kp, c->dt);
    fill_nan(vp, c->dt);
  }
  if (c->huge) {
    pkv_seq_id h1, h2;
    pkv_seq_open(cache, NULL, &h1);
    pkv_seq_open(cache, NULL, &h2);
    pkv_seq_append(cache, h1, huge_tokens / 2, NULL, NULL);
    pkv_seq_append(cache, h2, huge_tokens / 2, NULL, NULL);
  }

  /* Scramble the free list: dummies take a few pages each (one when pages
   * are large), every other one is released again. */
  pkv_seq_id dummy[ndummy];
  for (int i = 0; i < ndummy; i++) {
    pkv_seq_open(cache, NULL, &dummy[i]);
    pkv_seq_append(cache, dummy[i], 1 + (int64_t)(rnd() % (uint32_t)dummy_max),
                   NULL, NULL);
  }
  for (int i = 0; i < ndummy; i += 2) pkv_seq_release(cache, dummy[(i * 5) % ndummy]);

  /* Dense copies of each sequence's K/V and the history (tokens before the
   * query run), appended in interleaved chunks and written by explicit
   * slots. */
  float *K[MAX_SEQS], *V[MAX_SEQS];
  int64_t *slots[MAX_SEQS];
  pkv_seq_id seqs[MAX_SEQS];
  int32_t done[MAX_SEQS];
  int ok_setup = 1;
  for (int s = 0; s < c->nseq; s++) {
    size_t cnt = (size_t)(c->kv[s] + 1) * row;
    K[s] = malloc(cnt * sizeof(float));
    V[s] = malloc(cnt * sizeof(float));
    slots[s] = malloc(sizeof(int64_t) * (size_t)(c->kv[s] + 1));
    gen_kv(c, K[s], V[s], c->kv[s]);
    ok_setup &= pkv_seq_open(cache, NULL, &seqs[s]) == PKV_OK;
    done[s] = 0;
  }
  for (int more = 1; more && ok_setup;) {
    more = 0;
    for (int s = 0; s < c->nseq; s++) {
      int32_t hist = c->kv[s] - c->ql[s];
      if (done[s] >= hist) continue;
      int32_t chunk = 1 + (int32_t)(rnd() % (uint32_t)(2 * c->ps + 1));
      if (chunk > hist - done[s]) chunk = hist - done[s];
      ok_setup &= pkv_seq_append(cache, seqs[s], chunk, NULL,
                                 slots[s] + done[s]) == PKV_OK;
      done[s] += chunk;
      more = 1;
    }
  }
  for (int s = 0; s < c->nseq && ok_setup; s++) {
    int32_t hist = c->kv[s] - c->ql[s];
    if (hist == 0) continue;
    void *kb = encode(c->dt, K[s], (size_t)hist * row);
    void *vb = encode(c->dt, V[s], (size_t)hist * row);
    pkv_buffer *kbuf = upload_new(kb, (size_t)hist * row * esz);
    pkv_buffer *vbuf = upload_new(vb, (size_t)hist * row * esz);
    pkv_buffer *sbuf = upload_new(slots[s], (size_t)hist * sizeof(int64_t));
    st = pkv_write_kv_slots(cache, layer, kbuf, vbuf, sbuf, hist);
    if (st != PKV_OK) diag("write_kv_slots: %s", pkv_last_error(ctx));
    ok_setup &= st == PKV_OK;
    free(kb);
    free(vb);
    pkv_buffer_destroy(kbuf);
    pkv_buffer_destroy(vbuf);
    pkv_buffer_destroy(sbuf);
  }
  if (c->huge) {
    int64_t lowest = INT64_MAX;
    for (int s = 0; s < c->nseq; s++)
      for (int32_t i = 0; i < c->kv[s] - c->ql[s]; i++)
        if (slots[s][i] < lowest) lowest = slots[s][i];
    ok(ok_setup && lowest >= huge_tokens && lowest != INT64_MAX,
       "%s: every written slot lies past 2^31 (lowest %lld)", name,
       (long long)lowest);
  }
  /* The query runs: appended, then written through the batch. */
  for (int s = 0; s < c->nseq && ok_setup; s++)
    if (c->ql[s] > 0)
      ok_setup &= pkv_seq_append(cache, seqs[s], c->ql[s], NULL, NULL) == PKV_OK;
  pkv_batch *batch = NULL;
  ok_setup &= pkv_batch_create(cache, &batch) == PKV_OK;
  if (ok_setup) {
    st = pkv_batch_build(batch, seqs, c->nseq, c->ql);
    if (st != PKV_OK) diag("batch build: %s", pkv_last_error(ctx));
    ok_setup &= st == PKV_OK;
  }
  int64_t ntok = 0;
  for (int s = 0; s < c->nseq; s++) ntok += c->ql[s];
  float *newk = malloc((size_t)ntok * row * sizeof(float) + 1);
  float *newv = malloc((size_t)ntok * row * sizeof(float) + 1);
  for (int s = 0, t = 0; s < c->nseq; s++)
    for (int32_t i = 0; i < c->ql[s]; i++, t++) {
      size_t src = (size_t)(c->kv[s] - c->ql[s] + i) * row;
      memcpy(newk + (size_t)t * row, K[s] + src, row * sizeof(float));
      memcpy(newv + (size_t)t * row, V[s] + src, row * sizeof(float));
    }
  if (ok_setup) {
    void *kb = encode(c->dt, newk, (size_t)ntok * row);
    void *vb = encode(c->dt, newv, (size_t)ntok * row);
    pkv_buffer *kbuf = upload_new(kb, (size_t)ntok * row * esz);
    pkv_buffer *vbuf = upload_new(vb, (size_t)ntok * row * esz);
    st = pkv_write_kv(batch, layer, kbuf, vbuf);
    if (st != PKV_OK) diag("write_kv: %s", pkv_last_error(ctx));
    ok_setup &= st == PKV_OK;
    free(kb);
    free(vb);
    pkv_buffer_destroy(kbuf);
    pkv_buffer_destroy(vbuf);
  }
  free(newk);
  free(newv);

  /* Queries, slopes, outputs (one spare row of NaN past the end). */
  size_t qn = (size_t)ntok * nq * c->dim;
  float *q = malloc((qn + 1) * sizeof(float));
  for (size_t i = 0; i < qn; i++)
    q[i] = round_dt(c->dt, c->big_logits ? 100.0f : urand());
  float slopes[64];
  for (int32_t h = 0; h < nq; h++)
    slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / nq);
  void *qb = encode(c->dt, q, qn);
  pkv_buffer *qbuf = upload_new(qb, qn * esz);
  pkv_buffer *obuf = NULL, *lbuf = NULL;
  size_t spare = (size_t)c->dim * esz;
  pkv_buffer_create(ctx, qn * esz + spare, &obuf);
  pkv_buffer_create(ctx, ((size_t)ntok * nq + 1) * sizeof(float), &lbuf);
  fill_nan(obuf, c->dt);
  fill_nan(lbuf, PKV_DTYPE_F32);
  pkv_attn_params p;
  pkv_attn_params_init(&p, nq);
  p.causal = c->causal;
  p.window_left = c->window;
  p.softcap = c->softcap;
  p.scale = c->scale;
  p.alibi_slopes = c->alibi ? slopes : NULL;
  if (ok_setup) {
    st = pkv_attention(batch, layer, &p, qbuf, obuf, lbuf);
    if (st != PKV_OK) diag("attention: %s", pkv_last_error(ctx));
    ok_setup &= st == PKV_OK;
  }
  if (!ok_setup) {
    ok(0, "%s: setup and attention ran", name);
  } else {
    unsigned char *ob = malloc(qn * esz + spare);
    float *of = malloc(qn * sizeof(float) + 1);
    float *lse = malloc(((size_t)ntok * nq + 1) * sizeof(float));
    pkv_buffer_download(obuf, 0, ob, qn * esz + spare);
    pkv_buffer_download(lbuf, 0, lse, ((size_t)ntok * nq + 1) * sizeof(float));
    pkv__to_f32(c->dt, ob, of, qn);
    double tol_abs = c->dt == PKV_DTYPE_F32 ? 1e-4 : 1.5e-2;
    double tol_rel = c->dt == PKV_DTYPE_F32 ? 0 : 1e-2;
    double max_err = 0, max_lse_err = 0;
    int64_t bad = 0, nonfinite = 0, bad_lse = 0;
    double *o = malloc(sizeof(double) * (size_t)c->dim);
    for (int s = 0, t = 0; s < c->nseq; s++)
      for (int32_t i = 0; i < c->ql[s]; i++, t++)
        for (int32_t h = 0; h < nq; h++) {
          int32_t qpos = i + c->kv[s] - c->ql[s];
          size_t off = ((size_t)t * nq + h) * c->dim;
          double l = dense_row(c, q + off, K[s], V[s], c->kv[s], qpos,
                               h / c->group, h, c->alibi ? slopes : NULL, o);
          for (int32_t d = 0; d < c->dim; d++) {
            float got = of[off + d];
            if (!isfinite(got)) {
              nonfinite++;
              continue;
            }
            double e = fabs(got - o[d]);
            if (e > max_err) max_err = e;
            if (e > tol_abs + tol_rel * fabs(o[d])) bad++;
          }
          float gl = lse[(size_t)t * nq + h];
          if (isinf(l)) {
            if (!(isinf(gl) && gl < 0)) bad_lse++;
          } else {
            double e = fabs(gl - l);
            if (e > max_lse_err || isnan(e)) max_lse_err = isnan(e) ? INFINITY : e;
            if (!(e <= 1e-3 + 1e-5 * fabs(l))) bad_lse++;
          }
        }
    free(o);
    unsigned char *nanrow = malloc(spare);
    float nan = NAN;
    for (int32_t d = 0; d < c->dim; d++)
      pkv__from_f32(c->dt, &nan, nanrow + (size_t)d * esz, 1);
    int tail_ok = memcmp(ob + qn * esz, nanrow, spare) == 0 &&
                  isnan(lse[(size_t)ntok * nq]);
    ok(bad == 0 && nonfinite == 0 && tail_ok,
       "%s: %lld rows match dense attention (max err %.3g, tol %.3g+%.3grel; "
       "%lld out of tolerance, %lld not finite, nothing past the end %s)",
       name, (long long)ntok * nq, max_err, tol_abs, tol_rel, (long long)bad,
       (long long)nonfinite, tail_ok ? "written" : "WRITTEN");
    ok(bad_lse == 0, "%s: lse matches (max err %.3g, %lld bad)", name,
       max_lse_err, (long long)bad_lse);
    free(nanrow);
    free(ob);
    free(of);
    free(lse);
  }
  free(qb);
  free(q);
  pkv_buffer_destroy(qbuf);
  pkv_buffer_destroy(obuf);
  pkv_buffer_destroy(lbuf);
  pkv_batch_destroy(batch);
  for (int s = 0; s < c->nseq; s++) {
    free(K[s]);
    free(V[s]);
    free(slots[s]);
  }
  pkv_cache_destroy(cache);
}

int main(void) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  d.cpu_threads = 2;
  if (pkv_context_create(&d, &ctx) != PKV_OK) plan_skip_all("no CPU context");

  static const int32_t dims[] = {64, 80, 96, 112, 128, 192, 256};
  static const int32_t groups[] = {1, 4, 8};
  static const pkv_dtype dts[] = {PKV_DTYPE_F32, PKV_DTYPE_F16, PKV_DTYPE_BF16};

  /* Every head dim x dtype x layout, decode (and one short extend) over
   * the lengths around a page boundary, cycling page sizes and GQA ratios. */
  static const int32_t page_sizes[] = {16, 1, 1024, 7};
  int idx = 0;
  for (int i = 0; i < 7; i++)
    for (int t = 0; t < 3; t++)
      for (int l = 0; l < 2; l++, idx++) {
        int32_t ps = page_sizes[idx % 4];
        int32_t pm1 = ps > 1 ? ps - 1 : 1;
        tcase c = {.name = "decode at page boundaries",
                   .dt = dts[t], .layout = (pkv_layout)l, .ps = ps,
                   .nkv = 1 + idx % 2, .group = groups[idx % 3],
                   .dim = dims[i], .nseq = 5,
                   .kv = {1, pm1, ps, ps + 1, 2 * ps + 3},
                   .ql = {1, 1, 1, 1, 3}, .causal = 1, .window = -1};
        run_case(&c);
      }
  /* GQA ratios and MQA, every dtype, both layouts. */
  for (int i = 0; i < 4; i++)
    for (int l = 0; l < 2; l++) {
      tcase c = {.name = i == 3 ? "MQA decode + extend" : "GQA decode + extend",
                 .dt = dts[(i + l) % 3], .layout = (pkv_layout)l, .ps = 16,
                 .nkv = i == 3 ? 1 : 2, .group = i == 3 ? 8 : groups[i],
                 .dim = 128, .nseq = 3, .kv = {5, 40, 33}, .ql = {1, 9, 33},
                 .causal = 1, .window = -1};
      run_case(&c);
    }
  /* Eight kv heads and eight sequences of mixed runs in one batch. */
  for (int l = 0; l < 2; l++) {
    tcase m = {.name = "8 kv heads, 8 sequences", .dt = dts[2 - l],
               .layout = (pkv_layout)l, .ps = 32, .nkv = 8, .group = 2,
               .dim = 128, .nseq = 8,
               .kv = {1, 31, 32, 33, 100, 64, 7, 250},
               .ql = {1, 1, 32, 2, 17, 1, 7, 3}, .causal = 1, .window = -1};
    run_case(&m);
  }
  /* Page sizes 1 and 1024 (token-granular and huge pages). */
  for (int l = 0; l < 2; l++) {
    tcase c1 = {.name = "page size 1", .dt = PKV_DTYPE_F16,
                .layout = (pkv_layout)l, .ps = 1, .nkv = 2, .group = 2,
                .dim = 64, .nseq = 3, .kv = {1, 7, 30}, .ql = {1, 3, 5},
                .causal = 1, .window = -1};
    run_case(&c1);
    tcase c2 = {.name = "page size 1024", .dt = PKV_DTYPE_BF16,
                .layout = (pkv_layout)l, .ps = 1024, .nkv = 2, .group = 4,
                .dim = 128, .nseq = 3, .kv = {1023, 1024, 1025},
                .ql = {1, 4, 2}, .causal = 1, .window = -1};
    run_case(&c2);
  }
  /* A sequence of several thousand tokens, decode and extend. */
  {
    tcase c = {.name = "long context 3000", .dt = PKV_DTYPE_BF16,
               .layout = PKV_LAYOUT_HND, .ps = 16, .nkv = 2, .group = 4,
               .dim = 128, .nseq = 2, .kv = {3000, 2999}, .ql = {1, 6},
               .causal = 1, .window = -1};
    run_case(&c);
    c.dt = PKV_DTYPE_F32;
    c.layout = PKV_LAYOUT_NHD;
    c.kv[0] = 4097;
    run_case(&c);
  }
  /* Options: window, soft-cap, ALiBi, causal off, explicit scale. */
  for (int l = 0; l < 2; l++) {
    tcase w = {.name = "sliding window 5", .dt = dts[l], .layout = (pkv_layout)l,
               .ps = 16, .nkv = 2, .group = 4, .dim = 64, .nseq = 3,
               .kv = {3, 40, 20}, .ql = {1, 1, 12}, .causal = 1, .window = 5};
    run_case(&w);
    w.name = "window 0 (only the own position)";
    w.window = 0;
    run_case(&w);
    tcase sc = {.name = "soft-cap 2, scale 1", .dt = dts[l + 1],
                .layout = (pkv_layout)l, .ps = 16, .nkv = 2, .group = 2,
                .dim = 96, .nseq = 2, .kv = {50, 21}, .ql = {1, 7},
                .causal = 1, .window = -1, .softcap = 2.0f, .scale = 1.0f};
    run_case(&sc);
    tcase al = {.name = "ALiBi", .dt = dts[2 - l], .layout = (pkv_layout)l,
                .ps = 16, .nkv = 2, .group = 4, .dim = 128, .nseq = 2,
                .kv = {70, 30}, .ql = {1, 10}, .causal = 1, .window = -1,
                .alibi = 1};
    run_case(&al);
    tcase nc = {.name = "causal off, prefill runs", .dt = dts[l],
                .layout = (pkv_layout)l, .ps = 16, .nkv = 2, .group = 1,
                .dim = 80, .nseq = 3, .kv = {17, 32, 9}, .ql = {17, 5, 9},
                .causal = 0, .window = -1, .scale = 0.3f};
    run_case(&nc);
    tcase all = {.name = "window+softcap+ALiBi, causal off", .dt = PKV_DTYPE_F32,
                 .layout = (pkv_layout)l, .ps = 16, .nkv = 1, .group = 8,
                 .dim = 64, .nseq = 2, .kv = {60, 25}, .ql = {3, 25},
                 .causal = 0, .window = 7, .softcap = 5.0f, .alibi = 1};
    run_case(&all);
  }
  /* Slots past 2^31 (64-bit offsets from slot to element), in a sparse
   * pool of 2^21 + a few pages of 1024 tokens. */
  {
    tcase h = {.name = "slots beyond 2^31", .dt = PKV_DTYPE_F16,
               .layout = PKV_LAYOUT_NHD, .ps = 1024, .nkv = 1, .group = 4,
               .dim = 64, .nseq = 2, .kv = {3000, 1030}, .ql = {1, 5},
               .causal = 1, .window = -1, .huge = 1};
    run_case(&h);
  }
  /* Logits around -5e5: the maximum must be subtracted. */
  {
    tcase b = {.name = "logits near -5e5", .dt = PKV_DTYPE_F32,
               .layout = PKV_LAYOUT_HND, .ps = 16, .nkv = 1, .group = 1,
               .dim = 64, .nseq = 2, .kv = {1, 20}, .ql = {1, 1}, .causal = 1,
               .window = -1, .scale = 1.0f, .big_logits = 1};
    run_case(&b);
  }
  /* An empty sequence (length 0, no query) beside others in one batch. */
  for (int l = 0; l < 2; l++) {
    tcase e = {.name = "empty sequence in the batch", .dt = dts[l + 1],
               .layout = (pkv_layout)l, .ps = 16, .nkv = 2, .group = 4,
               .dim = 64, .nseq = 4, .kv = {0, 5, 0, 17}, .ql = {0, 1, 0, 3},
               .causal = 1, .window = -1};
    run_case(&e);
  }
  pkv_context_destroy(ctx);
  return done_testing();
}
