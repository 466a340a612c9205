/* SPDX-License-Identifier: Apache-2.0 */
/* Plan-driven decode on OpenCL (doc/plan-run.md): one work-group per
 * (plan item, kv head x group chunk) over the plan's padded item array,
 * then one per (merge slot, query head) over its merge array. The grid
 * comes from the plan alone; the workspace is the caller's; nothing is
 * allocated and the host never waits, so a run is only kernel launches on
 * the context's in-order queue. */
#include "fastdiv.h"
#include "ocl.h"
#include "plan_launch.h"

typedef struct kargs {
  cl_kernel k;
  cl_uint i;
  cl_int err;
} kargs;

static void arg_(kargs *a, size_t size, const void *v) {
  if (a->err == CL_SUCCESS) a->err = clSetKernelArg(a->k, a->i, size, v);
  a->i++;
}
#define ARG(a, v) arg_(&(a), sizeof(v), &(v))

static cl_mem mem(const pkv_buffer *b) { return (cl_mem)b->native; }

static pkv_status run(pkv_context *ctx, const kargs *a, const char *name,
                      cl_uint dims, const size_t *global, const size_t *local) {
  if (a->err != CL_SUCCESS)
    return pkv__fail(ctx, PKV_ERR_DEVICE, "clSetKernelArg(%s, %u): %s (%d)",
                    name, a->i - 1, pkv__ocl_error_name(a->err), (int)a->err);
  return pkv__ocl_launch(ctx, a->k, name, dims, global, local);
}

pkv_status pkv__ocl_decode_plan(pkv_context *ctx, pkv_ocl_program *p,
                               const pkv_attn_args *a, cl_mem alibi,
                               cl_mem sinks, cl_mem lse, cl_mem scales,
                               cl_int flags, cl_long soff) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  const pkv__plan_exec *pe = a->plan;
  const int gpu = o->kern.gpu && pkv__attn_plain(a);
  pkv__plan_launch pl;
  const cl_int group = a->num_q_heads / g->num_kv_heads;
  /* The matrix-unit kernel under the same conditions as off the plan
   * (ocl_ops.c): one block of 64 rows holds the whole group. */
  const int mma =
      p->prefill_mma_plan &&
      pkv__ocl_mma_wants(&o->kern, (int)g->dtype, (int)a->q_dtype,
                         (int)a->o_dtype, 1, group) &&
      !o->kern.unaligned && a->k_pool->aligned16 && a->v_pool->aligned16 &&
      ((size_t)(g->page_stride | g->head_stride | g->token_stride) *
       pkv__elem_bytes(g->dtype)) % 16 == 0;
  if (!pkv__plan_launch_of(pe, g->num_kv_heads, group,
                           mma ? group : PKV_OCL_MAXG, &pl))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "plan of %lld grid items x %d kv heads exceeds the launch "
                    "limits",
                    (long long)pe->grid_items, g->num_kv_heads);
  cl_mem bt = o->dummy, sl = o->dummy, kvi = o->dummy, kvl = o->dummy;
  if (a->csr) {
    if (a->kv_indices) bt = mem(a->kv_indices);
    kvi = mem(a->kv_indptr);
    kvl = mem(a->kv_last);
  } else {
    bt = mem(a->block_table);
    sl = mem(a->seq_lens);
  }
  int64_t qts, qhs, ots, ohs;
  pkv__attn_strides(a, &qts, &qhs, &ots, &ohs);
  cl_long q_off = a->q_off, q_ts = qts, q_hs = qhs, o_off = a->o_off,
          o_ts = ots, o_hs = ohs, nkvi = a->num_kv_indices,
          lse_off = pl.lse_off;
  cl_int io = (cl_int)a->q_dtype | ((cl_int)a->o_dtype << 4),
         npages = (cl_int)g->num_pages, ntok = (cl_int)a->num_tokens;
  cl_mem q = mem(a->q), out = mem(a->out), kp = mem(a->k_pool),
         vp = mem(a->v_pool), qi = mem(a->q_indptr),
         items = mem(pe->dev_items), merges = mem(pe->dev_merges),
         ws = pe->workspace ? mem(pe->workspace) : o->dummy;
  cl_int max_pages = a->max_pages, qh = a->num_q_heads,
         page_size = g->page_size, causal = a->causal,
         window = a->window_left;
  cl_long ps = g->page_stride, hs = g->head_stride, ts = g->token_stride;
  cl_float scale = a->scale, softcap = a->softcap;
  pkv_status st;
  if (mma) {
    kargs x = {p->prefill_mma_plan, 0, CL_SUCCESS};
    cl_int one = 1, part_len = 0;
    /* part_o = the workspace (part_ml is set from it in the kernel) */
    ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, kvi);
    ARG(x, kvl); ARG(x, qi); ARG(x, alibi); ARG(x, sinks); ARG(x, out);
    ARG(x, lse); ARG(x, max_pages); ARG(x, qh);
    ARG(x, group); ARG(x, page_size); ARG(x, ps); ARG(x, hs); ARG(x, ts);
    ARG(x, scale); ARG(x, softcap); ARG(x, causal); ARG(x, window);
    ARG(x, flags); ARG(x, q_off); ARG(x, q_ts); ARG(x, q_hs); ARG(x, o_off);
    ARG(x, o_ts); ARG(x, o_hs); ARG(x, io); ARG(x, npages); ARG(x, ntok);
    ARG(x, nkvi); ARG(x, scales); ARG(x, soff); ARG(x, ws); ARG(x, ws);
    ARG(x, one); ARG(x, part_len); ARG(x, items); ARG(x, lse_off);
    /* 4 waves a work-group; y: the kv heads (one chunk: the whole group) */
    const size_t nt = 4 * (size_t)o->kern.wave;
    size_t local[2] = {nt, 1};
    size_t global[2] = {pl.items * nt, pl.head_blocks};
    st = run(ctx, &x, "pkv_prefill_mma_plan", 2, global, local);
    if (st == PKV_OK) o->stat_mma_plan++;
  } else if (gpu) {
    const size_t es = pkv__elem_bytes(g->dtype);
    int aligned = !o->kern.unaligned && a->rows_aligned &&
                  a->k_pool->aligned16 && a->v_pool->aligned16 &&
                  (es == 1 || a->q->aligned16) && /* quantized: q by element */
                  ((size_t)(ps | hs | ts) * es) % 16 == 0;
    pkv__fastdiv fd = pkv__fastdiv_make((uint32_t)page_size);
    cl_uint pmul = fd.mul;
    cl_int pshift = (cl_int)fd.shift, one = 1, part_len = 0;
    const int k = aligned ? PKV_K_DECODE_GPU_PLAN : PKV_K_DECODE_GPU_PLAN_U;
    kargs x = {p->kernels[k], 0, CL_SUCCESS};
    /* part_o = the workspace (part_ml is set from it in the kernel) */
    ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, qi);
    ARG(x, alibi); ARG(x, out); ARG(x, lse); ARG(x, ws); ARG(x, ws);
    ARG(x, max_pages); ARG(x, qh); ARG(x, group); ARG(x, page_size);
    ARG(x, pmul); ARG(x, pshift); ARG(x, ps); ARG(x, hs); ARG(x, ts);
    ARG(x, scale); ARG(x, softcap); ARG(x, causal); ARG(x, window);
    ARG(x, flags); ARG(x, one); ARG(x, part_len); ARG(x, io);
    ARG(x, scales); ARG(x, soff); ARG(x, items); ARG(x, lse_off);
    size_t wg = (size_t)pkv__ocl_gpu_decode_wg(g->head_dim, o->kern.wave);
    size_t local[2] = {wg, 1};
    size_t global[2] = {pl.items * wg, pl.head_blocks};
    st = run(ctx, &x, aligned ? "pkv_decode_gpu_plan" : "pkv_decode_gpu_plan_u",
             2, global, local);
  } else {
    kargs x = {p->kernels[PKV_K_DECODE_PLAN], 0, CL_SUCCESS};
    ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, kvi);
    ARG(x, kvl); ARG(x, qi); ARG(x, alibi); ARG(x, sinks); ARG(x, out);
    ARG(x, lse); ARG(x, items); ARG(x, ws); ARG(x, lse_off);
    ARG(x, max_pages); ARG(x, qh); ARG(x, group); ARG(x, page_size);
    ARG(x, ps); ARG(x, hs); ARG(x, ts); ARG(x, scale); ARG(x, softcap);
    ARG(x, causal); ARG(x, window); ARG(x, flags);
    ARG(x, q_off); ARG(x, q_ts); ARG(x, q_hs); ARG(x, o_off); ARG(x, o_ts);
    ARG(x, o_hs); ARG(x, io); ARG(x, npages); ARG(x, ntok); ARG(x, nkvi);
    ARG(x, scales); ARG(x, soff);
    size_t local[2] = {PKV_OCL_DEC_WG, 1};
    size_t global[2] = {pl.items * PKV_OCL_DEC_WG, pl.head_blocks};
    st = run(ctx, &x, "pkv_decode_plan", 2, global, local);
  }
  if (st != PKV_OK) return st;
  /* Always launched (padding slots exit at once): a step without split
   * requests replays the same launches as one with them. */
  kargs y = {p->kernels[PKV_K_DECODE_PLAN_MERGE], 0, CL_SUCCESS};
  ARG(y, ws); ARG(y, lse_off); ARG(y, merges); ARG(y, qi); ARG(y, sinks);
  ARG(y, out); ARG(y, lse); ARG(y, qh); ARG(y, flags); ARG(y, o_off);
  ARG(y, o_ts); ARG(y, o_hs); ARG(y, io); ARG(y, ntok);
  size_t mlocal[2] = {64, 1};
  size_t mglobal[2] = {pl.merge_slots * 64, (size_t)qh};
  return run(ctx, &y, "pkv_decode_plan_merge", 2, mglobal, mlocal);
}
