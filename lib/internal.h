/* SPDX-License-Identifier: Apache-2.0 */
/* Internal declarations shared by every part of the library. */
#ifndef PKV_INTERNAL_H
#define PKV_INTERNAL_H

/* configure's results (PKV_HAVE_OPENCL, PKV_HAVE_HIP) decide which
 * backends lib/context.c registers. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "pagedkv.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#define PKV_ERRMSG_LEN 2048

typedef struct pkv_backend_ops pkv_backend_ops;

/* Every PKV_CTX_* flag this library knows; others are refused, so that a
 * flag of a newer header is never silently ignored. */
#define PKV_CTX_KNOWN_FLAGS (PKV_CTX_NO_BINARY_CACHE)

struct pkv_context {
  /* The table every caller goes through: the backend's own, or for a
   * backend that is not thread-safe its serialised twin (context.c), whose
   * entries take `lock` around the call into `backend`. */
  const pkv_backend_ops *ops;
  const pkv_backend_ops *backend;
  pthread_mutex_t lock;      /* recursive; see doc/api.md "Threads" */
  void *impl;                /* backend private state */
  pkv_backend_kind kind;
  pkv_device_info info;
  pkv_context_desc desc;     /* copy; string pointers not kept */
  /* Unique over the process's life (never reused, unlike the address): the
   * key of this context's error messages, which are kept per thread
   * (error.c), so threads sharing a context never see each other's. */
  uint64_t id;
  /* The plan and workspace of the unplanned attention calls on device
   * backends (plan.c), made on first use, grown, freed with the context;
   * used under `lock`. */
  struct pkv__attn_cache *attn_cache;
};

struct pkv_buffer {
  pkv_context *ctx;
  void *native;   /* device pointer, cl_mem or host pointer */
  size_t bytes;
  bool owned;     /* allocated by pagedkv: freed on destroy */
  bool view;      /* owned by a cache: destroy is a no-op */
  bool aligned16; /* native address 16-byte aligned (checked once, here):
                   * the vector kernels need it, others get a variant */
};

/* Records the calling thread's message for ctx (or its context-less
 * message when ctx is NULL) and returns st, so that callers can write
 * `return pkv__fail(ctx, ...)`. */
pkv_status pkv__fail(const pkv_context *ctx, pkv_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
pkv_status pkv__vfail(const pkv_context *ctx, pkv_status st, const char *fmt,
                     va_list ap);
/* Clears the message (called on entry by nothing: messages persist until the
 * next error, as errno does). */
void pkv__clear_error(const pkv_context *ctx);
/* Copies ctx's message to the calling thread's (before ctx is freed). */
void pkv__error_to_thread(const pkv_context *ctx);

/* Checked size arithmetic: false on overflow. */
static inline bool pkv__mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > (size_t)-1 / a) return false;
  *out = a * b;
  return true;
}
static inline bool pkv__add_size(size_t a, size_t b, size_t *out) {
  if (b > (size_t)-1 - a) return false;
  *out = a + b;
  return true;
}
/* a * b + c, false when any step overflows. */
static inline bool pkv__muladd_size(size_t a, size_t b, size_t c, size_t *out) {
  size_t p;
  return pkv__mul_size(a, b, &p) && pkv__add_size(p, c, out);
}
/* a * b * c, false on overflow. */
static inline bool pkv__mul3_size(size_t a, size_t b, size_t c, size_t *out) {
  size_t p;
  return pkv__mul_size(a, b, &p) && pkv__mul_size(p, c, out);
}
static inline bool pkv__mul_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool pkv__add_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* Buffer helpers for the library's own device arrays. A view buffer is
 * created around native memory the cache owns. */
pkv_status pkv__buffer_make_view(pkv_context *ctx, void *native, size_t bytes,
                                pkv_buffer **out);
void pkv__buffer_free_view(pkv_buffer *buf);

/* Quantization scales s[0..n) are finite and > 0 (s NULL: all 1), else
 * PKV_ERR_SCALE naming name[h]. */
pkv_status pkv__check_scales(pkv_context *ctx, const float *s, int32_t n,
                             const char *name);

#endif
