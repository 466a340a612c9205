/* SPDX-License-Identifier: Apache-2.0 */
/* Decode: one query token per sequence over its paged keys.
 *
 * Work-group (partition, kv head x group chunk, sequence). The query heads
 * of one GQA group (up to PKV_MAXG of them) share the work-group, so every
 * K and V row of the partition is read once for all of them. The key axis
 * is cut into partitions of PKV_PART keys; with more than one partition
 * each writes a normalised partial result (o, max m, sum l) and
 * pkv_decode_merge combines them by log-sum-exp. Scores of the partition
 * stay in local memory; reductions are fixed trees, so results are
 * bitwise reproducible. No sub-groups are assumed. */

#undef PKV_KSPLIT
#define PKV_KSPLIT (PKV_DEC_WG / PKV_NCH) /* key streams in the V pass */
#undef PKV_DEC_BIG
#define PKV_DEC_BIG                                                          \
  (PKV_MAXG * PKV_PART > PKV_DEC_WG * 8 * PKV_MAXG ? PKV_MAXG * PKV_PART    \
                                                   : PKV_DEC_WG * 8 * PKV_MAXG)

#undef PKV_VRS
#if PKV_DTYPE == 5
#define PKV_VRS vrs
#else
#define PKV_VRS big /* unused */
#endif

/* One chunk of at most PKV_PART keys [kbeg, kbeg + n) for the gn query
 * heads of a group (q in q_s): on return (after a barrier) ml[g] is the
 * chunk's max score, ml[PKV_MAXG + g] its sum of exp, and big holds the
 * unnormalised V sums of PKV_KSPLIT key streams, (ks * PKV_MAXG + g) *
 * PKV_HEAD_DIM + d, to be added in stream order. Shared by pkv_decode (one
 * partition) and pkv_decode_plan (a plan item's keys, chunk by chunk). */
PKV_INLINE void PKV_KNAME(pkv_dec_chunk)(
    PKV_GLOBAL const pkv_elem_t *k_pool, PKV_GLOBAL const pkv_elem_t *v_pool,
    const PKV_GLOBAL int *bt, PKV_GLOBAL const float *alibi, int num_pages,
    int page_size, pkv_i64 page_stride, pkv_i64 head_stride,
    pkv_i64 token_stride, pkv_i64 scale_offset, float scale, float softcap,
    int flags, int kvh, int qh0, int gn, int qpos, int kbeg, int n,
    PKV_LOCAL float *q_s, PKV_LOCAL float *big, PKV_LOCAL float *red,
    PKV_LOCAL float *ml,
    PKV_LOCAL pkv_i64 *koff, PKV_LOCAL float *vrs, int tid) {
#if PKV_DTYPE != 5
  (void)vrs;
  (void)scale_offset;
#endif
  /* Scores: one key per work-item, all group heads at once. */
  /* Each work-item takes a contiguous run of keys: consecutive rows, which
   * a CPU's prefetcher follows (a GPU reads whole rows per thread anyway). */
  const int run_k = (n + PKV_DEC_WG - 1) / PKV_DEC_WG;
  const int k_end = (tid + 1) * run_k < n ? (tid + 1) * run_k : n;
  for (int k = tid * run_k; k < k_end; k++) {
    int j = kbeg + k;
    int pg = j / page_size;
    const pkv_i64 kpage = pkv_page_at(bt, pg, num_pages);
    const pkv_i64 off = kpage * page_stride + kvh * head_stride +
                        (pkv_i64)(j - pg * page_size) * token_stride;
    const PKV_GLOBAL pkv_elem_t *kp = k_pool + off;
    koff[k] = off;
    /* int8: the key's row scale multiplies its dot product, the value's
     * its softmax weight (below); 1 otherwise */
    const float krs = PKV_ROW_SCALE(k_pool, kpage, kvh, j - pg * page_size);
#if PKV_DTYPE == 5
    vrs[k] = PKV_ROW_SCALE(v_pool, kpage, kvh, j - pg * page_size);
#endif
#if (defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)) && PKV_MAXG >= 4
    if (gn == 4) {
      /* The common GQA group of four: each K chunk is loaded (and
       * converted) once for all four heads, same per-head sum order. */
      pkv_f8 a00 = pkv_f8_zero(), a01 = pkv_f8_zero(), a10 = pkv_f8_zero(),
             a11 = pkv_f8_zero(), a20 = pkv_f8_zero(), a21 = pkv_f8_zero(),
             a30 = pkv_f8_zero(), a31 = pkv_f8_zero();
      for (int c = 0; c < PKV_NCH; c += 2) {
        pkv_f8 k0, k1, q0, q1;
        PKV_LD8V(k0, kp + c * 8);
        PKV_LD8V(k1, kp + c * 8 + 8);
        pkv_f8_ldl(q0, q_s + c * 8);
        pkv_f8_ldl(q1, q_s + c * 8 + 8);
        a00 = pkv_f8_fma(q0, k0, a00);
        a01 = pkv_f8_fma(q1, k1, a01);
        pkv_f8_ldl(q0, q_s + PKV_HEAD_DIM + c * 8);
        pkv_f8_ldl(q1, q_s + PKV_HEAD_DIM + c * 8 + 8);
        a10 = pkv_f8_fma(q0, k0, a10);
        a11 = pkv_f8_fma(q1, k1, a11);
        pkv_f8_ldl(q0, q_s + 2 * PKV_HEAD_DIM + c * 8);
        pkv_f8_ldl(q1, q_s + 2 * PKV_HEAD_DIM + c * 8 + 8);
        a20 = pkv_f8_fma(q0, k0, a20);
        a21 = pkv_f8_fma(q1, k1, a21);
        pkv_f8_ldl(q0, q_s + 3 * PKV_HEAD_DIM + c * 8);
        pkv_f8_ldl(q1, q_s + 3 * PKV_HEAD_DIM + c * 8 + 8);
        a30 = pkv_f8_fma(q0, k0, a30);
        a31 = pkv_f8_fma(q1, k1, a31);
      }
      float sl0 = 0.0f, sl1 = 0.0f, sl2 = 0.0f, sl3 = 0.0f;
      if (flags & 1) {
        sl0 = alibi[qh0];
        sl1 = alibi[qh0 + 1];
        sl2 = alibi[qh0 + 2];
        sl3 = alibi[qh0 + 3];
      }
      big[k] = PKV_SCORE((pkv_f8_hsum(a00) + pkv_f8_hsum(a01)) * krs, scale, softcap, sl0, j, qpos);
      big[PKV_PART + k] =
          PKV_SCORE((pkv_f8_hsum(a10) + pkv_f8_hsum(a11)) * krs, scale, softcap, sl1, j, qpos);
      big[2 * PKV_PART + k] =
          PKV_SCORE((pkv_f8_hsum(a20) + pkv_f8_hsum(a21)) * krs, scale, softcap, sl2, j, qpos);
      big[3 * PKV_PART + k] =
          PKV_SCORE((pkv_f8_hsum(a30) + pkv_f8_hsum(a31)) * krs, scale, softcap, sl3, j, qpos);
      continue;
    }
#endif
    /* One head at a time (the row is re-read from cache, not memory), two
     * accumulators so that consecutive FMAs do not wait on each other. */
    for (int g = 0; g < gn; g++) {
      pkv_f8 a0 = pkv_f8_zero(), a1 = pkv_f8_zero();
      for (int c = 0; c < PKV_NCH; c += 2) {
        pkv_f8 k0, k1, q0, q1;
        PKV_LD8V(k0, kp + c * 8);
        PKV_LD8V(k1, kp + c * 8 + 8);
        pkv_f8_ldl(q0, q_s + g * PKV_HEAD_DIM + c * 8);
        pkv_f8_ldl(q1, q_s + g * PKV_HEAD_DIM + c * 8 + 8);
        a0 = pkv_f8_fma(q0, k0, a0);
        a1 = pkv_f8_fma(q1, k1, a1);
      }
      float slope = (flags & 1) ? alibi[qh0 + g] : 0.0f;
      big[g * PKV_PART + k] = PKV_SCORE((pkv_f8_hsum(a0) + pkv_f8_hsum(a1)) * krs,
                                        scale, softcap, slope, j, qpos);
    }
  }
  PKV_BARRIER();

  /* Maximum, then exp and sum, per head: fixed-shape trees. */
  for (int g = 0; g < gn; g++) {
    float mx = -PKV_INFINITY;
    for (int k = tid; k < n; k += PKV_DEC_WG) mx = pkv_fmaxf(mx, big[g * PKV_PART + k]);
    red[g * PKV_DEC_WG + tid] = mx;
  }
  PKV_BARRIER();
  for (int st = PKV_DEC_WG / 2; st > 0; st >>= 1) {
    if (tid < st)
      for (int g = 0; g < gn; g++)
        red[g * PKV_DEC_WG + tid] =
            pkv_fmaxf(red[g * PKV_DEC_WG + tid], red[g * PKV_DEC_WG + tid + st]);
    PKV_BARRIER();
  }
  if (tid == 0)
    for (int g = 0; g < gn; g++) ml[g] = red[g * PKV_DEC_WG];
  PKV_BARRIER();
  for (int g = 0; g < gn; g++) {
    float m = ml[g], sum = 0.0f;
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
    /* Eight keys per call of the vector exp builtin: a CPU device runs
     * each work-item's loop as scalar code, where scalar exp dominated
     * the whole kernel. */
    PKV_LOCAL float *bg = big + g * PKV_PART;
    float8 s8 = (float8)(0.0f);
    int k = tid * 8;
    for (; k + 8 <= n; k += PKV_DEC_WG * 8) {
      float8 p = m == -PKV_INFINITY ? (float8)(0.0f) : exp(vload8(0, bg + k) - m);
      vstore8(p, 0, bg + k);
      s8 += p;
    }
    sum = pkv_f8_hsum(s8);
    for (; k < n; k++) { /* the tail of the last run: fewer than eight */
      float p = pkv_exp_diff(bg[k], m);
      bg[k] = p;
      sum += p;
    }
#else
    for (int k = tid; k < n; k += PKV_DEC_WG) {
      float p = pkv_exp_diff(big[g * PKV_PART + k], m);
      big[g * PKV_PART + k] = p;
      sum += p;
    }
#endif
    red[g * PKV_DEC_WG + tid] = sum;
  }
  PKV_BARRIER();
  for (int st = PKV_DEC_WG / 2; st > 0; st >>= 1) {
    if (tid < st)
      for (int g = 0; g < gn; g++)
        red[g * PKV_DEC_WG + tid] += red[g * PKV_DEC_WG + tid + st];
    PKV_BARRIER();
  }
  if (tid == 0)
    for (int g = 0; g < gn; g++) ml[PKV_MAXG + g] = red[g * PKV_DEC_WG];
#if PKV_DTYPE == 5
  /* int8: the softmax weights (their sum is taken) times each value
   * row's scale, so the V pass below sums p * scale * code */
  for (int k = tid; k < n; k += PKV_DEC_WG)
    for (int g = 0; g < gn; g++) big[g * PKV_PART + k] *= vrs[k];
  PKV_BARRIER();
#endif

  /* V: work-item (chunk c, key stream ks) sums p * V over its keys. */
  const int c = tid % PKV_NCH, ks = tid / PKV_NCH;
  pkv_f8 vacc[PKV_MAXG];
#if (defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)) && PKV_MAXG >= 4
  if (ks < PKV_KSPLIT && gn == 4) {
    /* Group of four: each V chunk loaded once for all four heads; the
     * per-head sum order is that of the general loop below. */
    const PKV_GLOBAL pkv_elem_t *vbase = v_pool + c * 8;
    const int run_v = (n + PKV_KSPLIT - 1) / PKV_KSPLIT;
    const int v_end = (ks + 1) * run_v < n ? (ks + 1) * run_v : n;
    pkv_f8 b00 = pkv_f8_zero(), b01 = pkv_f8_zero(), b10 = pkv_f8_zero(),
           b11 = pkv_f8_zero(), b20 = pkv_f8_zero(), b21 = pkv_f8_zero(),
           b30 = pkv_f8_zero(), b31 = pkv_f8_zero();
    int k = ks * run_v;
    for (; k + 1 < v_end; k += 2) {
      pkv_f8 v0, v1;
      PKV_LD8V(v0, vbase + koff[k]);
      PKV_LD8V(v1, vbase + koff[k + 1]);
      b00 = pkv_f8_axpy(big[k], v0, b00);
      b01 = pkv_f8_axpy(big[k + 1], v1, b01);
      b10 = pkv_f8_axpy(big[PKV_PART + k], v0, b10);
      b11 = pkv_f8_axpy(big[PKV_PART + k + 1], v1, b11);
      b20 = pkv_f8_axpy(big[2 * PKV_PART + k], v0, b20);
      b21 = pkv_f8_axpy(big[2 * PKV_PART + k + 1], v1, b21);
      b30 = pkv_f8_axpy(big[3 * PKV_PART + k], v0, b30);
      b31 = pkv_f8_axpy(big[3 * PKV_PART + k + 1], v1, b31);
    }
    if (k < v_end) {
      pkv_f8 v0;
      PKV_LD8V(v0, vbase + koff[k]);
      b00 = pkv_f8_axpy(big[k], v0, b00);
      b10 = pkv_f8_axpy(big[PKV_PART + k], v0, b10);
      b20 = pkv_f8_axpy(big[2 * PKV_PART + k], v0, b20);
      b30 = pkv_f8_axpy(big[3 * PKV_PART + k], v0, b30);
    }
    vacc[0] = pkv_f8_add(b00, b01);
    vacc[1] = pkv_f8_add(b10, b11);
    vacc[2] = pkv_f8_add(b20, b21);
    vacc[3] = pkv_f8_add(b30, b31);
  } else
#endif
  if (ks < PKV_KSPLIT) {
    const PKV_GLOBAL pkv_elem_t *vbase = v_pool + c * 8;
    for (int g = 0; g < gn; g++) {
      /* A contiguous run of keys, two accumulators alternating, so
       * consecutive FMAs are independent. */
      const int run_v = (n + PKV_KSPLIT - 1) / PKV_KSPLIT;
      const int v_end = (ks + 1) * run_v < n ? (ks + 1) * run_v : n;
      pkv_f8 a0 = pkv_f8_zero(), a1 = pkv_f8_zero();
      int k = ks * run_v;
      for (; k + 1 < v_end; k += 2) {
        pkv_f8 v0, v1;
        PKV_LD8V(v0, vbase + koff[k]);
        PKV_LD8V(v1, vbase + koff[k + 1]);
        a0 = pkv_f8_axpy(big[g * PKV_PART + k], v0, a0);
        a1 = pkv_f8_axpy(big[g * PKV_PART + k + 1], v1, a1);
      }
      if (k < v_end) {
        pkv_f8 v0;
        PKV_LD8V(v0, vbase + koff[k]);
        a0 = pkv_f8_axpy(big[g * PKV_PART + k], v0, a0);
      }
      /* Private until every work-item is done with the scores in big. */
      vacc[g] = pkv_f8_add(a0, a1);
    }
  }
  PKV_BARRIER(); /* scores are no longer needed: big holds partial sums */
  if (ks < PKV_KSPLIT)
    for (int g = 0; g < gn; g++)
      pkv_f8_stl(vacc[g], big + (ks * PKV_MAXG + g) * PKV_HEAD_DIM + c * 8);
  PKV_BARRIER();

}

/* flags: 1 = ALiBi slopes given, 2 = write LSE, 4 = sinks given, 8 = CSR
 * table (pages = kv_indices) instead of dense (pages = block_table), 16 =
 * fp8 scales given: kv_scales = [K scales][V scales] per kv head, folded
 * into the softmax scale (K) and the output (V).
 * io_dtypes: q dtype | out dtype << 4. q and out offsets and strides are
 * in their own elements. */
PKV_KERNEL void PKV_KNAME(pkv_decode)(
    PKV_GLOBAL const void *q, PKV_GLOBAL const pkv_elem_t *k_pool,
    PKV_GLOBAL const pkv_elem_t *v_pool, PKV_GLOBAL const int *pages,
    PKV_GLOBAL const int *seq_lens, PKV_GLOBAL const int *kv_indptr,
    PKV_GLOBAL const int *kv_last, PKV_GLOBAL const int *q_indptr,
    PKV_GLOBAL const float *alibi, PKV_GLOBAL const float *sinks,
    PKV_GLOBAL void *out, PKV_GLOBAL float *lse, PKV_GLOBAL float *part_o,
    PKV_GLOBAL float *part_ml, int max_pages, int num_q_heads, int group,
    int page_size, pkv_i64 page_stride, pkv_i64 head_stride,
    pkv_i64 token_stride, float scale, float softcap, int causal,
    int window_left, int flags, int num_parts, pkv_i64 q_off, pkv_i64 q_ts,
    pkv_i64 q_hs, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs, int io_dtypes,
    int num_pages, int num_tokens, pkv_i64 num_kv_indices,
    PKV_GLOBAL const float *kv_scales, pkv_i64 scale_offset) {
  PKV_LOCAL_DECL float q_s[PKV_MAXG * PKV_HEAD_DIM];
#if PKV_DTYPE == 5
  PKV_LOCAL_DECL float vrs[PKV_PART]; /* int8: V row scale of each key */
#endif
  PKV_LOCAL_DECL float big[PKV_DEC_BIG]; /* scores, then V partial sums */
  PKV_LOCAL_DECL float red[PKV_MAXG * PKV_DEC_WG];
  PKV_LOCAL_DECL float ml[2 * PKV_MAXG];
  PKV_LOCAL_DECL pkv_i64 koff[PKV_PART]; /* element offset of each key's row */

  const int part = PKV_GROUP(0), s = PKV_GROUP(2), tid = PKV_LID(0);
  const int nchunks = (group + PKV_MAXG - 1) / PKV_MAXG;
  const int kvh = PKV_GROUP(1) / nchunks, gc = PKV_GROUP(1) % nchunks;
  const int g0 = gc * PKV_MAXG;
  const int gn = group - g0 < PKV_MAXG ? group - g0 : PKV_MAXG;
  const int qh0 = kvh * group + g0;
  const int qi = q_indptr[s];
  /* no query, or one outside q: uniform exit */
  if (q_indptr[s + 1] - qi <= 0 || qi < 0 || qi >= num_tokens) return;
  pkv_i64 row0;
  const int kv_len = pkv_table_row(seq_lens, kv_indptr, kv_last, flags & 8, s,
                                   max_pages, page_size, num_kv_indices, &row0);
  const int qpos = kv_len - 1;
  const int q_dt = io_dtypes & 15, o_dt = io_dtypes >> 4;
  float v_scale = 1.0f;
  if (flags & 16) {
    scale *= kv_scales[kvh];
    v_scale = kv_scales[num_q_heads / group + kvh];
  }

  int kbeg = part * PKV_PART;
  int kend = kbeg + PKV_PART < kv_len ? kbeg + PKV_PART : kv_len;
  if (causal && kend > qpos + 1) kend = qpos + 1;
  if (window_left >= 0 && kbeg < qpos - window_left) kbeg = qpos - window_left;
  const int n = kend - kbeg; /* may be <= 0: an empty partition */

  for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_DEC_WG) {
    int g = i / PKV_HEAD_DIM, d = i - g * PKV_HEAD_DIM;
    q_s[i] = pkv_ld_io(q, q_off + (pkv_i64)qi * q_ts + (pkv_i64)(qh0 + g) * q_hs + d,
                       q_dt);
  }
  PKV_BARRIER();

  const PKV_GLOBAL int *bt = pages + row0;
  PKV_KNAME(pkv_dec_chunk)(k_pool, v_pool, bt, alibi, num_pages, page_size,
                           page_stride, head_stride, token_stride,
                           scale_offset, scale, softcap, flags, kvh, qh0, gn,
                           qpos, kbeg, n, q_s, big, red, ml, koff, PKV_VRS,
                           tid);

  for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_DEC_WG) {
    int g = i / PKV_HEAD_DIM, d = i - g * PKV_HEAD_DIM;
    float sum = 0.0f;
    for (int t = 0; t < PKV_KSPLIT; t++) sum += big[(t * PKV_MAXG + g) * PKV_HEAD_DIM + d];
    sum *= v_scale;
    float m = ml[g], l = ml[PKV_MAXG + g];
    float o = !(l <= 0.0f) ? sum / l : 0.0f; /* a NaN sum stays NaN */
    int qh = qh0 + g;
    if (num_parts == 1) {
      if (flags & 4) o *= pkv_sink_fold(&m, &l, sinks[qh]);
      pkv_st_io(o, out, o_off + (pkv_i64)qi * o_ts + (pkv_i64)qh * o_hs + d, o_dt);
      if ((flags & 2) && d == 0)
        lse[(pkv_i64)qi * num_q_heads + qh] = !(l <= 0.0f) ? m + pkv_logf(l) : -PKV_INFINITY;
    } else {
      pkv_i64 row = ((pkv_i64)s * num_q_heads + qh) * num_parts + part;
      part_o[row * PKV_HEAD_DIM + d] = o;
      if (d == 0) {
        part_ml[2 * row] = m;
        part_ml[2 * row + 1] = l;
      }
    }
  }
}

/* Log-sum-exp merge of the partitions of one (sequence, query head); the
 * sink, if any, joins here (the partitions never see it). */
PKV_KERNEL void PKV_KNAME(pkv_decode_merge)(
    PKV_GLOBAL const float *part_o, PKV_GLOBAL const float *part_ml,
    PKV_GLOBAL const int *q_indptr, PKV_GLOBAL const float *sinks,
    PKV_GLOBAL void *out, PKV_GLOBAL float *lse, int num_q_heads, int flags,
    int num_parts, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs, int io_dtypes,
    int num_tokens) {
  const int qh = PKV_GROUP(0), s = PKV_GROUP(1), tid = PKV_LID(0);
  const int qi = q_indptr[s];
  if (q_indptr[s + 1] - qi <= 0 || qi < 0 || qi >= num_tokens) return;
  const int o_dt = io_dtypes >> 4;
  const pkv_i64 row0 = ((pkv_i64)s * num_q_heads + qh) * num_parts;
  float M = -PKV_INFINITY, L = 0.0f;
  for (int p = 0; p < num_parts; p++) M = pkv_fmaxf(M, part_ml[2 * (row0 + p)]);
  for (int p = 0; p < num_parts; p++)
    L += part_ml[2 * (row0 + p) + 1] * pkv_exp_diff(part_ml[2 * (row0 + p)], M);
  float Mf = M, Lf = L;
  const float f = (flags & 4) ? pkv_sink_fold(&Mf, &Lf, sinks[qh]) : 1.0f;
  for (int d = tid; d < PKV_HEAD_DIM; d += PKV_LSIZE(0)) {
    float acc = 0.0f;
    for (int p = 0; p < num_parts; p++) {
      float w = part_ml[2 * (row0 + p) + 1] * pkv_exp_diff(part_ml[2 * (row0 + p)], M);
      acc += w * part_o[(row0 + p) * PKV_HEAD_DIM + d];
    }
    pkv_st_io(!(L <= 0.0f) ? acc / L * f : 0.0f, out,
              o_off + (pkv_i64)qi * o_ts + (pkv_i64)qh * o_hs + d, o_dt);
  }
  if ((flags & 2) && tid == 0)
    lse[(pkv_i64)qi * num_q_heads + qh] = !(Lf <= 0.0f) ? Mf + pkv_logf(Lf) : -PKV_INFINITY;
}

/* Plan-driven decode (doc/plan-run.md): work-group (item, kv head x group
 * chunk) over the plan's padded item array, int32 [grid_items][4] =
 * (request, key begin, key end, partial row); a padding item (request -1)
 * exits at once. The item's keys are taken PKV_PART at a time (the size of
 * the score array in local memory) and combined online, so an item may be
 * as long as the plan's chunk. An item of an unsplit request (partial row
 * -1) writes out and lse, sinks folded; the items of a split request write
 * their normalised output to ws_o[partial row][q head][d] and its LSE to
 * ws_o[lse_off + partial row * num_q_heads + q head] (the plan's workspace
 * layout), merged by pkv_decode_plan_merge. The grid
 * depends only on the plan: no host-side length. */
PKV_KERNEL void PKV_KNAME(pkv_decode_plan)(
    PKV_GLOBAL const void *q, PKV_GLOBAL const pkv_elem_t *k_pool,
    PKV_GLOBAL const pkv_elem_t *v_pool, PKV_GLOBAL const int *pages,
    PKV_GLOBAL const int *seq_lens, PKV_GLOBAL const int *kv_indptr,
    PKV_GLOBAL const int *kv_last, PKV_GLOBAL const int *q_indptr,
    PKV_GLOBAL const float *alibi, PKV_GLOBAL const float *sinks,
    PKV_GLOBAL void *out, PKV_GLOBAL float *lse, PKV_GLOBAL const int *items,
    PKV_GLOBAL float *ws_o, pkv_i64 lse_off, int max_pages,
    int num_q_heads, int group, int page_size, pkv_i64 page_stride,
    pkv_i64 head_stride, pkv_i64 token_stride, float scale, float softcap,
    int causal, int window_left, int flags, pkv_i64 q_off, pkv_i64 q_ts,
    pkv_i64 q_hs, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs, int io_dtypes,
    int num_pages, int num_tokens, pkv_i64 num_kv_indices,
    PKV_GLOBAL const float *kv_scales, pkv_i64 scale_offset) {
  PKV_LOCAL_DECL float q_s[PKV_MAXG * PKV_HEAD_DIM];
  PKV_LOCAL_DECL float acc_s[PKV_MAXG * PKV_HEAD_DIM]; /* running V sums */
#if PKV_DTYPE == 5
  PKV_LOCAL_DECL float vrs[PKV_PART];
#endif
  PKV_LOCAL_DECL float big[PKV_DEC_BIG];
  PKV_LOCAL_DECL float red[PKV_MAXG * PKV_DEC_WG];
  PKV_LOCAL_DECL float ml[2 * PKV_MAXG];
  PKV_LOCAL_DECL float run[4 * PKV_MAXG]; /* running max, sum; rescales */
  PKV_LOCAL_DECL pkv_i64 koff[PKV_PART];

  PKV_GLOBAL float *ws_lse = ws_o + lse_off; /* one workspace buffer */
  const PKV_GLOBAL int *it = items + 4 * (pkv_i64)PKV_GROUP(0);
  const int s = it[0], prow = it[3], tid = PKV_LID(0);
  if (s < 0) return; /* padding: uniform exit */
  const int nchunks = (group + PKV_MAXG - 1) / PKV_MAXG;
  const int kvh = PKV_GROUP(1) / nchunks, gc = PKV_GROUP(1) % nchunks;
  const int g0 = gc * PKV_MAXG;
  const int gn = group - g0 < PKV_MAXG ? group - g0 : PKV_MAXG;
  const int qh0 = kvh * group + g0;
  const int qi = q_indptr[s];
  if (q_indptr[s + 1] - qi <= 0 || qi < 0 || qi >= num_tokens) return;
  pkv_i64 row0;
  const int kv_len = pkv_table_row(seq_lens, kv_indptr, kv_last, flags & 8, s,
                                   max_pages, page_size, num_kv_indices, &row0);
  const int qpos = kv_len - 1;
  const int q_dt = io_dtypes & 15, o_dt = io_dtypes >> 4;
  float v_scale = 1.0f;
  if (flags & 16) {
    scale *= kv_scales[kvh];
    v_scale = kv_scales[num_q_heads / group + kvh];
  }
  /* The item's keys, bounded by the device's table (the plan was made from
   * the host mirrors), then by the mask. */
  int kbeg = it[1], kend = it[2] < kv_len ? it[2] : kv_len;
  if (kbeg < 0) kbeg = 0;
  if (causal && kend > qpos + 1) kend = qpos + 1;
  if (window_left >= 0 && kbeg < qpos - window_left) kbeg = qpos - window_left;

  for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_DEC_WG) {
    int g = i / PKV_HEAD_DIM, d = i - g * PKV_HEAD_DIM;
    q_s[i] = pkv_ld_io(q, q_off + (pkv_i64)qi * q_ts + (pkv_i64)(qh0 + g) * q_hs + d,
                       q_dt);
    acc_s[i] = 0.0f;
  }
  if (tid == 0)
    for (int g = 0; g < gn; g++) {
      run[g] = -PKV_INFINITY;
      run[PKV_MAXG + g] = 0.0f;
    }
  PKV_BARRIER();

  const PKV_GLOBAL int *bt = pages + row0;
  for (int c0 = kbeg; c0 < kend; c0 += PKV_PART) { /* uniform */
    const int n = kend - c0 < PKV_PART ? kend - c0 : PKV_PART;
    PKV_KNAME(pkv_dec_chunk)(k_pool, v_pool, bt, alibi, num_pages, page_size,
                             page_stride, head_stride, token_stride,
                             scale_offset, scale, softcap, flags, kvh, qh0, gn,
                             qpos, c0, n, q_s, big, red, ml, koff, PKV_VRS,
                             tid);
    /* Online softmax across chunks: rescale the running sums to the new
     * maximum (a chunk of one pass is exactly pkv_decode's result). */
    if (tid == 0)
      for (int g = 0; g < gn; g++) {
        const float M = pkv_fmaxf(run[g], ml[g]);
        const float fa = pkv_exp_diff(run[g], M), fb = pkv_exp_diff(ml[g], M);
        run[PKV_MAXG + g] = run[PKV_MAXG + g] * fa + ml[PKV_MAXG + g] * fb;
        run[g] = M;
        run[2 * PKV_MAXG + g] = fa;
        run[3 * PKV_MAXG + g] = fb;
      }
    PKV_BARRIER();
    for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_DEC_WG) {
      int g = i / PKV_HEAD_DIM, d = i - g * PKV_HEAD_DIM;
      float sum = 0.0f;
      for (int t = 0; t < PKV_KSPLIT; t++) sum += big[(t * PKV_MAXG + g) * PKV_HEAD_DIM + d];
      acc_s[i] = c0 == kbeg ? sum : acc_s[i] * run[2 * PKV_MAXG + g] +
                                        sum * run[3 * PKV_MAXG + g];
    }
    PKV_BARRIER(); /* big and ml are rewritten by the next chunk */
  }

  for (int i = tid; i < gn * PKV_HEAD_DIM; i += PKV_DEC_WG) {
    int g = i / PKV_HEAD_DIM, d = i - g * PKV_HEAD_DIM;
    float m = run[g], l = run[PKV_MAXG + g];
    float o = !(l <= 0.0f) ? acc_s[i] * v_scale / l : 0.0f;
    int qh = qh0 + g;
    if (prow < 0) {
      if (flags & 4) o *= pkv_sink_fold(&m, &l, sinks[qh]);
      pkv_st_io(o, out, o_off + (pkv_i64)qi * o_ts + (pkv_i64)qh * o_hs + d, o_dt);
      if ((flags & 2) && d == 0)
        lse[(pkv_i64)qi * num_q_heads + qh] = !(l <= 0.0f) ? m + pkv_logf(l) : -PKV_INFINITY;
    } else {
      const pkv_i64 row = (pkv_i64)prow * num_q_heads + qh;
      ws_o[row * PKV_HEAD_DIM + d] = o;
      if (d == 0) ws_lse[row] = !(l <= 0.0f) ? m + pkv_logf(l) : -PKV_INFINITY;
    }
  }
}

/* Log-sum-exp merge of a split request's chunks, for every plan kernel
 * (CPU- and GPU-shaped): work-group (merge slot, q head) over the plan's
 * padded merge array, int32 [slots][4] = (request, first partial row,
 * chunks, q_len); a padding slot (request -1) exits. Chunk c of token t is
 * partial row first + c * q_len + t. The sink, if any, joins the
 * denominator here. */
PKV_KERNEL void PKV_KNAME(pkv_decode_plan_merge)(
    PKV_GLOBAL const float *ws_o, pkv_i64 lse_off,
    PKV_GLOBAL const int *merges, PKV_GLOBAL const int *q_indptr,
    PKV_GLOBAL const float *sinks, PKV_GLOBAL void *out, PKV_GLOBAL float *lse,
    int num_q_heads, int flags, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs,
    int io_dtypes, int num_tokens) {
  const PKV_GLOBAL float *ws_lse = ws_o + lse_off;
  const PKV_GLOBAL int *mi = merges + 4 * (pkv_i64)PKV_GROUP(0);
  const int qh = PKV_GROUP(1), s = mi[0], tid = PKV_LID(0);
  if (s < 0) return;
  const int first = mi[1], nc = mi[2], q_len = mi[3];
  const int qi = q_indptr[s], o_dt = io_dtypes >> 4;
  for (int t = 0; t < q_len; t++) { /* uniform */
    const int tok = qi + t;
    if (tok < 0 || tok >= num_tokens) return;
    float M = -PKV_INFINITY, L = 0.0f;
    for (int c = 0; c < nc; c++)
      M = pkv_fmaxf(M, ws_lse[(pkv_i64)(first + c * q_len + t) * num_q_heads + qh]);
    for (int c = 0; c < nc; c++)
      L += pkv_exp_diff(ws_lse[(pkv_i64)(first + c * q_len + t) * num_q_heads + qh], M);
    float Mf = M, Lf = L;
    const float f = (flags & 4) ? pkv_sink_fold(&Mf, &Lf, sinks[qh]) : 1.0f;
    for (int d = tid; d < PKV_HEAD_DIM; d += PKV_LSIZE(0)) {
      float acc = 0.0f;
      for (int c = 0; c < nc; c++) {
        const pkv_i64 row = (pkv_i64)(first + c * q_len + t) * num_q_heads + qh;
        acc += pkv_exp_diff(ws_lse[row], M) * ws_o[row * PKV_HEAD_DIM + d];
      }
      pkv_st_io(!(L <= 0.0f) ? acc / L * f : 0.0f, out,
                o_off + (pkv_i64)tok * o_ts + (pkv_i64)qh * o_hs + d, o_dt);
    }
    if ((flags & 2) && tid == 0)
      lse[(pkv_i64)tok * num_q_heads + qh] =
          !(Lf <= 0.0f) ? Mf + pkv_logf(Lf) : -PKV_INFINITY;
  }
}
