/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel-level layer's internal entry points, shared with the cache
 * and batch operations (ops.c), so that there is one path to the kernels. */
#ifndef PKV_KVLAYER_H
#define PKV_KVLAYER_H

#include "backend.h"
#include "cache.h"

/* Checks a caller's view and resolves defaults into *v and a geometry of
 * one layer; *aligned = every row 16-byte aligned. */
pkv_status pkv__kv_view_resolve(pkv_context *ctx, const pkv_kv_view *in,
                               pkv_kv_view *v, pkv_cache_geometry *g,
                               int *aligned);

/* pkv_kv_attention with an optional device copy of the ALiBi slopes that
 * the caller keeps (the batch caches one). */
pkv_status pkv__kv_attention(pkv_context *ctx, const pkv_kv_view *view,
                            const pkv_kv_table *table,
                            const pkv_attn_params *params, const pkv_tensor *q,
                            const pkv_tensor *out, pkv_buffer *lse,
                            pkv_buffer *alibi_dev);

/* The same under a plan (plan.c; pe NULL = none). */
pkv_status pkv__kv_attention_planned(pkv_context *ctx, const pkv_kv_view *view,
                                    const pkv_kv_table *table,
                                    const pkv_attn_params *params,
                                    const pkv_tensor *q, const pkv_tensor *out,
                                    pkv_buffer *lse, pkv_buffer *alibi_dev,
                                    const pkv__plan_exec *pe);

/* Checks a caller's table against a view geometry and resolves it into *t
 * (host mirrors filled where the buffers are host memory). */
pkv_status pkv__kv_table_resolve(pkv_context *ctx, const pkv_kv_table *in,
                                const pkv_cache_geometry *g, pkv_kv_table *t);

pkv_status pkv__kv_write(pkv_context *ctx, const pkv_kv_view *view,
                        pkv_buffer *slots, const int64_t *host_slots, int64_t n,
                        const pkv_tensor *k, const pkv_tensor *v);

/* Checks attention parameters against num_kv_heads. */
pkv_status pkv__check_attn_params(pkv_context *ctx, int32_t nkv,
                                 const pkv_attn_params *p);

/* Copies a library-built struct (src_size bytes, struct_size first) into
 * the caller's, up to the caller's struct_size. */
pkv_status pkv__write_sized(pkv_context *ctx, void *dst, const void *src,
                           size_t src_size, const char *name);

#endif
