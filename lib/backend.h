/* SPDX-License-Identifier: Apache-2.0 */
/* The backend interface: one struct of function pointers per backend.
 * The public API layer (lib/) validates every argument before calling a
 * backend, so a backend may assume well-formed arguments; it reports only
 * device/runtime failures, through pkv__fail(ctx, PKV_ERR_DEVICE, ...), naming
 * the runtime call and the runtime's error name. */
#ifndef PKV_BACKEND_H
#define PKV_BACKEND_H

#include "internal.h"

/* Arguments of the K/V write: token i's K (and V) rows
 * src[i][h][0..head_dim) go to slot slots[i]; negative slots are skipped. */
typedef struct pkv_write_args {
  const pkv_cache_geometry *geom;
  pkv_buffer *k_pool, *v_pool;   /* one layer's pools */
  pkv_buffer *k, *v;             /* [n][num_kv_heads][head_dim], cache dtype */
  pkv_buffer *slots;             /* int64 [n] on the device */
  const int64_t *h_slots;        /* the same on the host, or NULL */
  int64_t n;
} pkv_write_args;

/* Arguments of paged attention over one layer (see pkv_attention). */
typedef struct pkv_attn_args {
  const pkv_cache_geometry *geom;
  pkv_buffer *k_pool, *v_pool;
  int32_t num_seqs, max_pages;
  int64_t num_tokens;
  int32_t max_q_len, max_kv_len;
  /* host mirrors (always valid) */
  const int32_t *h_block_table, *h_seq_lens, *h_q_indptr;
  /* device copies */
  pkv_buffer *block_table, *seq_lens, *q_indptr;
  pkv_buffer *q, *out, *lse;     /* lse may be NULL */
  int32_t num_q_heads;
  float scale, softcap;          /* softcap 0 = off */
  int32_t causal, window_left;   /* window_left < 0 = off */
  const float *h_alibi;          /* host [num_q_heads] or NULL */
  pkv_buffer *alibi;             /* device copy, or NULL */
} pkv_attn_args;

/* Page copies (copy-on-write), applied to every pool buffer. */
typedef struct pkv_copy_args {
  const pkv_cache_geometry *geom;
  pkv_buffer **pools;            /* K0, V0, K1, V1, ... */
  int32_t num_pools;
  const int32_t *h_pairs;        /* [n][2] = {src, dst} page indices */
  pkv_buffer *pairs;             /* the same on the device */
  int64_t n;
} pkv_copy_args;

/* Page moves between device pages and the host tier. Host page hp of pool
 * buffer b lives at host_base + (hp * num_pools + b) * page_bytes. */
typedef struct pkv_host_move_args {
  const pkv_cache_geometry *geom;
  pkv_buffer **pools;
  int32_t num_pools;
  const int32_t *h_dev_pages;    /* [n] */
  const int64_t *h_host_pages;   /* [n] */
  int64_t n;
  unsigned char *host_base;
} pkv_host_move_args;

struct pkv_backend_ops {
  pkv_backend_kind kind;
  const char *name;
  /* Device listing without a context; errors via pkv__fail(NULL, ...). */
  pkv_status (*list_devices)(pkv_device_info *out, int capacity, int *count);
  /* Opens the device for ctx (ctx->desc is filled); sets ctx->impl and
   * ctx->info. */
  pkv_status (*init)(pkv_context *ctx);
  void (*fini)(pkv_context *ctx);

  pkv_status (*mem_alloc)(pkv_context *ctx, size_t bytes, void **native);
  void (*mem_free)(pkv_context *ctx, void *native);
  pkv_status (*mem_upload)(pkv_context *ctx, void *native, size_t offset,
                           const void *src, size_t bytes);
  pkv_status (*mem_download)(pkv_context *ctx, void *native, size_t offset,
                             void *dst, size_t bytes);
  pkv_status (*mem_copy)(pkv_context *ctx, void *dst, size_t dst_offset,
                         void *src, size_t src_offset, size_t bytes);
  pkv_status (*synchronize)(pkv_context *ctx);

  pkv_status (*write_kv)(pkv_context *ctx, const pkv_write_args *a);
  pkv_status (*attention)(pkv_context *ctx, const pkv_attn_args *a);
  pkv_status (*copy_pages)(pkv_context *ctx, const pkv_copy_args *a);
  pkv_status (*pages_to_host)(pkv_context *ctx, const pkv_host_move_args *a);
  pkv_status (*pages_from_host)(pkv_context *ctx, const pkv_host_move_args *a);
  /* 1 when the operations above may run concurrently on one context (no
   * mutable per-context state). Otherwise the context layer serialises
   * them per context (doc/api.md "Threads"); list_devices, init, fini and
   * synchronize are never serialised: a backend makes those safe itself. */
  int thread_safe;
};

/* Backends compiled in; NULL when not. */
extern const pkv_backend_ops pkv__cpu_backend;
#ifdef PKV_HAVE_OPENCL
extern const pkv_backend_ops pkv__opencl_backend;
#endif
#ifdef PKV_HAVE_HIP
extern const pkv_backend_ops pkv__hip_backend;
#endif

const pkv_backend_ops *pkv__backend_ops_for(pkv_backend_kind kind);

#endif
