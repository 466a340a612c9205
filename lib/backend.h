/* SPDX-License-Identifier: Apache-2.0 */
/* The backend interface: one struct of function pointers per backend.
 * The public API layer (lib/) validates every argument before calling a
 * backend, so a backend may assume well-formed arguments; it reports only
 * device/runtime failures, through pkv__fail(ctx, PKV_ERR_DEVICE, ...), naming
 * the runtime call and the runtime's error name. */
#ifndef PKV_BACKEND_H
#define PKV_BACKEND_H

#include "internal.h"

/* Arguments of the K/V write: token i's K (and V) rows go to slot
 * slots[i]; negative slots are skipped. The rows of token i, head h start
 * at element k_off + i*k_ts + h*k_hs of k (likewise v), in the pool dtype.
 * A device backend skips a slot past the pool (it never writes out of
 * bounds); the layer above checks host slots before the call. */
typedef struct pkv_write_args {
  const pkv_cache_geometry *geom;
  pkv_buffer *k_pool, *v_pool;   /* one layer's pools */
  pkv_buffer *k, *v;
  pkv_buffer *slots;             /* int64 [n] on the device */
  const int64_t *h_slots;        /* the same on the host, or NULL */
  int64_t n;
  /* elements; a stride of 0 = contiguous [n][num_kv_heads][head_dim] */
  int64_t k_off, k_ts, k_hs, v_off, v_ts, v_hs;
  /* 0: k and v are in the pool dtype, copied bitwise; 1: they are in
   * src_dtype and converted (through f32, rounding to nearest even) */
  int32_t convert;
  pkv_dtype src_dtype;
  /* fp8 pools: host [num_kv_heads] scales (stored = x / scale); NULL =
   * all 1 (and always NULL for f32/f16/bf16 pools) */
  const float *h_k_scales, *h_v_scales;
} pkv_write_args;

/* The write's strides with the defaults resolved. */
static inline void pkv__write_strides(const pkv_write_args *a, int64_t *kts,
                                     int64_t *khs, int64_t *vts, int64_t *vhs) {
  const int64_t D = a->geom->head_dim, row = D * a->geom->num_kv_heads;
  *kts = a->k_ts ? a->k_ts : row;
  *khs = a->k_hs ? a->k_hs : D;
  *vts = a->v_ts ? a->v_ts : row;
  *vhs = a->v_hs ? a->v_hs : D;
}

/* One work item of the grid: keys [kv_begin, kv_end) of request seq.
 * partial >= 0: the first partial row of this chunk in the workspace (a
 * split request: q_len rows per chunk, merged afterwards); -1: the item is
 * the whole request and writes out and lse directly. Padding items have
 * seq = -1 (a kernel returns at once). Four int32 per item on the device,
 * in this order. */
typedef struct pkv__plan_item {
  int32_t seq, kv_begin, kv_end, partial;
} pkv__plan_item;

/* A run under a plan (lib/plan.c): the plan's items on the host and the
 * device, the caller's workspace (NULL when no request is split), and the
 * stream of the run (NULL = the context's). A backend that does not
 * consume the items runs the attention as without a plan. */
typedef struct pkv__plan_exec {
  const pkv__plan_item *items;
  pkv_buffer *dev_items;         /* int32 [grid_items][4] */
  int64_t num_items, grid_items, chunk, partial_rows;
  pkv_buffer *workspace;         /* f32 partial out, then partial lse */
  void *stream;
  /* The merges of the split requests: int32 [merge_slots][4] = (request,
   * first partial row, chunks, q_len), padded with request -1 to a fixed
   * merge_slots (grid_items / 2: a split request has two items or more). */
  pkv_buffer *dev_merges;
  int64_t merge_slots, num_split;
  int64_t lse_off;               /* floats from the workspace to its LSE */
  pkv_buffer *sinks;             /* device copy of the sinks, or NULL */
} pkv__plan_exec;

/* Arguments of paged attention over one layer (see pkv_kv_attention).
 * geom describes the view (num_layers 1). The table is dense or CSR; the
 * host mirrors are NULL when the caller has none (device backends only:
 * the kernels then bound every index, see pkv_kv_table). q and out have
 * their own dtypes; offsets and strides are in their elements. */
typedef struct pkv_attn_args {
  const pkv_cache_geometry *geom;
  pkv_buffer *k_pool, *v_pool;
  int32_t num_seqs, max_pages;
  int64_t num_tokens;
  int32_t max_q_len, max_kv_len;
  int32_t csr;                   /* 1: kv_indptr/kv_indices/kv_last */
  int64_t num_kv_indices;
  /* host mirrors (NULL when absent) */
  const int32_t *h_block_table, *h_seq_lens, *h_q_indptr;
  const int32_t *h_kv_indptr, *h_kv_indices, *h_kv_last;
  /* device copies (dense: block_table + seq_lens; CSR: the other three) */
  pkv_buffer *block_table, *seq_lens, *q_indptr;
  pkv_buffer *kv_indptr, *kv_indices, *kv_last;
  pkv_buffer *q, *out, *lse;     /* lse may be NULL */
  pkv_dtype q_dtype, o_dtype;
  int64_t q_off, q_ts, q_hs, o_off, o_ts, o_hs; /* elements */
  int32_t rows_aligned;          /* every K/V row 16-byte aligned (a hint:
                                    every backend runs misaligned rows) */
  int32_t num_q_heads;
  float scale, softcap;          /* softcap 0 = off */
  int32_t causal, window_left;   /* window_left < 0 = off */
  const float *h_alibi;          /* host [num_q_heads] or NULL */
  pkv_buffer *alibi;             /* device copy, or NULL */
  const float *h_sinks;          /* host [num_q_heads] or NULL */
  /* fp8 pools: host [num_kv_heads] scales (value = fp8 * scale); NULL =
   * all 1 (and always NULL for f32/f16/bf16 pools) */
  const float *h_k_scales, *h_v_scales;
  const pkv__plan_exec *plan;    /* pkv_attention_run; NULL otherwise */
} pkv_attn_args;

/* q/out strides with the defaults resolved (0 = contiguous
 * [num_tokens][num_q_heads][head_dim]). */
static inline void pkv__attn_strides(const pkv_attn_args *a, int64_t *qts,
                                    int64_t *qhs, int64_t *ots, int64_t *ohs) {
  const int64_t D = a->geom->head_dim, row = D * a->num_q_heads;
  *qts = a->q_ts ? a->q_ts : row;
  *qhs = a->q_hs ? a->q_hs : D;
  *ots = a->o_ts ? a->o_ts : row;
  *ohs = a->o_hs ? a->o_hs : D;
}

/* Bytes of one element of a cache dtype, for the backend modules, which
 * must not call into libpagedkv (pkv_dtype_size is its export). */
static inline size_t pkv__elem_bytes(pkv_dtype d) {
  return d == PKV_DTYPE_F32 ? 4
         : (d == PKV_DTYPE_FP8_E4M3 || d == PKV_DTYPE_FP8_E5M2 ||
            d == PKV_DTYPE_INT8)
             ? 1
             : 2;
}

/* An attention over a dense table with host mirrors, no sinks, and q and
 * out contiguous [num_tokens][num_q_heads][head_dim], in the cache dtype
 * for float pools and in any q/out dtype for quantized ones (fp8 with
 * per-head scales, int8 with its row scales; kernels/quant.h): what the
 * GPU-shaped decode kernel implements (kernels/decode_gpu.cl). */
static inline int pkv__attn_plain(const pkv_attn_args *a) {
  int64_t qts, qhs, ots, ohs;
  pkv__attn_strides(a, &qts, &qhs, &ots, &ohs);
  const int64_t D = a->geom->head_dim, row = D * a->num_q_heads;
  const int quant = pkv__elem_bytes(a->geom->dtype) == 1;
  return !a->csr && !a->h_sinks && a->h_block_table && a->h_seq_lens &&
         (quant || (a->q_dtype == a->geom->dtype &&
                    a->o_dtype == a->geom->dtype)) &&
         a->q_off == 0 && a->o_off == 0 && qts == row && qhs == D &&
         ots == row && ohs == D;
}

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

/* What a backend can run on its device: cache creation refuses a geometry
 * outside it with PKV_ERR_UNSUPPORTED before any memory is allocated. The
 * library fills every member with "anything the API accepts" before it
 * asks, so a backend sets only its limits. */
#define PKV_CAPS_MAX_HEAD_DIMS 16
typedef struct pkv_backend_caps {
  uint32_t dtypes;          /* bit (1u << pkv_dtype) per K/V dtype; the
                               quantized dtypes (fp8) are opt-in: the
                               default has only f32, f16, bf16 */
  int32_t num_head_dims;    /* 0: every head dim the API accepts */
  int32_t head_dims[PKV_CAPS_MAX_HEAD_DIMS];
  int32_t max_page_size;    /* tokens per page */
} pkv_backend_caps;

/* Members marked "optional" may be NULL; the library checks before each
 * call (ops.c answers PKV_ERR_UNSUPPORTED naming the missing operation). */
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
  /* optional: the device's limits (NULL: every geometry the API accepts) */
  void (*caps)(pkv_context *ctx, pkv_backend_caps *out);
  /* 1 when the operations above may run concurrently on one context (no
   * mutable per-context state). Otherwise the context layer serialises
   * them per context (doc/api.md "Threads"); list_devices, init, fini and
   * synchronize are never serialised: a backend makes those safe itself. */
  int thread_safe;
  /* ---- optional, module ABI 4 (NULL: not provided) ---- */
  /* Upload of a plan's arrays, ordered on `stream` (NULL: the context's)
   * without synchronising the host with the device: the backend stages
   * src (which the caller may reuse on return). NULL: mem_upload. */
  pkv_status (*mem_upload_async)(pkv_context *ctx, void *native, size_t offset,
                                 const void *src, size_t bytes, void *stream);
  /* Blocks of the plan-driven decode kernel resident per compute unit
   * (the runtime's occupancy query of the kernel the run launches), for
   * the planner; 0 when unknown. NULL: the planner's default. */
  int (*decode_blocks_per_cu)(pkv_context *ctx, int32_t head_dim,
                              pkv_dtype dtype, int32_t group);
};

/* Backends compiled in (with --disable-modules; in a module build these
 * live in the modules and lib/module_loader.c finds them). */
extern const pkv_backend_ops pkv__cpu_backend;
#ifdef PKV_HAVE_OPENCL
extern const pkv_backend_ops pkv__opencl_backend;
#endif
#ifdef PKV_HAVE_HIP
extern const pkv_backend_ops pkv__hip_backend;
#endif

/* The backend of `kind`: compiled in, or loaded from its module on first
 * use. NULL when there is none; pkv__backend_get says why. */
const pkv_backend_ops *pkv__backend_ops_for(pkv_backend_kind kind);
/* The same, failing with PKV_ERR_NO_BACKEND and a message (the dlerror()
 * text of a module that did not load) on the calling thread. */
pkv_status pkv__backend_get(pkv_backend_kind kind, const pkv_backend_ops **out);
/* Refuses (PKV_ERR_UNSUPPORTED, message on ctx) a cache geometry that the
 * context's backend cannot run, from its capability query. */
/* Whether the backend stores and reads K/V in dtype (caps; the quantized
 * dtypes only where the backend sets their bits). */
int pkv__backend_has_dtype(pkv_context *ctx, pkv_dtype dtype);
pkv_status pkv__backend_check_caps(pkv_context *ctx, pkv_dtype dtype,
                                   int32_t head_dim, int32_t page_size);

#endif
