/* SPDX-License-Identifier: Apache-2.0 */
/* Definitions shared by every portable kernel: storage type of the cache
 * (PKV_DTYPE), tile sizes, and the score function of the attention
 * semantics. Compiled after dialect.h, before the kernel files; the HIP
 * build may include it once per (head dim, dtype) instantiation, so every
 * macro here is #undef'd first and nothing here defines a function that
 * does not depend on the instantiation's macros. */
#ifndef PKV_HEAD_DIM
#error "PKV_HEAD_DIM must be given as a build option"
#endif
#ifndef PKV_DTYPE
#error "PKV_DTYPE must be given as a build option (0 f32, 1 f16, 2 bf16)"
#endif
#if PKV_HEAD_DIM % 16 != 0
#error "PKV_HEAD_DIM must be a multiple of 16"
#endif

/* Tile sizes; the host passes its choice, these are the defaults. */
#ifndef PKV_DEC_WG
#define PKV_DEC_WG 64 /* decode work-group size (power of two) */
#endif
#ifndef PKV_PART
#define PKV_PART 512 /* keys per decode partition */
#endif
#ifndef PKV_MAXG
#define PKV_MAXG 8 /* query heads of one GQA group per decode work-group */
#endif
#ifndef PKV_PF_BR
#define PKV_PF_BR 32 /* prefill rows (query token x group head) per group */
#endif
#ifndef PKV_PF_BK
#define PKV_PF_BK 32 /* prefill keys per tile held in local memory */
#endif

#undef PKV_NCH
#define PKV_NCH (PKV_HEAD_DIM / 8) /* 8-element chunks of one head row */

/* pkv_elem_t: how the kernels see one stored element; pkv_bits_t: the same
 * bytes as an unsigned integer for copies that must keep every bit. */
#undef PKV_LD
#undef pkv_elem_t
#undef pkv_bits_t
#undef PKV_ST
#undef PKV_LD8
#undef PKV_LD8V
#if PKV_DTYPE == 0
#define pkv_elem_t float
#define pkv_bits_t pkv_u32
#define PKV_LD(p, i) ((p)[i])
#define PKV_ST(v, p, i) ((p)[i] = (v))
#define PKV_LD8(p, o) pkv_ld8_f32((p), (o))
#define PKV_LD8V(dst, p) pkv_ld8v_f32(dst, p)
#elif PKV_DTYPE == 1
#define pkv_elem_t pkv_half
#define pkv_bits_t pkv_u16
#define PKV_LD(p, i) pkv_load_f16((p), (i))
#define PKV_ST(v, p, i) pkv_store_f16((v), (p), (i))
#define PKV_LD8(p, o) pkv_ld8_f16((p), (o))
#define PKV_LD8V(dst, p) pkv_ld8v_f16(dst, p)
#elif PKV_DTYPE == 2
#define pkv_elem_t pkv_u16
#define pkv_bits_t pkv_u16
#define PKV_LD(p, i) pkv_load_bf16((p), (i))
#define PKV_ST(v, p, i) pkv_store_bf16((v), (p), (i))
#define PKV_LD8(p, o) pkv_ld8_bf16((p), (o))
#define PKV_LD8V(dst, p) pkv_ld8v_bf16(dst, p)
#else
#error "PKV_DTYPE must be 0 (f32), 1 (f16) or 2 (bf16)"
#endif

/* Score of key j for a query at position qpos, given the dot product; the
 * order of operations follows the CPU reference: scale, soft-cap, ALiBi.
 * A macro, not a function, so that it is instantiation-independent. */
#undef PKV_SCORE
#define PKV_SCORE(dot, scale, softcap, slope, j, qpos)                       \
  pkv_score_((dot), (scale), (softcap), (slope), (j), (qpos))
#ifndef PKV_SCORE_DEFINED
#define PKV_SCORE_DEFINED
PKV_INLINE float pkv_score_(float dot, float scale, float softcap,
                            float slope, int j, int qpos) {
  float s = scale * dot;
  if (softcap > 0.0f) s = softcap * pkv_tanhf(s / softcap);
  return s + slope * (float)(j - qpos);
}
/* exp(s - m) that is 0, not NaN, when both are -inf (no key seen yet). */
PKV_INLINE float pkv_exp_diff(float s, float m) {
  return m == -PKV_INFINITY ? 0.0f : pkv_expf(s - m);
}

/* q and out have their own dtype, a run-time argument (0 f32, 1 f16,
 * 2 bf16), independent of the pool dtype of the instantiation. */
PKV_INLINE float pkv_ld_io(const PKV_GLOBAL void *p, pkv_i64 i, int dt) {
  if (dt == 1) return pkv_load_f16((const PKV_GLOBAL pkv_half *)p, i);
  if (dt == 2) return pkv_bf16_to_f32(((const PKV_GLOBAL pkv_u16 *)p)[i]);
  return ((const PKV_GLOBAL float *)p)[i];
}
PKV_INLINE void pkv_st_io(float v, PKV_GLOBAL void *p, pkv_i64 i, int dt) {
  if (dt == 1)
    pkv_store_f16(v, (PKV_GLOBAL pkv_half *)p, i);
  else if (dt == 2)
    ((PKV_GLOBAL pkv_u16 *)p)[i] = pkv_f32_to_bf16(v);
  else
    ((PKV_GLOBAL float *)p)[i] = v;
}

/* Sequence s's row of pages, dense (block_table row s) or CSR
 * (kv_indices[kv_indptr[s]..kv_indptr[s+1])), and its kv length, bounded
 * by the row: a table the host could not check never makes a kernel read
 * past the row or the index array. *row0 gets the row's first index. */
PKV_INLINE int pkv_table_row(const PKV_GLOBAL int *seq_lens,
                             const PKV_GLOBAL int *kv_indptr,
                             const PKV_GLOBAL int *kv_last, int csr, int s,
                             int max_pages, int page_size,
                             pkv_i64 num_kv_indices, pkv_i64 *row0) {
  pkv_i64 row_len;
  int kv_len;
  if (csr) {
    const int b = kv_indptr[s], e = kv_indptr[s + 1];
    *row0 = 0;
    if (b < 0 || e < b || (pkv_i64)e > num_kv_indices) return 0;
    *row0 = b;
    row_len = e - b;
    kv_len = row_len > 0 ? (int)(row_len - 1) * page_size + kv_last[s] : 0;
  } else {
    *row0 = (pkv_i64)s * max_pages;
    row_len = max_pages;
    kv_len = seq_lens[s];
  }
  if ((pkv_i64)kv_len > row_len * page_size) kv_len = (int)(row_len * page_size);
  return kv_len < 0 ? 0 : kv_len;
}

/* A page index from the table, bounded by the pool: an entry outside it
 * reads page 0 (unspecified values, never memory outside the pool). */
PKV_INLINE pkv_i64 pkv_page_at(const PKV_GLOBAL int *pages, pkv_i64 i,
                               int num_pages) {
  const int p = pages[i];
  return (p >= 0 && p < num_pages) ? p : 0;
}

/* Folds a sink logit into a finished softmax (max *m, sum *l): the sink
 * joins the denominator only. Returns the factor for the output normalised
 * by the old sum; *m and *l become those of the full denominator. */
PKV_INLINE float pkv_sink_fold(float *m, float *l, float sink) {
  const float M = pkv_fmaxf(*m, sink);
  const float a = *l > 0.0f ? *l * pkv_exp_diff(*m, M) : 0.0f;
  const float L = a + pkv_expf(sink - M);
  *m = M;
  *l = L;
  return a / L;
}
#endif
