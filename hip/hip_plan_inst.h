/* SPDX-License-Identifier: Apache-2.0 */
/* The plan-driven decode launchers of one (PKV_DTYPE, PKV_HEAD_DIM)
 * instantiation (doc/plan-run.md), included at the end of
 * hip_kernels_inst.h: the items grid of pkv_prefill_mma_plan (f16/bf16),
 * pkv_decode_plan or pkv_decode_gpu_plan(_u), then pkv_decode_plan_merge over the plan's merge
 * slots. Every extent comes from the plan (grid_items, merge_slots), none
 * from the batch, and everything is queued on a->stream: the launches of a
 * run replay in a captured graph. */
#ifdef PKV_HIP_HOST_PASS
static hipError_t PKV_KNAME(pkv_hip_plan)(const pkv_hip_launch *a) {
  const int group = a->num_q_heads / a->num_kv_heads;
  const int flags = (a->alibi ? 1 : 0) | (a->lse ? 2 : 0) |
                    (a->sinks ? 4 : 0) | (a->csr ? 8 : 0) |
                    (a->has_scales ? 16 : 0);
  const int io = a->q_dtype | (a->o_dtype << 4);
#if PKV_DTYPE >= 1 && PKV_DTYPE <= 5 /* f16, bf16, fp8, int8: the mma kernel */
  if (a->mma) { /* kernels/prefill_mma.cl: the group in one block's rows */
    dim3 grid((unsigned)a->grid_items, (unsigned)a->num_kv_heads);
    PKV_KNAME(pkv_prefill_mma_plan)<<<grid, PKV_MMA_NT, 0, a->stream>>>(
        a->q, (const pkv_elem_t *)a->k_pool, (const pkv_elem_t *)a->v_pool,
        a->pages, a->seq_lens, a->kv_indptr, a->kv_last, a->q_indptr,
        a->alibi, a->sinks, a->out, a->lse, a->max_pages, a->num_q_heads,
        group, a->page_size, (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
        (pkv_i64)a->token_stride, a->scale, a->softcap, a->causal,
        a->window_left, flags, (pkv_i64)a->q_off, (pkv_i64)a->q_ts,
        (pkv_i64)a->q_hs, (pkv_i64)a->o_off, (pkv_i64)a->o_ts,
        (pkv_i64)a->o_hs, io, (int)a->num_pages, a->num_tokens,
        (pkv_i64)a->num_kv_indices, a->kv_scales, (pkv_i64)a->scale_offset,
        a->ws, a->ws, 1, 0, a->plan_items, (pkv_i64)a->lse_off);
  } else
#endif
  if (a->gpu_decode) {
    const int chunks = (group + PKV_G_MAXG - 1) / PKV_G_MAXG;
    dim3 grid((unsigned)a->grid_items, (unsigned)(a->num_kv_heads * chunks));
    (a->aligned ? PKV_KNAME(pkv_decode_gpu_plan)
                : PKV_KNAME(pkv_decode_gpu_plan_u))
        <<<grid, PKV_G_NT, 0, a->stream>>>(
            (const pkv_gio_t *)a->q, (const pkv_elem_t *)a->k_pool,
            (const pkv_elem_t *)a->v_pool, a->pages, a->seq_lens,
            a->q_indptr, a->alibi, (pkv_gio_t *)a->out, a->lse, a->ws,
            a->ws, a->max_pages, a->num_q_heads, group, a->page_size,
            a->pdiv_mul, a->pdiv_shift, (pkv_i64)a->page_stride,
            (pkv_i64)a->head_stride, (pkv_i64)a->token_stride, a->scale,
            a->softcap, a->causal, a->window_left, flags, 1, 0, io,
            a->kv_scales, (pkv_i64)a->scale_offset, a->plan_items,
            (pkv_i64)a->lse_off);
  } else {
    const int chunks = (group + PKV_MAXG - 1) / PKV_MAXG;
    dim3 grid((unsigned)a->grid_items, (unsigned)(a->num_kv_heads * chunks));
    PKV_KNAME(pkv_decode_plan)<<<grid, PKV_DEC_WG, 0, a->stream>>>(
        a->q, (const pkv_elem_t *)a->k_pool, (const pkv_elem_t *)a->v_pool,
        a->pages, a->seq_lens, a->kv_indptr, a->kv_last, a->q_indptr,
        a->alibi, a->sinks, a->out, a->lse, a->plan_items, a->ws,
        (pkv_i64)a->lse_off, a->max_pages, a->num_q_heads, group,
        a->page_size, (pkv_i64)a->page_stride, (pkv_i64)a->head_stride,
        (pkv_i64)a->token_stride, a->scale, a->softcap, a->causal,
        a->window_left, flags, (pkv_i64)a->q_off, (pkv_i64)a->q_ts,
        (pkv_i64)a->q_hs, (pkv_i64)a->o_off, (pkv_i64)a->o_ts,
        (pkv_i64)a->o_hs, io, (int)a->num_pages, a->num_tokens,
        (pkv_i64)a->num_kv_indices, a->kv_scales, (pkv_i64)a->scale_offset);
  }
  hipError_t e = hipGetLastError();
  if (e != hipSuccess) return e;
  /* Always launched (padding slots exit): the same launches every step. */
  dim3 mgrid((unsigned)a->merge_slots, (unsigned)a->num_q_heads);
  PKV_KNAME(pkv_decode_plan_merge)<<<mgrid, 64, 0, a->stream>>>(
      a->ws, (pkv_i64)a->lse_off, a->plan_merges, a->q_indptr, a->sinks,
      a->out, a->lse, a->num_q_heads, flags, (pkv_i64)a->o_off,
      (pkv_i64)a->o_ts, (pkv_i64)a->o_hs, io, a->num_tokens);
  return hipGetLastError();
}

/* Resident blocks per SM/CU of the kernel pkv_hip_plan launches, from the
 * runtime's occupancy calculator (registers, shared memory, launch
 * bounds of the compiled kernel): the planner's blocks per SM. */
static hipError_t PKV_KNAME(pkv_hip_plan_occ)(int mma, int gpu_decode,
                                              int aligned, int *blocks) {
#if PKV_DTYPE >= 1 && PKV_DTYPE <= 5 /* f16, bf16, fp8, int8: the mma kernel */
  if (mma)
    return hipOccupancyMaxActiveBlocksPerMultiprocessor(
        blocks, PKV_KNAME(pkv_prefill_mma_plan), PKV_MMA_NT, 0);
#else
  (void)mma;
#endif
  if (gpu_decode)
    return hipOccupancyMaxActiveBlocksPerMultiprocessor(
        blocks,
        aligned ? PKV_KNAME(pkv_decode_gpu_plan)
                : PKV_KNAME(pkv_decode_gpu_plan_u),
        PKV_G_NT, 0);
  return hipOccupancyMaxActiveBlocksPerMultiprocessor(
      blocks, PKV_KNAME(pkv_decode_plan), PKV_DEC_WG, 0);
}
#endif
