/* SPDX-License-Identifier: Apache-2.0 */
/* pagedkv — a paged key/value cache and paged attention for LLM inference.
 *
 * One header. Opaque handles, plain description/result structs, integer
 * sequence ids; every function that can fail returns pkv_status and leaves
 * the library's state exactly as before on failure. The message of the last
 * error is kept per context (pkv_last_error); functions that have no context
 * (device listing, context creation) keep it per thread (pkv_last_error(NULL)).
 *
 * The library never prints, aborts or exits.
 *
 * Reference: doc/api.md. Design: ../shared/DESIGN.md.
 */
#ifndef PAGEDKV_H
#define PAGEDKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PKV_VERSION_MAJOR 0
#define PKV_VERSION_MINOR 2
#define PKV_VERSION_PATCH 0
#define PKV_VERSION_NUMBER \
  (PKV_VERSION_MAJOR * 10000 + PKV_VERSION_MINOR * 100 + PKV_VERSION_PATCH)

#if defined(__GNUC__)
#define PKV_API __attribute__((visibility("default")))
#else
#define PKV_API
#endif

/* Growable structs. Every struct the caller allocates begins with
 * `size_t struct_size`, which its initialiser sets to the caller's
 * sizeof(struct):
 *
 *   pkv_cache_desc d;
 *   pkv_cache_desc_init(&d);   // = pkv_cache_desc_init_sized(&d, sizeof d)
 *
 * The library reads and writes only the first struct_size bytes, so a
 * program built against an older header keeps working when a later 1.x
 * release appends fields (absent fields take their defaults). A newer
 * program's larger struct works with an older library while the fields the
 * library does not know stay 0 (their default: fields added after 1.0
 * default to 0); a non-zero one is PKV_ERR_UNSUPPORTED rather than ignored.
 * A struct_size below that of the 1.0 fields is PKV_ERR_INVALID, naming the
 * argument. Output structs (pkv_stats, ...) are initialised the same way
 * before the call. See doc/ABI.md. */

/* API between the markers PKV_EXPERIMENTAL_BEGIN and PKV_EXPERIMENTAL_END
 * (comments in this header) is outside the ABI promise: it may change or
 * go away in any release. Everything else follows doc/ABI.md. */

/* ------------------------------------------------------------------ */
/* Status                                                               */
/* ------------------------------------------------------------------ */

typedef enum pkv_status {
  PKV_OK = 0,
  PKV_ERR_NULL = 1,          /* a required pointer argument is NULL */
  PKV_ERR_INVALID = 2,       /* a value is outside what the API accepts */
  PKV_ERR_RANGE = 3,         /* an id or index is out of range */
  PKV_ERR_OVERFLOW = 4,      /* a size computation would overflow */
  PKV_ERR_NO_MEMORY = 5,     /* a host allocation failed */
  PKV_ERR_NO_PAGES = 6,      /* the page pool (or a class quota) is exhausted */
  PKV_ERR_UNSUPPORTED = 7,   /* valid request the backend/build cannot do */
  PKV_ERR_NO_BACKEND = 8,    /* backend not built or not loadable, or no device */
  PKV_ERR_DEVICE = 9,        /* the device runtime reported an error */
  PKV_ERR_DUPLICATE = 10,    /* the same sequence twice in one batch, etc. */
  PKV_ERR_NOT_FOUND = 11,    /* unknown sequence id or session key */
  PKV_ERR_STATE = 12,        /* the object is not in a state that allows it */
  PKV_ERR_SIZE = 13,         /* a buffer is too small for the request */
  PKV_ERR_BUILD = 14,        /* a device program failed to build */
  PKV_ERR_NO_HOST_PAGES = 15, /* the host tier is exhausted */
  PKV_ERR_NOT_EXPORTABLE = 16, /* the memory cannot be exported (DLPack of an
                                 OpenCL buffer) */
  PKV_ERR_SCALE = 17,        /* a quantization scale is 0, negative, NaN or Inf */
  PKV_ERR_QUANT_DTYPE = 18,  /* q/out given in a quantized dtype (fp8/int8):
                                they need a separate f32/f16/bf16 dtype */
  PKV_ERR_KEY_MISMATCH = 19, /* an imported page's key is not the chained key
                                of its parent, namespace and token ids */
  PKV_ERR_INCOMPATIBLE = 20, /* a transfer peer's cache has another geometry */
  PKV_ERR_PEER = 21,         /* a transfer peer died or disconnected */
  PKV_ERR_TIMEOUT = 22       /* a wait ran out of time (the request goes on) */
} pkv_status;

/* A static, human-readable name for a status ("PKV_ERR_NO_PAGES"). */
PKV_API const char *pkv_status_name(pkv_status s);

/* ------------------------------------------------------------------ */
/* Version                                                              */
/* ------------------------------------------------------------------ */

/* Run-time version of the library actually loaded. */
PKV_API void pkv_version(int *major, int *minor, int *patch);
PKV_API const char *pkv_version_string(void);

/* ------------------------------------------------------------------ */
/* Backends, devices, context                                           */
/* ------------------------------------------------------------------ */

typedef enum pkv_backend_kind {
  PKV_BACKEND_AUTO = 0, /* PKV_BACKEND env var, else HIP GPU, OpenCL GPU, CPU */
  PKV_BACKEND_CPU = 1,
  PKV_BACKEND_OPENCL = 2,
  PKV_BACKEND_HIP = 3
} pkv_backend_kind;

#define PKV_BACKEND_COUNT 4

/* "auto", "cpu", "opencl", "hip"; NULL for an unknown value. */
PKV_API const char *pkv_backend_name(pkv_backend_kind kind);
/* Parses a backend name (case-insensitive). */
PKV_API pkv_status pkv_backend_from_name(const char *name, pkv_backend_kind *out);
/* 1 when the backend is built into this library or its module loads, else 0
 * (then pkv_last_error(NULL) says why). */
PKV_API int pkv_backend_available(pkv_backend_kind kind);

typedef enum pkv_device_type {
  PKV_DEVICE_CPU = 0,
  PKV_DEVICE_GPU = 1,
  PKV_DEVICE_OTHER = 2
} pkv_device_type;

typedef struct pkv_device_info {
  size_t struct_size; /* set by pkv_device_info_init(): see "Growable structs" */
  pkv_backend_kind backend;
  int index;                /* index to pass as pkv_context_desc.device */
  pkv_device_type type;
  char name[256];
  char vendor[128];
  char driver[128];         /* driver / runtime version */
  char platform[128];       /* OpenCL platform name; empty elsewhere */
  uint64_t global_mem_bytes;
  uint64_t max_alloc_bytes;
  int compute_units;
  int wave_size;            /* warp/wave/sub-group width; 1 when unknown */
} pkv_device_info;

PKV_API void pkv_device_info_init_sized(pkv_device_info *info, size_t size);
#define pkv_device_info_init(x) pkv_device_info_init_sized((x), sizeof(*(x)))

/* Lists the devices one backend sees. Writes at most `capacity` entries to
 * `out` (which may be NULL when capacity is 0) and the total in *count.
 * out[0] must be initialised (pkv_device_info_init): its struct_size is the
 * stride of the array, and every entry written gets that struct_size.
 * A backend that is compiled in but finds no device returns PKV_OK with
 * *count = 0; one not built, or whose module does not load, returns
 * PKV_ERR_NO_BACKEND. */
PKV_API pkv_status pkv_list_devices(pkv_backend_kind backend,
                                    pkv_device_info *out, int capacity,
                                    int *count);

typedef struct pkv_context pkv_context;

/* Context flags. */
#define PKV_CTX_NO_BINARY_CACHE 0x1u /* OpenCL: do not read/write the program cache */

typedef struct pkv_context_desc {
  size_t struct_size; /* set by pkv_context_desc_init(): see "Growable structs" */
  pkv_backend_kind backend; /* AUTO by default */
  int device;               /* device index within the backend; -1 = default */
  const char *device_name;  /* optional case-insensitive name substring */
  int platform;             /* OpenCL platform index; -1 = any */
  /* Engine-owned native objects (optional): OpenCL cl_context +
   * cl_command_queue, or HIP/CUDA stream (native_queue only). The context
   * uses them and never releases them. */
  void *native_context;
  void *native_queue;
  int cpu_threads;          /* CPU backend worker threads; 0 = automatic */
  unsigned flags;           /* PKV_CTX_* */
  const char *cache_dir;    /* program cache directory; NULL = default */
} pkv_context_desc;

/* Fills a description with the defaults (AUTO backend, device -1). */
PKV_API void pkv_context_desc_init_sized(pkv_context_desc *desc, size_t size);
#define pkv_context_desc_init(x) pkv_context_desc_init_sized((x), sizeof(*(x)))

/* Creates a context. desc may be NULL for all defaults. */
PKV_API pkv_status pkv_context_create(const pkv_context_desc *desc,
                                      pkv_context **out);
PKV_API void pkv_context_destroy(pkv_context *ctx);

/* The message of the last error on this context (NULL: this thread's last
 * context-less error). Never NULL; "" when there was none. */
PKV_API const char *pkv_last_error(const pkv_context *ctx);

PKV_API pkv_backend_kind pkv_context_backend(const pkv_context *ctx);
PKV_API pkv_status pkv_context_device_info(pkv_context *ctx,
                                           pkv_device_info *out);
/* Waits for all work queued on the context's device. */
PKV_API pkv_status pkv_context_synchronize(pkv_context *ctx);

/* ------------------------------------------------------------------ */
/* Buffers                                                              */
/* ------------------------------------------------------------------ */

typedef struct pkv_buffer pkv_buffer;

/* Device memory on the context's backend (host memory for the CPU backend). */
PKV_API pkv_status pkv_buffer_create(pkv_context *ctx, size_t bytes,
                                     pkv_buffer **out);
/* Wraps memory the engine already owns: a device pointer (HIP/CUDA), a
 * cl_mem (OpenCL) or a host pointer (CPU). Never freed by pagedkv. */
PKV_API pkv_status pkv_buffer_wrap(pkv_context *ctx, void *native,
                                   size_t bytes, pkv_buffer **out);
PKV_API pkv_status pkv_buffer_upload(pkv_buffer *buf, size_t offset,
                                     const void *src, size_t bytes);
PKV_API pkv_status pkv_buffer_download(pkv_buffer *buf, size_t offset,
                                       void *dst, size_t bytes);
/* Device-to-device copy within one context. */
PKV_API pkv_status pkv_buffer_copy(pkv_buffer *dst, size_t dst_offset,
                                   pkv_buffer *src, size_t src_offset,
                                   size_t bytes);
PKV_API size_t pkv_buffer_size(const pkv_buffer *buf);
/* The native object: device pointer, cl_mem, or host pointer. */
PKV_API void *pkv_buffer_native(const pkv_buffer *buf);
/* Destroying NULL or a buffer the cache owns (pkv_cache_kv) is a no-op. */
PKV_API void pkv_buffer_destroy(pkv_buffer *buf);

/* ------------------------------------------------------------------ */
/* Cache                                                                */
/* ------------------------------------------------------------------ */

typedef enum pkv_dtype {
  PKV_DTYPE_F32 = 0,
  PKV_DTYPE_F16 = 1,
  PKV_DTYPE_BF16 = 2,
  /* Quantized K/V storage (doc/quantized.md). Stored value = round(x /
   * scale) with one scale per (layer, kv head) for K and one for V
   * (pkv_cache_set_kv_scales; default 1). Only the pools use them: q and
   * out stay f32/f16/bf16 (pkv_kv_attention's q/out dtypes). */
  PKV_DTYPE_FP8_E4M3 = 3, /* OCP e4m3fn: max 448, no Inf, NaN 0x7f/0xff */
  PKV_DTYPE_FP8_E5M2 = 4, /* OCP e5m2: max 57344, Inf and NaN as IEEE */
  /* int8 codes with one f32 scale per (token, kv head) for K and for V,
   * scale = max|x| / 127, stored in the page after the codes (geometry
   * scale_offset), so a page is self-contained. Written only from
   * f32/f16/bf16 rows (pkv_kv_write); CPU reference and OpenCL. */
  PKV_DTYPE_INT8 = 5
} pkv_dtype;

/* Bytes of one element; 0 for an unknown dtype. */
PKV_API size_t pkv_dtype_size(pkv_dtype dtype);

/* Host conversion of n values between f32 and a storage dtype, with the
 * rounding the backends use (nearest even; NaN and Inf kept), so an engine
 * or tool can stage f32 data for an f16/bf16 cache and read results back.
 * The fp8 dtypes convert unscaled (divide by the scale first): finite
 * values beyond the format's largest finite value, and +-Inf, saturate to
 * +-max (both fp8 formats, as the backends' writes do); NaN stays NaN.
 * NULL arrays with n > 0: PKV_ERR_NULL; unknown dtype: PKV_ERR_INVALID. */
PKV_API pkv_status pkv_convert_from_f32(pkv_dtype dtype, const float *src,
                                        void *dst, size_t n);
PKV_API pkv_status pkv_convert_to_f32(pkv_dtype dtype, const void *src,
                                      float *dst, size_t n);

typedef enum pkv_layout {
  PKV_LAYOUT_HND = 0, /* [page][kv_head][token][dim] (default) */
  PKV_LAYOUT_NHD = 1  /* [page][token][kv_head][dim] (FlashAttention/FlashInfer) */
} pkv_layout;

#define PKV_MAX_CLASSES 8

/* Limits of every count the API takes (doc/api.md, "Limits"). They keep
 * each size the library computes from them (pool bytes, block tables,
 * scratch, kernel grids) far from overflow; a value past one is refused
 * with PKV_ERR_RANGE and a message naming the argument and the limit. */
#define PKV_MAX_LAYERS 1024         /* pkv_cache_desc.num_layers */
#define PKV_MAX_KV_HEADS 1024       /* pkv_cache_desc.num_kv_heads */
#define PKV_MAX_Q_HEADS 4096        /* pkv_attn_params.num_q_heads */
#define PKV_MAX_HEAD_DIM 256        /* pkv_cache_desc.head_dim */
#define PKV_MAX_PAGE_SIZE 1024      /* pkv_cache_desc.page_size (tokens) */
#define PKV_MAX_PAGES 2147483647LL  /* num_pages, num_host_pages: page ids are int32 */
#define PKV_MAX_SEQ_TOKENS (1LL << 30) /* tokens of one sequence */
#define PKV_MAX_BATCH_SEQS 65535    /* pkv_batch_build num_seqs (a GPU grid extent) */
#define PKV_MAX_BATCH_TOKENS (1LL << 24) /* query tokens of one batch */
#define PKV_MAX_CPU_THREADS 1024    /* pkv_context_desc.cpu_threads */

typedef struct pkv_cache_desc {
  size_t struct_size; /* set by pkv_cache_desc_init(): see "Growable structs" */
  int32_t num_layers;
  int32_t num_kv_heads;
  int32_t head_dim;      /* 64, 80, 96, 112, 128, 192 or 256 */
  int32_t page_size;     /* tokens per page, 1..PKV_MAX_PAGE_SIZE */
  int64_t num_pages;     /* pool size in pages; 0 = derive from pool_bytes */
  uint64_t pool_bytes;   /* used when num_pages == 0: K+V of all layers */
  pkv_dtype dtype;
  pkv_layout layout;
  /* Priority classes (0 = lowest). num_classes 0 means one class with no
   * reservation. class_reserved[c] pages are kept for class c: a lower
   * class never takes them. See doc/control-plane.md. */
  int32_t num_classes;
  int64_t class_reserved[PKV_MAX_CLASSES];
  double max_reserved_fraction; /* cap on sum of reservations; 0 = 0.9 */
  int64_t num_host_pages;       /* host tier size in pages; 0 = none */
} pkv_cache_desc;

typedef struct pkv_cache pkv_cache;

/* Fills a description with the defaults: 1 layer, 1 kv head, head_dim
 * 128, page_size 16, f16, HND, one class, max_reserved_fraction 0.9. */
PKV_API void pkv_cache_desc_init_sized(pkv_cache_desc *desc, size_t size);
#define pkv_cache_desc_init(x) pkv_cache_desc_init_sized((x), sizeof(*(x)))
PKV_API pkv_status pkv_cache_create(pkv_context *ctx,
                                    const pkv_cache_desc *desc,
                                    pkv_cache **out);
PKV_API void pkv_cache_destroy(pkv_cache *cache);
PKV_API pkv_context *pkv_cache_context(const pkv_cache *cache);

/* Element addressing of the pool, in elements of the storage dtype.
 * Token t of kv head h in page p starts at
 *   p*page_stride + h*head_stride + t*token_stride
 * and its head_dim elements are contiguous. */
typedef struct pkv_cache_geometry {
  size_t struct_size; /* set by pkv_cache_geometry_init(): see "Growable structs" */
  int32_t num_layers, num_kv_heads, head_dim, page_size;
  int64_t num_pages;
  pkv_dtype dtype;
  pkv_layout layout;
  int64_t page_stride, head_stride, token_stride;
  size_t page_bytes;   /* bytes of one page of K (or V) of one layer */
  size_t layer_bytes;  /* bytes of K (or V) of one layer = num_pages*page_bytes */
  /* PKV_DTYPE_INT8: bytes from a page's start to its scales, f32
   * [num_kv_heads][page_size] (page_bytes includes them); 0 otherwise */
  size_t scale_offset;
} pkv_cache_geometry;

PKV_API void pkv_cache_geometry_init_sized(pkv_cache_geometry *g, size_t size);
#define pkv_cache_geometry_init(x) \
  pkv_cache_geometry_init_sized((x), sizeof(*(x)))

PKV_API pkv_status pkv_cache_get_geometry(const pkv_cache *cache,
                                          pkv_cache_geometry *out);
/* Scale factors of an fp8 cache for one layer: k_scales[h], v_scales[h]
 * for each kv head h (num_kv_heads floats each; NULL = leave that side
 * unchanged). Stored K = fp8(k / k_scale); attention reads fp8 * k_scale.
 * Every cache starts with all scales 1; they may change at any time (pages
 * already written keep their bytes, so they are read with the new scale).
 * A scale of 0, negative, NaN or Inf: PKV_ERR_SCALE, nothing changes. On
 * a cache whose dtype is not fp8: PKV_ERR_INVALID. */
PKV_API pkv_status pkv_cache_set_kv_scales(pkv_cache *cache, int32_t layer,
                                           const float *k_scales,
                                           const float *v_scales);
/* The current scales of one layer (either output may be NULL). */
PKV_API pkv_status pkv_cache_get_kv_scales(const pkv_cache *cache,
                                           int32_t layer, float *k_scales,
                                           float *v_scales);

/* The K and V pools of one layer as buffers owned by the cache (views:
 * pkv_buffer_destroy on them is a no-op). Either output may be NULL. */
PKV_API pkv_status pkv_cache_kv(pkv_cache *cache, int32_t layer,
                                pkv_buffer **k, pkv_buffer **v);

/* ------------------------------------------------------------------ */
/* Sequences                                                            */
/* ------------------------------------------------------------------ */

typedef int64_t pkv_seq_id;

typedef struct pkv_seq_desc {
  size_t struct_size; /* set by pkv_seq_desc_init(): see "Growable structs" */
  int32_t priority_class; /* 0 = lowest */
  uint64_t namespace_id;  /* prefix sharing domain (tenant, model, LoRA) */
} pkv_seq_desc;

/* Class 0, namespace 0. */
PKV_API void pkv_seq_desc_init_sized(pkv_seq_desc *desc, size_t size);
#define pkv_seq_desc_init(x) pkv_seq_desc_init_sized((x), sizeof(*(x)))

/* Opens an empty sequence. desc may be NULL (class 0, namespace 0). */
PKV_API pkv_status pkv_seq_open(pkv_cache *cache, const pkv_seq_desc *desc,
                                pkv_seq_id *out);
/* Appends n tokens, reserving pages all-or-nothing. token_ids (may be NULL)
 * are kept for prefix reuse; slots_out (may be NULL) receives n slots,
 * slot = page * page_size + offset. */
PKV_API pkv_status pkv_seq_append(pkv_cache *cache, pkv_seq_id seq,
                                  int64_t n, const int32_t *token_ids,
                                  int64_t *slots_out);
/* Releases the sequence's pages (cached pages stay cached for reuse). */
PKV_API pkv_status pkv_seq_release(pkv_cache *cache, pkv_seq_id seq);
PKV_API pkv_status pkv_seq_length(const pkv_cache *cache, pkv_seq_id seq,
                                  int64_t *len);
/* Copies up to `capacity` page indices of the sequence, in order, into
 * pages (may be NULL when capacity is 0); *count gets the total. */
PKV_API pkv_status pkv_seq_pages(const pkv_cache *cache, pkv_seq_id seq,
                                 int32_t *pages, int64_t capacity,
                                 int64_t *count);

/* ---- prefix reuse, fork, sessions, truncation (doc/control-plane.md) ---- */

/* On an empty sequence: attaches the cached full pages of the longest
 * cached prefix of tokens[0..n) in the sequence's namespace, verified token
 * by token. *reused gets the number of tokens attached (a multiple of
 * page_size); the engine appends and computes the rest. */
PKV_API pkv_status pkv_seq_match_prefix(pkv_cache *cache, pkv_seq_id seq,
                                        const int32_t *tokens, int64_t n,
                                        int64_t *reused);
/* Marks the first `computed` tokens as written by the engine; full pages
 * among them with known token ids become reusable prefix pages. */
PKV_API pkv_status pkv_seq_commit(pkv_cache *cache, pkv_seq_id seq,
                                  int64_t computed);
/* Creates a child sharing all the parent's pages (copy-on-write). */
PKV_API pkv_status pkv_seq_fork(pkv_cache *cache, pkv_seq_id parent,
                                pkv_seq_id *child);
/* Drops every cached page of a namespace from the prefix index. */
PKV_API pkv_status pkv_namespace_drop(pkv_cache *cache, uint64_t namespace_id);
/* Releases the sequence, keeping its pages cached under session_key. */
PKV_API pkv_status pkv_seq_close_session(pkv_cache *cache, pkv_seq_id seq,
                                         uint64_t session_key);
/* Reopens a session: a new sequence with the surviving pages attached;
 * *tokens gets how many tokens survived (0 when all were evicted). */
PKV_API pkv_status pkv_session_open(pkv_cache *cache, uint64_t session_key,
                                    const pkv_seq_desc *desc,
                                    pkv_seq_id *out, int64_t *tokens);
/* Drops whole pages from the front until length <= max_tokens. *dropped
 * (may be NULL) gets the number of tokens dropped. */
PKV_API pkv_status pkv_seq_truncate_front(pkv_cache *cache, pkv_seq_id seq,
                                          int64_t max_tokens,
                                          int64_t *dropped);

/* ---- speculative decoding (doc/api.md) ---- */

/* PKV_EXPERIMENTAL_BEGIN */
/* Drops the last n_tokens tokens (0..length), e.g. rejected draft tokens:
 * pages past the new end are released; the new last page may be partial,
 * and the next append writes into it in place only if nothing else holds
 * it (else copy-on-write). All-or-nothing; batches that include the
 * sequence must be rebuilt. */
PKV_API pkv_status pkv_seq_truncate_back(pkv_cache *cache, pkv_seq_id seq,
                                         int64_t n_tokens);
/* Takes ahead the pages that the next n_tokens appended tokens need (and
 * the copy of a shared partial last page), so that those appends cannot
 * fail with PKV_ERR_NO_PAGES. Sets the reservation: a smaller n gives
 * pages back, 0 cancels it. Reserved pages are live pages of the class. */
PKV_API pkv_status pkv_seq_reserve(pkv_cache *cache, pkv_seq_id seq,
                                   int64_t n_tokens);
/* PKV_EXPERIMENTAL_END */

/* ---- priority classes and preemption ---- */

PKV_API pkv_status pkv_class_set_reserved(pkv_cache *cache, int32_t cls,
                                          int64_t reserved_pages);
/* After PKV_ERR_NO_PAGES: sequences the engine may preempt to make room for
 * class cls, lowest class first, most recently admitted first. */
PKV_API pkv_status pkv_preemption_candidates(const pkv_cache *cache,
                                             int32_t cls, pkv_seq_id *out,
                                             int64_t capacity, int64_t *count);

/* ---- host tier ---- */

/* Moves the sequences' device pages to host pages in one batched transfer
 * and frees the device pages. A swapped-out sequence keeps its id. */
PKV_API pkv_status pkv_seq_swap_out(pkv_cache *cache, const pkv_seq_id *seqs,
                                    int32_t n);
PKV_API pkv_status pkv_seq_swap_in(pkv_cache *cache, const pkv_seq_id *seqs,
                                   int32_t n);
/* 1 if swapped out to the host tier, 0 if resident; negative: bad id. */
PKV_API int pkv_seq_is_swapped(const pkv_cache *cache, pkv_seq_id seq);

/* Runs pending page copies (copy-on-write) on the device now. The batch
 * build does this itself; an engine writing K/V by other means calls it. */
PKV_API pkv_status pkv_cache_flush(pkv_cache *cache);

/* ---- page keys, KV events, page export/import (doc/kv-events.md) ---- */

/* PKV_EXPERIMENTAL_BEGIN */
/* The chained prefix key of a full page: XXH3-128 over (parent page's key,
 * namespace, the page's token ids), the root's parent key being {0, 0}.
 * Equal token ids in equal namespaces give equal keys on every cache, every
 * backend and every machine, so a router can name pages across nodes. */
typedef struct pkv_page_key {
  uint64_t lo, hi;
} pkv_page_key;

/* Keys of the sequence's full pages [first_page, first_page + max) whose
 * token ids are known, chained from the root: keys[0..*n_out). Stops at the
 * first page without a key (the partial last page, unknown token ids, a
 * sequence detached by truncate_front, or one swapped out). keys may be NULL
 * when max is 0. Independent of commit: a key names token ids, not whether
 * the K/V was written yet. */
PKV_API pkv_status pkv_seq_page_keys(pkv_cache *cache, pkv_seq_id seq,
                                     int64_t first_page, int64_t max,
                                     pkv_page_key *keys, int64_t *n_out);

/* KV events: what vLLM calls BlockStored / BlockRemoved / AllBlocksCleared,
 * so that a KV-aware router can track which node holds which prefix. */
typedef enum pkv_event_kind {
  PKV_EVENT_PAGE_STORED = 1,       /* a page entered the prefix index */
  PKV_EVENT_PAGE_EVICTED = 2,      /* a page left it (eviction, reuse) */
  PKV_EVENT_NAMESPACE_DROPPED = 3  /* pkv_namespace_drop: every key of
                                      namespace_id is gone (no per-page
                                      EVICTED events are sent for them) */
} pkv_event_kind;

typedef struct pkv_kv_event {
  size_t struct_size;   /* set by pkv_kv_event_init(): see "Growable structs" */
  int32_t kind;         /* pkv_event_kind */
  int32_t num_tokens;   /* tokens of the page (page_size); 0 for DROPPED */
  uint64_t namespace_id;
  pkv_page_key key;     /* the page's key; {0, 0} for DROPPED */
  pkv_page_key parent_key; /* the previous page's key when has_parent */
  int32_t has_parent;   /* 0: the page is the first of its chain */
  int32_t reserved;
  uint64_t seqno;       /* cache-wide, +1 per event (1 for the first) */
} pkv_kv_event;

PKV_API void pkv_kv_event_init_sized(pkv_kv_event *ev, size_t size);
#define pkv_kv_event_init(x) pkv_kv_event_init_sized((x), sizeof(*(x)))

/* Called synchronously inside the call that caused the event (on that
 * thread); it must not call into the cache. ev is valid during the call. */
typedef void (*pkv_event_fn)(void *user, const pkv_kv_event *ev);

/* A bounded queue of events: capacity 0 turns it off (the default) and
 * drops what is queued. When full, the oldest event is dropped and counted
 * (pkv_cache_poll_events' lost_out). Changing the capacity keeps the newest
 * events that fit. */
PKV_API pkv_status pkv_cache_set_event_queue(pkv_cache *cache,
                                             int64_t capacity);
/* Moves up to max queued events, oldest first, into out (its struct_size,
 * from out[0], is the stride of the array; out may be NULL when max is 0).
 * *n_out = how many; *lost_out (may be NULL) = events dropped since the
 * previous poll, which then starts again from 0. */
PKV_API pkv_status pkv_cache_poll_events(pkv_cache *cache, pkv_kv_event *out,
                                         int64_t max, int64_t *n_out,
                                         int64_t *lost_out);
/* Sets (fn NULL: removes) the event callback; the queue, if on, still
 * receives every event too. */
PKV_API pkv_status pkv_cache_set_event_callback(pkv_cache *cache,
                                                pkv_event_fn fn, void *user);

/* Page export and import. The wire form of one page: for each layer l in
 * order, its K page then its V page, each geometry.page_bytes bytes in the
 * layout asked for (int8: codes, then the page's f32 scales
 * [num_kv_heads][page_size], the same in both layouts). Two caches exchange
 * pages when layer count, kv heads, head dim, page size and dtype agree;
 * fp8 pages are exchanged as stored, so both caches need equal per-layer
 * scales (pkv_cache_get_kv_scales). */
PKV_API pkv_status pkv_cache_page_wire_bytes(const pkv_cache *cache,
                                             size_t *bytes_out);

/* Pages held for export: eviction and pkv_namespace_drop cannot free them
 * (a dropped page leaves the index but its content stays) until release. */
typedef struct pkv_page_hold pkv_page_hold;

/* Finds the indexed pages of keys[0..n) in namespace ns (usually a chain,
 * keys[i] the child of keys[i-1]; the child of the previous page is
 * preferred, any page indexed under the key is taken otherwise, since a key
 * names its content) and holds them. All or nothing: a key that is not
 * indexed is PKV_ERR_NOT_FOUND naming its index, and nothing is held.
 * n = 0 gives an empty hold. Held pages count as live pages of class 0;
 * release every hold before destroying the cache. */
PKV_API pkv_status pkv_pages_hold(pkv_cache *cache, uint64_t ns,
                                  const pkv_page_key *keys, int64_t n,
                                  pkv_page_hold **hold_out);
/* Pages of a hold, in chain order, and their count. */
PKV_API int64_t pkv_page_hold_count(const pkv_page_hold *hold);
/* Device page indices of the hold (for one-sided reads of the pool):
 * up to capacity of them into pages; *count = the total. */
PKV_API pkv_status pkv_page_hold_pages(const pkv_page_hold *hold,
                                       int32_t *pages, int64_t capacity,
                                       int64_t *count);
/* Copies the held pages' K/V to host memory dst (count * wire bytes) in
 * `layout`, converting on the host when the cache's differs; also writes
 * each page's token ids (count * page_size int32) when tokens != NULL. */
PKV_API pkv_status pkv_pages_read(pkv_cache *cache, const pkv_page_hold *hold,
                                  pkv_layout layout, void *dst,
                                  size_t dst_bytes, int32_t *tokens);
/* Releases the hold (NULL: no-op). Pages nothing else keeps are freed. */
PKV_API void pkv_page_hold_release(pkv_cache *cache, pkv_page_hold *hold);

/* Imports n full pages computed elsewhere, a chain under namespace ns:
 * page i has token ids tokens[i*page_size ..] and K/V src + i * wire bytes
 * (in `layout`); its parent is page i-1, and page 0's is *parent (NULL: the
 * root; a parent key not indexed here is PKV_ERR_NOT_FOUND). keys[i] must
 * be the chained key recomputed from (parent, ns, tokens), else
 * PKV_ERR_KEY_MISMATCH naming i. Pages whose key is already indexed with
 * the same token ids are skipped (*n_skipped); the others become cached,
 * indexed prefix pages (refcount 0), which pkv_seq_match_prefix reuses and
 * eviction may take. All or nothing: when the pool cannot give the pages
 * (free pages, then pages eviction may take from class 0), PKV_ERR_NO_PAGES
 * and nothing changed. Sends a PAGE_STORED event per imported page. Either
 * count output may be NULL. */
PKV_API pkv_status pkv_pages_import(pkv_cache *cache, uint64_t ns,
                                    const pkv_page_key *parent,
                                    const pkv_page_key *keys,
                                    const int32_t *tokens, int64_t n,
                                    pkv_layout layout, const void *src,
                                    size_t src_bytes, int64_t *n_imported,
                                    int64_t *n_skipped);

/* A whole sequence (prefill to decode handover; the partial last page
 * included): seq_export writes its K/V (pages * wire bytes, pages =
 * ceil(length / page_size)) to dst, its token ids (length int32) to tokens
 * when not NULL (PKV_ERR_STATE when some are unknown or the sequence was
 * truncated from the front), and its length to
 * *n_tokens_out. dst may be NULL (with dst_bytes 0) to ask the length only.
 * seq_import opens a new sequence (desc as pkv_seq_open's) of n_tokens
 * tokens holding that K/V; tokens (may be NULL) are kept for prefix reuse
 * and commit as pkv_seq_commit(n_tokens) would. All or nothing. */
PKV_API pkv_status pkv_seq_export(pkv_cache *cache, pkv_seq_id seq,
                                  pkv_layout layout, void *dst,
                                  size_t dst_bytes, int32_t *tokens,
                                  int64_t *n_tokens_out);
PKV_API pkv_status pkv_seq_import(pkv_cache *cache, const pkv_seq_desc *desc,
                                  const int32_t *tokens, int64_t n_tokens,
                                  pkv_layout layout, const void *src,
                                  size_t src_bytes, pkv_seq_id *seq_out);
/* PKV_EXPERIMENTAL_END */

/* ------------------------------------------------------------------ */
/* Statistics                                                           */
/* ------------------------------------------------------------------ */

typedef struct pkv_class_stats {
  int64_t reserved;   /* pages reserved for the class */
  int64_t in_use;     /* live pages charged to the class */
  int64_t borrowed;   /* pages beyond its reservation, from the shared part */
} pkv_class_stats;

typedef struct pkv_stats {
  size_t struct_size; /* set by pkv_stats_init(): see "Growable structs" */
  int64_t pages_total;
  int64_t pages_free;     /* neither live nor cached */
  int64_t pages_live;     /* referenced by at least one sequence */
  int64_t pages_cached;   /* refcount 0, content kept for reuse */
  int64_t host_pages_total;
  int64_t host_pages_used;
  int64_t tokens_stored;  /* sum of live sequences' lengths */
  int64_t waste_slots;    /* unused slots in live sequences' last pages */
  int64_t num_seqs;
  /* counters since creation */
  int64_t prefix_lookups;
  int64_t prefix_hit_tokens;
  int64_t evictions;
  int64_t preemptions_suggested;
  int64_t swaps_out;
  int64_t swaps_in;
  int64_t cow_copies;
  int64_t alloc_failures;
  int32_t num_classes;
  pkv_class_stats classes[PKV_MAX_CLASSES];
} pkv_stats;

PKV_API void pkv_stats_init_sized(pkv_stats *stats, size_t size);
#define pkv_stats_init(x) pkv_stats_init_sized((x), sizeof(*(x)))

/* Fills the first out->struct_size bytes (pkv_stats_init first). */
PKV_API pkv_status pkv_cache_stats(const pkv_cache *cache, pkv_stats *out);

/* Introspection of one device page, for tests, tools and debugging. */
#define PKV_PAGE_FREE 0   /* on the free list */
#define PKV_PAGE_LIVE 1   /* held by at least one sequence */
#define PKV_PAGE_CACHED 2 /* refcount 0, kept for prefix or session reuse */

typedef struct pkv_page_info {
  size_t struct_size; /* set by pkv_page_info_init(): see "Growable structs" */
  int32_t state;          /* PKV_PAGE_* */
  int32_t refcount;       /* sequences (and pending copies) holding it */
  int32_t priority_class; /* class charged (live) or attributed (cached) */
  int32_t indexed;        /* 1 when matchable in the prefix index */
} pkv_page_info;

PKV_API void pkv_page_info_init_sized(pkv_page_info *info, size_t size);
#define pkv_page_info_init(x) pkv_page_info_init_sized((x), sizeof(*(x)))

PKV_API pkv_status pkv_page_get_info(const pkv_cache *cache, int32_t page,
                                     pkv_page_info *out);

/* ------------------------------------------------------------------ */
/* Batch descriptor                                                     */
/* ------------------------------------------------------------------ */

typedef struct pkv_batch pkv_batch;

PKV_API pkv_status pkv_batch_create(pkv_cache *cache, pkv_batch **out);
PKV_API void pkv_batch_destroy(pkv_batch *batch);
PKV_API pkv_cache *pkv_batch_cache(const pkv_batch *batch);

/* Builds the descriptor of one step. q_lens[i] (NULL = all 1, decode) is
 * the number of query tokens of seqs[i]: its last q_lens[i] tokens, which
 * the engine appended before this call. Rows unchanged since the previous
 * build are not copied again. Uploads the device copy once. */
PKV_API pkv_status pkv_batch_build(pkv_batch *batch, const pkv_seq_id *seqs,
                                   int32_t num_seqs, const int32_t *q_lens);

/* Host views of the last build; valid until the next build or destroy. */
typedef struct pkv_batch_view {
  size_t struct_size; /* set by pkv_batch_view_init(): see "Growable structs" */
  int32_t num_seqs;
  int32_t max_pages;          /* row length of block_table */
  int64_t num_tokens;         /* total query tokens = q_indptr[num_seqs] */
  int32_t max_q_len, max_kv_len;
  const int32_t *block_table; /* [num_seqs][max_pages], padded with 0 */
  const int32_t *seq_lens;    /* [num_seqs] kv lengths incl. new tokens */
  const int32_t *q_indptr;    /* [num_seqs+1] */
  const int32_t *kv_indptr;   /* [num_seqs+1] (FlashInfer CSR) */
  const int32_t *kv_indices;  /* [kv_indptr[num_seqs]] */
  const int32_t *kv_last_page_len; /* [num_seqs], 0 for empty sequences */
  const int64_t *slot_mapping;     /* [num_tokens] */
} pkv_batch_view;

PKV_API void pkv_batch_view_init_sized(pkv_batch_view *view, size_t size);
#define pkv_batch_view_init(x) pkv_batch_view_init_sized((x), sizeof(*(x)))

PKV_API pkv_status pkv_batch_get_view(const pkv_batch *batch,
                                      pkv_batch_view *out);

/* Device copies of the same arrays (for handing to other kernels). */
typedef struct pkv_batch_device {
  size_t struct_size; /* set by pkv_batch_device_init(): see "Growable structs" */
  pkv_buffer *block_table, *seq_lens, *q_indptr, *kv_indptr, *kv_indices,
      *kv_last_page_len, *slot_mapping;
} pkv_batch_device;

PKV_API void pkv_batch_device_init_sized(pkv_batch_device *dev, size_t size);
#define pkv_batch_device_init(x) \
  pkv_batch_device_init_sized((x), sizeof(*(x)))

PKV_API pkv_status pkv_batch_get_device(const pkv_batch *batch,
                                        pkv_batch_device *out);

/* ------------------------------------------------------------------ */
/* Operations                                                           */
/* ------------------------------------------------------------------ */

/* Writes the K/V of the batch's new tokens into their slots of `layer`.
 * k and v hold [num_tokens][num_kv_heads][head_dim] in the cache dtype. */
PKV_API pkv_status pkv_write_kv(pkv_batch *batch, int32_t layer,
                                pkv_buffer *k, pkv_buffer *v);

/* Same, with an explicit slot list of n entries (int64 device buffer);
 * a negative slot is skipped (padding), as in vLLM's slot mapping. */
PKV_API pkv_status pkv_write_kv_slots(pkv_cache *cache, int32_t layer,
                                      pkv_buffer *k, pkv_buffer *v,
                                      pkv_buffer *slots, int64_t n);

typedef struct pkv_attn_params {
  size_t struct_size; /* set by pkv_attn_params_init(): see "Growable structs" */
  int32_t num_q_heads;   /* multiple of num_kv_heads */
  float scale;           /* 0 = 1/sqrt(head_dim) */
  int32_t causal;        /* 1 (default): query i sees j <= i + kv_len - q_len */
  int32_t window_left;   /* -1 = none; else keys j >= qpos - window_left */
  float softcap;         /* 0 = off; else s = softcap * tanh(s / softcap) */
  const float *alibi_slopes; /* host [num_q_heads]; NULL = off */
  /* Attention sinks (gpt-oss): host f32 [num_q_heads], a learned logit per
   * q head that joins the softmax denominator (not the numerator); NULL =
   * none. The LSE output then includes the sink's term. */
  const float *sinks;
} pkv_attn_params;

/* Defaults (scale 0 = 1/sqrt(head_dim), causal, no window, no softcap, no
 * ALiBi) for num_q_heads query heads, the one field without a default. */
PKV_API void pkv_attn_params_init_sized(pkv_attn_params *p, size_t size,
                                        int32_t num_q_heads);
#define pkv_attn_params_init(x, num_q_heads) \
  pkv_attn_params_init_sized((x), sizeof(*(x)), (num_q_heads))

/* Paged attention of the batch's queries over layer `layer`.
 * q, out: [num_tokens][num_q_heads][head_dim] in the cache dtype (an fp8
 * cache: PKV_ERR_QUANT_DTYPE; use pkv_kv_attention with f16/bf16/f32 q).
 * lse (may be NULL): f32 [num_tokens][num_q_heads], natural-log
 * log-sum-exp of the (scaled, capped, biased) logits; -inf for a row that
 * sees no key, whose output is zeros. */
PKV_API pkv_status pkv_attention(pkv_batch *batch, int32_t layer,
                                 const pkv_attn_params *params,
                                 pkv_buffer *q, pkv_buffer *out,
                                 pkv_buffer *lse);

/* ------------------------------------------------------------------ */
/* Kernel-level layer (vendor-neutral block-table API)                  */
/* ------------------------------------------------------------------ */

/* PKV_EXPERIMENTAL_BEGIN */
/* Attention and K/V writes over memory the caller owns: pools, block
 * tables and activations, no pkv_cache needed. An engine with its own
 * block manager uses this layer alone; pkv_write_kv and pkv_attention are
 * built on it (one path to the kernels). See doc/integration.md.
 * Structs follow the struct_size rule: initialise with the *_init macro,
 * the library reads only the first struct_size bytes. */

/* Activation tensor [tokens][heads][head_dim]: the head_dim elements of one
 * (token, head) are contiguous; tokens and heads are strided, so q may be a
 * slice of a fused QKV projection. Strides are in elements of `dtype`; the
 * offset is in bytes and must be a multiple of the element size. */
typedef struct pkv_tensor {
  size_t struct_size;
  pkv_buffer *buf;
  size_t offset;         /* bytes from the buffer's start to [0][0][0] */
  pkv_dtype dtype;       /* default PKV_DTYPE_F32 */
  int64_t token_stride;  /* elements between tokens; 0 = heads * head_dim */
  int64_t head_stride;   /* elements between heads; 0 = head_dim */
} pkv_tensor;

PKV_API void pkv_tensor_init_sized(pkv_tensor *t, size_t size);
#define pkv_tensor_init(t) pkv_tensor_init_sized((t), sizeof(*(t)))

/* Paged K/V pools of one layer. Token t of kv head h in page p starts at
 * element p*page_stride + h*head_stride + t*token_stride of k (and v); its
 * head_dim elements are contiguous. All three strides 0 = packed HND. */
typedef struct pkv_kv_view {
  size_t struct_size;
  pkv_buffer *k, *v;
  int32_t page_size, num_kv_heads, head_dim;
  int64_t num_pages;
  pkv_dtype dtype;       /* storage dtype of the pools */
  int64_t page_stride, head_stride, token_stride; /* elements */
  /* fp8 dtypes: host arrays [num_kv_heads] of K and V scales (NULL = all
   * 1; ignored for f32/f16/bf16). Each must be finite and > 0, else
   * PKV_ERR_SCALE. pkv_cache_kv_view points them at the cache's. */
  const float *k_scales, *v_scales;
  /* PKV_DTYPE_INT8: bytes from a page's start (p*page_stride) to its f32
   * scales [num_kv_heads][page_size]; a multiple of 4, inside the page */
  int64_t scale_offset;
} pkv_kv_view;

PKV_API void pkv_kv_view_init_sized(pkv_kv_view *v, size_t size);
#define pkv_kv_view_init(v) pkv_kv_view_init_sized((v), sizeof(*(v)))

/* The view of one layer of a cache (its own pools and geometry). */
PKV_API pkv_status pkv_cache_kv_view(pkv_cache *cache, int32_t layer,
                                     pkv_kv_view *out);

typedef enum pkv_table_kind {
  PKV_TABLE_DENSE = 0, /* block_table [num_seqs][max_pages] + seq_lens */
  PKV_TABLE_CSR = 1    /* kv_indptr / kv_indices / kv_last_page_len */
} pkv_table_kind;

/* The pages of each sequence of one step, as int32 device buffers, plus
 * q_indptr [num_seqs+1] (query token runs). The host scalars size the
 * launch. The host_* mirrors are optional: when given (or when the
 * buffers are host memory, CPU backend), every entry is checked before
 * anything is launched; otherwise the kernels bound every index (a page
 * outside the pool, a length past the row, a query past num_tokens never
 * read or write out of bounds, but give unspecified values). */
typedef struct pkv_kv_table {
  size_t struct_size;
  pkv_table_kind kind;
  int32_t num_seqs;
  int64_t num_tokens;    /* q_indptr[num_seqs] */
  int32_t max_q_len;     /* longest query run (1 = decode) */
  int32_t max_kv_len;    /* longest kv length */
  pkv_buffer *q_indptr;
  /* PKV_TABLE_DENSE */
  pkv_buffer *block_table, *seq_lens;
  int32_t max_pages;     /* row length of block_table */
  /* PKV_TABLE_CSR */
  pkv_buffer *kv_indptr, *kv_indices, *kv_last_page_len;
  int64_t num_kv_indices; /* entries of kv_indices */
  /* optional host copies of the same arrays */
  const int32_t *host_q_indptr, *host_block_table, *host_seq_lens;
  const int32_t *host_kv_indptr, *host_kv_indices, *host_kv_last_page_len;
} pkv_kv_table;

PKV_API void pkv_kv_table_init_sized(pkv_kv_table *t, size_t size);
#define pkv_kv_table_init(t) pkv_kv_table_init_sized((t), sizeof(*(t)))

/* The table of a built batch (device arrays + host mirrors), dense or CSR.
 * Valid until the next build or destroy. */
PKV_API pkv_status pkv_batch_get_table(const pkv_batch *batch,
                                       pkv_table_kind kind, pkv_kv_table *out);

/* Writes n tokens' K and V rows ([n][num_kv_heads][head_dim], strided,
 * in the view's dtype (copied bitwise) or in f32/f16/bf16 (converted; to
 * an fp8 view: divided by the head's scale, rounded to nearest even,
 * saturated)) into slots[i] = page * page_size + offset (int64 device
 * buffer; negative = skip). host_slots (may be NULL) is the same list on
 * the host: then every slot is range-checked before anything is written. */
PKV_API pkv_status pkv_kv_write(pkv_context *ctx, const pkv_kv_view *view,
                                pkv_buffer *slots, const int64_t *host_slots,
                                int64_t n, const pkv_tensor *k,
                                const pkv_tensor *v);

/* Paged attention of the table's queries over the view. q and out are
 * [num_tokens][num_q_heads][head_dim], strided, each in its own dtype
 * (f32, f16 or bf16, independent of the pool dtype; an fp8 q or out is
 * PKV_ERR_QUANT_DTYPE). fp8 K/V are dequantized on the fly with the view's
 * scales. lse (may be NULL):
 * f32 [num_tokens][num_q_heads], contiguous. */
PKV_API pkv_status pkv_kv_attention(pkv_context *ctx, const pkv_kv_view *view,
                                    const pkv_kv_table *table,
                                    const pkv_attn_params *params,
                                    const pkv_tensor *q, const pkv_tensor *out,
                                    pkv_buffer *lse);

/* ---- plan/run (doc/plan-run.md) ---- */

/* A plan: the split of one step's requests into key chunks sized so that
 * the grid fills the device, made once per step on the host and used by
 * every layer's run. Owned by one context; not thread-safe. */
typedef struct pkv_plan pkv_plan;

/* Options of a plan build (struct_size rule; zero = default). */
typedef struct pkv_plan_options {
  size_t struct_size;
  int32_t num_sms;        /* compute units to fill; 0 = the device's */
  int32_t blocks_per_sm;  /* concurrent blocks per unit; 0 = backend's */
  int32_t min_chunk_keys; /* smallest chunk; 0 = 256 (rounded to pages) */
  int32_t chunk_keys;     /* > 0: this chunk instead of the search */
  void *stream;           /* HIP/CUDA stream of the runs; NULL = context's */
} pkv_plan_options;

PKV_API void pkv_plan_options_init_sized(pkv_plan_options *o, size_t size);
#define pkv_plan_options_init(o) pkv_plan_options_init_sized((o), sizeof(*(o)))

/* What a build chose (struct_size rule). */
typedef struct pkv_plan_info {
  size_t struct_size;
  int64_t chunk_keys;     /* keys per chunk */
  int64_t num_items;      /* (request, chunk) items */
  int64_t grid_items;     /* items launched: num_items padded to the budget */
  int64_t budget;         /* items that fill the device */
  int32_t num_split;      /* requests cut into more than one chunk */
  int64_t partial_rows;   /* workspace rows of the split requests */
  size_t workspace_bytes; /* = pkv_plan_workspace_size */
} pkv_plan_info;

PKV_API void pkv_plan_info_init_sized(pkv_plan_info *i, size_t size);
#define pkv_plan_info_init(i) pkv_plan_info_init_sized((i), sizeof(*(i)))

PKV_API pkv_status pkv_plan_create(pkv_context *ctx, pkv_plan **out);
PKV_API void pkv_plan_destroy(pkv_plan *plan);
/* Plans the table's requests over pools of the view's geometry, with
 * these attention parameters (copied, ALiBi slopes and sinks included).
 * Needs the host mirrors of q_indptr and of the lengths (seq_lens, or
 * kv_indptr + kv_last_page_len). The table is kept by reference: its
 * device arrays must stay valid and unchanged until the next build. opts
 * may be NULL. On failure the plan is left unbuilt. */
PKV_API pkv_status pkv_plan_build(pkv_plan *plan, const pkv_kv_view *view,
                                  const pkv_kv_table *table,
                                  const pkv_attn_params *params,
                                  const pkv_plan_options *opts);
/* Bytes of the workspace buffer that every run of the plan needs (0 when
 * no request is split). */
PKV_API pkv_status pkv_plan_workspace_size(const pkv_plan *plan,
                                           size_t *bytes);
PKV_API pkv_status pkv_plan_get_info(const pkv_plan *plan,
                                     pkv_plan_info *out);
/* Attention of one layer under a built plan: view has the plan's geometry
 * (else PKV_ERR_STATE), q/out/lse as for pkv_kv_attention over the plan's
 * table, workspace at least pkv_plan_workspace_size bytes (else
 * PKV_ERR_SIZE; may be NULL when that is 0). stream: NULL = the plan's.
 * Allocates nothing; nothing is launched on any failure. */
PKV_API pkv_status pkv_attention_run(pkv_plan *plan, const pkv_kv_view *view,
                                     const pkv_tensor *q,
                                     const pkv_tensor *out, pkv_buffer *lse,
                                     pkv_buffer *workspace, void *stream);

/* ---- engine-allocated pools and DLPack (lib/pkv_dlpack.h) ---- */

/* A cache over K/V pools the engine allocated: k_bufs[l], v_bufs[l] for
 * every layer, each at least the geometry's layer_bytes and laid out as
 * desc->layout says (pkv_cache_get_geometry gives the strides). The cache
 * never frees them; they must outlive it. */
PKV_API pkv_status pkv_cache_create_over(pkv_context *ctx,
                                         const pkv_cache_desc *desc,
                                         pkv_buffer *const *k_bufs,
                                         pkv_buffer *const *v_bufs,
                                         pkv_cache **out);

struct DLManagedTensor;

/* Which pool of a layer. */
#define PKV_POOL_K 0
#define PKV_POOL_V 1

/* The pool of one layer as a DLPack tensor without a copy: shape
 * [num_pages][num_kv_heads][page_size][head_dim] (HND) or
 * [num_pages][page_size][num_kv_heads][head_dim] (NHD). The caller calls
 * (*out)->deleter(*out) when done; the memory stays the cache's. Devices:
 * kDLCPU (CPU backend), kDLCUDA / kDLROCM (HIP backend). OpenCL buffers
 * have no DLPack device: PKV_ERR_NOT_EXPORTABLE. */
PKV_API pkv_status pkv_cache_export_dlpack(pkv_cache *cache, int32_t layer,
                                           int32_t which,
                                           struct DLManagedTensor **out);

/* Arrays of the last batch build (device copies). */
typedef enum pkv_batch_array {
  PKV_BATCH_BLOCK_TABLE = 0,  /* int32 [num_seqs][max_pages] */
  PKV_BATCH_SEQ_LENS = 1,     /* int32 [num_seqs] */
  PKV_BATCH_Q_INDPTR = 2,     /* int32 [num_seqs+1] */
  PKV_BATCH_KV_INDPTR = 3,    /* int32 [num_seqs+1] */
  PKV_BATCH_KV_INDICES = 4,   /* int32 [kv_indptr[num_seqs]] */
  PKV_BATCH_KV_LAST_PAGE_LEN = 5, /* int32 [num_seqs] */
  PKV_BATCH_SLOT_MAPPING = 6  /* int64 [num_tokens] */
} pkv_batch_array;

/* One array of the last build as a DLPack tensor (no copy); valid until
 * the next build or destroy of the batch. */
PKV_API pkv_status pkv_batch_export_dlpack(pkv_batch *batch,
                                           pkv_batch_array which,
                                           struct DLManagedTensor **out);

/* PKV_EXPERIMENTAL_END */

/* PKV_EXPERIMENTAL_BEGIN */
/* ------------------------------------------------------------------ */
/* Page transfer between processes and machines (doc/disaggregation.md) */
/* ------------------------------------------------------------------ */
/* Served by the module transfer-ucx.so (UCX), loaded on first use from
 * PKV_BACKEND_PATH and the library's module directory; without it every
 * call is PKV_ERR_NO_BACKEND. Single-threaded: an endpoint and its
 * requests are used by one thread at a time, which also calls
 * pkv_xfer_progress (or pkv_xfer_wait) so that peers' requests are served. */

typedef struct pkv_xfer_endpoint pkv_xfer_endpoint;
typedef struct pkv_xfer_peer pkv_xfer_peer;
typedef struct pkv_xfer_request pkv_xfer_request;

typedef struct pkv_xfer_options {
  size_t struct_size;     /* set by pkv_xfer_options_init() */
  int64_t staging_pages;  /* pages of the registered staging buffer; bounds
                             one batch (default 64) */
  int64_t lease_ms;       /* a peer's staged batch is released after this
                             long without its acknowledgement (default 10000) */
} pkv_xfer_options;

PKV_API void pkv_xfer_options_init_sized(pkv_xfer_options *o, size_t size);
#define pkv_xfer_options_init(o) pkv_xfer_options_init_sized((o), sizeof(*(o)))

/* An endpoint of the cache: a UCX worker and its registered staging buffer.
 * opts may be NULL (defaults). The cache outlives the endpoint. */
PKV_API pkv_status pkv_xfer_endpoint_create(pkv_cache *cache,
                                            const pkv_xfer_options *opts,
                                            pkv_xfer_endpoint **out);
/* Destroys the endpoint, its peers and its requests (NULL: no-op). */
PKV_API void pkv_xfer_endpoint_destroy(pkv_xfer_endpoint *ep);
/* The connection blob the engine carries to peers over its own channel:
 * worker address, staging rkey, cache geometry, checksum. buf == NULL or a
 * small cap: PKV_ERR_SIZE with *len = the size needed. */
PKV_API pkv_status pkv_xfer_endpoint_blob(pkv_xfer_endpoint *ep, void *buf,
                                          size_t cap, size_t *len);
/* Connects to the endpoint of a peer's blob. Truncated: PKV_ERR_SIZE; not
 * a blob or corrupt (magic, checksum): PKV_ERR_INVALID; another blob
 * version: PKV_ERR_UNSUPPORTED; other dtype, page size, head dim, kv heads,
 * layers or fp8 scales: PKV_ERR_INCOMPATIBLE (HND vs NHD is converted). */
PKV_API pkv_status pkv_xfer_connect(pkv_xfer_endpoint *ep, const void *blob,
                                    size_t len, pkv_xfer_peer **out);
/* Fetches the pages of the chain keys[0..n) of namespace ns from the peer
 * into this cache (parent: key of the page before keys[0]; NULL = root),
 * in batches of the peer's staging size, then imports them all at once:
 * all or nothing. Completion statuses: those of pkv_pages_hold on the peer
 * (PKV_ERR_NOT_FOUND: unknown or evicted key) and of pkv_pages_import here
 * (PKV_ERR_NO_PAGES, ...), PKV_ERR_PEER. */
PKV_API pkv_status pkv_xfer_fetch(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                                  uint64_t ns, const pkv_page_key *parent,
                                  const pkv_page_key *keys, int64_t n,
                                  pkv_xfer_request **out);
/* Hands the sequence over to the peer (prefill -> decode): the peer
 * imports it as a new sequence opened with desc (NULL: class 0, namespace
 * 0), reported by its pkv_xfer_poll_arrivals with `tag`, and this
 * request's result carries its id. The sequence's K/V must fit this
 * endpoint's staging buffer (else PKV_ERR_SIZE). */
PKV_API pkv_status pkv_xfer_push_seq(pkv_xfer_endpoint *ep,
                                     pkv_xfer_peer *peer, pkv_seq_id seq,
                                     const pkv_seq_desc *desc, uint64_t tag,
                                     pkv_xfer_request **out);
/* Serves peers and advances this endpoint's requests; never blocks. */
PKV_API pkv_status pkv_xfer_progress(pkv_xfer_endpoint *ep);
/* Sequences that peers pushed into this cache since the last call:
 * up to max (tag, id) pairs; *n_out = how many were written. */
PKV_API pkv_status pkv_xfer_poll_arrivals(pkv_xfer_endpoint *ep,
                                          uint64_t *tags, pkv_seq_id *seqs,
                                          int64_t max, int64_t *n_out);
/* *done = 1 once the request completed; then *status is its outcome. */
PKV_API pkv_status pkv_xfer_test(pkv_xfer_request *req, int32_t *done,
                                 pkv_status *status);
/* Progresses until the request completes and returns its outcome, or
 * PKV_ERR_TIMEOUT after timeout_ms (< 0: no limit; the request goes on). */
PKV_API pkv_status pkv_xfer_wait(pkv_xfer_request *req, int64_t timeout_ms);
/* A completed request's result: pages imported and skipped (fetch), the
 * peer's new sequence id (push; -1 otherwise). Outputs may be NULL. */
PKV_API pkv_status pkv_xfer_request_result(const pkv_xfer_request *req,
                                           int64_t *n_imported,
                                           int64_t *n_skipped,
                                           pkv_seq_id *remote_seq);
/* Frees a request; an unfinished one is cancelled (the cache unchanged). */
PKV_API void pkv_xfer_request_free(pkv_xfer_request *req);

/* PKV_EXPERIMENTAL_END */

#ifdef __cplusplus
}
#endif

#endif /* PAGEDKV_H */
