/* SPDX-License-Identifier: Apache-2.0 */
/* The interface between libpagedkv's pkv_xfer_* calls (lib/xfer.c) and the
 * transfer module transfer-ucx.so (net/). libpagedkv does not link UCX: it
 * dlopens the module on first use and calls through this table. The
 * module links libpagedkv and uses only its public API (the page
 * hold/read/import calls), plus the host services below for error
 * messages and allocations (so fault injection reaches the module too).
 *
 * Versioning: PKV_XFER_MODULE_VERSION covers this header; the loader
 * refuses a module of another version (PKV_ERR_NO_BACKEND). Members are
 * only ever added at the end, read when the other side's struct_size
 * covers them. */
#ifndef PKV_XFER_MODULE_H
#define PKV_XFER_MODULE_H

#include "pagedkv.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PKV_XFER_MODULE_VERSION 1u
#define PKV_XFER_MODULE_ENTRY "pkv_xfer_module_v1"
#define PKV_XFER_MODULE_FILE "transfer-ucx.so"

typedef struct pkv_xfer_host {
  uint32_t version;     /* PKV_XFER_MODULE_VERSION of the library */
  uint32_t struct_size; /* sizeof(pkv_xfer_host) of the library */
  /* records the error of a call on the cache's context (pkv_last_error) */
  pkv_status (*vfail)(const pkv_context *ctx, pkv_status st, const char *fmt,
                      va_list ap);
  void *(*malloc_fn)(size_t n);
  void *(*calloc_fn)(size_t n, size_t size);
  void (*free_fn)(void *p);
} pkv_xfer_host;

typedef struct pkv_xfer_module {
  uint32_t version;     /* PKV_XFER_MODULE_VERSION the module was built for */
  uint32_t struct_size; /* sizeof(pkv_xfer_module) of the module */
  const char *name;     /* "ucx" */
  const char *build_info;
  /* The public calls, arguments already checked for NULL by lib/xfer.c. */
  pkv_status (*endpoint_create)(pkv_cache *cache, const pkv_xfer_options *o,
                                pkv_xfer_endpoint **out);
  void (*endpoint_destroy)(pkv_xfer_endpoint *ep);
  pkv_status (*endpoint_blob)(pkv_xfer_endpoint *ep, void *buf, size_t cap,
                              size_t *len);
  pkv_status (*connect)(pkv_xfer_endpoint *ep, const void *blob, size_t len,
                        pkv_xfer_peer **out);
  pkv_status (*fetch)(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer, uint64_t ns,
                      const pkv_page_key *parent, const pkv_page_key *keys,
                      int64_t n, pkv_xfer_request **out);
  pkv_status (*push_seq)(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                         pkv_seq_id seq, const pkv_seq_desc *desc, uint64_t tag,
                         pkv_xfer_request **out);
  pkv_status (*progress)(pkv_xfer_endpoint *ep);
  pkv_status (*poll_arrivals)(pkv_xfer_endpoint *ep, uint64_t *tags,
                              pkv_seq_id *seqs, int64_t max, int64_t *n_out);
  pkv_status (*test)(pkv_xfer_request *req, int32_t *done, pkv_status *st);
  pkv_status (*wait)(pkv_xfer_request *req, int64_t timeout_ms);
  pkv_status (*result)(const pkv_xfer_request *req, int64_t *n_imported,
                       int64_t *n_skipped, pkv_seq_id *remote_seq);
  void (*request_free)(pkv_xfer_request *req);
} pkv_xfer_module;

typedef const pkv_xfer_module *(*pkv_xfer_module_fn)(const pkv_xfer_host *h);

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
const pkv_xfer_module *pkv_xfer_module_v1(const pkv_xfer_host *host);

#endif
