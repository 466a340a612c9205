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
#error "PKV_DTYPE must be given as a build option (0 f32, 1 f16, 2 bf16, 3 e4m3, 4 e5m2)"
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

/* fp8 <-> f32, unscaled (the scales are folded into the softmax scale and
 * the output, or divided out before the store). Instantiation-independent
 * functions, defined once. The encoder rounds to nearest even and
 * saturates (finite beyond max and +-Inf give +-max, NaN stays NaN), the
 * rules of the host's pkv_convert_from_f32 (lib/dtype_convert.c). */
#ifndef PKV_FP8_DEFINED
#define PKV_FP8_DEFINED
PKV_INLINE float pkv_e4m3_to_f32(pkv_u32 b) {
  const pkv_u32 s = (b & 0x80u) << 24, em = b & 0x7fu;
  if (em == 0x7fu) return pkv_as_float(s | 0x7fc00000u);
  if (em < 8u) {
    const float v = (float)em * (1.0f / 512.0f);
    return s ? -v : v;
  }
  return pkv_as_float(s | ((em + (120u << 3)) << 20));
}
PKV_INLINE float pkv_e5m2_to_f32(pkv_u32 b) {
  const pkv_u32 s = (b & 0x80u) << 24, em = b & 0x7fu;
  if (em >= 0x7cu) return pkv_as_float(s | 0x7f800000u | ((em & 3u) << 21));
  if (em < 4u) {
    const float v = (float)em * (1.0f / 65536.0f);
    return s ? -v : v;
  }
  return pkv_as_float(s | ((em + (112u << 2)) << 21));
}
PKV_INLINE pkv_u8 pkv_f32_to_fp8(float f, int mbits, int bias, pkv_u32 maxc,
                                 pkv_u32 nanc) {
  const pkv_u32 x = pkv_as_uint(f), s = (x >> 24) & 0x80u, a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return (pkv_u8)(s | nanc);
  const int e = (int)(a >> 23) - 127, emin = 1 - bias;
  if (e >= 20) return (pkv_u8)(s | maxc); /* past both formats, and Inf */
  pkv_u32 code;
  if (e < emin) {
    /* subnormal (or zero): multiples of 2^(emin - mbits); the carry to
     * the smallest normal gives its code */
    code = (pkv_u32)pkv_rintf(pkv_as_float(a) *
                              pkv_as_float((pkv_u32)(127 + mbits - emin) << 23));
  } else {
    const int sh = 23 - mbits;
    const pkv_u32 r = a + ((1u << (sh - 1)) - 1u) + ((a >> sh) & 1u);
    const int e2 = (int)(r >> 23) - 127;
    code = ((pkv_u32)(e2 + bias) << mbits) | ((r >> sh) & ((1u << mbits) - 1u));
  }
  return (pkv_u8)(s | (code < maxc ? code : maxc));
}
#endif

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
#elif PKV_DTYPE == 3 || PKV_DTYPE == 4
#define pkv_elem_t pkv_u8
#define pkv_bits_t pkv_u8
#undef PKV_FP8_DEC
#undef PKV_FP8_ENC
#if PKV_DTYPE == 3
#define PKV_FP8_DEC(b) pkv_e4m3_to_f32(b)
#define PKV_FP8_ENC(v) pkv_f32_to_fp8((v), 3, 7, 0x7eu, 0x7fu)
#else
#define PKV_FP8_DEC(b) pkv_e5m2_to_f32(b)
#define PKV_FP8_ENC(v) pkv_f32_to_fp8((v), 2, 15, 0x7bu, 0x7eu)
#endif
#define PKV_LD(p, i) PKV_FP8_DEC((p)[i])
#define PKV_ST(v, p, i) ((p)[i] = PKV_FP8_ENC(v))
#define PKV_LD8(p, o)                                                        \
  do {                                                                       \
    for (int e_ = 0; e_ < 8; e_++) (o)[e_] = PKV_FP8_DEC((p)[e_]);          \
  } while (0)
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
/* Eight codes at once, branch-free on the vector type (a CPU device runs
 * the scalar decoder per element otherwise): normal codes by rebiasing
 * the exponent, subnormals as code * 2^-(bias - 1 + mbits), then the
 * special codes. Exact, like pkv_e4m3_to_f32 / pkv_e5m2_to_f32. */
#if PKV_DTYPE == 3
#define PKV_LD8V(dst, p)                                                     \
  do {                                                                       \
    const uint8 b_ = convert_uint8(vload8(0, (const PKV_GLOBAL uchar *)(p))); \
    const uint8 s_ = (b_ & 0x80u) << 24, em_ = b_ & 0x7fu;                   \
    const float8 n_ = as_float8(s_ | ((em_ + (120u << 3)) << 20));           \
    const float8 u_ =                                                        \
        as_float8(s_ | as_uint8(convert_float8(em_) * (1.0f / 512.0f)));     \
    (dst) = select(select(n_, u_, em_ < 8u), as_float8(s_ | 0x7fc00000u),   \
                   em_ == 0x7fu);                                            \
  } while (0)
#else
#define PKV_LD8V(dst, p)                                                     \
  do {                                                                       \
    const uint8 b_ = convert_uint8(vload8(0, (const PKV_GLOBAL uchar *)(p))); \
    const uint8 s_ = (b_ & 0x80u) << 24, em_ = b_ & 0x7fu;                   \
    const float8 n_ = as_float8(s_ | ((em_ + (112u << 2)) << 21));           \
    const float8 u_ =                                                        \
        as_float8(s_ | as_uint8(convert_float8(em_) * (1.0f / 65536.0f)));   \
    (dst) = select(select(n_, u_, em_ < 4u),                                 \
                   as_float8(s_ | 0x7f800000u | ((em_ & 3u) << 21)),         \
                   em_ >= 0x7cu);                                            \
  } while (0)
#endif
#else
#define PKV_LD8V(dst, p)                                                     \
  do {                                                                       \
    float t_[8];                                                             \
    for (int e_ = 0; e_ < 8; e_++) t_[e_] = PKV_FP8_DEC((p)[e_]);           \
    pkv_f8_ldl(dst, t_);                                                     \
  } while (0)
#endif
#elif PKV_DTYPE == 5
/* int8 codes; each row's f32 scale lies in its page's scale block (see
 * PKV_ROW_SCALE), applied by the kernels, never by these loads */
#define pkv_elem_t pkv_i8
#define pkv_bits_t pkv_u8
#define PKV_LD(p, i) ((float)(p)[i])
#define PKV_ST(v, p, i) ((p)[i] = (pkv_i8)(v))
#define PKV_LD8(p, o)                                                        \
  do {                                                                       \
    for (int e_ = 0; e_ < 8; e_++) (o)[e_] = (float)(p)[e_];                \
  } while (0)
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
/* one 8-byte vector load and conversion (a CPU device vectorises it; the
 * element loop through a private array does not) */
#define PKV_LD8V(dst, p) \
  ((dst) = convert_float8(vload8(0, (const PKV_GLOBAL char *)(p))))
#else
#define PKV_LD8V(dst, p)                                                     \
  do {                                                                       \
    float t_[8];                                                             \
    for (int e_ = 0; e_ < 8; e_++) t_[e_] = (float)(p)[e_];                 \
    pkv_f8_ldl(dst, t_);                                                     \
  } while (0)
#endif
#else
#error "PKV_DTYPE must be 0 (f32), 1 (f16), 2 (bf16), 3 (e4m3), 4 (e5m2) or 5 (int8)"
#endif

/* int8: the f32 scale of token t of kv head h in page `page` of a pool
 * (bytes: page * page_stride + scale_offset + (h * page_size + t) * 4);
 * 1 for every other dtype (a constant the compiler folds away). */
#undef PKV_ROW_SCALE
#if PKV_DTYPE == 5
#define PKV_ROW_SCALE(pool, page, h, t)                                      \
  (((const PKV_GLOBAL float *)((const PKV_GLOBAL pkv_u8 *)(pool) +           \
                               (page) * page_stride + scale_offset))         \
       [(pkv_i64)(h) * page_size + (t)])
#else
#define PKV_ROW_SCALE(pool, page, h, t) 1.0f
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
/* exp(s - m) that is 0, not NaN, when both are -inf (no key seen yet);
 * a NaN score stays NaN even then (a running max skips NaN, so the first
 * key of a stream may be NaN while m is still -inf), so that NaN input
 * reaches the output (doc/quantized.md). */
PKV_INLINE float pkv_exp_diff(float s, float m) {
  return (m == -PKV_INFINITY && s == -PKV_INFINITY) ? 0.0f : pkv_expf(s - m);
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
  const float a = !(*l <= 0.0f) ? *l * pkv_exp_diff(*m, M) : 0.0f;
  const float L = a + pkv_expf(sink - M);
  *m = M;
  *l = L;
  return a / L;
}
#endif
