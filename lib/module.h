/* SPDX-License-Identifier: Apache-2.0 */
/* The interface between libpagedkv and its backend modules
 * (backend-opencl.so, backend-hip.so, backend-cuda.so in $(pkglibdir)).
 *
 * A module exports exactly one symbol, PKV_MODULE_ENTRY. libpagedkv calls
 * it once, right after dlopen, with a table of host services (error
 * reporting, host allocation), and gets back a description of the module.
 * The module links nothing of libpagedkv: every pkv__fail/pkv__malloc in
 * the backend sources goes through the host table (lib/module_host.c), so
 * libpagedkv exports only its public API, and the allocation fault
 * injection of the tests reaches the modules' allocations too.
 *
 * Versioning: PKV_MODULE_ABI_VERSION covers this header, backend.h and the
 * layout of struct pkv_context / pkv_buffer (internal.h). Bump it on any
 * incompatible change; the loader refuses a module of another version with
 * PKV_ERR_NO_BACKEND. Members added at the end of a struct are optional:
 * each side reads a member only when the other's struct_size covers it. */
#ifndef PKV_MODULE_H
#define PKV_MODULE_H

#include "backend.h"

#include <stddef.h>
#include <stdint.h>

#define PKV_MODULE_ABI_VERSION 4u /* 2: pkv_context lock, id, backend; backend thread_safe; 3: pkv_attn_args.plan; 4: plan exec merges/sinks, ops mem_upload_async and decode_blocks_per_cu, pkv_context attn_cache */
#define PKV_MODULE_ENTRY "pkv_backend_module_v1"

/* What libpagedkv gives a module. */
typedef struct pkv_host_services {
  uint32_t abi_version;  /* PKV_MODULE_ABI_VERSION of the library */
  uint32_t struct_size;  /* sizeof(pkv_host_services) of the library */
  pkv_status (*vfail)(const pkv_context *ctx, pkv_status st, const char *fmt,
                      va_list ap);
  void (*clear_error)(const pkv_context *ctx);
  void (*error_to_thread)(const pkv_context *ctx);
  void *(*malloc_fn)(size_t n);
  void *(*calloc_fn)(size_t n, size_t size);
  void *(*realloc_fn)(void *p, size_t n);
  void (*free_fn)(void *p);
  /* members added later go here, and are optional for the module */
} pkv_host_services;

/* What a module gives libpagedkv. */
typedef struct pkv_backend_module {
  uint32_t abi_version;   /* PKV_MODULE_ABI_VERSION the module was built for */
  uint32_t struct_size;   /* sizeof(pkv_backend_module) of the module */
  /* sizeof the internal structs the module was compiled against: a module
   * of another build with the same ABI number is still caught */
  uint32_t context_size, buffer_size, ops_size;
  const char *name;       /* "opencl", "hip" (AMD) or "cuda" (NVIDIA) */
  const pkv_backend_ops *ops;
  /* ---- optional members (check struct_size before reading) ---- */
  const char *build_info; /* compiler and device targets, or NULL */
} pkv_backend_module;

typedef const pkv_backend_module *(*pkv_backend_module_fn)(
    const pkv_host_services *host);

/* The module's entry point (defined by lib/module_entry.c in the module). */
#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
const pkv_backend_module *pkv_backend_module_v1(const pkv_host_services *host);

#endif
