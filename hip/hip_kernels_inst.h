/* SPDX-License-Identifier: Apache-2.0 */
/* One instantiation of the portable kernels for the PKV_DTYPE and
 * PKV_HEAD_DIM defined by the including file, and its launchers. Included
 * several times into one translation unit (no include guard, on purpose);
 * the kernel files come in the order the OpenCL program concatenates them.
 * kernels/pages.cl does not depend on the instantiation: hip_pages.hip. */

/* Prefill tile: K and V tiles of PKV_PF_BK x head_dim floats stay within
 * 32 KiB of shared memory (the OpenCL host picks the same). */
#undef PKV_PF_BK
#define PKV_PF_BK (4096 / PKV_HEAD_DIM > 64 ? 64 : 4096 / PKV_HEAD_DIM)

#include "common.cl"
#include "write_kv.cl"
#include "decode.cl"
#include "quant.h"
#include "decode_gpu.cl"
#include "prefill.cl"
#if PKV_DTYPE >= 1 && PKV_DTYPE <= 5 /* f16, bf16, fp8, int8: the mma kernel */
#include "prefill_mma.cl"
#endif

#ifdef PKV_HIP_HOST_PASS
enum { PKV_KNAME(pkv_hip_gtile) = PKV_G_T };

static hipError_t PKV_KNAME(pkv_hip_write)(const pkv_hip_launch *a) {
  const long long items = a->n * a->num_kv_heads * (long long)PKV_NCH;
  if (items <= 0) return hipSuccess;
  PKV_KNAME(pkv_write_kv)<<<(unsigned)((items + 63) / 64), 64, 0,
                            a->stream>>>(
      (pkv_bits_t *)a->k_pool, (pkv_bits_t *)a->v_pool,
      a->k, a->v,
      (const pkv_i64 *)a->slots, (pkv_i64)a->n, a->num_kv_heads, a->page_size,
      (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
      (pkv_i64)a->token_stride, (pkv_i64)a->k_off, (pkv_i64)a->k_ts,
      (pkv_i64)a->k_hs, (pkv_i64)a->v_off, (pkv_i64)a->v_ts, (pkv_i64)a->v_hs,
      (pkv_i64)a->num_pages, a->src_dtype, a->kv_scales, a->has_scales,
      (pkv_i64)a->scale_offset);
  return hipGetLastError();
}

static hipError_t PKV_KNAME(pkv_hip_attn)(const pkv_hip_launch *a) {
  const int group = a->num_q_heads / a->num_kv_heads;
  const int flags = (a->alibi ? 1 : 0) | (a->lse ? 2 : 0) |
                    (a->sinks ? 4 : 0) | (a->csr ? 8 : 0) |
                    (a->has_scales ? 16 : 0);
  const int io = a->q_dtype | (a->o_dtype << 4);
#if PKV_DTYPE >= 1 && PKV_DTYPE <= 5 /* f16, bf16, fp8, int8: the mma kernel */
  if (a->mma) { /* kernels/prefill_mma.cl: 64 rows a block */
    const long long rows = (long long)(a->max_q_len > 1 ? a->max_q_len : 1) * group;
    /* decode with partitions: one block per partition of the group's rows */
    const int parts = a->max_q_len <= 1 ? a->num_parts : 1;
    dim3 grid((unsigned)(parts > 1 ? parts : (rows + PKV_MMA_BR - 1) / PKV_MMA_BR),
              (unsigned)a->num_kv_heads, (unsigned)a->num_seqs);
    PKV_KNAME(pkv_prefill_mma)<<<grid, PKV_MMA_NT, 0, a->stream>>>(
        a->q, (const pkv_elem_t *)a->k_pool, (const pkv_elem_t *)a->v_pool,
        a->pages, a->seq_lens, a->kv_indptr, a->kv_last, a->q_indptr,
        a->alibi, a->sinks, a->out, a->lse, a->max_pages, a->num_q_heads,
        group, a->page_size, (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
        (pkv_i64)a->token_stride, a->scale, a->softcap, a->causal,
        a->window_left, flags, (pkv_i64)a->q_off, (pkv_i64)a->q_ts,
        (pkv_i64)a->q_hs, (pkv_i64)a->o_off, (pkv_i64)a->o_ts,
        (pkv_i64)a->o_hs, io, (int)a->num_pages, a->num_tokens,
        (pkv_i64)a->num_kv_indices, a->kv_scales, (pkv_i64)a->scale_offset,
        a->part_o, a->part_ml, parts, a->part_len);
    hipError_t e = hipGetLastError();
    if (e != hipSuccess || parts <= 1) return e;
    dim3 mgrid((unsigned)a->num_q_heads, (unsigned)a->num_seqs);
    PKV_KNAME(pkv_decode_merge)<<<mgrid, 64, 0, a->stream>>>(
        a->part_o, a->part_ml, a->q_indptr, a->sinks, a->out, a->lse,
        a->num_q_heads, flags, parts, (pkv_i64)a->o_off, (pkv_i64)a->o_ts,
        (pkv_i64)a->o_hs, io, a->num_tokens);
    return hipGetLastError();
  }
#endif
  /* gpu_decode is set only for what the GPU kernel implements: dense
   * tables with host mirrors, no sinks, q and out contiguous (in the cache
   * dtype for float pools; pkv__attn_plain); the rest goes to pkv_decode
   * below. */
  if (a->max_q_len <= 1 && a->gpu_decode) {
    const int chunks = (group + PKV_G_MAXG - 1) / PKV_G_MAXG;
    dim3 grid((unsigned)a->num_parts, (unsigned)(a->num_kv_heads * chunks),
              (unsigned)a->num_seqs);
    /* The variant is the host's choice, made from the alignment recorded
     * when the pool buffers were created or wrapped. */
    (a->aligned ? PKV_KNAME(pkv_decode_gpu) : PKV_KNAME(pkv_decode_gpu_u))
        <<<grid, PKV_G_NT, 0, a->stream>>>(
            (const pkv_gio_t *)a->q, (const pkv_elem_t *)a->k_pool,
            (const pkv_elem_t *)a->v_pool, a->pages, a->seq_lens,
            a->q_indptr, a->alibi, (pkv_gio_t *)a->out, a->lse, a->part_o,
            a->part_ml, a->max_pages, a->num_q_heads, group, a->page_size,
            a->pdiv_mul, a->pdiv_shift, (pkv_i64)a->page_stride,
            (pkv_i64)a->head_stride, (pkv_i64)a->token_stride, a->scale,
            a->softcap, a->causal, a->window_left,
            flags, a->num_parts, a->part_len, io,
            a->kv_scales, (pkv_i64)a->scale_offset);
    hipError_t e = hipGetLastError();
    if (e != hipSuccess || a->num_parts <= 1) return e;
    dim3 mgrid((unsigned)a->num_q_heads, (unsigned)a->num_seqs);
    PKV_KNAME(pkv_decode_merge)<<<mgrid, 64, 0, a->stream>>>(
        a->part_o, a->part_ml, a->q_indptr, a->sinks, a->out, a->lse,
        a->num_q_heads, flags, a->num_parts, (pkv_i64)a->o_off,
        (pkv_i64)a->o_ts, (pkv_i64)a->o_hs, io, a->num_tokens);
    return hipGetLastError();
  }
  if (a->max_q_len <= 1) {
    const int chunks = (group + PKV_MAXG - 1) / PKV_MAXG;
    dim3 grid((unsigned)a->num_parts, (unsigned)(a->num_kv_heads * chunks),
              (unsigned)a->num_seqs);
    PKV_KNAME(pkv_decode)<<<grid, PKV_DEC_WG, 0, a->stream>>>(
        a->q, (const pkv_elem_t *)a->k_pool, (const pkv_elem_t *)a->v_pool,
        a->pages, a->seq_lens, a->kv_indptr, a->kv_last, a->q_indptr,
        a->alibi, a->sinks, a->out, a->lse, a->part_o, a->part_ml,
        a->max_pages, a->num_q_heads, group, a->page_size,
        (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
        (pkv_i64)a->token_stride, a->scale, a->softcap, a->causal,
        a->window_left, flags, a->num_parts, (pkv_i64)a->q_off,
        (pkv_i64)a->q_ts, (pkv_i64)a->q_hs, (pkv_i64)a->o_off,
        (pkv_i64)a->o_ts, (pkv_i64)a->o_hs, io, (int)a->num_pages,
        a->num_tokens, (pkv_i64)a->num_kv_indices, a->kv_scales,
        (pkv_i64)a->scale_offset);
    hipError_t e = hipGetLastError();
    if (e != hipSuccess || a->num_parts <= 1) return e;
    dim3 mgrid((unsigned)a->num_q_heads, (unsigned)a->num_seqs);
    PKV_KNAME(pkv_decode_merge)<<<mgrid, 64, 0, a->stream>>>(
        a->part_o, a->part_ml, a->q_indptr, a->sinks, a->out, a->lse,
        a->num_q_heads, flags, a->num_parts, (pkv_i64)a->o_off,
        (pkv_i64)a->o_ts, (pkv_i64)a->o_hs, io, a->num_tokens);
    return hipGetLastError();
  }
  const long long rows = (long long)a->max_q_len * group;
  dim3 grid((unsigned)((rows + PKV_PF_BR - 1) / PKV_PF_BR),
            (unsigned)a->num_kv_heads, (unsigned)a->num_seqs);
  PKV_KNAME(pkv_prefill)<<<grid, PKV_PF_BR, 0, a->stream>>>(
      a->q, (const pkv_elem_t *)a->k_pool, (const pkv_elem_t *)a->v_pool,
      a->pages, a->seq_lens, a->kv_indptr, a->kv_last, a->q_indptr, a->alibi,
      a->sinks, a->out, a->lse, a->max_pages, a->num_q_heads, group,
      a->page_size, (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
      (pkv_i64)a->token_stride, a->scale, a->softcap, a->causal,
      a->window_left, flags, (pkv_i64)a->q_off, (pkv_i64)a->q_ts,
      (pkv_i64)a->q_hs, (pkv_i64)a->o_off, (pkv_i64)a->o_ts,
      (pkv_i64)a->o_hs, io, (int)a->num_pages, a->num_tokens,
      (pkv_i64)a->num_kv_indices, a->kv_scales, (pkv_i64)a->scale_offset);
  return hipGetLastError();
}
#endif
#include "hip_plan_inst.h"
