/* SPDX-License-Identifier: Apache-2.0 */
/* The public operations: K/V write and paged attention. Every argument is
 * checked here, before anything is written, so that backends receive only
 * well-formed requests (backend.h) and an error leaves all state as it was. */
#include "alloc.h"
#include "backend.h"
#include "batch.h"
#include "kvlayer.h"
#include "dtype_convert.h"
#include "struct_size.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A caller buffer: present, of this context, and at least `need` bytes. */
static pkv_status check_buffer(pkv_context *ctx, const pkv_buffer *buf,
                               const char *name, size_t need,
                               const char *shape) {
  if (!buf) return pkv__fail(ctx, PKV_ERR_NULL, "%s is NULL", name);
  if (buf->ctx != ctx)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "%s belongs to another context than the cache's", name);
  if (buf->bytes < need)
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "%s holds %zu bytes but %s needs %zu bytes", name,
                    buf->bytes, shape, need);
  return PKV_OK;
}

/* Bytes of rows x heads x dim elements of the cache dtype, or an overflow
 * error naming what was being sized. */
static pkv_status rows_bytes(pkv_context *ctx, int64_t rows, int32_t heads,
                             int32_t dim, size_t esz, const char *what,
                             size_t *out) {
  size_t n;
  if (rows < 0 || !pkv__mul_size((size_t)rows, (size_t)heads, &n) ||
      !pkv__mul_size(n, (size_t)dim, &n) || !pkv__mul_size(n, esz, &n))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "%s = %lld tokens x %d heads x %d dims x %zu bytes "
                    "overflows size_t",
                    what, (long long)rows, heads, dim, esz);
  *out = n;
  return PKV_OK;
}

static pkv_status check_layer(pkv_context *ctx, const pkv_cache_geometry *g,
                              int32_t layer) {
  if (layer < 0 || layer >= g->num_layers)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "layer %d out of range: the cache has %d layers (0..%d)",
                    layer, g->num_layers, g->num_layers - 1);
  return PKV_OK;
}

static pkv_status need_op(pkv_context *ctx, const void *fn, const char *op) {
  if (!fn)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                    "the %s backend does not implement %s", ctx->ops->name, op);
  return PKV_OK;
}

/* The K/V pair for the write: both present, of this context, large enough
 * for n tokens. */
static pkv_status check_kv_inputs(pkv_context *ctx, const pkv_cache_geometry *g,
                                  const pkv_buffer *k, const pkv_buffer *v,
                                  int64_t n, const char *n_name) {
  if (!k) return pkv__fail(ctx, PKV_ERR_NULL, "k is NULL");
  if (!v) return pkv__fail(ctx, PKV_ERR_NULL, "v is NULL");
  size_t need;
  pkv_status st = rows_bytes(ctx, n, g->num_kv_heads, g->head_dim,
                             pkv_dtype_size(g->dtype), n_name, &need);
  if (st != PKV_OK) return st;
  char shape[160];
  snprintf(shape, sizeof shape,
           "[%lld tokens][%d kv heads][%d dims] of %zu-byte elements",
           (long long)n, g->num_kv_heads, g->head_dim,
           pkv_dtype_size(g->dtype));
  st = check_buffer(ctx, k, "k", need, shape);
  if (st == PKV_OK) st = check_buffer(ctx, v, "v", need, shape);
  return st;
}

/* Contiguous [n][heads][head_dim] in the cache dtype: the tensor the
 * cache/batch API has always taken. */
static pkv_tensor packed(pkv_buffer *b, pkv_dtype dt) {
  pkv_tensor t;
  pkv_tensor_init(&t);
  t.buf = b;
  t.dtype = dt;
  return t;
}

static pkv_status write_kv(pkv_context *ctx, pkv_cache *cache,
                           const pkv_cache_geometry *g, int32_t layer,
                           pkv_buffer *k, pkv_buffer *v, pkv_buffer *slots,
                           const int64_t *h_slots, int64_t n) {
  pkv_kv_view view;
  pkv_kv_view_init(&view);
  pkv_status st = pkv_cache_kv_view(cache, layer, &view);
  if (st != PKV_OK) return st;
  pkv_tensor kt = packed(k, g->dtype), vt = packed(v, g->dtype);
  return pkv__kv_write(ctx, &view, slots, h_slots, n, &kt, &vt);
}

pkv_status pkv_write_kv(pkv_batch *batch, int32_t layer, pkv_buffer *k,
                        pkv_buffer *v) {
  if (!batch) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  pkv_cache *cache = pkv_batch_cache(batch);
  pkv_context *ctx = pkv_cache_context(cache);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_status st = pkv_cache_get_geometry(cache, &g);
  if (st != PKV_OK) return st;
  if ((st = check_layer(ctx, &g, layer)) != PKV_OK) return st;
  pkv_batch_view view;
  pkv_batch_device dev;
  pkv_batch_view_init(&view);
  pkv_batch_device_init(&dev);
  if (pkv_batch_get_view(batch, &view) != PKV_OK ||
      pkv_batch_get_device(batch, &dev) != PKV_OK)
    return pkv__fail(ctx, PKV_ERR_STATE,
                    "batch has not been built: call pkv_batch_build first");
  if ((st = check_kv_inputs(ctx, &g, k, v, view.num_tokens,
                             "batch num_tokens")) != PKV_OK)
    return st;
  const int64_t limit = g.num_pages * (int64_t)g.page_size;
  for (int64_t i = 0; i < view.num_tokens; i++)
    if (view.slot_mapping[i] >= limit)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "batch slot_mapping[%lld] = %lld is past the pool's "
                      "%lld token slots",
                      (long long)i, (long long)view.slot_mapping[i],
                      (long long)limit);
  if ((st = need_op(ctx, (const void *)ctx->ops->write_kv, "write_kv")) !=
      PKV_OK)
    return st;
  if ((st = pkv__batch_check_current(batch)) != PKV_OK) return st;
  if (view.num_tokens == 0) return PKV_OK;
  /* A queued copy must not land on these slots after the write. */
  if ((st = pkv__cache_flush_copies(cache)) != PKV_OK) return st;
  return write_kv(ctx, cache, &g, layer, k, v, dev.slot_mapping,
                  view.slot_mapping, view.num_tokens);
}

/* The range check the backends make, on a host copy of a device slot list:
 * no slot past num_pages * page_size (negative ones are padding). */
static pkv_status check_device_slots(pkv_context *ctx,
                                     const pkv_cache_geometry *g,
                                     pkv_buffer *slots, int64_t n) {
  int64_t *h = pkv__malloc((size_t)n * sizeof *h);
  if (!h)
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "host copy of %lld slots",
                    (long long)n);
  pkv_status st = pkv_buffer_download(slots, 0, h, (size_t)n * sizeof *h);
  const int64_t limit = g->num_pages * (int64_t)g->page_size;
  for (int64_t i = 0; st == PKV_OK && i < n; i++)
    if (h[i] >= limit)
      st = pkv__fail(ctx, PKV_ERR_RANGE,
                    "slots[%lld] = %lld is past the pool's %lld token slots "
                    "(num_pages %lld x page_size %d)",
                    (long long)i, (long long)h[i], (long long)limit,
                    (long long)g->num_pages, g->page_size);
  pkv__free(h);
  return st;
}

pkv_status pkv_write_kv_slots(pkv_cache *cache, int32_t layer, pkv_buffer *k,
                              pkv_buffer *v, pkv_buffer *slots, int64_t n) {
  if (!cache) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_context *ctx = pkv_cache_context(cache);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_status st = pkv_cache_get_geometry(cache, &g);
  if (st != PKV_OK) return st;
  if ((st = check_layer(ctx, &g, layer)) != PKV_OK) return st;
  if (n < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "n = %lld is negative", (long long)n);
  if ((st = check_kv_inputs(ctx, &g, k, v, n, "n")) != PKV_OK) return st;
  size_t need;
  if (!pkv__mul_size((size_t)n, sizeof(int64_t), &need))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "slots: n = %lld int64 entries overflows size_t",
                    (long long)n);
  char shape[64];
  snprintf(shape, sizeof shape, "n = %lld int64 slots", (long long)n);
  if ((st = check_buffer(ctx, slots, "slots", need, shape)) != PKV_OK)
    return st;
  if ((st = need_op(ctx, (const void *)ctx->ops->write_kv, "write_kv")) !=
      PKV_OK)
    return st;
  if (n == 0) return PKV_OK;
  /* Pending copy-on-write copies land first, or the next flush would copy
   * stale content over what this call writes. Running them changes page
   * refcounts, so a slot list the backend would refuse must be refused
   * before: the slots live on the device, and the backend checks their
   * range before it writes anything (the CPU backend reads them in place),
   * so they are read back here only when there is a queue to run. */
  if (cache->cow_n > 0) {
    if ((st = check_device_slots(ctx, &g, slots, n)) != PKV_OK) return st;
    if ((st = pkv__cache_flush_copies(cache)) != PKV_OK) return st;
  }
  return write_kv(ctx, cache, &g, layer, k, v, slots, NULL, n);
}

pkv_status pkv_attention(pkv_batch *batch, int32_t layer,
                         const pkv_attn_params *user_params, pkv_buffer *q,
                         pkv_buffer *out, pkv_buffer *lse) {
  if (!batch) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  pkv_cache *cache = pkv_batch_cache(batch);
  pkv_context *ctx = pkv_cache_context(cache);
  if (!user_params) return pkv__fail(ctx, PKV_ERR_NULL, "params is NULL");
  /* At this library's size, absent (older-header) fields at defaults. */
  pkv_attn_params full;
  pkv_attn_params_init(&full, 0);
  pkv_status sst = pkv__struct_in(ctx, "params", user_params,
                                  PKV__V1_ATTN_PARAMS, &full, sizeof full);
  if (sst != PKV_OK) return sst;
  const pkv_attn_params *params = &full;
  if (!q) return pkv__fail(ctx, PKV_ERR_NULL, "q is NULL");
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_status st = pkv_cache_get_geometry(cache, &g);
  if (st != PKV_OK) return st;
  if ((st = check_layer(ctx, &g, layer)) != PKV_OK) return st;
  if ((st = pkv__check_attn_params(ctx, g.num_kv_heads, params)) != PKV_OK)
    return st;
  if (pkv__dtype_quantized(g.dtype))
    return pkv__fail(ctx, PKV_ERR_QUANT_DTYPE,
                     "the cache dtype %d is quantized (fp8 or int8): pkv_attention "
                     "takes q and out in the cache dtype; pass them in f32, "
                     "f16 or bf16 to pkv_kv_attention over pkv_cache_kv_view",
                     (int)g.dtype);
  pkv_batch_view view;
  pkv_batch_device dev;
  pkv_batch_view_init(&view);
  pkv_batch_device_init(&dev);
  if (pkv_batch_get_view(batch, &view) != PKV_OK ||
      pkv_batch_get_device(batch, &dev) != PKV_OK)
    return pkv__fail(ctx, PKV_ERR_STATE,
                    "batch has not been built: call pkv_batch_build first");

  const int32_t nq = params->num_q_heads;
  size_t need;
  if ((st = rows_bytes(ctx, view.num_tokens, nq, g.head_dim,
                       pkv_dtype_size(g.dtype), "batch num_tokens", &need)) != PKV_OK)
    return st;
  char shape[160];
  snprintf(shape, sizeof shape,
           "[%lld tokens][%d q heads][%d dims] of %zu-byte elements",
           (long long)view.num_tokens, nq, g.head_dim, pkv_dtype_size(g.dtype));
  if ((st = check_buffer(ctx, q, "q", need, shape)) != PKV_OK) return st;
  if ((st = check_buffer(ctx, out, "out", need, shape)) != PKV_OK) return st;
  if (lse) {
    if ((st = rows_bytes(ctx, view.num_tokens, nq, 1, sizeof(float),
                         "batch num_tokens", &need)) != PKV_OK)
      return st;
    snprintf(shape, sizeof shape, "f32 [%lld tokens][%d q heads]",
             (long long)view.num_tokens, nq);
    if ((st = check_buffer(ctx, lse, "lse", need, shape)) != PKV_OK) return st;
  }
  if ((st = need_op(ctx, (const void *)ctx->ops->attention, "attention")) !=
      PKV_OK)
    return st;
  if ((st = pkv__batch_check_current(batch)) != PKV_OK) return st;
  if (view.num_tokens == 0) return PKV_OK;

  pkv_buffer *alibi = NULL;
  if (params->alibi_slopes &&
      (st = pkv__batch_alibi_buffer(batch, params->alibi_slopes, nq, &alibi)) !=
          PKV_OK)
    return st;

  /* No copy-on-write flush here: a current batch never maps a page whose
   * copy is still queued (a build runs the queue, and a later copy-on-write
   * of one of its sequences makes it stale, refused above), and sources are
   * not written while queued. Flushing would change page refcounts before
   * the backend's own allocations, so a failed call would not be
   * all-or-nothing. */

  pkv_kv_view kv;
  pkv_kv_table t;
  pkv_kv_view_init(&kv);
  pkv_kv_table_init(&t);
  if ((st = pkv_cache_kv_view(cache, layer, &kv)) != PKV_OK ||
      (st = pkv_batch_get_table(batch, PKV_TABLE_DENSE, &t)) != PKV_OK)
    return st;
  pkv_tensor qt = packed(q, g.dtype), ot = packed(out, g.dtype);
  return pkv__kv_attention(ctx, &kv, &t, params, &qt, &ot, lse, alibi);
}
