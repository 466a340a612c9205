/* SPDX-License-Identifier: Apache-2.0 */
/* The GPU-shaped decode kernel, in the tile dialect (tile.h): one block
 * per (key partition, kv head and group chunk, sequence), as pkv_decode,
 * writing the same outputs and partials (merged by pkv_decode_merge).
 *
 * - K and V rows of a tile of PKV_G_T keys are copied to local memory in
 *   16-byte pieces by the whole block, PKV_STAGES - 1 tiles ahead of use
 *   (cp.async on NVIDIA), so each K/V byte is read from memory once and
 *   serves every query head of the GQA group;
 * - the page index of each key is looked up when its copy is issued,
 *   i.e. prefetched stages ahead, with a fast divmod (no division);
 * - a team of PKV_G_TPR lanes shares a row, 8 elements (16 bytes of f16)
 *   per lane; the dot product is one xor-butterfly over the team;
 * - each team keeps its head's softmax online (running max, sum and
 *   output slice in registers): no score array in local memory;
 * - at the end the teams of a head merge by log-sum-exp in a fixed order.
 * Rows (of K, V and q) must be 16-byte aligned for the vector copies and
 * loads: the host checks the buffers and strides once and otherwise launches pkv_decode_gpu_u, the
 * same body with element copies (never a per-load test). Every loop that
 * contains a shuffle or barrier is uniform across the block. */
#if defined(PKV_WITH_GPU)

#undef PKV_G_ES
#undef PKV_G_LDS8
#undef PKV_G_LDG8
#undef PKV_G_QUANT
#undef pkv_gio_t
#if PKV_DTYPE == 0
#define PKV_G_ES 4
#define PKV_G_LDS8(dst, p) pkv_lds8_f32(dst, p)
#define PKV_G_LDG8(dst, p) pkv_ldg8_f32(dst, p)
#elif PKV_DTYPE <= 2
#define PKV_G_ES 2
#if PKV_DTYPE == 1
#define PKV_G_LDS8(dst, p) pkv_lds8_f16(dst, p)
#define PKV_G_LDG8(dst, p) pkv_ldg8_f16(dst, p)
#else
#define PKV_G_LDS8(dst, p) pkv_lds8_bf16(dst, p)
#define PKV_G_LDG8(dst, p) pkv_ldg8_bf16(dst, p)
#endif
#else
/* fp8 / int8 (quant.h): one byte per code, so a 16-byte copy moves 16
 * codes and each lane dequantizes its 8 in registers; q and out are f32,
 * f16 or bf16 (io, a run-time argument), never the pool dtype. */
#define PKV_G_ES 1
#define PKV_G_QUANT 1
#define PKV_G_LDS8(dst, p) PKV_G_LDQ8(dst, p)
#endif
/* q and out: the pool dtype for float pools, else any io dtype */
#ifdef PKV_G_QUANT
#define pkv_gio_t void
#else
#define pkv_gio_t pkv_elem_t
#endif
/* Lane l's 8 elements of a staged row (bytes, any element size). */
#undef PKV_G_LANE
#define PKV_G_LANE(row, lane) \
  ((PKV_LOCAL const pkv_u8 *)(row) + (lane) * (8 * PKV_G_ES))
#undef PKV_G_ROWU4
#define PKV_G_ROWU4 (PKV_HEAD_DIM * PKV_G_ES / 16) /* 16-byte pieces per row */
#undef PKV_G_TPR
#if PKV_NCH <= 8
#define PKV_G_TPR 8
#elif PKV_NCH <= 16
#define PKV_G_TPR 16
#else
#define PKV_G_TPR 32
#endif
#undef PKV_G_NT
#define PKV_G_NT (4 * PKV_WAVE > PKV_G_TPR * 8 ? 4 * PKV_WAVE : PKV_G_TPR * 8)
#undef PKV_G_NTEAM
#define PKV_G_NTEAM (PKV_G_NT / PKV_G_TPR)
#undef PKV_G_MAXG
#define PKV_G_MAXG 8 /* query heads per block: the host's chunking */
/* Keys per tile: all stages of K and V within 16 KiB, a power of two. */
#undef PKV_G_TRAW
#define PKV_G_TRAW (16384 / (PKV_STAGES * 2 * PKV_G_ROWU4 * 16))
#undef PKV_G_T
#if PKV_G_TRAW >= 64
#define PKV_G_T 64
#elif PKV_G_TRAW >= 32
#define PKV_G_T 32
#elif PKV_G_TRAW >= 16
#define PKV_G_T 16
#elif PKV_G_TRAW >= 8
#define PKV_G_T 8
#elif PKV_G_TRAW >= 4
#define PKV_G_T 4
#elif PKV_G_TRAW >= 2
#define PKV_G_T 2
#else
#define PKV_G_T 1
#endif
#undef PKV_G_STAGE_U4
#define PKV_G_STAGE_U4 (2 * PKV_G_T * PKV_G_ROWU4)
#undef PKV_G_MERGE_U4
#define PKV_G_MERGE_U4 ((PKV_G_NTEAM * (PKV_HEAD_DIM + 2) + 3) / 4)
#undef PKV_G_SMEM_U4
#define PKV_G_SMEM_U4                                                          \
  (PKV_STAGES * PKV_G_STAGE_U4 > PKV_G_MERGE_U4 ? PKV_STAGES * PKV_G_STAGE_U4 \
                                                : PKV_G_MERGE_U4)
#if PKV_G_TPR > PKV_WAVE
#error "a row team must fit in one wave"
#endif
#if PKV_STAGES < 2 || PKV_STAGES > 4
#error "PKV_STAGES must be 2, 3 or 4"
#endif

/* Issues the copies of tile tt (keys kbeg + tt*T ...) into stage st. */
PKV_INLINE void PKV_KNAME(pkv_gdec_issue)(
    pkv_async *as, PKV_LOCAL pkv_u32x4 *sm, int st, int tt, int kbeg,
    int kend, const PKV_GLOBAL int *bt, const PKV_GLOBAL pkv_elem_t *k_pool,
    const PKV_GLOBAL pkv_elem_t *v_pool, int kvh, int page_size,
    pkv_u32 pmul, int pshift, pkv_i64 page_stride, pkv_i64 head_stride,
    pkv_i64 token_stride, int tid, const int aligned) {
  for (int c = tid; c < PKV_G_STAGE_U4; c += PKV_G_NT) {
    const int kv = c / (PKV_G_T * PKV_G_ROWU4);
    const int rem = c - kv * (PKV_G_T * PKV_G_ROWU4);
    const int r = rem / PKV_G_ROWU4, u = rem - r * PKV_G_ROWU4;
    const int j = kbeg + tt * PKV_G_T + r;
    if (j >= kend) continue;
    const int pg = pkv_fastdiv(j, pmul, pshift);
    const pkv_i64 off = (pkv_i64)bt[pg] * page_stride + kvh * head_stride +
                        (pkv_i64)(j - pg * page_size) * token_stride;
    const PKV_GLOBAL pkv_elem_t *row = (kv ? v_pool : k_pool) + off;
    PKV_LOCAL pkv_u32x4 *dst = sm + st * PKV_G_STAGE_U4 + c;
    if (aligned) {
      pkv_cp16(as, dst, (const PKV_GLOBAL pkv_u32x4 *)row + u);
    } else {
      /* Element copies: legal at any element alignment. */
      const PKV_GLOBAL pkv_bits_t *s =
          (const PKV_GLOBAL pkv_bits_t *)row + u * (16 / PKV_G_ES);
      PKV_LOCAL pkv_bits_t *d = (PKV_LOCAL pkv_bits_t *)dst;
      for (int e = 0; e < 16 / PKV_G_ES; e++) d[e] = s[e];
    }
  }
}

PKV_INLINE void PKV_KNAME(pkv_gdec_body)(
    const PKV_GLOBAL pkv_gio_t *q, const PKV_GLOBAL pkv_elem_t *k_pool,
    const PKV_GLOBAL pkv_elem_t *v_pool, const PKV_GLOBAL int *block_table,
    const PKV_GLOBAL int *seq_lens, const PKV_GLOBAL int *q_indptr,
    const PKV_GLOBAL float *alibi, PKV_GLOBAL pkv_gio_t *out,
    PKV_GLOBAL float *lse, PKV_GLOBAL float *part_o, PKV_GLOBAL float *part_ml,
    int max_pages, int num_q_heads, int group, int page_size, pkv_u32 pmul,
    int pshift, pkv_i64 page_stride, pkv_i64 head_stride, pkv_i64 token_stride,
    float scale, float softcap, int causal, int window_left, int flags,
    int num_parts, int part_len, int io,
    const PKV_GLOBAL float *kv_scales, pkv_i64 scale_offset,
    const PKV_GLOBAL int *items, PKV_LOCAL pkv_u32x4 *sm,
    PKV_LOCAL float *scr, const int aligned) {
  /* items: the plan's item array (pkv_decode_gpu_plan; see
   * pkv_decode_plan): then the block is (item, kv head x group chunk),
   * part_o/part_ml are the workspace's partial outputs and LSE, and
   * num_parts/part_len are unused. NULL: the fixed partitions. */
  const PKV_GLOBAL int *it = items ? items + 4 * (pkv_i64)PKV_GROUP(0) : items;
  const int part = PKV_GROUP(0), tid = PKV_LID(0);
  const int s = it ? it[0] : PKV_GROUP(2);
  if (s < 0) return; /* a padding item: uniform exit */
  const int nchunks = (group + PKV_G_MAXG - 1) / PKV_G_MAXG;
  const int kvh = PKV_GROUP(1) / nchunks, gc = PKV_GROUP(1) % nchunks;
  const int g0 = gc * PKV_G_MAXG;
  const int gn = group - g0 < PKV_G_MAXG ? group - g0 : PKV_G_MAXG;
  const int qh0 = kvh * group + g0;
  const int qi = q_indptr[s];
  if (q_indptr[s + 1] - qi <= 0) return; /* no query: uniform exit */
  const int kv_len = seq_lens[s];
  const int qpos = kv_len - 1;
  int kbeg = it ? it[1] : part * part_len;
  int kend = it ? it[2] : kbeg + part_len;
  if (kend > kv_len) kend = kv_len;
  if (causal && kend > qpos + 1) kend = qpos + 1;
  if (window_left >= 0 && kbeg < qpos - window_left) kbeg = qpos - window_left;
  const int n = kend - kbeg;
  const int ntiles = n > 0 ? (n + PKV_G_T - 1) / PKV_G_T : 0;

  /* Teams: team = g * ks_n + ks takes head g and every ks_n-th key. */
  const int team = tid / PKV_G_TPR, lane = tid - team * PKV_G_TPR;
  const int ks_n = PKV_G_NTEAM / gn;
  const int g = team / ks_n, ks = team - g * ks_n;
  const int active = g < gn;
  const int has_dims = lane < PKV_NCH;
  const float slope = (active && (flags & 1)) ? alibi[qh0 + g] : 0.0f;
  /* fp8 per-head scales (flags 16): K's folds into the softmax scale, V's
   * multiplies the output; int8's per-token scales are read per key. */
  /* Compiled only where a pool can have them: a float pool's kernel keeps
   * no scale live across the key loop (a register at the 64-register
   * launch bound of head dim 256). */
#if PKV_DTYPE == 3 || PKV_DTYPE == 4
  float v_scale = 1.0f;
  if (flags & 16) {
    scale *= kv_scales[kvh];
    v_scale = kv_scales[num_q_heads / group + kvh];
  }
#else
  const float v_scale = 1.0f;
  (void)kv_scales;
#endif
  (void)io;
  (void)scale_offset;

  pkv_f8 q8 = pkv_f8_zero(), acc = pkv_f8_zero();
  if (active && has_dims) {
    const pkv_i64 qb = ((pkv_i64)qi * num_q_heads + qh0 + g) * PKV_HEAD_DIM + lane * 8;
#ifdef PKV_G_QUANT
    float qa[8];
    for (int e = 0; e < 8; e++) qa[e] = pkv_ld_io(q, qb + e, io & 15);
    pkv_f8_from(q8, qa);
#else
    if (aligned) {
      PKV_G_LDG8(q8, q + qb);
    } else {
      float qa[8];
      for (int e = 0; e < 8; e++) qa[e] = PKV_LD(q, qb + e);
      pkv_f8_from(q8, qa);
    }
#endif
  }
  float m = -PKV_INFINITY, l = 0.0f;

  const PKV_GLOBAL int *bt = block_table + (pkv_i64)s * max_pages;
  pkv_async as;
  pkv_async_init(&as);
  for (int t = 0; t < PKV_STAGES - 1; t++) {
    if (t < ntiles)
      PKV_KNAME(pkv_gdec_issue)(&as, sm, t, t, kbeg, kend, bt, k_pool, v_pool,
                                kvh, page_size, pmul, pshift, page_stride,
                                head_stride, token_stride, tid, aligned);
    pkv_async_commit(&as);
  }
  const int iters = (PKV_G_T + ks_n - 1) / ks_n;
  for (int t = 0; t < ntiles; t++) {
    const int tn = t + PKV_STAGES - 1;
    if (tn < ntiles) /* its stage was last read before the previous barrier */
      PKV_KNAME(pkv_gdec_issue)(&as, sm, tn % PKV_STAGES, tn, kbeg, kend, bt,
                                k_pool, v_pool, kvh, page_size, pmul, pshift,
                                page_stride, head_stride, token_stride, tid,
                                aligned);
    pkv_async_commit(&as);
    pkv_async_wait(&as, PKV_STAGES - 1); /* tile t has landed */
    PKV_BARRIER();
    const PKV_LOCAL pkv_u32x4 *ks_base = sm + (t % PKV_STAGES) * PKV_G_STAGE_U4;
    const PKV_LOCAL pkv_u32x4 *vs_base = ks_base + PKV_G_T * PKV_G_ROWU4;
    for (int it = 0; it < iters; it++) {
      const int r = it * ks_n + ks;
      const int j = kbeg + t * PKV_G_T + r;
      const int in_tile = active && r < PKV_G_T;
      float part_dot = 0.0f;
      if (in_tile && has_dims) {
        pkv_f8 k8;
        PKV_G_LDS8(k8, PKV_G_LANE(ks_base + r * PKV_G_ROWU4, lane));
        part_dot = pkv_f8_hsum(pkv_f8_fma(q8, k8, pkv_f8_zero()));
      }
      const float dot = pkv_tile_sum(part_dot, PKV_G_TPR, scr); /* uniform */
      if (in_tile && j < kend) {
#if PKV_DTYPE == 5
        /* int8: the key's and the value's row scales (the page's scale
         * block; the host checked every page of the table) */
        const int pg = pkv_fastdiv(j, pmul, pshift);
        const pkv_i64 page = bt[pg];
        const int tok = j - pg * page_size;
        const float krs = PKV_ROW_SCALE(k_pool, page, kvh, tok);
        const float vrs = PKV_ROW_SCALE(v_pool, page, kvh, tok);
        const float sc = PKV_SCORE(dot * krs, scale, softcap, slope, j, qpos);
#else
        const float sc = PKV_SCORE(dot, scale, softcap, slope, j, qpos);
#endif
        const float mn = pkv_fmaxf(m, sc);
        const float alpha = pkv_exp_diff(m, mn), p = pkv_exp_diff(sc, mn);
        l = l * alpha + p;
        m = mn;
        if (has_dims) {
          pkv_f8 v8;
          PKV_G_LDS8(v8, PKV_G_LANE(vs_base + r * PKV_G_ROWU4, lane));
#if PKV_DTYPE == 5
          acc = pkv_f8_axpy(p * vrs, v8, pkv_f8_scale(acc, alpha));
#else
          acc = pkv_f8_axpy(p, v8, pkv_f8_scale(acc, alpha));
#endif
        }
      }
    }
    PKV_BARRIER(); /* the stage may be overwritten from here on */
  }
  pkv_async_wait(&as, 0);

  /* Merge the teams of each head (local memory now free). */
  PKV_LOCAL float *sm_m = (PKV_LOCAL float *)sm;
  PKV_LOCAL float *sm_l = sm_m + PKV_G_NTEAM;
  PKV_LOCAL float *sm_acc = sm_l + PKV_G_NTEAM;
  PKV_BARRIER();
  if (lane == 0) {
    sm_m[team] = m;
    sm_l[team] = l;
  }
  if (has_dims) pkv_f8_stl(acc, sm_acc + team * PKV_HEAD_DIM + lane * 8);
  PKV_BARRIER();
  /* the item's partial row, read only now: not live across the key loop
   * (a register at the launch bound of int8 at d192/d256) */
  const int prow = it ? it[3] : -1;
  for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_G_NT) {
    const int gg = i / PKV_HEAD_DIM, d = i - gg * PKV_HEAD_DIM;
    const int t0 = gg * ks_n;
    float M = -PKV_INFINITY, L = 0.0f, o = 0.0f;
    for (int k = 0; k < ks_n; k++) M = pkv_fmaxf(M, sm_m[t0 + k]);
    for (int k = 0; k < ks_n; k++) {
      const float w = pkv_exp_diff(sm_m[t0 + k], M);
      L += sm_l[t0 + k] * w;
      o += sm_acc[(t0 + k) * PKV_HEAD_DIM + d] * w;
    }
    o = !(L <= 0.0f) ? o / L * v_scale : 0.0f; /* NaN stays NaN */
    const int qh = qh0 + gg;
    if (it ? prow < 0 : num_parts == 1) {
#ifdef PKV_G_QUANT
      pkv_st_io(o, out, ((pkv_i64)qi * num_q_heads + qh) * PKV_HEAD_DIM + d, io >> 4);
#else
      PKV_ST(o, out, ((pkv_i64)qi * num_q_heads + qh) * PKV_HEAD_DIM + d);
#endif
      if ((flags & 2) && d == 0)
        lse[(pkv_i64)qi * num_q_heads + qh] = !(L <= 0.0f) ? M + pkv_logf(L) : -PKV_INFINITY;
    } else if (it) {
      const pkv_i64 row = (pkv_i64)prow * num_q_heads + qh;
      part_o[row * PKV_HEAD_DIM + d] = o;
      if (d == 0) part_ml[row] = !(L <= 0.0f) ? M + pkv_logf(L) : -PKV_INFINITY;
    } else {
      const pkv_i64 row = ((pkv_i64)s * num_q_heads + qh) * num_parts + part;
      part_o[row * PKV_HEAD_DIM + d] = o;
      if (d == 0) {
        part_ml[2 * row] = M;
        part_ml[2 * row + 1] = L;
      }
    }
  }
}

#undef PKV_GDEC_PARAMS
#define PKV_GDEC_PARAMS                                                        \
  PKV_GLOBAL const pkv_gio_t *q, PKV_GLOBAL const pkv_elem_t *k_pool,          \
      PKV_GLOBAL const pkv_elem_t *v_pool, PKV_GLOBAL const int *block_table,  \
      PKV_GLOBAL const int *seq_lens, PKV_GLOBAL const int *q_indptr,          \
      PKV_GLOBAL const float *alibi, PKV_GLOBAL pkv_gio_t *out,                \
      PKV_GLOBAL float *lse, PKV_GLOBAL float *part_o,                         \
      PKV_GLOBAL float *part_ml, int max_pages, int num_q_heads, int group,    \
      int page_size, pkv_u32 pmul, int pshift, pkv_i64 page_stride,            \
      pkv_i64 head_stride, pkv_i64 token_stride, float scale, float softcap,   \
      int causal, int window_left, int flags, int num_parts, int part_len,     \
      int io, PKV_GLOBAL const float *kv_scales, pkv_i64 scale_offset
#undef PKV_GDEC_ARGS
#define PKV_GDEC_ARGS                                                          \
  q, k_pool, v_pool, block_table, seq_lens, q_indptr, alibi, out, lse, part_o, \
      part_ml, max_pages, num_q_heads, group, page_size, pmul, pshift,         \
      page_stride, head_stride, token_stride, scale, softcap, causal,          \
      window_left, flags, num_parts, part_len, io, kv_scales, scale_offset

/* 16-byte aligned rows: vector copies. */
PKV_KERNEL PKV_LAUNCH_BOUNDS(PKV_G_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_decode_gpu)(PKV_GDEC_PARAMS) {
  PKV_LOCAL_DECL pkv_u32x4 sm[PKV_G_SMEM_U4];
  PKV_TILE_SCRATCH(scr, PKV_G_NT);
  PKV_KNAME(pkv_gdec_body)(PKV_GDEC_ARGS, (const PKV_GLOBAL int *)0, sm, scr, 1);
}

/* Rows at any element alignment (a wrapped buffer or odd strides). */
PKV_KERNEL PKV_LAUNCH_BOUNDS(PKV_G_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_decode_gpu_u)(PKV_GDEC_PARAMS) {
  PKV_LOCAL_DECL pkv_u32x4 sm[PKV_G_SMEM_U4];
  PKV_TILE_SCRATCH(scr, PKV_G_NT);
  PKV_KNAME(pkv_gdec_body)(PKV_GDEC_ARGS, (const PKV_GLOBAL int *)0, sm, scr, 0);
}

/* Plan-driven (doc/plan-run.md): grid (grid_items, kv heads x group
 * chunks), one plan item per block; part_o is the workspace, its LSE
 * lse_off floats in (merged by pkv_decode_plan_merge); part_ml,
 * num_parts and part_len are unused. */
PKV_KERNEL PKV_LAUNCH_BOUNDS(PKV_G_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_decode_gpu_plan)(PKV_GDEC_PARAMS,
                               PKV_GLOBAL const int *items, pkv_i64 lse_off) {
  PKV_LOCAL_DECL pkv_u32x4 sm[PKV_G_SMEM_U4];
  PKV_TILE_SCRATCH(scr, PKV_G_NT);
  part_ml = part_o + lse_off; /* the workspace: outputs, then LSE */
  PKV_KNAME(pkv_gdec_body)(PKV_GDEC_ARGS, items, sm, scr, 1);
}

PKV_KERNEL PKV_LAUNCH_BOUNDS(PKV_G_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_decode_gpu_plan_u)(PKV_GDEC_PARAMS,
                                 PKV_GLOBAL const int *items, pkv_i64 lse_off) {
  PKV_LOCAL_DECL pkv_u32x4 sm[PKV_G_SMEM_U4];
  PKV_TILE_SCRATCH(scr, PKV_G_NT);
  part_ml = part_o + lse_off; /* the workspace: outputs, then LSE */
  PKV_KNAME(pkv_gdec_body)(PKV_GDEC_ARGS, items, sm, scr, 0);
}

#endif
