/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel-level layer: K/V writes and paged attention over a view of
 * pools and a table of pages that the caller owns. Every argument is
 * normalised and checked here, so that the backends see one well-formed
 * request shape (backend.h); the cache/batch operations (ops.c) build a
 * view and a table and come through the same two functions. */
#include "kvlayer.h"

#include "batch.h"
#include "dtype_convert.h"
#include "plan.h"
#include "struct_size.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The experimental structs follow the growable-struct rule of every public
 * struct (lib/struct_size.h): their minimum is struct_size plus the first
 * pointer, as when they were introduced. */
#define KV_MIN_SIZE (sizeof(size_t) + sizeof(void *))

static pkv_status read_sized(pkv_context *ctx, void *dst, size_t dst_size,
                             const void *src, const char *name) {
  return pkv__struct_in(ctx, name, src, KV_MIN_SIZE, dst, dst_size);
}

void pkv_tensor_init_sized(pkv_tensor *t, size_t size) {
  pkv_tensor d;
  memset(&d, 0, sizeof d);
  d.dtype = PKV_DTYPE_F32;
  pkv__struct_init(t, size, &d, sizeof d);
}

void pkv_kv_view_init_sized(pkv_kv_view *v, size_t size) {
  pkv_kv_view d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(v, size, &d, sizeof d);
}

void pkv_kv_table_init_sized(pkv_kv_table *t, size_t size) {
  pkv_kv_table d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(t, size, &d, sizeof d);
}

static bool dtype_ok(pkv_dtype d) {
  return d == PKV_DTYPE_F32 || d == PKV_DTYPE_F16 || d == PKV_DTYPE_BF16 ||
         pkv__dtype_quantized(d);
}

static pkv_status own_buffer(pkv_context *ctx, const pkv_buffer *b,
                             const char *name) {
  if (!b) return pkv__fail(ctx, PKV_ERR_NULL, "%s is NULL", name);
  if (b->ctx != ctx)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "%s belongs to another context than ctx", name);
  return PKV_OK;
}

/* Elements e of esz bytes fit in a buffer of `bytes` from byte `off`. */
static bool fits(size_t bytes, size_t off, uint64_t elems, size_t esz) {
  if (off > bytes) return false;
  if (elems > (uint64_t)SIZE_MAX / esz) return false;
  return elems * esz <= bytes - off;
}

pkv_status pkv__kv_view_resolve(pkv_context *ctx, const pkv_kv_view *in,
                                pkv_kv_view *v, pkv_cache_geometry *g,
                                int *aligned) {
  if (!in) return pkv__fail(ctx, PKV_ERR_NULL, "view is NULL");
  pkv_kv_view_init(v);
  pkv_status st = read_sized(ctx, v, sizeof *v, in, "view");
  if (st != PKV_OK) return st;
  if ((st = own_buffer(ctx, v->k, "view->k")) != PKV_OK ||
      (st = own_buffer(ctx, v->v, "view->v")) != PKV_OK)
    return st;
  if (v->page_size < 1 || v->page_size > PKV_MAX_PAGE_SIZE)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "view->page_size = %d must be in 1..%d (PKV_MAX_PAGE_SIZE)",
                    v->page_size, PKV_MAX_PAGE_SIZE);
  if (v->num_kv_heads < 1)
    return pkv__fail(ctx, PKV_ERR_INVALID, "view->num_kv_heads = %d must be >= 1",
                    v->num_kv_heads);
  if (v->num_kv_heads > PKV_MAX_KV_HEADS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "view->num_kv_heads = %d exceeds PKV_MAX_KV_HEADS %d",
                    v->num_kv_heads, PKV_MAX_KV_HEADS);
  static const int32_t dims[] = {64, 80, 96, 112, 128, 192, 256};
  bool dim_ok = false;
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
    dim_ok |= dims[i] == v->head_dim;
  if (!dim_ok)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "view->head_dim = %d: supported are 64, 80, 96, 112, 128, "
                    "192, 256",
                    v->head_dim);
  if (v->num_pages < 1 || v->num_pages > INT32_MAX)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "view->num_pages = %lld must be in 1..%d (int32 page ids)",
                    (long long)v->num_pages, INT32_MAX);
  if (!dtype_ok(v->dtype))
    return pkv__fail(ctx, PKV_ERR_INVALID, "view->dtype = %d is unknown",
                    (int)v->dtype);
  if (pkv__dtype_quantized(v->dtype) &&
      !pkv__backend_has_dtype(ctx, v->dtype))
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                     "view->dtype %d is not supported by the %s backend",
                     (int)v->dtype, ctx->ops->name);
  if (v->dtype != PKV_DTYPE_INT8) v->scale_offset = 0;
  if (pkv__dtype_fp8(v->dtype)) {
    if ((st = pkv__check_scales(ctx, v->k_scales, v->num_kv_heads,
                                "view->k_scales")) != PKV_OK ||
        (st = pkv__check_scales(ctx, v->v_scales, v->num_kv_heads,
                                "view->v_scales")) != PKV_OK)
      return st;
  } else {
    v->k_scales = v->v_scales = NULL; /* ignored for float pools */
  }
  const int64_t D = v->head_dim;
  if (v->page_stride == 0 && v->head_stride == 0 && v->token_stride == 0) {
    v->token_stride = D;
    v->head_stride = D * v->page_size;
    v->page_stride = v->head_stride * v->num_kv_heads;
  }
  if (v->token_stride < D || v->head_stride < D || v->page_stride < D)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "view strides (page %lld, head %lld, token %lld) must each "
                    "be >= head_dim = %lld: a row's elements are contiguous",
                    (long long)v->page_stride, (long long)v->head_stride,
                    (long long)v->token_stride, (long long)D);
  /* Largest element index + 1 of any row. */
  int64_t last = 0, t;
  bool ok = pkv__mul_i64(v->num_pages - 1, v->page_stride, &last) &&
            pkv__mul_i64(v->num_kv_heads - 1, v->head_stride, &t) &&
            pkv__add_i64(last, t, &last) &&
            pkv__mul_i64(v->page_size - 1, v->token_stride, &t) &&
            pkv__add_i64(last, t, &last) && pkv__add_i64(last, D, &last);
  if (v->dtype == PKV_DTYPE_INT8) {
    /* the f32 scales [num_kv_heads][page_size] of each page */
    const int64_t sb = (int64_t)v->num_kv_heads * v->page_size * 4;
    if (v->scale_offset < 0 || v->scale_offset % 4 != 0 ||
        v->scale_offset + sb > v->page_stride)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                       "view->scale_offset = %lld: an int8 view needs its f32 "
                       "scales [%d heads][%d tokens] (%lld bytes) 4-byte "
                       "aligned inside the page of page_stride %lld bytes",
                       (long long)v->scale_offset, v->num_kv_heads,
                       v->page_size, (long long)sb, (long long)v->page_stride);
    int64_t slast = 0;
    if (ok && pkv__mul_i64(v->num_pages - 1, v->page_stride, &slast) &&
        pkv__add_i64(slast, v->scale_offset + sb, &slast) && slast > last)
      last = slast;
  }
  const size_t esz = pkv_dtype_size(v->dtype);
  if (!ok)
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "view: num_pages %lld x page_stride %lld overflows",
                    (long long)v->num_pages, (long long)v->page_stride);
  if (!fits(v->k->bytes, 0, (uint64_t)last, esz))
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "view->k holds %zu bytes but the view's strides reach "
                    "%lld elements of %zu bytes",
                    v->k->bytes, (long long)last, esz);
  if (!fits(v->v->bytes, 0, (uint64_t)last, esz))
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "view->v holds %zu bytes but the view's strides reach "
                    "%lld elements of %zu bytes",
                    v->v->bytes, (long long)last, esz);
  memset(g, 0, sizeof *g);
  g->num_layers = 1;
  g->num_kv_heads = v->num_kv_heads;
  g->head_dim = v->head_dim;
  g->page_size = v->page_size;
  g->num_pages = v->num_pages;
  g->dtype = v->dtype;
  g->layout = v->token_stride == D ? PKV_LAYOUT_HND : PKV_LAYOUT_NHD;
  g->page_stride = v->page_stride;
  g->head_stride = v->head_stride;
  g->token_stride = v->token_stride;
  g->page_bytes = (size_t)v->page_stride * esz;
  g->layer_bytes = (size_t)last * esz;
  g->scale_offset = (size_t)v->scale_offset;
  /* Whether every row is 16-byte aligned, for the backends (an OpenCL
   * cl_mem has no address to check; the runtime aligns buffers). Every
   * backend runs misaligned rows: the CPU copies element-wise, OpenCL's
   * vloadn needs element alignment only, and the HIP loads fall back to
   * scalar loads for an address that is not 16-byte aligned. */
  uintptr_t base = ctx->kind == PKV_BACKEND_OPENCL
                       ? 0
                       : ((uintptr_t)v->k->native | (uintptr_t)v->v->native);
  *aligned = (base % 16 == 0) && ((size_t)v->page_stride * esz) % 16 == 0 &&
             ((size_t)v->head_stride * esz) % 16 == 0 &&
             ((size_t)v->token_stride * esz) % 16 == 0;
  return PKV_OK;
}

/* A [rows][heads][dim] tensor: defaults applied, offset and extent checked.
 * *off gets the offset in elements. */
static pkv_status tensor_resolve(pkv_context *ctx, const pkv_tensor *in,
                                 const char *name, int64_t rows, int32_t heads,
                                 int32_t dim, pkv_tensor *t, int64_t *off) {
  if (!in) return pkv__fail(ctx, PKV_ERR_NULL, "%s is NULL", name);
  pkv_tensor_init(t);
  char what[64];
  pkv_status st = read_sized(ctx, t, sizeof *t, in, name);
  if (st != PKV_OK) return st;
  snprintf(what, sizeof what, "%s->buf", name);
  if ((st = own_buffer(ctx, t->buf, what)) != PKV_OK) return st;
  if (!dtype_ok(t->dtype))
    return pkv__fail(ctx, PKV_ERR_INVALID, "%s->dtype = %d is unknown", name,
                    (int)t->dtype);
  const size_t esz = pkv_dtype_size(t->dtype);
  if (t->head_stride == 0) t->head_stride = dim;
  if (t->token_stride == 0) t->token_stride = (int64_t)heads * t->head_stride;
  if (t->head_stride < dim || t->token_stride < dim)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "%s strides (token %lld, head %lld) must be >= head_dim "
                    "= %d: a head's elements are contiguous",
                    name, (long long)t->token_stride, (long long)t->head_stride,
                    dim);
  if (t->offset % esz != 0)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "%s->offset = %zu is not a multiple of the %zu-byte element",
                    name, t->offset, esz);
  *off = (int64_t)(t->offset / esz);
  if (rows == 0) return PKV_OK;
  int64_t last = 0, x;
  bool ok = pkv__mul_i64(rows - 1, t->token_stride, &last) &&
            pkv__mul_i64(heads - 1, t->head_stride, &x) &&
            pkv__add_i64(last, x, &last) && pkv__add_i64(last, dim, &last);
  if (!ok || !fits(t->buf->bytes, t->offset, (uint64_t)last, esz))
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "%s holds %zu bytes but [%lld tokens][%d heads][%d dims] "
                    "with strides (token %lld, head %lld) at offset %zu need "
                    "%lld elements of %zu bytes",
                    name, t->buf->bytes, (long long)rows, heads, dim,
                    (long long)t->token_stride, (long long)t->head_stride,
                    t->offset, (long long)last, esz);
  return PKV_OK;
}

static pkv_status int_array(pkv_context *ctx, const pkv_buffer *b,
                            const char *name, int64_t n) {
  pkv_status st = own_buffer(ctx, b, name);
  if (st != PKV_OK) return st;
  if (!fits(b->bytes, 0, (uint64_t)n, sizeof(int32_t)))
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "%s holds %zu bytes but %lld int32 entries are needed",
                    name, b->bytes, (long long)n);
  return PKV_OK;
}

/* Host-side checks of every table entry; nothing is launched on failure. */
static pkv_status check_host_table(pkv_context *ctx, const pkv_kv_table *t,
                                   const pkv_cache_geometry *g) {
  const int32_t n = t->num_seqs;
  const int32_t *qi = t->host_q_indptr;
  if (qi) {
    if (qi[0] != 0)
      return pkv__fail(ctx, PKV_ERR_INVALID, "table q_indptr[0] = %d must be 0",
                      qi[0]);
    for (int32_t s = 0; s < n; s++) {
      int64_t ql = (int64_t)qi[s + 1] - qi[s];
      if (ql < 0 || ql > t->max_q_len)
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "table q_indptr[%d..%d] gives a query run of %lld: must "
                        "be in 0..max_q_len = %d",
                        s, s + 1, (long long)ql, t->max_q_len);
    }
    if (qi[n] != t->num_tokens)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "table q_indptr[num_seqs] = %d differs from num_tokens = "
                      "%lld",
                      qi[n], (long long)t->num_tokens);
  }
  for (int32_t s = 0; s < n; s++) {
    int64_t len, row_len;
    const int32_t *row;
    if (t->kind == PKV_TABLE_DENSE) {
      if (!t->host_seq_lens || !t->host_block_table) return PKV_OK;
      len = t->host_seq_lens[s];
      row_len = t->max_pages;
      row = t->host_block_table + (int64_t)s * t->max_pages;
      if (len < 0 || len > row_len * g->page_size)
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "table seq_lens[%d] = %lld is longer than its "
                        "block_table row of max_pages %lld x page_size %d "
                        "tokens (or negative)",
                        s, (long long)len, (long long)row_len, g->page_size);
    } else {
      const int32_t *ip = t->host_kv_indptr, *last = t->host_kv_last_page_len;
      if (!ip || !last || !t->host_kv_indices) return PKV_OK;
      if (ip[s] < 0 || ip[s + 1] < ip[s] || ip[s + 1] > t->num_kv_indices)
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "table kv_indptr[%d..%d] = %d..%d must be "
                        "non-decreasing within 0..num_kv_indices = %lld",
                        s, s + 1, ip[s], ip[s + 1],
                        (long long)t->num_kv_indices);
      row_len = ip[s + 1] - ip[s];
      row = t->host_kv_indices + ip[s];
      if (row_len > 0 && (last[s] < 1 || last[s] > g->page_size))
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "table kv_last_page_len[%d] = %d must be in 1..page_size "
                        "= %d for a sequence with pages",
                        s, last[s], g->page_size);
      len = row_len > 0 ? (row_len - 1) * g->page_size + last[s] : 0;
    }
    if (len > t->max_kv_len)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "table: sequence %d has %lld keys, more than max_kv_len "
                      "= %d",
                      s, (long long)len, t->max_kv_len);
    for (int64_t p = 0; p < (len + g->page_size - 1) / g->page_size; p++)
      if (row[p] < 0 || row[p] >= g->num_pages)
        return pkv__fail(ctx, PKV_ERR_RANGE,
                        "table: sequence %d page %lld is %d, outside the pool's "
                        "num_pages = %lld",
                        s, (long long)p, row[p], (long long)g->num_pages);
  }
  return PKV_OK;
}

static pkv_status table_resolve(pkv_context *ctx, const pkv_kv_table *in,
                                const pkv_cache_geometry *g, pkv_kv_table *t) {
  if (!in) return pkv__fail(ctx, PKV_ERR_NULL, "table is NULL");
  pkv_kv_table_init(t);
  pkv_status st = read_sized(ctx, t, sizeof *t, in, "table");
  if (st != PKV_OK) return st;
  if (t->kind != PKV_TABLE_DENSE && t->kind != PKV_TABLE_CSR)
    return pkv__fail(ctx, PKV_ERR_INVALID, "table->kind = %d is unknown",
                    (int)t->kind);
  if (t->num_seqs < 0 || t->num_tokens < 0 || t->max_q_len < 0 ||
      t->max_kv_len < 0 || t->num_tokens > INT32_MAX)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "table sizes (num_seqs %d, num_tokens %lld, max_q_len %d, "
                    "max_kv_len %d) must be >= 0 (num_tokens within int32)",
                    t->num_seqs, (long long)t->num_tokens, t->max_q_len,
                    t->max_kv_len);
  if (t->num_seqs > PKV_MAX_BATCH_SEQS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "table->num_seqs = %d exceeds PKV_MAX_BATCH_SEQS %d",
                    t->num_seqs, PKV_MAX_BATCH_SEQS);
  if (t->num_tokens > PKV_MAX_BATCH_TOKENS || t->max_q_len > PKV_MAX_BATCH_TOKENS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "table->num_tokens = %lld / max_q_len = %d exceed "
                    "PKV_MAX_BATCH_TOKENS %lld",
                    (long long)t->num_tokens, t->max_q_len,
                    (long long)PKV_MAX_BATCH_TOKENS);
  if (t->max_kv_len > PKV_MAX_SEQ_TOKENS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "table->max_kv_len = %d exceeds PKV_MAX_SEQ_TOKENS %lld",
                    t->max_kv_len, (long long)PKV_MAX_SEQ_TOKENS);
  if (t->num_seqs == 0) return PKV_OK;
  const int64_t n = t->num_seqs;
  if ((st = int_array(ctx, t->q_indptr, "table->q_indptr", n + 1)) != PKV_OK)
    return st;
  if (t->kind == PKV_TABLE_DENSE) {
    int64_t cells;
    if (t->max_pages < 0)
      return pkv__fail(ctx, PKV_ERR_INVALID, "table->max_pages = %d is negative",
                      t->max_pages);
    if (!pkv__mul_i64(n, t->max_pages, &cells))
      return pkv__fail(ctx, PKV_ERR_OVERFLOW, "table: num_seqs x max_pages");
    if ((st = int_array(ctx, t->block_table, "table->block_table", cells)) !=
            PKV_OK ||
        (st = int_array(ctx, t->seq_lens, "table->seq_lens", n)) != PKV_OK)
      return st;
  } else {
    if (t->num_kv_indices < 0)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "table->num_kv_indices = %lld is negative",
                      (long long)t->num_kv_indices);
    if ((st = int_array(ctx, t->kv_indptr, "table->kv_indptr", n + 1)) != PKV_OK ||
        (st = int_array(ctx, t->kv_last_page_len, "table->kv_last_page_len", n)) !=
            PKV_OK)
      return st;
    if (t->num_kv_indices > 0 &&
        (st = int_array(ctx, t->kv_indices, "table->kv_indices",
                        t->num_kv_indices)) != PKV_OK)
      return st;
  }
  /* The CPU backend's buffers are host memory: always checked in full. */
  if (ctx->kind == PKV_BACKEND_CPU) {
    t->host_q_indptr = t->q_indptr->native;
    if (t->kind == PKV_TABLE_DENSE) {
      t->host_block_table = t->block_table->native;
      t->host_seq_lens = t->seq_lens->native;
    } else {
      t->host_kv_indptr = t->kv_indptr->native;
      t->host_kv_indices = t->kv_indices ? t->kv_indices->native : NULL;
      t->host_kv_last_page_len = t->kv_last_page_len->native;
      if (!t->host_kv_indices) {
        static const int32_t none[1] = {0};
        t->host_kv_indices = none;
      }
    }
  }
  return check_host_table(ctx, t, g);
}

pkv_status pkv__check_attn_params(pkv_context *ctx, int32_t nkv,
                               const pkv_attn_params *p) {
  if (p->num_q_heads > PKV_MAX_Q_HEADS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "params->num_q_heads = %d exceeds PKV_MAX_Q_HEADS %d",
                    p->num_q_heads, PKV_MAX_Q_HEADS);
  if (p->num_q_heads <= 0 || p->num_q_heads % nkv != 0)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "params->num_q_heads = %d must be a positive multiple of "
                    "the cache's num_kv_heads = %d",
                    p->num_q_heads, nkv);
  if (!isfinite(p->scale) || p->scale < 0.0f)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "params->scale = %g must be finite and >= 0 (0 = "
                    "1/sqrt(head_dim))",
                    (double)p->scale);
  if (p->causal != 0 && p->causal != 1)
    return pkv__fail(ctx, PKV_ERR_INVALID, "params->causal = %d must be 0 or 1",
                    p->causal);
  if (p->window_left < -1)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "params->window_left = %d must be >= -1 (-1 = no window)",
                    p->window_left);
  if (!isfinite(p->softcap) || p->softcap < 0.0f)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "params->softcap = %g must be finite and >= 0 (0 = off)",
                    (double)p->softcap);
  if (p->alibi_slopes)
    for (int32_t h = 0; h < p->num_q_heads; h++)
      if (!isfinite(p->alibi_slopes[h]))
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "params->alibi_slopes[%d] = %g is not finite", h,
                        (double)p->alibi_slopes[h]);
  if (p->sinks)
    for (int32_t h = 0; h < p->num_q_heads; h++)
      if (!isfinite(p->sinks[h]))
        return pkv__fail(ctx, PKV_ERR_INVALID,
                        "params->sinks[%d] = %g is not finite", h,
                        (double)p->sinks[h]);
  return PKV_OK;
}

static pkv_status need_op(pkv_context *ctx, const void *fn, const char *op) {
  if (!fn)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                    "the %s backend does not implement %s", ctx->ops->name, op);
  return PKV_OK;
}

pkv_status pkv__kv_table_resolve(pkv_context *ctx, const pkv_kv_table *in,
                                const pkv_cache_geometry *g, pkv_kv_table *t) {
  return table_resolve(ctx, in, g, t);
}

pkv_status pkv__kv_attention(pkv_context *ctx, const pkv_kv_view *view_in,
                            const pkv_kv_table *table_in,
                            const pkv_attn_params *params,
                            const pkv_tensor *q_in, const pkv_tensor *out_in,
                            pkv_buffer *lse, pkv_buffer *alibi_dev) {
  /* One path: a default plan plus a run (doc/plan-run.md). The CPU
   * backend runs every table so. Device backends run decode so (their
   * plan-driven kernels are decode kernels) when the table has the host
   * mirrors a plan is made from; prefill, and tables known on the device
   * only, take the direct launch, which needs no plan. */
  if (ctx->kind == PKV_BACKEND_CPU)
    return pkv__plan_and_run(ctx, view_in, table_in, params, q_in, out_in, lse);
  pkv_kv_view view;
  pkv_cache_geometry g;
  pkv_kv_table t;
  int aligned;
  pkv_status st = pkv__kv_view_resolve(ctx, view_in, &view, &g, &aligned);
  if (st != PKV_OK) return st;
  if (!params) return pkv__fail(ctx, PKV_ERR_NULL, "params is NULL");
  if ((st = pkv__check_attn_params(ctx, g.num_kv_heads, params)) != PKV_OK)
    return st;
  if ((st = table_resolve(ctx, table_in, &g, &t)) != PKV_OK) return st;
  int mirrors = t.host_q_indptr &&
                (t.kind == PKV_TABLE_DENSE
                     ? t.host_seq_lens != NULL
                     : t.host_kv_indptr && t.host_kv_last_page_len);
  if (mirrors && t.max_q_len <= 1 && ctx->ops->attention)
    return pkv__plan_and_run(ctx, view_in, table_in, params, q_in, out_in, lse);
  return pkv__kv_attention_planned(ctx, view_in, table_in, params, q_in, out_in,
                                  lse, alibi_dev, NULL);
}

pkv_status pkv__kv_attention_planned(pkv_context *ctx,
                                    const pkv_kv_view *view_in,
                                    const pkv_kv_table *table_in,
                                    const pkv_attn_params *params,
                                    const pkv_tensor *q_in,
                                    const pkv_tensor *out_in, pkv_buffer *lse,
                                    pkv_buffer *alibi_dev,
                                    const pkv__plan_exec *pe) {
  pkv_kv_view view;
  pkv_kv_table t;
  pkv_cache_geometry g;
  pkv_tensor q, out;
  int64_t q_off = 0, o_off = 0;
  int aligned = 0;
  pkv_status st = pkv__kv_view_resolve(ctx, view_in, &view, &g, &aligned);
  if (st != PKV_OK) return st;
  if (!params) return pkv__fail(ctx, PKV_ERR_NULL, "params is NULL");
  if ((st = pkv__check_attn_params(ctx, g.num_kv_heads, params)) != PKV_OK) return st;
  if ((st = table_resolve(ctx, table_in, &g, &t)) != PKV_OK) return st;
  const int32_t nq = params->num_q_heads;
  if ((st = tensor_resolve(ctx, q_in, "q", t.num_tokens, nq, g.head_dim, &q,
                           &q_off)) != PKV_OK ||
      (st = tensor_resolve(ctx, out_in, "out", t.num_tokens, nq, g.head_dim,
                           &out, &o_off)) != PKV_OK)
    return st;
  if (pkv__dtype_quantized(q.dtype) || pkv__dtype_quantized(out.dtype))
    return pkv__fail(ctx, PKV_ERR_QUANT_DTYPE,
                     "%s->dtype = %d is quantized: q and out must be f32, f16 "
                     "or bf16 (with a quantized cache, pass them to "
                     "pkv_kv_attention in their own dtype)",
                     pkv__dtype_quantized(q.dtype) ? "q" : "out",
                     (int)(pkv__dtype_quantized(q.dtype) ? q.dtype : out.dtype));
  if (lse) {
    if ((st = own_buffer(ctx, lse, "lse")) != PKV_OK) return st;
    if (!fits(lse->bytes, 0, (uint64_t)t.num_tokens * (uint64_t)nq,
              sizeof(float)))
      return pkv__fail(ctx, PKV_ERR_SIZE,
                      "lse holds %zu bytes but f32 [%lld tokens][%d q heads] "
                      "needs %llu bytes",
                      lse->bytes, (long long)t.num_tokens, nq,
                      (unsigned long long)t.num_tokens * nq * 4);
  }
  if ((st = need_op(ctx, (const void *)ctx->ops->attention, "attention")) !=
      PKV_OK)
    return st;
  if (t.num_tokens == 0 || t.num_seqs == 0) return PKV_OK;

  pkv_attn_args a;
  memset(&a, 0, sizeof a);
  a.geom = &g;
  a.k_pool = view.k;
  a.v_pool = view.v;
  a.num_seqs = t.num_seqs;
  a.max_pages = t.kind == PKV_TABLE_DENSE ? t.max_pages : 0;
  a.num_tokens = t.num_tokens;
  a.max_q_len = t.max_q_len;
  a.max_kv_len = t.max_kv_len;
  a.csr = t.kind == PKV_TABLE_CSR;
  a.num_kv_indices = t.num_kv_indices;
  a.h_q_indptr = t.host_q_indptr;
  a.q_indptr = t.q_indptr;
  if (a.csr) {
    a.h_kv_indptr = t.host_kv_indptr;
    a.h_kv_indices = t.host_kv_indices;
    a.h_kv_last = t.host_kv_last_page_len;
    a.kv_indptr = t.kv_indptr;
    a.kv_indices = t.kv_indices;
    a.kv_last = t.kv_last_page_len;
  } else {
    a.h_block_table = t.host_block_table;
    a.h_seq_lens = t.host_seq_lens;
    a.block_table = t.block_table;
    a.seq_lens = t.seq_lens;
  }
  a.q = q.buf;
  a.out = out.buf;
  a.lse = lse;
  a.q_dtype = q.dtype;
  a.o_dtype = out.dtype;
  a.q_off = q_off;
  a.q_ts = q.token_stride;
  a.q_hs = q.head_stride;
  a.o_off = o_off;
  a.o_ts = out.token_stride;
  a.o_hs = out.head_stride;
  a.rows_aligned = aligned;
  a.num_q_heads = nq;
  /* Backends receive the resolved scale, never the 0 default. */
  a.scale = params->scale > 0.0f ? params->scale
                                 : (float)(1.0 / sqrt((double)g.head_dim));
  a.softcap = params->softcap;
  a.causal = params->causal;
  a.window_left = params->window_left;
  a.h_alibi = params->alibi_slopes;
  a.alibi = params->alibi_slopes ? alibi_dev : NULL;
  a.h_sinks = params->sinks;
  a.h_k_scales = view.k_scales;
  a.h_v_scales = view.v_scales;
  a.plan = pe;
  return ctx->ops->attention(ctx, &a);
}

pkv_status pkv_kv_attention(pkv_context *ctx, const pkv_kv_view *view,
                            const pkv_kv_table *table,
                            const pkv_attn_params *params, const pkv_tensor *q,
                            const pkv_tensor *out, pkv_buffer *lse) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  return pkv__kv_attention(ctx, view, table, params, q, out, lse, NULL);
}

pkv_status pkv__kv_write(pkv_context *ctx, const pkv_kv_view *view_in,
                        pkv_buffer *slots, const int64_t *host_slots, int64_t n,
                        const pkv_tensor *k_in, const pkv_tensor *v_in) {
  pkv_kv_view view;
  pkv_cache_geometry g;
  pkv_tensor k, v;
  int64_t k_off = 0, v_off = 0;
  int aligned = 0;
  pkv_status st = pkv__kv_view_resolve(ctx, view_in, &view, &g, &aligned);
  if (st != PKV_OK) return st;
  if (n < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "n = %lld is negative", (long long)n);
  if ((st = tensor_resolve(ctx, k_in, "k", n, g.num_kv_heads, g.head_dim, &k,
                           &k_off)) != PKV_OK ||
      (st = tensor_resolve(ctx, v_in, "v", n, g.num_kv_heads, g.head_dim, &v,
                           &v_off)) != PKV_OK)
    return st;
  if (k.dtype != v.dtype)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "k->dtype = %d and v->dtype = %d differ: one conversion "
                    "per write",
                    (int)k.dtype, (int)v.dtype);
  if (pkv__dtype_quantized(k.dtype) &&
      (k.dtype != g.dtype || k.dtype == PKV_DTYPE_INT8))
    return pkv__fail(ctx, PKV_ERR_INVALID,
                     "k->dtype = %d is quantized but the view's is %d: "
                     "quantized rows are copied bitwise into a pool of their "
                     "own dtype only (convert from f32/f16/bf16 instead)",
                     (int)k.dtype, (int)g.dtype);
  if ((st = own_buffer(ctx, slots, "slots")) != PKV_OK) return st;
  if (!fits(slots->bytes, 0, (uint64_t)n, sizeof(int64_t)))
    return pkv__fail(ctx, PKV_ERR_SIZE,
                    "slots holds %zu bytes but n = %lld int64 slots need %llu",
                    slots->bytes, (long long)n, (unsigned long long)n * 8);
  if (ctx->kind == PKV_BACKEND_CPU) host_slots = slots->native;
  const int64_t limit = g.num_pages * (int64_t)g.page_size;
  for (int64_t i = 0; host_slots && i < n; i++)
    if (host_slots[i] >= limit)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "slots[%lld] = %lld is past the pool's %lld token slots "
                      "(num_pages %lld x page_size %d)",
                      (long long)i, (long long)host_slots[i], (long long)limit,
                      (long long)g.num_pages, g.page_size);
  if ((st = need_op(ctx, (const void *)ctx->ops->write_kv, "write_kv")) !=
      PKV_OK)
    return st;
  if (n == 0) return PKV_OK;
  pkv_write_args a = {&g,     view.k, view.v,         k.buf,
                      v.buf,  slots,  host_slots,     n,
                      k_off,  k.token_stride, k.head_stride, v_off,
                      v.token_stride, v.head_stride,
                      k.dtype != g.dtype, k.dtype,
                      view.k_scales, view.v_scales};
  return ctx->ops->write_kv(ctx, &a);
}

pkv_status pkv_kv_write(pkv_context *ctx, const pkv_kv_view *view,
                        pkv_buffer *slots, const int64_t *host_slots, int64_t n,
                        const pkv_tensor *k, const pkv_tensor *v) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  return pkv__kv_write(ctx, view, slots, host_slots, n, k, v);
}

pkv_status pkv_cache_kv_view(pkv_cache *cache, int32_t layer, pkv_kv_view *out) {
  if (!cache) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!out) return pkv__fail(cache->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_buffer *k = NULL, *v = NULL;
  pkv_status st = pkv_cache_kv(cache, layer, &k, &v);
  if (st != PKV_OK) return st;
  const pkv_cache_geometry *g = &cache->geom;
  pkv_kv_view w;
  pkv_kv_view_init(&w);
  w.k = k;
  w.v = v;
  w.page_size = g->page_size;
  w.num_kv_heads = g->num_kv_heads;
  w.head_dim = g->head_dim;
  w.num_pages = g->num_pages;
  w.dtype = g->dtype;
  w.page_stride = g->page_stride;
  w.head_stride = g->head_stride;
  w.token_stride = g->token_stride;
  w.scale_offset = (int64_t)g->scale_offset;
  if (pkv__dtype_fp8(g->dtype)) {
    w.k_scales = cache->k_scales + (size_t)layer * g->num_kv_heads;
    w.v_scales = cache->v_scales + (size_t)layer * g->num_kv_heads;
  }
  return pkv__write_sized(cache->ctx, out, &w, sizeof w, "out");
}

/* Writes a library-filled struct into the caller's, up to its struct_size. */
pkv_status pkv__write_sized(pkv_context *ctx, void *dst, const void *src,
                           size_t src_size, const char *name) {
  pkv_status st = pkv__struct_out_check(ctx, name, dst, sizeof(size_t));
  if (st == PKV_OK) pkv__struct_out(dst, src, src_size);
  return st;
}

pkv_status pkv_batch_get_table(const pkv_batch *b, pkv_table_kind kind,
                               pkv_kv_table *out) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  if (!out) return pkv__fail(b->ctx, PKV_ERR_NULL, "out is NULL");
  if (kind != PKV_TABLE_DENSE && kind != PKV_TABLE_CSR)
    return pkv__fail(b->ctx, PKV_ERR_INVALID, "kind = %d is unknown", (int)kind);
  if (!b->valid)
    return pkv__fail(b->ctx, PKV_ERR_STATE,
                    "batch has not been built: call pkv_batch_build first");
  pkv_kv_table t;
  pkv_kv_table_init(&t);
  t.kind = kind;
  t.num_seqs = b->n;
  t.num_tokens = b->num_tokens;
  t.max_q_len = b->max_q_len;
  t.max_kv_len = b->max_kv_len;
  t.q_indptr = b->dev[PKV_BA_Q_INDPTR];
  t.host_q_indptr = b->q_indptr;
  if (kind == PKV_TABLE_DENSE) {
    t.block_table = b->dev[PKV_BA_BLOCK_TABLE];
    t.seq_lens = b->dev[PKV_BA_SEQ_LENS];
    t.max_pages = b->stride;
    t.host_block_table = b->block_table;
    t.host_seq_lens = b->seq_lens;
  } else {
    t.kv_indptr = b->dev[PKV_BA_KV_INDPTR];
    t.kv_indices = b->dev[PKV_BA_KV_INDICES];
    t.kv_last_page_len = b->dev[PKV_BA_KV_LAST];
    t.num_kv_indices = b->n > 0 ? b->kv_indptr[b->n] : 0;
    t.host_kv_indptr = b->kv_indptr;
    t.host_kv_indices = b->kv_indices;
    t.host_kv_last_page_len = b->kv_last;
  }
  return pkv__write_sized(b->ctx, out, &t, sizeof t, "out");
}
