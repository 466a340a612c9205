/* SPDX-License-Identifier: Apache-2.0 */
/* Reference paged attention: plain loops, double accumulation, two passes
 * (logits and their maximum, then the softmax-weighted sum of V), so that it
 * is obviously correct. One work item is one (query token, kv head): the q
 * heads of a GQA group share each K/V row load. Work items are spread over
 * plain pthreads; every item writes only its own output rows, so the result
 * does not depend on the thread count. */
#include "alloc.h"
#include "cpu_attention.h"
#include "dtype_convert.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this many multiply-adds a call runs in the calling thread: starting
 * threads would cost more than it saves. */
#define PKV_CPU_PARALLEL_MIN_WORK (1LL << 20)

typedef struct job {
  const pkv_attn_args *a;
  const int32_t *tok_seq; /* query token -> sequence */
  int32_t group;          /* q heads per kv head */
  int64_t max_kv;         /* longest sequence: the logits row length */
  double scale;
  int64_t qts, qhs, ots, ohs; /* q/out strides, defaults resolved */
} job;

typedef struct worker {
  const job *j;
  int64_t first, step;    /* items first, first+step, ... */
  double *scratch;        /* see run_item */
  pthread_t tid;
  int started;
} worker;

/* f16 -> f32 of every bit pattern, built once: a table load is cheaper than
 * the branchy conversion on the reference's hottest path. */
static float f16_lut[65536];
static pthread_once_t f16_lut_once = PTHREAD_ONCE_INIT;

/* fp8 codes likewise (exact in f32) */
static float e4m3_lut[256], e5m2_lut[256];

static void f16_lut_init(void) {
  for (uint32_t h = 0; h < 65536; h++) f16_lut[h] = pkv_f16_to_f32((uint16_t)h);
  for (uint32_t b = 0; b < 256; b++) {
    e4m3_lut[b] = pkv_e4m3_to_f32((uint8_t)b);
    e5m2_lut[b] = pkv_e5m2_to_f32((uint8_t)b);
  }
}

static void load_row(pkv_dtype dt, const void *base, int64_t off, int32_t n,
                     double *dst) {
  if (dt == PKV_DTYPE_F32) {
    const float *p = (const float *)base + off;
    for (int32_t d = 0; d < n; d++) dst[d] = p[d];
  } else if (dt == PKV_DTYPE_F16) {
    const uint16_t *p = (const uint16_t *)base + off;
    for (int32_t d = 0; d < n; d++) dst[d] = f16_lut[p[d]];
  } else if (dt == PKV_DTYPE_BF16) {
    const uint16_t *p = (const uint16_t *)base + off;
    for (int32_t d = 0; d < n; d++) dst[d] = pkv_bf16_to_f32(p[d]);
  } else if (dt == PKV_DTYPE_INT8) {
    const int8_t *p = (const int8_t *)base + off;
    for (int32_t d = 0; d < n; d++) dst[d] = p[d];
  } else if (dt == PKV_DTYPE_FP8_E4M3 || dt == PKV_DTYPE_FP8_E5M2) {
    const uint8_t *p = (const uint8_t *)base + off;
    const float *lut = dt == PKV_DTYPE_FP8_E4M3 ? e4m3_lut : e5m2_lut;
    for (int32_t d = 0; d < n; d++) dst[d] = lut[p[d]];
  } else {
    for (int32_t d = 0; d < n; d++) dst[d] = pkv_load_elem(dt, base, off + d);
  }
}

/* int8: key j's row times its (token, head) scale from the page. */
static void int8_scale_row(const pkv_attn_args *a, const int32_t *prow,
                           int64_t j, int32_t kvh, const void *pool, int32_t n,
                           double *row) {
  const pkv_cache_geometry *g = a->geom;
  const int64_t page = prow[j / g->page_size], t = j % g->page_size;
  float s;
  memcpy(&s, (const unsigned char *)pool + page * g->page_stride +
                 (int64_t)g->scale_offset + ((int64_t)kvh * g->page_size + t) * 4,
         4);
  for (int32_t d = 0; d < n; d++) row[d] *= s;
}

/* A quantized row times its head's scale (exact in double: an fp8 value
 * has at most 4 significant bits). */
static void scale_row(const float *scales, int32_t kvh, int32_t n,
                      double *row) {
  if (!scales) return;
  const double s = scales[kvh];
  for (int32_t d = 0; d < n; d++) row[d] *= s;
}

/* GCC 12 at -O2 vectorizes only trivially; these two loops are the hot
 * path of the reference and are safe to vectorize (no reassociation: the
 * dot keeps its four explicit partial sums). */
#if defined(__GNUC__) && !defined(__clang__)
#define PKV_VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define PKV_VECTORIZE
#endif

/* Four partial sums break the add-latency chain; still double throughout. */
PKV_VECTORIZE static double dot(const double *a, const double *b, int32_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int32_t d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += a[d] * b[d];
    s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2];
    s3 += a[d + 3] * b[d + 3];
  }
  for (; d < n; d++) s0 += a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

PKV_VECTORIZE static void axpy(double *restrict acc, double p, const double *restrict x,
                 int32_t n) {
  for (int32_t d = 0; d < n; d++) acc[d] += p * x[d];
}

/* Sequence seq's row of pages (dense or CSR) and its kv length. */
static const int32_t *table_row(const pkv_attn_args *a, int32_t seq,
                                int64_t *kv_len) {
  if (a->csr) {
    int64_t np = a->h_kv_indptr[seq + 1] - a->h_kv_indptr[seq];
    *kv_len = np > 0 ? (np - 1) * a->geom->page_size + a->h_kv_last[seq] : 0;
    return a->h_kv_indices + a->h_kv_indptr[seq];
  }
  *kv_len = a->h_seq_lens[seq];
  return a->h_block_table + (int64_t)seq * a->max_pages;
}

static int64_t pool_offset(const pkv_attn_args *a, const int32_t *row,
                           int64_t j, int32_t kvh) {
  const pkv_cache_geometry *g = a->geom;
  int32_t page = row[j / g->page_size];
  int64_t t = j % g->page_size;
  return (int64_t)page * g->page_stride + (int64_t)kvh * g->head_stride +
         t * g->token_stride;
}

/* Query token tok, kv head kvh, over the keys [kb, ke) of its sequence
 * (all of them for an unplanned call). part < 0: the result goes to out
 * and lse; else it is the partial row of a split request in the plan's
 * workspace (f32 out, normalised, and its LSE; sinks are left to the
 * merge, which sees every chunk). */
static void run_keys(const job *jb, int64_t tok, int32_t kvh, int64_t kb,
                     int64_t ke, int64_t part, double *scratch) {
  const pkv_attn_args *a = jb->a;
  const pkv_cache_geometry *g = a->geom;
  const pkv_dtype dt = g->dtype;
  const int32_t dim = g->head_dim, G = jb->group;
  const int32_t seq = jb->tok_seq[tok];
  int64_t kv_len;
  const int32_t *prow = table_row(a, seq, &kv_len);
  const int64_t q_len = a->h_q_indptr[seq + 1] - a->h_q_indptr[seq];
  const int64_t qpos = (tok - a->h_q_indptr[seq]) + kv_len - q_len;

  int64_t lo = 0, hi = kv_len - 1; /* visible keys [lo, hi] */
  if (a->causal && qpos < hi) hi = qpos;
  if (a->window_left >= 0 && qpos - a->window_left > lo)
    lo = qpos - a->window_left;
  if (kb > lo) lo = kb;
  if (ke - 1 < hi) hi = ke - 1;
  const float *sinks = part < 0 ? a->h_sinks : NULL;
  float *pout = NULL, *plse = NULL; /* the partial row, when there is one */
  if (part >= 0) {
    pout = (float *)a->plan->workspace->native +
           part * a->num_q_heads * (int64_t)dim;
    plse = (float *)a->plan->workspace->native +
           a->plan->lse_off + part * a->num_q_heads;
  }

  const int64_t max_kv = jb->max_kv;
  double *logits = scratch;                  /* [G][max_kv] */
  double *qv = logits + (int64_t)G * max_kv; /* [G][dim] */
  double *acc = qv + (int64_t)G * dim;       /* [G][dim] */
  double *row = acc + (int64_t)G * dim;      /* [dim] */
  double *mx = row + dim, *sum = mx + G;     /* [G] each */

  const void *qbase = a->q->native;
  void *obase = a->out->native;
  float *lse = a->lse ? (float *)a->lse->native : NULL;
  const void *kp = a->k_pool->native, *vp = a->v_pool->native;

  for (int32_t r = 0; r < G; r++) {
    int32_t hq = kvh * G + r;
    load_row(a->q_dtype, qbase, a->q_off + tok * jb->qts + hq * jb->qhs, dim,
             qv + (int64_t)r * dim);
  }

  if (hi < lo) {
    /* No visible key: zeros, and an LSE of -inf (or the sink's logit, the
     * only term of the denominator), never NaN. */
    for (int32_t r = 0; r < G; r++) {
      int32_t hq = kvh * G + r;
      if (pout) {
        for (int32_t d = 0; d < dim; d++) pout[(int64_t)hq * dim + d] = 0.0f;
        plse[hq] = -INFINITY;
        continue;
      }
      for (int32_t d = 0; d < dim; d++)
        pkv_store_elem(a->o_dtype, obase,
                       a->o_off + tok * jb->ots + hq * jb->ohs + d, 0.0);
      if (lse)
        lse[tok * a->num_q_heads + hq] = sinks ? sinks[hq] : -INFINITY;
    }
    return;
  }

  const int64_t n = hi - lo + 1;
  for (int64_t j = lo; j <= hi; j++) {
    load_row(dt, kp, pool_offset(a, prow, j, kvh), dim, row);
    scale_row(a->h_k_scales, kvh, dim, row);
    if (dt == PKV_DTYPE_INT8) int8_scale_row(a, prow, j, kvh, kp, dim, row);
    for (int32_t r = 0; r < G; r++) {
      double s = dot(qv + (int64_t)r * dim, row, dim) * jb->scale;
      if (a->softcap > 0.0f) s = a->softcap * tanh(s / a->softcap);
      if (a->h_alibi) s += (double)a->h_alibi[kvh * G + r] * (double)(j - qpos);
      logits[(int64_t)r * max_kv + (j - lo)] = s;
    }
  }

  for (int32_t r = 0; r < G; r++) {
    const double *l = logits + (int64_t)r * max_kv;
    double m = l[0];
    for (int64_t i = 1; i < n; i++)
      if (l[i] > m) m = l[i];
    mx[r] = m;
    sum[r] = 0.0;
    for (int32_t d = 0; d < dim; d++) acc[(int64_t)r * dim + d] = 0.0;
  }

  for (int64_t j = lo; j <= hi; j++) {
    load_row(dt, vp, pool_offset(a, prow, j, kvh), dim, row);
    scale_row(a->h_v_scales, kvh, dim, row);
    if (dt == PKV_DTYPE_INT8) int8_scale_row(a, prow, j, kvh, vp, dim, row);
    for (int32_t r = 0; r < G; r++) {
      double p = exp(logits[(int64_t)r * max_kv + (j - lo)] - mx[r]);
      sum[r] += p;
      axpy(acc + (int64_t)r * dim, p, row, dim);
    }
  }

  for (int32_t r = 0; r < G; r++) {
    int32_t hq = kvh * G + r;
    int64_t o = a->o_off + tok * jb->ots + hq * jb->ohs;
    double m = mx[r], l = sum[r];
    if (pout) {
      for (int32_t d = 0; d < dim; d++)
        pout[(int64_t)hq * dim + d] = (float)(acc[(int64_t)r * dim + d] / l);
      plse[hq] = (float)(m + log(l));
      continue;
    }
    if (sinks) {
      /* The sink joins the denominator only: rescale to a common max. */
      double sk = sinks[hq], M = m > sk ? m : sk;
      l = l * exp(m - M) + exp(sk - M);
      for (int32_t d = 0; d < dim; d++) acc[(int64_t)r * dim + d] *= exp(m - M);
      m = M;
    }
    for (int32_t d = 0; d < dim; d++)
      pkv_store_elem(a->o_dtype, obase, o + d, acc[(int64_t)r * dim + d] / l);
    if (lse) lse[tok * a->num_q_heads + hq] = (float)(m + log(l));
  }
}

static void run_item(const job *jb, int64_t item, double *scratch) {
  const int32_t nkv = jb->a->geom->num_kv_heads;
  run_keys(jb, item / nkv, (int32_t)(item % nkv), 0, INT64_MAX, -1, scratch);
}

/* Under a plan, a work unit is one (plan item, kv head): the keys of one
 * chunk for every query token of its request, so that a long request is
 * spread over the threads as the plan cut it. */
static void run_planned(const job *jb, int64_t unit, double *scratch) {
  const pkv_attn_args *a = jb->a;
  const int32_t nkv = a->geom->num_kv_heads;
  const pkv__plan_item *it = &a->plan->items[unit / nkv];
  const int32_t kvh = (int32_t)(unit % nkv);
  if (it->seq < 0 || it->seq >= a->num_seqs) return; /* padding */
  const int32_t t0 = a->h_q_indptr[it->seq], t1 = a->h_q_indptr[it->seq + 1];
  for (int32_t t = t0; t < t1; t++)
    run_keys(jb, t, kvh, it->kv_begin, it->kv_end,
             it->partial < 0 ? -1 : it->partial + (t - t0), scratch);
}

static int64_t unit_count(const job *jb) {
  const pkv_attn_args *a = jb->a;
  return (a->plan ? a->plan->num_items : a->num_tokens) *
         a->geom->num_kv_heads;
}

static void *run_worker(void *arg) {
  worker *w = arg;
  const job *jb = w->j;
  const int64_t units = unit_count(jb);
  for (int64_t i = w->first; i < units; i += w->step)
    jb->a->plan ? run_planned(jb, i, w->scratch) : run_item(jb, i, w->scratch);
  return NULL;
}

/* Log-sum-exp merge of the chunks of every split request (consecutive
 * items of one sequence with partial rows), with the sinks as one more
 * term of the denominator. */
static void merge_planned(const job *jb) {
  const pkv_attn_args *a = jb->a;
  const pkv__plan_exec *pe = a->plan;
  const int32_t dim = a->geom->head_dim, nq = a->num_q_heads;
  const float *po = pe->workspace ? (const float *)pe->workspace->native : NULL;
  if (!po) return;
  const float *pl = po + pe->lse_off;
  void *obase = a->out->native;
  float *lse = a->lse ? (float *)a->lse->native : NULL;
  for (int64_t k = 0; k < pe->num_items;) {
    const pkv__plan_item *it = &pe->items[k];
    int64_t e = k + 1;
    while (e < pe->num_items && pe->items[e].seq == it->seq) e++;
    if (it->seq < 0 || it->partial < 0 || it->seq >= a->num_seqs) {
      k = e;
      continue;
    }
    const int32_t t0 = a->h_q_indptr[it->seq], t1 = a->h_q_indptr[it->seq + 1];
    for (int32_t t = t0; t < t1; t++)
      for (int32_t hq = 0; hq < nq; hq++) {
        double M = a->h_sinks ? a->h_sinks[hq] : -INFINITY;
        for (int64_t c = k; c < e; c++) {
          double lc = pl[(pe->items[c].partial + (t - t0)) * nq + hq];
          if (lc > M) M = lc;
        }
        double den = 0.0;
        int64_t o = a->o_off + t * jb->ots + hq * jb->ohs;
        if (isinf(M)) { /* no chunk saw a key, and no sink */
          for (int32_t d = 0; d < dim; d++)
            pkv_store_elem(a->o_dtype, obase, o + d, 0.0);
          if (lse) lse[t * nq + hq] = -INFINITY;
          continue;
        }
        if (a->h_sinks) den += exp(a->h_sinks[hq] - M);
        for (int64_t c = k; c < e; c++) {
          int64_t row = pe->items[c].partial + (t - t0);
          den += exp(pl[row * nq + hq] - M);
        }
        for (int32_t d = 0; d < dim; d++) {
          double v = 0.0;
          for (int64_t c = k; c < e; c++) {
            int64_t row = pe->items[c].partial + (t - t0);
            v += exp(pl[row * nq + hq] - M) * po[(row * nq + hq) * dim + d];
          }
          pkv_store_elem(a->o_dtype, obase, o + d, v / den);
        }
        if (lse) lse[t * nq + hq] = (float)(M + log(den));
      }
    k = e;
  }
}

static int thread_count(const pkv_context *ctx, const pkv_attn_args *a,
                        int64_t items, int64_t max_kv) {
  double work = (double)a->num_tokens * a->num_q_heads * (double)max_kv *
                a->geom->head_dim;
  if (work < PKV_CPU_PARALLEL_MIN_WORK) return 1;
  long n = ctx->desc.cpu_threads;
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > PKV_MAX_CPU_THREADS) n = PKV_MAX_CPU_THREADS;
  if (n > items) n = (long)items;
  return (int)n;
}

pkv_status pkv__cpu_attention(pkv_context *ctx, const pkv_attn_args *a) {
  const pkv_cache_geometry *g = a->geom;
  if (a->num_tokens <= 0) return PKV_OK;
  pthread_once(&f16_lut_once, f16_lut_init); /* pool, q or out may be f16 */
  const int32_t group = a->num_q_heads / g->num_kv_heads;
  const int64_t items = a->num_tokens * g->num_kv_heads;

  int32_t *tok_seq = pkv__malloc((size_t)a->num_tokens * sizeof *tok_seq);
  if (!tok_seq)
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                    "CPU attention: token map of %lld entries",
                    (long long)a->num_tokens);
  for (int32_t s = 0; s < a->num_seqs; s++)
    for (int32_t t = a->h_q_indptr[s]; t < a->h_q_indptr[s + 1]; t++)
      tok_seq[t] = s;

  int64_t max_kv = 1;
  for (int32_t s = 0; s < a->num_seqs; s++) {
    int64_t len;
    (void)table_row(a, s, &len);
    if (len > max_kv) max_kv = len;
  }
  int nthreads = thread_count(ctx, a, a->plan ? a->plan->num_items * g->num_kv_heads
                                               : items, max_kv);
  /* Doubles per worker: logits [G][max_kv], q and acc [G][dim] each, a row
   * [dim] and 2*G softmax terms (run_item). The public limits keep this far
   * below SIZE_MAX, but it is checked anyway: a wrap here would let the
   * kernel write past the allocation. */
  size_t per = 0, bytes = 0; /* set by the checked products below */
  const size_t G = (size_t)group, D = (size_t)g->head_dim;
  if (!pkv__muladd_size(G, (size_t)max_kv, 2 * G * D + D + 2 * G, &per) ||
      !pkv__mul3_size((size_t)nthreads, per, sizeof(double), &bytes)) {
    pkv__free(tok_seq);
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "CPU attention: scratch of %d threads x (%d q heads per kv "
                    "head x %lld keys + head_dim %d terms) doubles overflows "
                    "size_t",
                    nthreads, group, (long long)max_kv, g->head_dim);
  }
  double *scratch = pkv__malloc(bytes);
  worker *ws = pkv__calloc((size_t)nthreads, sizeof *ws);
  if (!scratch || !ws) {
    pkv__free(tok_seq);
    pkv__free(scratch);
    pkv__free(ws);
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                    "CPU attention: scratch for %d threads x %lld keys",
                    nthreads, (long long)max_kv);
  }

  job jb = {a, tok_seq, group, max_kv,
            a->scale > 0.0f ? (double)a->scale : 1.0 / sqrt((double)g->head_dim),
            0, 0, 0, 0};
  pkv__attn_strides(a, &jb.qts, &jb.qhs, &jb.ots, &jb.ohs);
  for (int i = 0; i < nthreads; i++) {
    ws[i].j = &jb;
    ws[i].first = i;
    ws[i].step = nthreads;
    ws[i].scratch = scratch + (size_t)i * per;
  }
  /* Worker 0 is the calling thread; a worker whose thread cannot start is
   * run here too, so a failed pthread_create only costs speed. */
  for (int i = 1; i < nthreads; i++)
    ws[i].started = pthread_create(&ws[i].tid, NULL, run_worker, &ws[i]) == 0;
  run_worker(&ws[0]);
  for (int i = 1; i < nthreads; i++) {
    if (ws[i].started)
      pthread_join(ws[i].tid, NULL);
    else
      run_worker(&ws[i]);
  }
  if (a->plan) merge_planned(&jb);
  pkv__free(tok_seq);
  pkv__free(scratch);
  pkv__free(ws);
  return PKV_OK;
}
