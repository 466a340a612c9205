/* SPDX-License-Identifier: Apache-2.0 */
/* Backend registry and contexts. */
#include "alloc.h"
#include "backend.h"
#include "plan.h"
#include "struct_size.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const backend_names[PKV_BACKEND_COUNT] = {"auto", "cpu",
                                                             "opencl", "hip"};

#ifndef PKV_MODULES
/* --disable-modules: the backends are linked in. (A module build finds
 * them in lib/module_loader.c.) */
const pkv_backend_ops *pkv__backend_ops_for(pkv_backend_kind kind) {
  switch (kind) {
  case PKV_BACKEND_CPU: return &pkv__cpu_backend;
#ifdef PKV_HAVE_OPENCL
  case PKV_BACKEND_OPENCL: return &pkv__opencl_backend;
#endif
#ifdef PKV_HAVE_HIP
  case PKV_BACKEND_HIP: return &pkv__hip_backend;
#endif
  default: return NULL;
  }
}

pkv_status pkv__backend_get(pkv_backend_kind kind, const pkv_backend_ops **out) {
  *out = pkv__backend_ops_for(kind);
  if (*out) return PKV_OK;
  if (!pkv_backend_name(kind))
    return pkv__fail(NULL, PKV_ERR_INVALID, "backend %d is unknown", (int)kind);
  return pkv__fail(NULL, PKV_ERR_NO_BACKEND,
                   "backend '%s' is not compiled into this library "
                   "(built with --disable-modules)",
                   pkv_backend_name(kind));
}
#endif

/* f32, f16, bf16: what a backend without caps (or without a word on
 * dtypes) runs. */
#define PKV__FLOAT_DTYPES 0x7u

int pkv__backend_has_dtype(pkv_context *ctx, pkv_dtype dtype) {
  pkv_backend_caps c;
  memset(&c, 0, sizeof c);
  c.dtypes = PKV__FLOAT_DTYPES;
  c.max_page_size = INT32_MAX;
  if (ctx->ops->caps) ctx->ops->caps(ctx, &c);
  return (unsigned)dtype < 32 && (c.dtypes & (1u << (unsigned)dtype)) != 0;
}

pkv_status pkv__backend_check_caps(pkv_context *ctx, pkv_dtype dtype,
                                   int32_t head_dim, int32_t page_size) {
  if (!pkv__backend_has_dtype(ctx, dtype))
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                     "desc->dtype %d is not supported by the %s backend",
                     (int)dtype, ctx->ops->name);
  if (!ctx->ops->caps) return PKV_OK;
  pkv_backend_caps c;
  memset(&c, 0, sizeof c);
  c.dtypes = PKV__FLOAT_DTYPES;
  c.max_page_size = INT32_MAX;
  ctx->ops->caps(ctx, &c);
  if (!(c.dtypes & (1u << (unsigned)dtype)))
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                     "desc->dtype %d is not supported by the %s backend "
                     "(dtype mask 0x%x)",
                     (int)dtype, ctx->ops->name, c.dtypes);
  if (c.num_head_dims > 0) {
    int n = c.num_head_dims < PKV_CAPS_MAX_HEAD_DIMS ? c.num_head_dims
                                                     : PKV_CAPS_MAX_HEAD_DIMS;
    int found = 0;
    char list[128] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++) {
      if (c.head_dims[i] == head_dim) found = 1;
      int w = snprintf(list + len, sizeof list - len, "%s%d", i ? ", " : "",
                       c.head_dims[i]);
      if (w > 0 && (size_t)w < sizeof list - len) len += (size_t)w;
    }
    if (!found)
      return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                       "desc->head_dim %d is not supported by the %s backend "
                       "(it runs %s)",
                       head_dim, ctx->ops->name, list);
  }
  if (page_size > c.max_page_size)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                     "desc->page_size %d exceeds the %s backend's %d",
                     page_size, ctx->ops->name, c.max_page_size);
  return PKV_OK;
}

const char *pkv_backend_name(pkv_backend_kind kind) {
  if ((int)kind < 0 || (int)kind >= PKV_BACKEND_COUNT) return NULL;
  return backend_names[kind];
}

static int name_eq(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

pkv_status pkv_backend_from_name(const char *name, pkv_backend_kind *out) {
  if (!name) return pkv__fail(NULL, PKV_ERR_NULL, "name is NULL");
  if (!out) return pkv__fail(NULL, PKV_ERR_NULL, "out is NULL");
  for (int i = 0; i < PKV_BACKEND_COUNT; i++)
    if (name_eq(name, backend_names[i])) {
      *out = (pkv_backend_kind)i;
      return PKV_OK;
    }
  /* "cuda" names the HIP backend built with nvcc. */
  if (name_eq(name, "cuda")) {
    *out = PKV_BACKEND_HIP;
    return PKV_OK;
  }
  return pkv__fail(NULL, PKV_ERR_INVALID,
                  "backend name '%s' is not one of auto, cpu, opencl, hip",
                  name);
}

int pkv_backend_available(pkv_backend_kind kind) {
  /* through pkv__backend_get, so that a module that does not load leaves
   * its reason in pkv_last_error(NULL) */
  const pkv_backend_ops *ops;
  if ((int)kind <= PKV_BACKEND_AUTO || (int)kind >= PKV_BACKEND_COUNT) return 0;
  return pkv__backend_get(kind, &ops) == PKV_OK;
}

pkv_status pkv_list_devices(pkv_backend_kind backend, pkv_device_info *out,
                            int capacity, int *count) {
  if (!count) return pkv__fail(NULL, PKV_ERR_NULL, "count is NULL");
  if (capacity < 0)
    return pkv__fail(NULL, PKV_ERR_INVALID, "capacity %d is negative", capacity);
  if (capacity > 0 && !out)
    return pkv__fail(NULL, PKV_ERR_NULL, "out is NULL with capacity %d",
                    capacity);
  if (backend == PKV_BACKEND_AUTO)
    return pkv__fail(NULL, PKV_ERR_INVALID,
                    "backend AUTO names no backend to list; name one");
  if (!pkv_backend_name(backend))
    return pkv__fail(NULL, PKV_ERR_INVALID, "backend %d is unknown",
                     (int)backend);
  const pkv_backend_ops *ops;
  pkv_status st = pkv__backend_get(backend, &ops);
  if (st != PKV_OK) return st;
  if (capacity == 0) return ops->list_devices(NULL, 0, count);
  /* The caller's array has its own element size (out[0].struct_size):
   * list into one of ours, then copy each entry at the caller's stride. */
  st = pkv__struct_out_check(NULL, "out[0]", out, PKV__V1_DEVICE_INFO);
  if (st != PKV_OK) return st;
  const size_t stride = pkv__struct_size_of(out);
  int total = 0;
  if ((st = ops->list_devices(NULL, 0, &total)) != PKV_OK) return st;
  int n = total < capacity ? total : capacity;
  pkv_device_info *tmp = pkv__calloc(n > 0 ? (size_t)n : 1, sizeof *tmp);
  if (!tmp)
    return pkv__fail(NULL, PKV_ERR_NO_MEMORY, "device list of %d entries", n);
  if ((st = ops->list_devices(tmp, n, &total)) == PKV_OK) {
    for (int i = 0; i < n; i++) {
      char *dst = (char *)out + (size_t)i * stride;
      memcpy(dst, &stride, sizeof stride);
      pkv__struct_out(dst, &tmp[i], sizeof tmp[i]);
    }
    *count = total;
  }
  pkv__free(tmp);
  return st;
}

/* ---- serialised operations -------------------------------------------
 * A backend with mutable per-context state (OpenCL: programs built on first
 * use, grown scratch buffers, kernel objects whose arguments are set before
 * each launch; HIP: grown scratch and pinned staging) is reached through a
 * twin of its table whose entries hold the context's lock around the call.
 * So one context may be shared by threads (doc/api.md "Threads") whatever
 * the backend, and a thread-safe backend (CPU) pays nothing. The lock is
 * recursive: a backend may call back into its own table. */

#define LOCKED(ctx, call)                                                      \
  do {                                                                         \
    pthread_mutex_lock(&(ctx)->lock);                                          \
    pkv_status st_ = (call);                                                   \
    pthread_mutex_unlock(&(ctx)->lock);                                        \
    return st_;                                                                \
  } while (0)

static pkv_status s_mem_alloc(pkv_context *ctx, size_t bytes, void **native) {
  LOCKED(ctx, ctx->backend->mem_alloc(ctx, bytes, native));
}
static void s_mem_free(pkv_context *ctx, void *native) {
  pthread_mutex_lock(&ctx->lock);
  ctx->backend->mem_free(ctx, native);
  pthread_mutex_unlock(&ctx->lock);
}
static pkv_status s_mem_upload(pkv_context *ctx, void *native, size_t offset,
                               const void *src, size_t bytes) {
  LOCKED(ctx, ctx->backend->mem_upload(ctx, native, offset, src, bytes));
}
static pkv_status s_mem_download(pkv_context *ctx, void *native, size_t offset,
                                 void *dst, size_t bytes) {
  LOCKED(ctx, ctx->backend->mem_download(ctx, native, offset, dst, bytes));
}
static pkv_status s_mem_copy(pkv_context *ctx, void *dst, size_t dst_offset,
                             void *src, size_t src_offset, size_t bytes) {
  LOCKED(ctx, ctx->backend->mem_copy(ctx, dst, dst_offset, src, src_offset,
                                     bytes));
}
static pkv_status s_write_kv(pkv_context *ctx, const pkv_write_args *a) {
  LOCKED(ctx, ctx->backend->write_kv(ctx, a));
}
static pkv_status s_attention(pkv_context *ctx, const pkv_attn_args *a) {
  LOCKED(ctx, ctx->backend->attention(ctx, a));
}
static pkv_status s_copy_pages(pkv_context *ctx, const pkv_copy_args *a) {
  LOCKED(ctx, ctx->backend->copy_pages(ctx, a));
}
static pkv_status s_pages_to_host(pkv_context *ctx,
                                  const pkv_host_move_args *a) {
  LOCKED(ctx, ctx->backend->pages_to_host(ctx, a));
}
static pkv_status s_pages_from_host(pkv_context *ctx,
                                    const pkv_host_move_args *a) {
  LOCKED(ctx, ctx->backend->pages_from_host(ctx, a));
}
static pkv_status s_mem_upload_async(pkv_context *ctx, void *native,
                                     size_t offset, const void *src,
                                     size_t bytes, void *stream) {
  LOCKED(ctx, ctx->backend->mem_upload_async(ctx, native, offset, src, bytes,
                                             stream));
}
static int s_decode_blocks_per_cu(pkv_context *ctx, int32_t head_dim,
                                  pkv_dtype dtype, int32_t group) {
  pthread_mutex_lock(&ctx->lock);
  int n = ctx->backend->decode_blocks_per_cu(ctx, head_dim, dtype, group);
  pthread_mutex_unlock(&ctx->lock);
  return n;
}

/* A context and its twin table in one allocation: the twin belongs to the
 * context (no global table to build, whichever backend or module the
 * context runs). ctx is the first member, so freeing ctx frees both. */
typedef struct context_block {
  pkv_context ctx;
  pkv_backend_ops twin;
} context_block;

/* The table ctx calls through. An absent operation stays absent (NULL), so
 * "not implemented" checks see the same table shape. */
#define TWIN(f) t->f = b->f ? s_##f : NULL
static const pkv_backend_ops *ops_for_context(context_block *blk,
                                              const pkv_backend_ops *b) {
  if (b->thread_safe) return b;
  pkv_backend_ops *t = &blk->twin;
  *t = *b;
  TWIN(mem_alloc); TWIN(mem_free); TWIN(mem_upload); TWIN(mem_download);
  TWIN(mem_copy); TWIN(write_kv); TWIN(attention); TWIN(copy_pages);
  TWIN(pages_to_host); TWIN(pages_from_host); TWIN(mem_upload_async);
  TWIN(decode_blocks_per_cu);
  return t;
}
#undef TWIN

static bool init_lock(pthread_mutex_t *m) {
  pthread_mutexattr_t at;
  if (pthread_mutexattr_init(&at) != 0) return false;
  bool ok = pthread_mutexattr_settype(&at, PTHREAD_MUTEX_RECURSIVE) == 0 &&
            pthread_mutex_init(m, &at) == 0;
  pthread_mutexattr_destroy(&at);
  return ok;
}

/* Context ids: 0 is never handed out (error.c uses it for "no slot"). */
static atomic_uint_fast64_t next_context_id = 1;

/* AUTO prefers a real GPU: HIP, then an OpenCL GPU, then the CPU reference.
 * An OpenCL CPU device (PoCL) is not chosen automatically: the CPU backend
 * is the reference and the safer default there. */
static pkv_backend_kind auto_backend(void) {
  pkv_device_info info[16];
  int n = 0;
  const pkv_backend_ops *ops = pkv__backend_ops_for(PKV_BACKEND_HIP);
  if (ops && ops->list_devices(info, 16, &n) == PKV_OK && n > 0)
    return PKV_BACKEND_HIP;
  ops = pkv__backend_ops_for(PKV_BACKEND_OPENCL);
  if (ops && ops->list_devices(info, 16, &n) == PKV_OK) {
    for (int i = 0; i < n && i < 16; i++)
      if (info[i].type == PKV_DEVICE_GPU) return PKV_BACKEND_OPENCL;
  }
  return PKV_BACKEND_CPU;
}

pkv_status pkv_context_create(const pkv_context_desc *desc, pkv_context **out) {
  if (!out) return pkv__fail(NULL, PKV_ERR_NULL, "out is NULL");
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  if (desc) {
    pkv_status st = pkv__struct_in(NULL, "desc", desc, PKV__V1_CONTEXT_DESC,
                                   &d, sizeof d);
    if (st != PKV_OK) return st;
  }
  if ((int)d.backend < 0 || (int)d.backend >= PKV_BACKEND_COUNT)
    return pkv__fail(NULL, PKV_ERR_INVALID, "desc->backend %d is unknown",
                    (int)d.backend);
  if (d.device < -1)
    return pkv__fail(NULL, PKV_ERR_INVALID, "desc->device %d is negative",
                    d.device);
  if (d.platform < -1)
    return pkv__fail(NULL, PKV_ERR_RANGE,
                    "desc->platform %d is below -1 (-1 = any platform)",
                    d.platform);
  if (d.flags & ~PKV_CTX_KNOWN_FLAGS)
    return pkv__fail(NULL, PKV_ERR_INVALID,
                    "desc->flags 0x%x has unknown bits 0x%x (known: 0x%x)",
                    d.flags, d.flags & ~PKV_CTX_KNOWN_FLAGS,
                    PKV_CTX_KNOWN_FLAGS);
  if (d.cpu_threads < 0)
    return pkv__fail(NULL, PKV_ERR_INVALID, "desc->cpu_threads %d is negative",
                    d.cpu_threads);
  if (d.cpu_threads > PKV_MAX_CPU_THREADS)
    return pkv__fail(NULL, PKV_ERR_RANGE,
                    "desc->cpu_threads %d exceeds PKV_MAX_CPU_THREADS %d",
                    d.cpu_threads, PKV_MAX_CPU_THREADS);
  pkv_backend_kind kind = d.backend;
  if (kind == PKV_BACKEND_AUTO) {
    const char *env = getenv("PKV_BACKEND");
    if (env && *env) {
      pkv_status st = pkv_backend_from_name(env, &kind);
      if (st != PKV_OK)
        return pkv__fail(NULL, st,
                        "PKV_BACKEND='%s' is not one of auto, cpu, opencl, hip",
                        env);
    }
    if (kind == PKV_BACKEND_AUTO) kind = auto_backend();
  }
  const pkv_backend_ops *ops;
  pkv_status gst = pkv__backend_get(kind, &ops);
  if (gst != PKV_OK) return gst;
  context_block *blk = pkv__calloc(1, sizeof *blk);
  if (!blk) return pkv__fail(NULL, PKV_ERR_NO_MEMORY, "context allocation");
  pkv_context *ctx = &blk->ctx;
  if (!init_lock(&ctx->lock)) {
    pkv__free(ctx);
    return pkv__fail(NULL, PKV_ERR_NO_MEMORY, "context lock");
  }
  ctx->id = atomic_fetch_add(&next_context_id, 1);
  ctx->backend = ops;
  ctx->ops = ops_for_context(blk, ops);
  ctx->kind = kind;
  ctx->desc = d;
  d.backend = kind;
  ctx->info.backend = kind;
  ctx->info.index = d.device < 0 ? 0 : d.device;
  pkv_status st = ops->init(ctx);
  if (st != PKV_OK) {
    /* Move the backend's message to the thread, where the caller finds it
     * once the context is gone. */
    pkv__error_to_thread(ctx);
    pthread_mutex_destroy(&ctx->lock);
    pkv__free(ctx);
    return st;
  }
  /* The description's strings belong to the caller; keep no pointer. */
  ctx->desc.device_name = NULL;
  ctx->desc.cache_dir = NULL;
  *out = ctx;
  return PKV_OK;
}

void pkv_context_destroy(pkv_context *ctx) {
  if (!ctx) return;
  pkv__attn_cache_free(ctx); /* its buffers first: the device is still open */
  if (ctx->ops && ctx->ops->fini) ctx->ops->fini(ctx);
  pthread_mutex_destroy(&ctx->lock);
  pkv__free(ctx);
}

pkv_backend_kind pkv_context_backend(const pkv_context *ctx) {
  return ctx ? ctx->kind : PKV_BACKEND_AUTO;
}

pkv_status pkv_context_device_info(pkv_context *ctx, pkv_device_info *out) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st = pkv__struct_out_check(ctx, "out", out, PKV__V1_DEVICE_INFO);
  if (st != PKV_OK) return st;
  pkv__struct_out(out, &ctx->info, sizeof ctx->info);
  return PKV_OK;
}

pkv_status pkv_context_synchronize(pkv_context *ctx) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  return ctx->ops->synchronize(ctx);
}
