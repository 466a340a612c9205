/* SPDX-License-Identifier: Apache-2.0 */
/* Launches of the portable kernels: K/V write, attention (decode with a
 * partitioned key axis and a merge, or prefill), page copies and the
 * batched device <-> host page moves. */
#include "alloc.h"
#include "fastdiv.h"
#include "ocl.h"

#include <stdlib.h>
#include <string.h>

typedef struct args {
  cl_kernel k;
  cl_uint i;
  cl_int err;
} args;

static void arg_(args *a, size_t size, const void *v) {
  if (a->err == CL_SUCCESS) a->err = clSetKernelArg(a->k, a->i, size, v);
  a->i++;
}
#define ARG(a, v) arg_(&(a), sizeof(v), &(v))

static cl_mem mem(const pkv_buffer *b) { return (cl_mem)b->native; }

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

pkv_status pkv__ocl_launch(pkv_context *ctx, cl_kernel k, const char *name,
                          cl_uint dims, const size_t *global,
                          const size_t *local) {
  cl_int err = clEnqueueNDRangeKernel(pkv_ocl_of(ctx)->queue, k, dims, NULL,
                                      global, local, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return pkv__fail(ctx, PKV_ERR_DEVICE, "clEnqueueNDRangeKernel(%s): %s (%d)",
                    name, pkv__ocl_error_name(err), (int)err);
  return PKV_OK;
}

static pkv_status launch(pkv_context *ctx, const args *a, const char *name,
                         cl_uint dims, const size_t *global,
                         const size_t *local) {
  if (a->err != CL_SUCCESS)
    return pkv__fail(ctx, PKV_ERR_DEVICE, "clSetKernelArg(%s, %u): %s (%d)",
                    name, a->i - 1, pkv__ocl_error_name(a->err), (int)a->err);
  cl_int err = clEnqueueNDRangeKernel(pkv_ocl_of(ctx)->queue, a->k, dims, NULL,
                                      global, local, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return pkv__fail(ctx, PKV_ERR_DEVICE, "clEnqueueNDRangeKernel(%s): %s (%d)",
                    name, pkv__ocl_error_name(err), (int)err);
  return PKV_OK;
}

/* Grows a scratch buffer; the old one is released (OpenCL keeps it alive
 * until queued work that uses it has finished). */
static pkv_status scratch(pkv_context *ctx, cl_mem *buf, size_t *have,
                          size_t need) {
  if (*buf && *have >= need) return PKV_OK;
  cl_int err;
  cl_mem m = clCreateBuffer(pkv_ocl_of(ctx)->context, CL_MEM_READ_WRITE, need,
                            NULL, &err);
  pkv_ocl_of(ctx)->stat_allocs++;
  if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clCreateBuffer", err);
  if (*buf) clReleaseMemObject(*buf);
  *buf = m;
  *have = need;
  return PKV_OK;
}

/* fp8 scales to the device as [K scales][V scales] (absent = 1); *out is
 * the dummy buffer for a float pool. Blocking upload: the host arrays are
 * the caller's. */
static pkv_status upload_scales(pkv_context *ctx, const float *ks,
                                const float *vs, int32_t nkv, cl_mem *out,
                                cl_int *given) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  *out = o->dummy;
  *given = 0;
  if (!ks && !vs) return PKV_OK;
  const size_t bytes = 2 * (size_t)nkv * sizeof(float);
  float *h = pkv__malloc(bytes);
  if (!h) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "fp8 scales (%zu bytes)", bytes);
  for (int32_t i = 0; i < nkv; i++) {
    h[i] = ks ? ks[i] : 1.0f;
    h[nkv + i] = vs ? vs[i] : 1.0f;
  }
  pkv_status st = scratch(ctx, &o->scales_buf, &o->scales_bytes, bytes);
  if (st == PKV_OK) {
    o->stat_waits++;
    cl_int err = clEnqueueWriteBuffer(o->queue, o->scales_buf, CL_TRUE, 0,
                                      bytes, h, 0, NULL, NULL);
    if (err != CL_SUCCESS) st = pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
  }
  pkv__free(h);
  if (st != PKV_OK) return st;
  *out = o->scales_buf;
  *given = 1;
  return PKV_OK;
}

pkv_status pkv__ocl_write_kv(pkv_context *ctx, const pkv_write_args *a) {
  const pkv_cache_geometry *g = a->geom;
  if (a->n <= 0) return PKV_OK;
  pkv_ocl_program *p;
  pkv_status st = pkv__ocl_program_get(ctx, g->head_dim, (int)g->dtype, &p);
  if (st != PKV_OK) return st;
  cl_mem kp = mem(a->k_pool), vp = mem(a->v_pool), k = mem(a->k),
         v = mem(a->v), slots = mem(a->slots);
  cl_long n = a->n, ps = g->page_stride, hs = g->head_stride,
          ts = g->token_stride;
  cl_int heads = g->num_kv_heads, page_size = g->page_size;
  int64_t kts, khs, vts, vhs;
  pkv__write_strides(a, &kts, &khs, &vts, &vhs);
  cl_long koff = a->k_off, kts_ = kts, khs_ = khs, voff = a->v_off,
          vts_ = vts, vhs_ = vhs, npages = g->num_pages;
  cl_int src_dt = a->convert ? (cl_int)a->src_dtype : (cl_int)g->dtype;
  cl_mem scales;
  cl_int has_scales;
  st = upload_scales(ctx, a->h_k_scales, a->h_v_scales, g->num_kv_heads,
                     &scales, &has_scales);
  if (st != PKV_OK) return st;
  args x = {p->kernels[PKV_K_WRITE_KV], 0, CL_SUCCESS};
  ARG(x, kp); ARG(x, vp); ARG(x, k); ARG(x, v); ARG(x, slots); ARG(x, n);
  ARG(x, heads); ARG(x, page_size); ARG(x, ps); ARG(x, hs); ARG(x, ts);
  ARG(x, koff); ARG(x, kts_); ARG(x, khs_); ARG(x, voff); ARG(x, vts_);
  cl_long soff = (cl_long)g->scale_offset;
  ARG(x, vhs_); ARG(x, npages); ARG(x, src_dt); ARG(x, scales);
  ARG(x, has_scales); ARG(x, soff);
  size_t local = 64, items;
  if (!pkv__mul3_size((size_t)n, (size_t)heads, (size_t)(g->head_dim / 8),
                      &items) || items > (size_t)-1 - local)
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "write_kv of n %lld tokens x %d kv heads overflows the "
                    "launch size",
                    (long long)a->n, (int)heads);
  size_t global = round_up(items, local);
  return launch(ctx, &x, "pkv_write_kv", 1, &global, &local);
}

/* The GPU decode kernel implements dense tables with host mirrors (the
 * host checked every page index), no sinks, and q and out contiguous in
 * the cache dtype; everything else goes to the CPU-shaped kernel. */
static int gpu_decode_supports(const pkv_ocl *o, const pkv_attn_args *a) {
  return o->kern.gpu && pkv__attn_plain(a);
}

pkv_status pkv__ocl_attention(pkv_context *ctx, const pkv_attn_args *a) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  if (a->num_tokens <= 0 || a->num_seqs <= 0) return PKV_OK;
  pkv_ocl_program *p;
  pkv_status st = pkv__ocl_program_get(ctx, g->head_dim, (int)g->dtype, &p);
  if (st != PKV_OK) return st;

  cl_int flags = 0;
  cl_mem alibi = o->dummy, lse = o->dummy;
  if (a->h_alibi) {
    flags |= 1;
    if (a->alibi) {
      alibi = mem(a->alibi);
    } else {
      size_t bytes = (size_t)a->num_q_heads * sizeof(float);
      st = scratch(ctx, &o->alibi_buf, &o->alibi_bytes, bytes);
      if (st != PKV_OK) return st;
      o->stat_waits++;
      cl_int err = clEnqueueWriteBuffer(o->queue, o->alibi_buf, CL_TRUE, 0,
                                        bytes, a->h_alibi, 0, NULL, NULL);
      if (err != CL_SUCCESS)
        return pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
      alibi = o->alibi_buf;
    }
  }
  if (a->lse) {
    flags |= 2;
    lse = mem(a->lse);
  }
  cl_mem sinks = o->dummy;
  if (a->h_sinks && a->plan && a->plan->sinks) {
    flags |= 4;
    sinks = mem(a->plan->sinks); /* uploaded by the plan's build */
  } else if (a->h_sinks) {
    flags |= 4;
    o->stat_waits++;
    size_t bytes = (size_t)a->num_q_heads * sizeof(float);
    st = scratch(ctx, &o->sinks_buf, &o->sinks_bytes, bytes);
    if (st != PKV_OK) return st;
    cl_int err = clEnqueueWriteBuffer(o->queue, o->sinks_buf, CL_TRUE, 0,
                                      bytes, a->h_sinks, 0, NULL, NULL);
    if (err != CL_SUCCESS) return pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
    sinks = o->sinks_buf;
  }
  cl_mem scales;
  cl_int has_scales;
  st = upload_scales(ctx, a->h_k_scales, a->h_v_scales, g->num_kv_heads,
                     &scales, &has_scales);
  if (st != PKV_OK) return st;
  if (has_scales) flags |= 16;
  cl_long soff = (cl_long)g->scale_offset; /* int8: the pages' scale block */
  /* Dense: pages = block_table (+ seq_lens); CSR: pages = kv_indices (+
   * kv_indptr, kv_last_page_len). Absent arrays are the dummy buffer. */
  cl_mem bt = o->dummy, sl = o->dummy, kvi = o->dummy, kvl = o->dummy;
  if (a->csr) {
    flags |= 8;
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
          o_ts = ots, o_hs = ohs, nkvi = a->num_kv_indices;
  cl_int io = (cl_int)a->q_dtype | ((cl_int)a->o_dtype << 4),
         npages = (cl_int)g->num_pages, ntok = (cl_int)a->num_tokens;
  cl_mem q = mem(a->q), out = mem(a->out), kp = mem(a->k_pool),
         vp = mem(a->v_pool), qi = mem(a->q_indptr);
  cl_int max_pages = a->max_pages, qh = a->num_q_heads,
         group = a->num_q_heads / g->num_kv_heads, page_size = g->page_size,
         causal = a->causal, window = a->window_left;
  cl_long ps = g->page_stride, hs = g->head_stride, ts = g->token_stride;
  cl_float scale = a->scale, softcap = a->softcap;

  /* Under a plan: the plan's grid (no allocation, no host wait). */
  if (a->max_q_len <= 1 && a->plan)
    return pkv__ocl_decode_plan(ctx, p, a, alibi, sinks, lse, scales, flags,
                               soff);

  /* The matrix-unit kernel: its 16-byte async copies need aligned K/V
   * rows (checked at buffer creation, kept by the strides). */
  if (p->prefill_mma &&
      pkv__ocl_mma_wants(&o->kern, (int)g->dtype, (int)a->q_dtype,
                         (int)a->o_dtype, a->max_q_len, group) &&
      !o->kern.unaligned && a->k_pool->aligned16 && a->v_pool->aligned16 &&
      ((size_t)(ps | hs | ts) * pkv__elem_bytes(g->dtype)) % 16 == 0) {
    args x = {p->prefill_mma, 0, CL_SUCCESS};
    ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, kvi);
    ARG(x, kvl); ARG(x, qi); ARG(x, alibi); ARG(x, sinks); ARG(x, out);
    ARG(x, lse); ARG(x, max_pages); ARG(x, qh);
    ARG(x, group); ARG(x, page_size); ARG(x, ps); ARG(x, hs); ARG(x, ts);
    ARG(x, scale); ARG(x, softcap); ARG(x, causal); ARG(x, window);
    ARG(x, flags); ARG(x, q_off); ARG(x, q_ts); ARG(x, q_hs); ARG(x, o_off);
    ARG(x, o_ts); ARG(x, o_hs); ARG(x, io); ARG(x, npages); ARG(x, ntok);
    ARG(x, nkvi); ARG(x, scales); ARG(x, soff);
    /* Decode splits the key axis into partitions (a group fits the 64
     * rows of one block: pkv__ocl_mma_wants), merged as pkv_decode's. */
    cl_int parts = 1, part_len = p->part;
    cl_mem po = o->dummy, pm = o->dummy;
    if (a->max_q_len <= 1) {
      parts = (a->max_kv_len + part_len - 1) / part_len;
      if (parts < 1) parts = 1;
    }
    if (parts > 1) {
      size_t prow, po_sz, pm_sz;
      if (!pkv__mul3_size((size_t)a->num_seqs, (size_t)qh, (size_t)parts, &prow) ||
          !pkv__mul3_size(prow, (size_t)g->head_dim, sizeof(float), &po_sz) ||
          !pkv__mul3_size(prow, 2, sizeof(float), &pm_sz))
        return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                        "decode partials of %d seqs x %d q heads x %d parts "
                        "overflow size_t",
                        a->num_seqs, (int)qh, (int)parts);
      st = scratch(ctx, &o->part_o, &o->part_o_bytes, po_sz);
      if (st == PKV_OK) st = scratch(ctx, &o->part_ml, &o->part_ml_bytes, pm_sz);
      if (st != PKV_OK) return st;
      po = o->part_o;
      pm = o->part_ml;
    }
    ARG(x, po); ARG(x, pm); ARG(x, parts); ARG(x, part_len);
    /* 64 rows (query token x group head) per work-group of 4 waves */
    const size_t nt = 4 * (size_t)o->kern.wave;
    const size_t rows = (size_t)(a->max_q_len > 1 ? a->max_q_len : 1) * (size_t)group;
    size_t local[3] = {nt, 1, 1};
    size_t global[3] = {(parts > 1 ? (size_t)parts : (rows + 63) / 64) * nt,
                        (size_t)g->num_kv_heads, (size_t)a->num_seqs};
    st = launch(ctx, &x, "pkv_prefill_mma", 3, global, local);
    if (st != PKV_OK || parts == 1) return st;
    args y = {p->kernels[PKV_K_DECODE_MERGE], 0, CL_SUCCESS};
    ARG(y, po); ARG(y, pm); ARG(y, qi); ARG(y, sinks); ARG(y, out);
    ARG(y, lse); ARG(y, qh); ARG(y, flags); ARG(y, parts); ARG(y, o_off);
    ARG(y, o_ts); ARG(y, o_hs); ARG(y, io); ARG(y, ntok);
    size_t mlocal[2] = {64, 1};
    size_t mglobal[2] = {(size_t)qh * 64, (size_t)a->num_seqs};
    return launch(ctx, &y, "pkv_decode_merge", 2, mglobal, mlocal);
  }

  if (a->max_q_len <= 1) {
    cl_int parts = (a->max_kv_len + p->part - 1) / p->part;
    if (parts < 1) parts = 1;
    cl_mem po = o->dummy, pm = o->dummy;
    if (parts > 1) {
      size_t rows, po_sz, pm_sz;
      if (!pkv__mul3_size((size_t)a->num_seqs, (size_t)qh, (size_t)parts,
                          &rows) ||
          !pkv__mul3_size(rows, (size_t)g->head_dim, sizeof(float), &po_sz) ||
          !pkv__mul3_size(rows, 2, sizeof(float), &pm_sz))
        return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                        "decode partials of %d seqs x %d q heads x %d parts "
                        "overflow size_t",
                        a->num_seqs, (int)qh, (int)parts);
      st = scratch(ctx, &o->part_o, &o->part_o_bytes, po_sz);
      if (st == PKV_OK)
        st = scratch(ctx, &o->part_ml, &o->part_ml_bytes, pm_sz);
      if (st != PKV_OK) return st;
      po = o->part_o;
      pm = o->part_ml;
    }
    size_t chunks = (size_t)(group + PKV_OCL_MAXG - 1) / PKV_OCL_MAXG;
    if (gpu_decode_supports(o, a)) {
      /* Rows are 16-byte aligned when the pools are (checked at buffer
       * creation) and the strides keep them so: then the vector copies. */
      const size_t es = pkv__elem_bytes(g->dtype);
      /* quantized pools read q element by element (any io dtype):
       * its alignment does not matter */
      int aligned = !o->kern.unaligned && a->rows_aligned &&
                    a->k_pool->aligned16 && a->v_pool->aligned16 &&
                    (es == 1 || a->q->aligned16) &&
                    ((size_t)(ps | hs | ts) * es) % 16 == 0;
      pkv__fastdiv fd = pkv__fastdiv_make((uint32_t)page_size);
      cl_uint pmul = fd.mul;
      cl_int pshift = (cl_int)fd.shift, part_len = p->part;
      const int k = aligned ? PKV_K_DECODE_GPU : PKV_K_DECODE_GPU_U;
      args x = {p->kernels[k], 0, CL_SUCCESS};
      ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, qi);
      ARG(x, alibi); ARG(x, out); ARG(x, lse); ARG(x, po); ARG(x, pm);
      ARG(x, max_pages); ARG(x, qh); ARG(x, group); ARG(x, page_size);
      ARG(x, pmul); ARG(x, pshift); ARG(x, ps); ARG(x, hs); ARG(x, ts);
      ARG(x, scale); ARG(x, softcap); ARG(x, causal); ARG(x, window);
      ARG(x, flags); ARG(x, parts); ARG(x, part_len); ARG(x, io);
      ARG(x, scales); ARG(x, soff);
      size_t wg = (size_t)pkv__ocl_gpu_decode_wg(g->head_dim, o->kern.wave);
      size_t local[3] = {wg, 1, 1};
      size_t global[3] = {(size_t)parts * wg, (size_t)g->num_kv_heads * chunks,
                          (size_t)a->num_seqs};
      st = launch(ctx, &x, aligned ? "pkv_decode_gpu" : "pkv_decode_gpu_u", 3,
                  global, local);
    } else {
      args x = {p->kernels[PKV_K_DECODE], 0, CL_SUCCESS};
      ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, kvi);
      ARG(x, kvl); ARG(x, qi); ARG(x, alibi); ARG(x, sinks); ARG(x, out);
      ARG(x, lse); ARG(x, po); ARG(x, pm);
      ARG(x, max_pages); ARG(x, qh); ARG(x, group); ARG(x, page_size);
      ARG(x, ps); ARG(x, hs); ARG(x, ts); ARG(x, scale); ARG(x, softcap);
      ARG(x, causal); ARG(x, window); ARG(x, flags); ARG(x, parts);
      ARG(x, q_off); ARG(x, q_ts); ARG(x, q_hs); ARG(x, o_off); ARG(x, o_ts);
      ARG(x, o_hs); ARG(x, io); ARG(x, npages); ARG(x, ntok); ARG(x, nkvi);
      ARG(x, scales); ARG(x, soff);
      size_t local[3] = {PKV_OCL_DEC_WG, 1, 1};
      size_t global[3] = {(size_t)parts * PKV_OCL_DEC_WG,
                          (size_t)g->num_kv_heads * chunks, (size_t)a->num_seqs};
      st = launch(ctx, &x, "pkv_decode", 3, global, local);
    }
    if (st != PKV_OK || parts == 1) return st;
    args y = {p->kernels[PKV_K_DECODE_MERGE], 0, CL_SUCCESS};
    ARG(y, po); ARG(y, pm); ARG(y, qi); ARG(y, sinks); ARG(y, out);
    ARG(y, lse); ARG(y, qh); ARG(y, flags); ARG(y, parts); ARG(y, o_off);
    ARG(y, o_ts); ARG(y, o_hs); ARG(y, io); ARG(y, ntok);
    size_t mlocal[2] = {64, 1};
    size_t mglobal[2] = {(size_t)qh * 64, (size_t)a->num_seqs};
    return launch(ctx, &y, "pkv_decode_merge", 2, mglobal, mlocal);
  }

  args x = {p->kernels[PKV_K_PREFILL], 0, CL_SUCCESS};
  ARG(x, q); ARG(x, kp); ARG(x, vp); ARG(x, bt); ARG(x, sl); ARG(x, kvi);
  ARG(x, kvl); ARG(x, qi); ARG(x, alibi); ARG(x, sinks); ARG(x, out);
  ARG(x, lse); ARG(x, max_pages); ARG(x, qh);
  ARG(x, group); ARG(x, page_size); ARG(x, ps); ARG(x, hs); ARG(x, ts);
  ARG(x, scale); ARG(x, softcap); ARG(x, causal); ARG(x, window);
  ARG(x, flags); ARG(x, q_off); ARG(x, q_ts); ARG(x, q_hs); ARG(x, o_off);
  ARG(x, o_ts); ARG(x, o_hs); ARG(x, io); ARG(x, npages); ARG(x, ntok);
  ARG(x, nkvi); ARG(x, scales); ARG(x, soff);
  size_t rows = (size_t)a->max_q_len * (size_t)group;
  size_t local[3] = {PKV_OCL_PF_BR, 1, 1};
  size_t global[3] = {round_up(rows, PKV_OCL_PF_BR), (size_t)g->num_kv_heads,
                      (size_t)a->num_seqs};
  return launch(ctx, &x, "pkv_prefill", 3, global, local);
}

/* An int32 array as a temporary device buffer. */
static pkv_status temp_ints(pkv_context *ctx, const int32_t *h, size_t n,
                            cl_mem *out) {
  cl_int err;
  pkv_ocl_of(ctx)->stat_allocs++;
  *out = clCreateBuffer(pkv_ocl_of(ctx)->context,
                        CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        n * sizeof(int32_t), (void *)h, &err);
  return err == CL_SUCCESS ? PKV_OK : pkv__ocl_fail(ctx, "clCreateBuffer", err);
}

pkv_status pkv__ocl_copy_pages(pkv_context *ctx, const pkv_copy_args *a) {
  const pkv_cache_geometry *g = a->geom;
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  pkv_ocl_program *p;
  pkv_status st = pkv__ocl_program_get(ctx, g->head_dim, (int)g->dtype, &p);
  if (st != PKV_OK) return st;
  cl_mem pairs = NULL, own = NULL;
  if (a->pairs) {
    pairs = mem(a->pairs);
  } else {
    st = temp_ints(ctx, a->h_pairs, (size_t)a->n * 2, &own);
    if (st != PKV_OK) return st;
    pairs = own;
  }
  cl_long wpp = (cl_long)(g->page_bytes / 16);
  size_t local[2] = {64, 1};
  size_t global[2] = {round_up((size_t)wpp, 64), (size_t)a->n};
  for (int b = 0; b < a->num_pools && st == PKV_OK; b++) {
    cl_mem pool = mem(a->pools[b]);
    args x = {p->kernels[PKV_K_COPY_PAGES], 0, CL_SUCCESS};
    ARG(x, pool); ARG(x, pairs); ARG(x, wpp);
    st = launch(ctx, &x, "pkv_copy_pages", 2, global, local);
  }
  if (own) clReleaseMemObject(own);
  return st;
}

/* Pages per staging round: bounded so that a large swap does not need a
 * staging buffer the size of the pool. */
static int64_t chunk_pages(const pkv_host_move_args *a) {
  size_t per = a->geom->page_bytes * (size_t)a->num_pools;
  int64_t c = (int64_t)((size_t)64 << 20) / (int64_t)(per ? per : 1);
  return c < 1 ? 1 : c;
}

/* Device -> host: per round, one gather kernel per pool buffer into a
 * staging buffer, one read, and a host copy of each page's rows. */
static pkv_status move(pkv_context *ctx, const pkv_host_move_args *a,
                       int to_host) {
  pkv_ocl *o = pkv_ocl_of(ctx);
  const pkv_cache_geometry *g = a->geom;
  if (a->n <= 0 || a->num_pools <= 0) return PKV_OK;
  pkv_ocl_program *p;
  pkv_status st = pkv__ocl_program_get(ctx, g->head_dim, (int)g->dtype, &p);
  if (st != PKV_OK) return st;
  const size_t row = g->page_bytes * (size_t)a->num_pools; /* one host page */
  const int64_t per_round = chunk_pages(a);
  int64_t cap = a->n < per_round ? a->n : per_round;
  unsigned char *host = pkv__malloc((size_t)cap * row);
  if (!host)
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "host staging of %zu bytes",
                    (size_t)cap * row);
  cl_int err;
  cl_mem staging = clCreateBuffer(o->context, CL_MEM_READ_WRITE,
                                  (size_t)cap * row, NULL, &err);
  if (err != CL_SUCCESS) {
    pkv__free(host);
    return pkv__ocl_fail(ctx, "clCreateBuffer", err);
  }
  cl_long wpp = (cl_long)(g->page_bytes / 16);
  cl_int np = a->num_pools;
  for (int64_t i0 = 0; i0 < a->n && st == PKV_OK; i0 += cap) {
    int64_t cnt = a->n - i0 < cap ? a->n - i0 : cap;
    size_t bytes = (size_t)cnt * row;
    cl_mem pages;
    st = temp_ints(ctx, a->h_dev_pages + i0, (size_t)cnt, &pages);
    if (st != PKV_OK) break;
    if (!to_host) {
      for (int64_t i = 0; i < cnt; i++)
        memcpy(host + (size_t)i * row,
               a->host_base + (size_t)a->h_host_pages[i0 + i] * row, row);
      err = clEnqueueWriteBuffer(o->queue, staging, CL_TRUE, 0, bytes, host, 0,
                                 NULL, NULL);
      if (err != CL_SUCCESS) st = pkv__ocl_fail(ctx, "clEnqueueWriteBuffer", err);
    }
    size_t local[2] = {64, 1};
    size_t global[2] = {round_up((size_t)wpp, 64), (size_t)cnt};
    for (cl_int b = 0; b < np && st == PKV_OK; b++) {
      cl_mem pool = mem(a->pools[b]);
      args x = {p->kernels[to_host ? PKV_K_GATHER_PAGES : PKV_K_SCATTER_PAGES],
                0, CL_SUCCESS};
      ARG(x, pool); ARG(x, staging); ARG(x, pages); ARG(x, wpp); ARG(x, np);
      ARG(x, b);
      st = launch(ctx, &x, to_host ? "pkv_gather_pages" : "pkv_scatter_pages",
                  2, global, local);
    }
    if (st == PKV_OK && to_host) {
      err = clEnqueueReadBuffer(o->queue, staging, CL_TRUE, 0, bytes, host, 0,
                                NULL, NULL);
      if (err != CL_SUCCESS) st = pkv__ocl_fail(ctx, "clEnqueueReadBuffer", err);
      for (int64_t i = 0; i < cnt && st == PKV_OK; i++)
        memcpy(a->host_base + (size_t)a->h_host_pages[i0 + i] * row,
               host + (size_t)i * row, row);
    }
    clReleaseMemObject(pages);
  }
  /* The staging buffers must outlive the scatter kernels: wait for them. */
  if (!to_host && st == PKV_OK) {
    err = clFinish(o->queue);
    if (err != CL_SUCCESS) st = pkv__ocl_fail(ctx, "clFinish", err);
  }
  clReleaseMemObject(staging);
  pkv__free(host);
  return st;
}

pkv_status pkv__ocl_pages_to_host(pkv_context *ctx,
                                 const pkv_host_move_args *a) {
  return move(ctx, a, 1);
}

pkv_status pkv__ocl_pages_from_host(pkv_context *ctx,
                                   const pkv_host_move_args *a) {
  return move(ctx, a, 0);
}
