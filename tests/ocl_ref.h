/* SPDX-License-Identifier: Apache-2.0 */
/* A small paged-attention reference for the OpenCL backend tests: host
 * pools in any storage dtype, random contents, and double-precision
 * attention with the library's semantics. Header-only, test use only. */
#ifndef PKV_TEST_OCL_REF_H
#define PKV_TEST_OCL_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pagedkv.h"

static uint64_t ref_rng = 0x9e3779b97f4a7c15ull;
static inline double ref_uniform(void) { /* [-1, 1) */
  ref_rng ^= ref_rng << 13;
  ref_rng ^= ref_rng >> 7;
  ref_rng ^= ref_rng << 17;
  return (double)(ref_rng >> 11) / (double)(1ull << 52) - 1.0;
}

static inline uint16_t ref_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, e = (x >> 23) & 0xffu,
           m = x & 0x7fffffu;
  if (e == 0xff) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u : 0));
  int ex = (int)e - 127 + 15;
  if (ex >= 31) return (uint16_t)(sign | 0x7c00u);
  if (ex <= 0) {
    if (ex < -10) return (uint16_t)sign;
    m |= 0x800000u;
    int shift = 14 - ex;
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((uint32_t)ex << 10) | (m >> 13), rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

static inline float ref_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu,
           m = h & 0x3ffu, x;
  if (e == 0) {
    if (m == 0) x = sign;
    else {
      e = 127 - 15 + 1;
      while (!(m & 0x400u)) { m <<= 1; e--; }
      x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (e == 31) x = sign | 0x7f800000u | (m << 13);
  else x = sign | ((e - 15 + 127) << 23) | (m << 13);
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static inline uint16_t ref_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float ref_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Element i of raw storage as a float. */
static inline float ref_get(const void *raw, pkv_dtype dt, size_t i) {
  if (dt == PKV_DTYPE_F32) return ((const float *)raw)[i];
  uint16_t h = ((const uint16_t *)raw)[i];
  return dt == PKV_DTYPE_F16 ? ref_f16_to_f32(h) : ref_bf16_to_f32(h);
}
static inline void ref_put(void *raw, pkv_dtype dt, size_t i, float v) {
  if (dt == PKV_DTYPE_F32) ((float *)raw)[i] = v;
  else ((uint16_t *)raw)[i] = dt == PKV_DTYPE_F16 ? ref_f32_to_f16(v) : ref_f32_to_bf16(v);
}

typedef struct ref_geom {
  int heads, dim, page_size;
  int64_t pages, page_stride, head_stride, token_stride;
  pkv_dtype dtype;
} ref_geom;

static inline ref_geom ref_make_geom(int heads, int dim, int page_size,
                                     int64_t pages, pkv_dtype dt,
                                     pkv_layout layout) {
  ref_geom g = {heads, dim, page_size, pages, 0, 0, 0, dt};
  g.page_stride = (int64_t)heads * page_size * dim;
  if (layout == PKV_LAYOUT_HND) {
    g.head_stride = (int64_t)page_size * dim;
    g.token_stride = dim;
  } else {
    g.head_stride = dim;
    g.token_stride = (int64_t)heads * dim;
  }
  return g;
}

typedef struct ref_attn_cfg {
  int num_seqs, num_q_heads, max_pages;
  const int32_t *block_table, *seq_lens, *q_indptr;
  float scale, softcap;
  int causal, window_left;
  const float *alibi;
} ref_attn_cfg;

/* out [tokens][qh][dim] floats, lse [tokens][qh]. */
static inline void ref_attention(const ref_geom *g, const void *kpool,
                                 const void *vpool, const void *q,
                                 const ref_attn_cfg *c, float *out,
                                 float *lse) {
  int group = c->num_q_heads / g->heads;
  double *p = malloc(sizeof(double) * 70000);
  for (int s = 0; s < c->num_seqs; s++) {
    int kv_len = c->seq_lens[s], q0 = c->q_indptr[s],
        q_len = c->q_indptr[s + 1] - q0;
    for (int i = 0; i < q_len; i++) {
      int qpos = i + kv_len - q_len;
      for (int qh = 0; qh < c->num_q_heads; qh++) {
        int kvh = qh / group;
        size_t qrow = ((size_t)(q0 + i) * c->num_q_heads + qh) * g->dim;
        double m = -INFINITY, l = 0;
        for (int j = 0; j < kv_len; j++) {
          p[j] = -INFINITY;
          if (c->causal && j > qpos) continue;
          if (c->window_left >= 0 && j < qpos - c->window_left) continue;
          int64_t base = (int64_t)c->block_table[s * c->max_pages + j / g->page_size] *
                             g->page_stride + kvh * g->head_stride +
                         (j % g->page_size) * g->token_stride;
          double dot = 0;
          for (int d = 0; d < g->dim; d++)
            dot += (double)ref_get(q, g->dtype, qrow + d) *
                   ref_get(kpool, g->dtype, (size_t)base + d);
          double sc = c->scale * dot;
          if (c->softcap > 0) sc = c->softcap * tanh(sc / c->softcap);
          if (c->alibi) sc += c->alibi[qh] * (double)(j - qpos);
          p[j] = sc;
          if (sc > m) m = sc;
        }
        for (int d = 0; d < g->dim; d++) out[qrow + d] = 0;
        if (m == -INFINITY) {
          if (lse) lse[(size_t)(q0 + i) * c->num_q_heads + qh] = -INFINITY;
          continue;
        }
        double *acc = calloc((size_t)g->dim, sizeof(double));
        for (int j = 0; j < kv_len; j++) {
          if (p[j] == -INFINITY) continue;
          double w = exp(p[j] - m);
          l += w;
          int64_t base = (int64_t)c->block_table[s * c->max_pages + j / g->page_size] *
                             g->page_stride + kvh * g->head_stride +
                         (j % g->page_size) * g->token_stride;
          for (int d = 0; d < g->dim; d++)
            acc[d] += w * ref_get(vpool, g->dtype, (size_t)base + d);
        }
        for (int d = 0; d < g->dim; d++) out[qrow + d] = (float)(acc[d] / l);
        if (lse) lse[(size_t)(q0 + i) * c->num_q_heads + qh] = (float)(m + log(l));
        free(acc);
      }
    }
  }
  free(p);
}

#endif
