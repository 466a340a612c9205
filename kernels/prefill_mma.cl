/* SPDX-License-Identifier: Apache-2.0 */
/* Prefill / extend / speculative decode / GQA decode on the matrix unit:
 * a FlashAttention-2-style kernel on the fragment dialect (frag.h), for
 * f16 and bf16 caches, and fp8/int8 caches staged as f16 (pkv_mma_stage_q).
 * The arguments and semantics of pkv_prefill (prefill.cl), which f32
 * caches keep, plus the decode
 * partials (part_o, part_ml, num_parts, part_len: as pkv_decode's, merged
 * by pkv_decode_merge) for decode split over the key axis; and the
 * plan-driven entry pkv_prefill_mma_plan (below).
 *
 * Work-group (row tile, kv head, sequence), PKV_MMA_NT = 4 waves. A row is
 * one (query token, query head of the GQA group) pair, flattened
 * token-major, so the 64 rows of a block (16 per wave: the M of one
 * fragment) pack the GQA group into M and every staged key serves all its
 * heads. Per key tile of PKV_MMA_BK keys:
 *   1. the block copies the next tile's K and V rows from their pages
 *      into the other of two local-memory stages with 16-byte async copies
 *      (pkv_mma_stage: one function, the place a quantized cache would
 *      dequantize), and waits for this tile's;
 *   2. each wave computes S = Q K^T for its 16 rows (Q fragments held in
 *      registers for the whole kernel), applies scale, soft-cap, ALiBi
 *      and the causal/window masks element by element, by the map's
 *      ownership of rows and columns;
 *   3. online softmax in registers: row max over the lanes of a row
 *      (pkv_frag_row_max), rescale of O, P = exp(S - m) with per-lane
 *      partial sums (reduced once, at the end);
 *   4. O += P V, P turned into the A operand in registers.
 * The key range of a block is cut to what its rows can see (causal end of
 * its last row, window start of its first), so wholly masked tiles are
 * never staged. Sinks fold into the denominator at the end, and the LSE
 * is written by one lane per row. Requires 16-byte aligned K/V rows (the
 * host checks; otherwise pkv_prefill runs). */
#if (PKV_DTYPE >= 1 && PKV_DTYPE <= 5) &&                                \
    (defined(PKV_WITH_MMA) ||                                            \
     !(defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)))

#undef PKV_MMA_NT
#undef PKV_MMA_BR
#undef PKV_MMA_BK
#undef PKV_MMA_LD
#undef PKV_MMA_ND
#undef PKV_MMA_NK
#define PKV_MMA_NT (4 * PKV_WAVE) /* work-items: 4 waves of 16 rows */
#define PKV_MMA_BR 64             /* rows per block */
/* Keys per tile: two stages of K and V tiles of BK x (D + 8) 16-bit
 * elements stay within 37 KiB of local memory (48 KiB is the static limit
 * everywhere). The 8 elements of padding shift each row by 16 bytes, so
 * the 8 rows of a 16-byte-per-lane load (ldmatrix) hit distinct banks. */
#define PKV_MMA_BK (PKV_HEAD_DIM <= 64 ? 64 : PKV_HEAD_DIM <= 128 ? 32 : 16)
#define PKV_MMA_LD (PKV_HEAD_DIM + 8)
/* HIP/CUDA launch bounds: 3 blocks per SM up to head dim 128 (at most 170
 * registers a thread on sm_90, 0 spill), but 1 for int8 (its row scales
 * need ~210 at head dim 128 and spilled 28 bytes at 168) and above head
 * dim 128 (the 256 instantiation needs all 255) */
#undef PKV_FRAG_MIN_BLOCKS
#define PKV_FRAG_MIN_BLOCKS (PKV_HEAD_DIM <= 128 && PKV_DTYPE != 5 ? 3 : 1)
#define PKV_MMA_ND (PKV_HEAD_DIM / 16) /* fragments across the head dim */
/* int8: the row scales of both stages, 4 x BK floats, after the tiles */
#undef PKV_MMA_QSC
#define PKV_MMA_QSC (PKV_DTYPE == 5 ? PKV_MMA_BK : 0)
#define PKV_MMA_NK (PKV_MMA_BK / 16)   /* fragments across a key tile */
/* Every loop over fragments, their elements or a lane's rows is unrolled:
 * register arrays indexed at run time would live in local memory. */
#ifndef PKV_MMA_UNROLL
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define PKV_MMA_UNROLL
#else
#define PKV_MMA_UNROLL _Pragma("unroll")
#endif
#endif

#ifndef PKV_MMA_STAGE_DEFINED
#define PKV_MMA_STAGE_DEFINED
/* Keys [kt, kt + nk) of kv head kvh, K and V, into the local tiles ks and
 * vs (bk rows of ld elements); rows nk..bk-1 are zeroed (P is 0 there,
 * and 0 x a stale NaN would be NaN). One commit group per call. */
PKV_INLINE void pkv_mma_stage(pkv_async *as, PKV_LOCAL pkv_u16 *ks,
                              PKV_LOCAL pkv_u16 *vs,
                              const PKV_GLOBAL pkv_u16 *kp,
                              const PKV_GLOBAL pkv_u16 *vp,
                              const PKV_GLOBAL int *bt, int num_pages,
                              int page_size, pkv_i64 ps, pkv_i64 hs,
                              pkv_i64 ts, int kvh, int kt, int nk, int bk,
                              int d, int ld, int tid, int nt) {
  const int nch = d / 8;
  for (int idx = tid; idx < bk * nch; idx += nt) {
    const int kk = idx / nch, c = idx - kk * nch;
    PKV_LOCAL pkv_u32x4 *dk = (PKV_LOCAL pkv_u32x4 *)(ks + kk * ld + c * 8);
    PKV_LOCAL pkv_u32x4 *dv = (PKV_LOCAL pkv_u32x4 *)(vs + kk * ld + c * 8);
    if (kk < nk) {
      const int j = kt + kk, pg = j / page_size;
      const pkv_i64 off = pkv_page_at(bt, pg, num_pages) * ps + kvh * hs +
                          (pkv_i64)(j - pg * page_size) * ts + c * 8;
      pkv_cp16(as, dk, (const PKV_GLOBAL pkv_u32x4 *)(kp + off));
      pkv_cp16(as, dv, (const PKV_GLOBAL pkv_u32x4 *)(vp + off));
    } else {
      *dk = PKV_FRAG_ZERO4;
      *dv = PKV_FRAG_ZERO4;
    }
  }
  pkv_async_commit(as);
}
#endif

#if PKV_DTYPE >= 3
/* Quantized caches (fp8 e4m3/e5m2, int8): the codes become f16 in the
 * staging (the fragments are f16 for every dtype but bf16), exactly:
 * every e4m3 and e5m2 value (NaN, Inf) is an f16 value, and so is every
 * int8 code. The scales stay out of the tiles: the fp8 per-head ones fold
 * into the softmax scale (K) and the output (V); int8's per-(token, head)
 * row scales are staged beside the tiles and multiply the score columns
 * (K) and the P columns before P.V (V). */
/* One code (low byte of b) as f16 bits. */
PKV_INLINE pkv_u32 PKV_KNAME(pkv_mma_h)(pkv_u32 b) {
#if PKV_DTYPE == 4
  return (b & 0xffu) << 8; /* e5m2 is the high byte of an f16 */
#else
#if PKV_DTYPE == 3
  const pkv_u32 s = (b & 0x80u) << 8, a = b & 0x7fu;
  if (a == 0x7fu) return s | 0x7e00u;              /* NaN */
  if (a >= 8u) return s | ((a + 64u) << 7);        /* normal: exponent + 8 */
  const int k = -9;                                /* subnormal: a * 2^-9 */
#else
  const int c = (int)(b & 0xffu) - ((b & 0x80u) ? 256 : 0);
  const pkv_u32 s = c < 0 ? 0x8000u : 0u, a = (pkv_u32)(c < 0 ? -c : c);
  const int k = 0;
#endif
  if (a == 0u) return s;
  /* a * 2^k with a < 256: an f16 normal of exponent p + k */
  const int p = (a >= 2u) + (a >= 4u) + (a >= 8u) + (a >= 16u) + (a >= 32u) +
                (a >= 64u) + (a >= 128u);
  return s | ((pkv_u32)(p + k + 15) << 10) | ((a << (10 - p)) & 0x3ffu);
#endif
}

/* pkv_mma_stage for codes: plain 8-byte loads (the conversion needs the
 * registers), stored as f16 rows; rows nk..bk-1 zeroed, their row scales
 * 0. int8: the row scales of K and V into ksc and vsc (bk floats each). */
PKV_INLINE void PKV_KNAME(pkv_mma_stage_q)(
    pkv_async *as, PKV_LOCAL pkv_u16 *ks, PKV_LOCAL pkv_u16 *vs,
    PKV_LOCAL float *ksc, PKV_LOCAL float *vsc, const PKV_GLOBAL pkv_u8 *kp,
    const PKV_GLOBAL pkv_u8 *vp, const PKV_GLOBAL int *bt, int num_pages,
    int page_size, pkv_i64 ps, pkv_i64 hs, pkv_i64 ts, pkv_i64 soff, int kvh,
    int kt, int nk, int bk, int d, int ld, int tid, int nt) {
  const int nch = d / 8;
  for (int idx = tid; idx < bk * nch; idx += nt) {
    const int kk = idx / nch, c = idx - kk * nch;
    PKV_LOCAL pkv_u32 *dk = (PKV_LOCAL pkv_u32 *)(ks + kk * ld + c * 8);
    PKV_LOCAL pkv_u32 *dv = (PKV_LOCAL pkv_u32 *)(vs + kk * ld + c * 8);
    if (kk < nk) {
      const int j = kt + kk, pg = j / page_size;
      const pkv_i64 off = pkv_page_at(bt, pg, num_pages) * ps + kvh * hs +
                          (pkv_i64)(j - pg * page_size) * ts + c * 8;
      /* 8-byte aligned: rows are 16-byte aligned, chunks 8 codes apart */
      const PKV_GLOBAL pkv_u32 *wk = (const PKV_GLOBAL pkv_u32 *)(kp + off);
      const PKV_GLOBAL pkv_u32 *wv = (const PKV_GLOBAL pkv_u32 *)(vp + off);
      for (int w = 0; w < 2; w++) {
        const pkv_u32 xk = wk[w], xv = wv[w];
        dk[2 * w] = PKV_KNAME(pkv_mma_h)(xk) | (PKV_KNAME(pkv_mma_h)(xk >> 8) << 16);
        dk[2 * w + 1] = PKV_KNAME(pkv_mma_h)(xk >> 16) | (PKV_KNAME(pkv_mma_h)(xk >> 24) << 16);
        dv[2 * w] = PKV_KNAME(pkv_mma_h)(xv) | (PKV_KNAME(pkv_mma_h)(xv >> 8) << 16);
        dv[2 * w + 1] = PKV_KNAME(pkv_mma_h)(xv >> 16) | (PKV_KNAME(pkv_mma_h)(xv >> 24) << 16);
      }
    } else {
      for (int w = 0; w < 4; w++) dk[w] = dv[w] = 0u;
    }
  }
#if PKV_DTYPE == 5
  for (int kk = tid; kk < bk; kk += nt) {
    float a = 0.0f, b = 0.0f;
    if (kk < nk) {
      const int j = kt + kk, pg = j / page_size;
      const pkv_i64 base = pkv_page_at(bt, pg, num_pages) * ps + soff;
      const pkv_i64 e = (pkv_i64)kvh * page_size + (j - pg * page_size);
      a = ((const PKV_GLOBAL float *)(kp + base))[e];
      b = ((const PKV_GLOBAL float *)(vp + base))[e];
    }
    ksc[kk] = a;
    vsc[kk] = b;
  }
#else
  (void)ksc;
  (void)vsc;
  (void)soff;
#endif
  pkv_async_commit(as);
}
#endif

#undef PKV_MMA_PARAMS
#define PKV_MMA_PARAMS                                                         \
  PKV_GLOBAL const void *q, PKV_GLOBAL const pkv_elem_t *k_pool,               \
      PKV_GLOBAL const pkv_elem_t *v_pool, PKV_GLOBAL const int *pages,        \
      PKV_GLOBAL const int *seq_lens, PKV_GLOBAL const int *kv_indptr,         \
      PKV_GLOBAL const int *kv_last, PKV_GLOBAL const int *q_indptr,           \
      PKV_GLOBAL const float *alibi, PKV_GLOBAL const float *sinks,            \
      PKV_GLOBAL void *out, PKV_GLOBAL float *lse, int max_pages,              \
      int num_q_heads, int group, int page_size, pkv_i64 page_stride,          \
      pkv_i64 head_stride, pkv_i64 token_stride, float scale, float softcap,   \
      int causal, int window_left, int flags, pkv_i64 q_off, pkv_i64 q_ts,     \
      pkv_i64 q_hs, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs, int io_dtypes,  \
      int num_pages, int num_tokens, pkv_i64 num_kv_indices,                   \
      PKV_GLOBAL const float *kv_scales, pkv_i64 scale_offset,                 \
      PKV_GLOBAL float *part_o, PKV_GLOBAL float *part_ml, int num_parts,      \
      int part_len
#undef PKV_MMA_ARGS
#define PKV_MMA_ARGS                                                           \
  q, k_pool, v_pool, pages, seq_lens, kv_indptr, kv_last, q_indptr, alibi,     \
      sinks, out, lse, max_pages, num_q_heads, group, page_size, page_stride,  \
      head_stride, token_stride, scale, softcap, causal, window_left, flags,   \
      q_off, q_ts, q_hs, o_off, o_ts, o_hs, io_dtypes, num_pages, num_tokens,  \
      num_kv_indices, kv_scales, scale_offset, part_o, part_ml, num_parts,     \
      part_len

/* The body of both kernels. items: the plan's item array (request, key
 * begin, key end, partial row; pkv_prefill_mma_plan): the block is (item,
 * kv head), its rows are the group's heads of the request's one query
 * token (the host ensures group <= 64), its keys the item's; an item of a
 * split request writes its normalised output to part_o[partial row][q
 * head][d] and its LSE to part_ml[partial row * num_q_heads + q head] (the
 * plan's workspace, merged by pkv_decode_plan_merge). NULL: the block is
 * (row tile or key partition, kv head, sequence). A null items is a
 * constant after inlining, so pkv_prefill_mma keeps its code. */
PKV_INLINE void PKV_KNAME(pkv_mma_body)(PKV_MMA_PARAMS,
                                        const PKV_GLOBAL int *items,
                                        PKV_LOCAL pkv_u32x4 *smem,
                                        PKV_LOCAL float *scr,
                                        PKV_LOCAL float *fscr) {
  PKV_LOCAL pkv_u16 *const tiles = (PKV_LOCAL pkv_u16 *)smem;
  (void)kv_scales;
  (void)scale_offset;
#undef PKV_MMA_STAGE
#undef PKV_MMA_VSCALE

  const PKV_GLOBAL int *it = items ? items + 4 * (pkv_i64)PKV_GROUP(0) : items;
  const int s = it ? it[0] : PKV_GROUP(2), prow = it ? it[3] : -1;
  if (s < 0) return; /* a padding item: uniform exit */
  const int tile = it ? 0 : PKV_GROUP(0), kvh = PKV_GROUP(1);
  const int tid = PKV_LID(0), lane = tid & (PKV_WAVE - 1);
  const int q0 = q_indptr[s], q_len = q_indptr[s + 1] - q0;
  /* a query run outside q: uniform exit, nothing read or written */
  if (q0 < 0 || q_len < 0 || q_len > num_tokens - q0) return;
  pkv_i64 row0;
  const int kv_len = pkv_table_row(seq_lens, kv_indptr, kv_last, flags & 8, s,
                                   max_pages, page_size, num_kv_indices, &row0);
  const int q_dt = io_dtypes & 15, o_dt = io_dtypes >> 4;
#if PKV_DTYPE >= 3
  /* fp8 per-head scales (flags 16): K's folds into the softmax scale, V's
   * multiplies the output (as decode_gpu.cl) */
  float v_scale = 1.0f;
  if (flags & 16) {
    scale *= kv_scales[kvh];
    v_scale = kv_scales[num_q_heads / group + kvh];
  }
#define PKV_MMA_VSCALE *v_scale
#else
#define PKV_MMA_VSCALE
#endif
  /* Split keys (decode, num_parts > 1; the host ensures the rows fit one
   * block): work-group `tile` is key partition `tile` of rows 0..63, and
   * writes partials for pkv_decode_merge. */
  const int split = !it && num_parts > 1, part = split ? tile : 0;
  const int nrows = q_len * group, r0 = split ? 0 : tile * PKV_MMA_BR;
  if (r0 >= nrows) return; /* uniform over the work-group */
  const int r1 = (r0 + PKV_MMA_BR < nrows ? r0 + PKV_MMA_BR : nrows) - 1;
  const int qpos_lo = r0 / group + kv_len - q_len;
  const int qpos_hi = r1 / group + kv_len - q_len;
  int kend = kv_len, kbeg = 0;
  if (it) { /* the item's keys, bounded by the device's table */
    if (it[1] > 0) kbeg = it[1];
    if (kend > it[2]) kend = it[2];
  }
  if (causal && kend > qpos_hi + 1) kend = qpos_hi + 1;
  if (window_left >= 0 && kbeg < qpos_lo - window_left) kbeg = qpos_lo - window_left;
  if (split) {
    if (kbeg < part * part_len) kbeg = part * part_len;
    if (kend > part * part_len + part_len) kend = part * part_len + part_len;
  }

  /* The rows this lane owns (PKV_FRAG_LROWS of them). */
  const int rw = r0 + (tid / PKV_WAVE) * 16;
  int valid[PKV_FRAG_LROWS], qpos[PKV_FRAG_LROWS], qh[PKV_FRAG_LROWS];
  pkv_i64 orow[PKV_FRAG_LROWS], qrow[PKV_FRAG_LROWS];
  float slope[PKV_FRAG_LROWS], m[PKV_FRAG_LROWS], l[PKV_FRAG_LROWS];
  PKV_MMA_UNROLL
  for (int lr = 0; lr < PKV_FRAG_LROWS; lr++) {
    const int r = rw + pkv_frag_row(lane, pkv_frag_lrow_elem(lr));
    const int i = r / group, g = r - i * group;
    valid[lr] = r < nrows;
    qh[lr] = kvh * group + g;
    qpos[lr] = i + kv_len - q_len;
    qrow[lr] = q_off + (pkv_i64)(q0 + i) * q_ts + (pkv_i64)qh[lr] * q_hs;
    orow[lr] = o_off + (pkv_i64)(q0 + i) * o_ts + (pkv_i64)qh[lr] * o_hs;
    slope[lr] = (valid[lr] && (flags & 1)) ? alibi[qh[lr]] : 0.0f;
    m[lr] = -PKV_INFINITY;
    l[lr] = 0.0f;
  }

  /* Q as A fragments (rounded to the cache's 16-bit type), O zero. */
  pkv_frag_a qa[PKV_MMA_ND];
  pkv_frag_c o[PKV_MMA_ND];
  PKV_MMA_UNROLL
  for (int kd = 0; kd < PKV_MMA_ND; kd++) {
    PKV_MMA_UNROLL
    for (int jp = 0; jp < PKV_FRAG_N / 2; jp++) {
      const int lr = pkv_frag_lrow(2 * jp);
      const pkv_i64 e = qrow[lr] + kd * 16 + pkv_frag_col(lane, 2 * jp);
      const float v0 = valid[lr] ? pkv_ld_io(q, e, q_dt) : 0.0f;
      const float v1 = valid[lr] ? pkv_ld_io(q, e + 1, q_dt) : 0.0f;
      pkv_frag_a_set2(&qa[kd], jp, v0, v1);
    }
    pkv_frag_c_zero(&o[kd]);
  }

  const PKV_GLOBAL int *bt = pages + row0;
#if PKV_DTYPE >= 3
  const PKV_GLOBAL pkv_u8 *kp = (const PKV_GLOBAL pkv_u8 *)k_pool;
  const PKV_GLOBAL pkv_u8 *vp = (const PKV_GLOBAL pkv_u8 *)v_pool;
  /* int8 row scales: [stage][K, V][BK] floats after the tiles */
  PKV_LOCAL float *const qsc = (PKV_LOCAL float *)(smem + 4 * PKV_MMA_BK * PKV_MMA_LD / 8);
#define PKV_MMA_STAGE(dst, st, k0, n)                                          \
  PKV_KNAME(pkv_mma_stage_q)(&as, (dst), (dst) + PKV_MMA_BK * PKV_MMA_LD,      \
                             qsc + (st) * 2 * PKV_MMA_BK,                      \
                             qsc + (st) * 2 * PKV_MMA_BK + PKV_MMA_BK, kp, vp, \
                             bt, num_pages, page_size, page_stride,            \
                             head_stride, token_stride, scale_offset, kvh,     \
                             (k0), (n), PKV_MMA_BK, PKV_HEAD_DIM, PKV_MMA_LD,  \
                             tid, PKV_MMA_NT)
#else
  const PKV_GLOBAL pkv_u16 *kp = (const PKV_GLOBAL pkv_u16 *)k_pool;
  const PKV_GLOBAL pkv_u16 *vp = (const PKV_GLOBAL pkv_u16 *)v_pool;
#define PKV_MMA_STAGE(dst, st, k0, n)                                          \
  pkv_mma_stage(&as, (dst), (dst) + PKV_MMA_BK * PKV_MMA_LD, kp, vp, bt,       \
                num_pages, page_size, page_stride, head_stride, token_stride,  \
                kvh, (k0), (n), PKV_MMA_BK, PKV_HEAD_DIM, PKV_MMA_LD, tid,     \
                PKV_MMA_NT)
#endif
  pkv_async as;
  pkv_async_init(&as);
  /* Two stages: the copies of tile t+1 are in flight while tile t is
   * computed (cp.async on NVIDIA; elsewhere the loads are issued first). */
  if (kbeg < kend)
    PKV_MMA_STAGE(tiles, 0, kbeg, kend - kbeg < PKV_MMA_BK ? kend - kbeg : PKV_MMA_BK);
  /* element offset of the current stage: 0 or 2 * BK * LD */
  int cur = 0;
  for (int kt = kbeg; kt < kend; kt += PKV_MMA_BK) {
    PKV_LOCAL pkv_u16 *ks = tiles + cur;
    PKV_LOCAL pkv_u16 *vs = ks + PKV_MMA_BK * PKV_MMA_LD;
    const int nxt = 2 * PKV_MMA_BK * PKV_MMA_LD - cur, kn = kt + PKV_MMA_BK;
    if (kn < kend) { /* the other stage was released by the last barrier */
      PKV_LOCAL pkv_u16 *kn_s = tiles + nxt;
      PKV_MMA_STAGE(kn_s, nxt ? 1 : 0, kn, kend - kn < PKV_MMA_BK ? kend - kn : PKV_MMA_BK);
      pkv_async_wait(&as, 1); /* tile t has landed, t+1 may be in flight */
    } else {
      pkv_async_wait(&as, 0);
    }
    PKV_BARRIER();
#if PKV_DTYPE == 5
    const PKV_LOCAL float *krs = qsc + (cur ? 2 * PKV_MMA_BK : 0);
    const PKV_LOCAL float *vrs = krs + PKV_MMA_BK;
#endif

    /* S = Q K^T, masked and scored */
    pkv_frag_c sc[PKV_MMA_NK];
    float mx[PKV_FRAG_LROWS];
    PKV_MMA_UNROLL
    for (int lr = 0; lr < PKV_FRAG_LROWS; lr++) mx[lr] = -PKV_INFINITY;
    PKV_MMA_UNROLL
    for (int f = 0; f < PKV_MMA_NK; f++) {
      pkv_frag_c_zero(&sc[f]);
      PKV_MMA_UNROLL
      for (int kd = 0; kd < PKV_MMA_ND; kd++) {
        pkv_frag_b b;
        pkv_frag_ld_bt(&b, ks + f * 16 * PKV_MMA_LD + kd * 16, PKV_MMA_LD);
        pkv_frag_mma(&sc[f], &qa[kd], &b, fscr);
      }
      PKV_MMA_UNROLL
      for (int i = 0; i < PKV_FRAG_N; i++) {
        const int lr = pkv_frag_lrow(i), j = kt + f * 16 + pkv_frag_col(lane, i);
        const int vis = valid[lr] && j < kend && (!causal || j <= qpos[lr]) &&
                        (window_left < 0 || j >= qpos[lr] - window_left);
#if PKV_DTYPE == 5
        const float dot = sc[f].x[i] * krs[f * 16 + pkv_frag_col(lane, i)];
#else
        const float dot = sc[f].x[i];
#endif
        const float sv = vis ? PKV_SCORE(dot, scale, softcap, slope[lr], j, qpos[lr])
                             : -PKV_INFINITY;
        sc[f].x[i] = sv;
        mx[lr] = pkv_fmaxf(mx[lr], sv);
      }
    }
    /* online softmax: the row's max over its lanes, O and l rescaled */
    float alpha[PKV_FRAG_LROWS];
    PKV_MMA_UNROLL
    for (int lr = 0; lr < PKV_FRAG_LROWS; lr++) {
      const float mnew = pkv_fmaxf(m[lr], pkv_frag_row_max(mx[lr], scr));
      alpha[lr] = pkv_exp_diff(m[lr], mnew);
      l[lr] *= alpha[lr];
      m[lr] = mnew;
    }
    PKV_MMA_UNROLL
    for (int kd = 0; kd < PKV_MMA_ND; kd++)
      PKV_MMA_UNROLL
      for (int i = 0; i < PKV_FRAG_N; i++) o[kd].x[i] *= alpha[pkv_frag_lrow(i)];
    /* O += P V, P from the accumulator in registers */
    PKV_MMA_UNROLL
    for (int f = 0; f < PKV_MMA_NK; f++) {
      PKV_MMA_UNROLL
      for (int i = 0; i < PKV_FRAG_N; i++) {
        const int lr = pkv_frag_lrow(i);
        const float p = pkv_exp_diff(sc[f].x[i], m[lr]);
#if PKV_DTYPE == 5
        /* V's row scale on P's column (0 for a masked key: a NaN scale
         * there must not reach O) */
        sc[f].x[i] = p != 0.0f ? p * vrs[f * 16 + pkv_frag_col(lane, i)] : 0.0f;
#else
        sc[f].x[i] = p;
#endif
        l[lr] += p;
      }
      pkv_frag_a pa;
      pkv_frag_c_to_a(&pa, &sc[f]);
      PKV_MMA_UNROLL
      for (int dd = 0; dd < PKV_MMA_ND; dd++) {
        pkv_frag_b b;
        pkv_frag_ld_b(&b, vs + f * 16 * PKV_MMA_LD + dd * 16, PKV_MMA_LD);
        pkv_frag_mma(&o[dd], &pa, &b, fscr);
      }
    }
    PKV_BARRIER(); /* the tiles are overwritten next */
    cur = nxt;
  }

  /* l's lane partials reduced; sinks; O / l; LSE by one lane per row */
  float inv[PKV_FRAG_LROWS];
  if (split || prow >= 0) { /* partials: O / l, and (m, l) or the LSE
                               without the sinks */
    PKV_MMA_UNROLL
    for (int lr = 0; lr < PKV_FRAG_LROWS; lr++) {
      const float L = pkv_frag_row_sum(l[lr], scr);
      inv[lr] = !(L <= 0.0f) ? 1.0f / L PKV_MMA_VSCALE : 0.0f;
      if (valid[lr] && pkv_frag_col(lane, pkv_frag_lrow_elem(lr)) == 0) {
        if (prow >= 0) {
          part_ml[(pkv_i64)prow * num_q_heads + qh[lr]] =
              !(L <= 0.0f) ? m[lr] + pkv_logf(L) : -PKV_INFINITY;
        } else {
          const pkv_i64 row = ((pkv_i64)s * num_q_heads + qh[lr]) * num_parts + part;
          part_ml[2 * row] = m[lr];
          part_ml[2 * row + 1] = L;
        }
      }
    }
    PKV_MMA_UNROLL
    for (int dd = 0; dd < PKV_MMA_ND; dd++)
      PKV_MMA_UNROLL
      for (int i = 0; i < PKV_FRAG_N; i++) {
        const int lr = pkv_frag_lrow(i);
        const pkv_i64 row = prow >= 0 ? (pkv_i64)prow * num_q_heads + qh[lr]
                                      : ((pkv_i64)s * num_q_heads + qh[lr]) * num_parts + part;
        if (valid[lr])
          part_o[row * PKV_HEAD_DIM + dd * 16 + pkv_frag_col(lane, i)] = o[dd].x[i] * inv[lr];
      }
    return;
  }
  PKV_MMA_UNROLL
  for (int lr = 0; lr < PKV_FRAG_LROWS; lr++) {
    float L = pkv_frag_row_sum(l[lr], scr), M = m[lr];
    const float l0 = L;
    const float fs = (valid[lr] && (flags & 4)) ? pkv_sink_fold(&M, &L, sinks[qh[lr]]) : 1.0f;
    inv[lr] = !(l0 <= 0.0f) ? fs / l0 PKV_MMA_VSCALE : 0.0f;
    if (valid[lr] && (flags & 2) && pkv_frag_col(lane, pkv_frag_lrow_elem(lr)) == 0) {
      const int i = (rw + pkv_frag_row(lane, pkv_frag_lrow_elem(lr))) / group;
      lse[(pkv_i64)(q0 + i) * num_q_heads + qh[lr]] =
          !(L <= 0.0f) ? M + pkv_logf(L) : -PKV_INFINITY;
    }
  }
  PKV_MMA_UNROLL
  for (int dd = 0; dd < PKV_MMA_ND; dd++)
    PKV_MMA_UNROLL
    for (int i = 0; i < PKV_FRAG_N; i++) {
      const int lr = pkv_frag_lrow(i);
      if (valid[lr])
        pkv_st_io(o[dd].x[i] * inv[lr], out, orow[lr] + dd * 16 + pkv_frag_col(lane, i),
                  o_dt);
    }
}

/* flags, io_dtypes and the table arguments: as pkv_prefill; the partials:
 * as pkv_decode (num_parts 1: none). */
PKV_KERNEL PKV_FRAG_LAUNCH_BOUNDS(PKV_MMA_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_prefill_mma)(PKV_MMA_PARAMS) {
  /* [stage 0: K, V][stage 1: K, V] */
  PKV_LOCAL_DECL pkv_u32x4 smem[4 * PKV_MMA_BK * PKV_MMA_LD / 8 + PKV_MMA_QSC];
  PKV_TILE_SCRATCH(scr, PKV_MMA_NT);
  PKV_FRAG_SCRATCH(fscr, PKV_MMA_NT);
  PKV_KNAME(pkv_mma_body)(PKV_MMA_ARGS, (const PKV_GLOBAL int *)0, smem, scr, fscr);
}

/* Plan-driven decode (doc/plan-run.md): grid (grid_items, kv heads), one
 * plan item per block, as pkv_decode_gpu_plan; part_o is the workspace,
 * its LSE lse_off floats in (merged by pkv_decode_plan_merge); part_ml,
 * num_parts and part_len are unused. */
PKV_KERNEL PKV_FRAG_LAUNCH_BOUNDS(PKV_MMA_NT) PKV_SG_ATTR void
PKV_KNAME(pkv_prefill_mma_plan)(PKV_MMA_PARAMS, PKV_GLOBAL const int *items,
                                pkv_i64 lse_off) {
  PKV_LOCAL_DECL pkv_u32x4 smem[4 * PKV_MMA_BK * PKV_MMA_LD / 8 + PKV_MMA_QSC];
  PKV_TILE_SCRATCH(scr, PKV_MMA_NT);
  PKV_FRAG_SCRATCH(fscr, PKV_MMA_NT);
  part_ml = part_o + lse_off; /* the workspace: outputs, then LSE */
  PKV_KNAME(pkv_mma_body)(PKV_MMA_ARGS, items, smem, scr, fscr);
}

#endif /* PKV_DTYPE 1..5 */
