/* SPDX-License-Identifier: Apache-2.0 */
/* The module side of lib/module.h, compiled into every backend module
 * (one object per module: the build defines PKV_MODULE_OPS, the backend's
 * ops struct, and PKV_MODULE_NAME). It holds the module's one exported
 * symbol, and the internal functions the backend sources call
 * (pkv__fail, pkv__malloc, ...), forwarded to libpagedkv's host services:
 * error messages land in the context the library reads them from, and
 * host allocations count for the library's fault injection. */
#include "alloc.h"
#include "module.h"

#if !defined(PKV_MODULE_OPS) || !defined(PKV_MODULE_NAME)
#error "build with -DPKV_MODULE_OPS=<ops struct> -DPKV_MODULE_NAME=<name>"
#endif
/* A test module claims another ABI version to check the loader's refusal. */
#ifndef PKV_MODULE_ABI_CLAIMED
#define PKV_MODULE_ABI_CLAIMED PKV_MODULE_ABI_VERSION
#endif
#ifndef PKV_MODULE_BUILD_INFO
#define PKV_MODULE_BUILD_INFO NULL
#endif

#include <stdarg.h>
#include <stdlib.h>

extern const pkv_backend_ops PKV_MODULE_OPS;

/* Set once by the entry point, before the library calls anything else of
 * the module (the loader runs it under pthread_once). */
static const pkv_host_services *host;

static const pkv_backend_module module_desc = {
    .abi_version = PKV_MODULE_ABI_CLAIMED,
    .struct_size = sizeof(pkv_backend_module),
    .context_size = sizeof(struct pkv_context),
    .buffer_size = sizeof(struct pkv_buffer),
    .ops_size = sizeof(pkv_backend_ops),
    .name = PKV_MODULE_NAME,
    .ops = &PKV_MODULE_OPS,
    .build_info = PKV_MODULE_BUILD_INFO,
};

const pkv_backend_module *pkv_backend_module_v1(const pkv_host_services *h) {
  /* A library of another interface version: describe ourselves (so the
   * loader can name both versions) but never call through its table. */
  if (h && h->abi_version == PKV_MODULE_ABI_VERSION &&
      h->struct_size >= sizeof(pkv_host_services))
    host = h;
  return &module_desc;
}

pkv_status pkv__vfail(const pkv_context *ctx, pkv_status st, const char *fmt,
                      va_list ap) {
  return host ? host->vfail(ctx, st, fmt, ap) : st;
}

pkv_status pkv__fail(const pkv_context *ctx, pkv_status st, const char *fmt,
                     ...) {
  va_list ap;
  va_start(ap, fmt);
  pkv__vfail(ctx, st, fmt, ap);
  va_end(ap);
  return st;
}

void pkv__clear_error(const pkv_context *ctx) {
  if (host) host->clear_error(ctx);
}

void pkv__error_to_thread(const pkv_context *ctx) {
  if (host) host->error_to_thread(ctx);
}

void *pkv__malloc(size_t n) { return host ? host->malloc_fn(n) : NULL; }
void *pkv__calloc(size_t n, size_t size) {
  return host ? host->calloc_fn(n, size) : NULL;
}
void *pkv__realloc(void *p, size_t n) {
  return host ? host->realloc_fn(p, n) : NULL;
}
void pkv__free(void *p) {
  if (host) host->free_fn(p);
}
