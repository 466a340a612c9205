/* SPDX-License-Identifier: Apache-2.0 */
/* Prefill / extend: query runs (q_indptr) against the sequence's paged
 * keys, including the keys written in the same step.
 *
 * Work-group (row tile, kv head, sequence). A row is one (query token,
 * query head of the GQA group) pair, rows flattened token-major, so every
 * K/V tile staged in local memory serves all heads of the group. One
 * work-item per row keeps its query and output accumulator in private
 * memory and runs an online softmax over tiles of PKV_PF_BK keys.
 *
 * Semantics (the CPU reference's): query i of a run of q_len over kv_len
 * keys sits at qpos = i + kv_len - q_len (bottom-right causal alignment);
 * key j is visible iff (!causal || j <= qpos) and (window_left < 0 ||
 * j >= qpos - window_left). A row that sees no key gives zeros and an LSE
 * of -inf. */

/* flags, io_dtypes and the table arguments: as pkv_decode (decode.cl). */
PKV_KERNEL void PKV_KNAME(pkv_prefill)(
    PKV_GLOBAL const void *q, PKV_GLOBAL const pkv_elem_t *k_pool,
    PKV_GLOBAL const pkv_elem_t *v_pool, PKV_GLOBAL const int *pages,
    PKV_GLOBAL const int *seq_lens, PKV_GLOBAL const int *kv_indptr,
    PKV_GLOBAL const int *kv_last, PKV_GLOBAL const int *q_indptr,
    PKV_GLOBAL const float *alibi, PKV_GLOBAL const float *sinks,
    PKV_GLOBAL void *out, PKV_GLOBAL float *lse, int max_pages,
    int num_q_heads, int group, int page_size, pkv_i64 page_stride,
    pkv_i64 head_stride, pkv_i64 token_stride, float scale, float softcap,
    int causal, int window_left, int flags, pkv_i64 q_off, pkv_i64 q_ts,
    pkv_i64 q_hs, pkv_i64 o_off, pkv_i64 o_ts, pkv_i64 o_hs, int io_dtypes,
    int num_pages, int num_tokens, pkv_i64 num_kv_indices,
    PKV_GLOBAL const float *kv_scales, pkv_i64 scale_offset) {
  PKV_LOCAL_DECL float k_s[PKV_PF_BK * PKV_HEAD_DIM];
  PKV_LOCAL_DECL float v_s[PKV_PF_BK * PKV_HEAD_DIM];

  const int tile = PKV_GROUP(0), kvh = PKV_GROUP(1), s = PKV_GROUP(2);
  const int tid = PKV_LID(0);
  const int q0 = q_indptr[s], q_len = q_indptr[s + 1] - q0;
  /* a query run outside q: uniform exit, nothing read or written */
  if (q0 < 0 || q_len < 0 || q_len > num_tokens - q0) return;
  pkv_i64 row0;
  const int kv_len = pkv_table_row(seq_lens, kv_indptr, kv_last, flags & 8, s,
                                   max_pages, page_size, num_kv_indices, &row0);
  const int q_dt = io_dtypes & 15, o_dt = io_dtypes >> 4;
  /* fp8 scales (flags 16): K's folded into the softmax scale, V's into
   * the output */
  float v_scale = 1.0f;
  if (flags & 16) {
    scale *= kv_scales[kvh];
    v_scale = kv_scales[num_q_heads / group + kvh];
  }
  const int nrows = q_len * group, r0 = tile * PKV_PF_BR;
  if (r0 >= nrows) return; /* uniform over the work-group */
  const int r1 = (r0 + PKV_PF_BR < nrows ? r0 + PKV_PF_BR : nrows) - 1;
  const int qpos_lo = r0 / group + kv_len - q_len;
  const int qpos_hi = r1 / group + kv_len - q_len;
  int kend = kv_len, kbeg = 0;
  if (causal && kend > qpos_hi + 1) kend = qpos_hi + 1;
  if (window_left >= 0 && kbeg < qpos_lo - window_left) kbeg = qpos_lo - window_left;

  const int r = r0 + tid;
  const int valid = r < nrows;
  const int i = r / group, g = r - (r / group) * group;
  const int qh = kvh * group + g, qpos = i + kv_len - q_len;
  const pkv_i64 qrow = q_off + (pkv_i64)(q0 + i) * q_ts + (pkv_i64)qh * q_hs;
  const pkv_i64 orow = o_off + (pkv_i64)(q0 + i) * o_ts + (pkv_i64)qh * o_hs;
  const float slope = (valid && (flags & 1)) ? alibi[qh] : 0.0f;

  pkv_f8 qv[PKV_NCH], o[PKV_NCH];
  float m = -PKV_INFINITY, l = 0.0f;
  for (int c = 0; c < PKV_NCH; c++) {
    o[c] = pkv_f8_zero();
    qv[c] = pkv_f8_zero();
  }
  if (valid)
    for (int c = 0; c < PKV_NCH; c++) {
      float t[8];
      for (int e = 0; e < 8; e++) t[e] = pkv_ld_io(q, qrow + c * 8 + e, q_dt);
      pkv_f8_ldl(qv[c], t);
    }

  const PKV_GLOBAL int *bt = pages + row0;
  for (int kt = kbeg; kt < kend; kt += PKV_PF_BK) {
    const int nk = kend - kt < PKV_PF_BK ? kend - kt : PKV_PF_BK;
    for (int idx = tid; idx < nk * PKV_NCH; idx += PKV_PF_BR) {
      int kk = idx / PKV_NCH, c = idx - kk * PKV_NCH;
      int j = kt + kk, pg = j / page_size;
      pkv_i64 off = pkv_page_at(bt, pg, num_pages) * page_stride + kvh * head_stride +
                    (pkv_i64)(j - pg * page_size) * token_stride + c * 8;
      pkv_f8 tk, tv;
      PKV_LD8V(tk, k_pool + off);
      PKV_LD8V(tv, v_pool + off);
#if PKV_DTYPE == 5
      { /* int8: each row times its (token, head) scale from the page */
        const pkv_i64 pp = pkv_page_at(bt, pg, num_pages);
        const int tt = j - pg * page_size;
        tk = pkv_f8_axpy(PKV_ROW_SCALE(k_pool, pp, kvh, tt), tk, pkv_f8_zero());
        tv = pkv_f8_axpy(PKV_ROW_SCALE(v_pool, pp, kvh, tt), tv, pkv_f8_zero());
      }
#endif
      pkv_f8_stl(tk, k_s + kk * PKV_HEAD_DIM + c * 8);
      pkv_f8_stl(tv, v_s + kk * PKV_HEAD_DIM + c * 8);
    }
    PKV_BARRIER();
    if (valid) {
      float sc[PKV_PF_BK];
      float tmax = -PKV_INFINITY;
      for (int kk = 0; kk < nk; kk++) {
        int j = kt + kk;
        float sv = -PKV_INFINITY;
        if ((!causal || j <= qpos) && (window_left < 0 || j >= qpos - window_left)) {
          pkv_f8 a0 = pkv_f8_zero(), a1 = pkv_f8_zero();
          for (int c = 0; c < PKV_NCH; c += 2) {
            pkv_f8 k0, k1;
            pkv_f8_ldl(k0, k_s + kk * PKV_HEAD_DIM + c * 8);
            pkv_f8_ldl(k1, k_s + kk * PKV_HEAD_DIM + c * 8 + 8);
            a0 = pkv_f8_fma(qv[c], k0, a0);
            a1 = pkv_f8_fma(qv[c + 1], k1, a1);
          }
          sv = PKV_SCORE(pkv_f8_hsum(a0) + pkv_f8_hsum(a1), scale, softcap, slope, j, qpos);
        }
        sc[kk] = sv;
        tmax = pkv_fmaxf(tmax, sv);
      }
      float mnew = pkv_fmaxf(m, tmax);
      if (mnew != -PKV_INFINITY) {
        float alpha = pkv_exp_diff(m, mnew);
        l *= alpha;
        for (int c = 0; c < PKV_NCH; c++) o[c] = pkv_f8_axpy(alpha, o[c], pkv_f8_zero());
        for (int kk = 0; kk < nk; kk++) {
          float p = pkv_exp_diff(sc[kk], mnew);
          l += p;
          for (int c = 0; c < PKV_NCH; c++) {
            pkv_f8 vv;
            pkv_f8_ldl(vv, v_s + kk * PKV_HEAD_DIM + c * 8);
            o[c] = pkv_f8_axpy(p, vv, o[c]);
          }
        }
        m = mnew;
      }
    }
    PKV_BARRIER();
  }
  if (valid) {
    const float l0 = l;
    const float f = (flags & 4) ? pkv_sink_fold(&m, &l, sinks[qh]) : 1.0f;
    for (int c = 0; c < PKV_NCH; c++) {
      float t[8];
      pkv_f8_stp(o[c], t);
      for (int e = 0; e < 8; e++)
        pkv_st_io(!(l0 <= 0.0f) ? t[e] * v_scale / l0 * f : 0.0f, out, orow + c * 8 + e, o_dt);
    }
    if (flags & 2)
      lse[(pkv_i64)(q0 + i) * num_q_heads + qh] = !(l <= 0.0f) ? m + pkv_logf(l) : -PKV_INFINITY;
  }
}
