/* SPDX-License-Identifier: Apache-2.0 */
/* DLPack export of the cache's pools and of a batch's device arrays: the
 * memory stays pagedkv's, the DLManagedTensor (one allocation with its
 * shape and strides) is the caller's to delete. */
#include "alloc.h"
#include "batch.h"
#include "pkv_dlpack.h"

#include <string.h>

typedef struct managed {
  DLManagedTensor t;
  int64_t shape[4], strides[4];
} managed;

static void deleter(DLManagedTensor *self) { pkv__free(self); }

/* The DLPack device of a context's memory, or PKV_ERR_NOT_EXPORTABLE. */
static pkv_status device_of(pkv_context *ctx, DLDevice *d) {
  switch (ctx->kind) {
  case PKV_BACKEND_CPU:
    d->device_type = kDLCPU;
    d->device_id = 0;
    return PKV_OK;
  case PKV_BACKEND_HIP:
#if defined(PKV_HIP_CUDA)
    d->device_type = kDLCUDA;
#else
    d->device_type = kDLROCM;
#endif
    d->device_id = ctx->info.index;
    return PKV_OK;
  default:
    return pkv__fail(ctx, PKV_ERR_NOT_EXPORTABLE,
                    "the %s backend's buffers have no DLPack device (an OpenCL "
                    "cl_mem is not a pointer a framework can view)",
                    pkv_backend_name(ctx->kind));
  }
}

static pkv_status make(pkv_context *ctx, void *data, DLDataType dt, int ndim,
                       const int64_t *shape, const int64_t *strides,
                       DLManagedTensor **out) {
  DLDevice dev;
  pkv_status st = device_of(ctx, &dev);
  if (st != PKV_OK) return st;
  managed *m = pkv__calloc(1, sizeof *m);
  if (!m) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "DLManagedTensor allocation");
  memcpy(m->shape, shape, (size_t)ndim * sizeof *shape);
  if (strides) memcpy(m->strides, strides, (size_t)ndim * sizeof *strides);
  m->t.dl_tensor.data = data;
  m->t.dl_tensor.device = dev;
  m->t.dl_tensor.ndim = ndim;
  m->t.dl_tensor.dtype = dt;
  m->t.dl_tensor.shape = m->shape;
  m->t.dl_tensor.strides = strides ? m->strides : NULL;
  m->t.dl_tensor.byte_offset = 0;
  m->t.manager_ctx = NULL;
  m->t.deleter = deleter;
  *out = &m->t;
  return PKV_OK;
}

static DLDataType dl_dtype(pkv_dtype d) {
  DLDataType t = {kDLFloat, 32, 1};
  if (d == PKV_DTYPE_F16) t.bits = 16;
  if (d == PKV_DTYPE_BF16) {
    t.code = kDLBfloat;
    t.bits = 16;
  }
  return t;
}

pkv_status pkv_cache_export_dlpack(pkv_cache *cache, int32_t layer,
                                   int32_t which, DLManagedTensor **out) {
  if (!cache) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_context *ctx = cache->ctx;
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  if (which != PKV_POOL_K && which != PKV_POOL_V)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "which = %d must be PKV_POOL_K (0) or PKV_POOL_V (1)", which);
  pkv_buffer *k = NULL, *v = NULL;
  pkv_status st = pkv_cache_kv(cache, layer, &k, &v);
  if (st != PKV_OK) return st;
  const pkv_cache_geometry *g = &cache->geom;
  const bool nhd = g->layout == PKV_LAYOUT_NHD;
  int64_t shape[4] = {g->num_pages, nhd ? g->page_size : g->num_kv_heads,
                      nhd ? g->num_kv_heads : g->page_size, g->head_dim};
  int64_t strides[4] = {g->page_stride, nhd ? g->token_stride : g->head_stride,
                        nhd ? g->head_stride : g->token_stride, 1};
  return make(ctx, (which == PKV_POOL_K ? k : v)->native, dl_dtype(g->dtype), 4,
              shape, strides, out);
}

pkv_status pkv_batch_export_dlpack(pkv_batch *b, pkv_batch_array which,
                                   DLManagedTensor **out) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  pkv_context *ctx = b->ctx;
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  if ((int)which < 0 || which > PKV_BATCH_SLOT_MAPPING)
    return pkv__fail(ctx, PKV_ERR_INVALID, "which = %d is not a pkv_batch_array",
                    (int)which);
  if (!b->valid)
    return pkv__fail(ctx, PKV_ERR_STATE,
                    "batch has not been built: call pkv_batch_build first");
  static const int slot[] = {PKV_BA_BLOCK_TABLE, PKV_BA_SEQ_LENS,
                             PKV_BA_Q_INDPTR,    PKV_BA_KV_INDPTR,
                             PKV_BA_KV_INDICES,  PKV_BA_KV_LAST,
                             PKV_BA_SLOTS};
  const int64_t n = b->n;
  int64_t shape[2] = {0, 0};
  int ndim = 1;
  DLDataType dt = {kDLInt, 32, 1};
  switch (which) {
  case PKV_BATCH_BLOCK_TABLE:
    ndim = 2;
    shape[0] = n;
    shape[1] = b->stride;
    break;
  case PKV_BATCH_SEQ_LENS:
  case PKV_BATCH_KV_LAST_PAGE_LEN: shape[0] = n; break;
  case PKV_BATCH_Q_INDPTR:
  case PKV_BATCH_KV_INDPTR: shape[0] = n + 1; break;
  case PKV_BATCH_KV_INDICES: shape[0] = n > 0 ? b->kv_indptr[n] : 0; break;
  case PKV_BATCH_SLOT_MAPPING:
    shape[0] = b->num_tokens;
    dt.bits = 64;
    break;
  }
  pkv_buffer *buf = b->dev[slot[which]];
  return make(ctx, buf ? buf->native : NULL, dt, ndim, shape, NULL, out);
}
