/* SPDX-License-Identifier: Apache-2.0 */
/* pkv_xfer_*: page transfer between processes. libpagedkv does not link a
 * transport: the calls load transfer-ucx.so on first use (same search as
 * the backend modules: the absolute directories of PKV_BACKEND_PATH, then
 * $(pkglibdir); dlopen RTLD_NOW | RTLD_LOCAL, once per process) and
 * dispatch through its versioned table (lib/xfer_module.h). Without the
 * module every call is PKV_ERR_NO_BACKEND, saying why. */
#include "alloc.h"
#include "internal.h"
#include "struct_size.h"
#include "xfer_module.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PKV_MODULES
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>
#endif

/* Every request, peer and endpoint of the module begins with its
 * endpoint's pointer to the cache's context, so errors go to the right
 * pkv_last_error. */

static const pkv_xfer_module *xmod;
static char xmod_err[1024] = "transfer module not loaded";

#ifdef PKV_MODULES
static pthread_once_t xmod_once = PTHREAD_ONCE_INIT;

static pkv_status host_vfail(const pkv_context *ctx, pkv_status st,
                             const char *fmt, va_list ap) {
  return pkv__vfail(ctx, st, fmt, ap);
}

static const pkv_xfer_host xhost = {
    .version = PKV_XFER_MODULE_VERSION,
    .struct_size = sizeof(pkv_xfer_host),
    .vfail = host_vfail,
    .malloc_fn = pkv__malloc,
    .calloc_fn = pkv__calloc,
    .free_fn = pkv__free,
};

/* 1 loaded, 0 absent, -1 present but unusable (reported, not skipped). */
static int try_path(const char *dir, size_t len) {
  char path[4096];
  if (len == 0 || dir[0] != '/') return 0; /* relative: never searched */
  int n = snprintf(path, sizeof path, "%.*s/%s", (int)len, dir,
                   PKV_XFER_MODULE_FILE);
  if (n < 0 || (size_t)n >= sizeof path || access(path, F_OK) != 0) return 0;
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(xmod_err, sizeof xmod_err, "%.900s", e ? e : path);
    return -1;
  }
  pkv_xfer_module_fn entry;
  *(void **)&entry = dlsym(h, PKV_XFER_MODULE_ENTRY);
  const pkv_xfer_module *m = entry ? entry(&xhost) : NULL;
  if (!m || m->version != PKV_XFER_MODULE_VERSION ||
      m->struct_size < sizeof(pkv_xfer_module)) {
    snprintf(xmod_err, sizeof xmod_err,
             "%.800s: not a transfer module of this library (interface "
             "version %u needed)",
             path, PKV_XFER_MODULE_VERSION);
    dlclose(h);
    return -1;
  }
  xmod = m; /* the handle stays open for the life of the process */
  return 1;
}

static void load_xmod(void) {
  const char *env = getenv("PKV_BACKEND_PATH");
  if (env) {
    for (const char *p = env;;) {
      const char *colon = strchr(p, ':');
      size_t len = colon ? (size_t)(colon - p) : strlen(p);
      if (try_path(p, len) != 0) return;
      if (!colon) break;
      p = colon + 1;
    }
  }
  if (try_path(PKV_MODULE_DIR, strlen(PKV_MODULE_DIR)) != 0) return;
  snprintf(xmod_err, sizeof xmod_err,
           "%s not found (searched PKV_BACKEND_PATH='%.200s' and %.200s); "
           "build with UCX (configure --with-ucx)",
           PKV_XFER_MODULE_FILE, env ? env : "", PKV_MODULE_DIR);
}
#endif

static pkv_status get_module(const pkv_context *ctx) {
#ifdef PKV_MODULES
  pthread_once(&xmod_once, load_xmod);
#else
  snprintf(xmod_err, sizeof xmod_err,
           "this libpagedkv was built with --disable-modules: the transfer "
           "module needs a module build");
#endif
  if (xmod) return PKV_OK;
  return pkv__fail(ctx, PKV_ERR_NO_BACKEND, "page transfer: %s", xmod_err);
}

/* The first member of each module object is the cache's context. */
static const pkv_context *ctx_of(const void *obj) {
  return obj ? *(pkv_context *const *)obj : NULL;
}

void pkv_xfer_options_init_sized(pkv_xfer_options *o, size_t size) {
  pkv_xfer_options d;
  memset(&d, 0, sizeof d);
  d.staging_pages = 64;
  d.lease_ms = 10000;
  pkv__struct_init(o, size, &d, sizeof d);
}

pkv_status pkv_xfer_endpoint_create(pkv_cache *cache,
                                    const pkv_xfer_options *opts,
                                    pkv_xfer_endpoint **out) {
  if (!cache) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  const pkv_context *ctx = pkv_cache_context(cache);
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  pkv_xfer_options o;
  pkv_xfer_options_init(&o);
  if (opts) {
    pkv_status st = pkv__struct_in(ctx, "opts", opts,
                                   PKV__SIZE_THROUGH(pkv_xfer_options, lease_ms),
                                   &o, sizeof o);
    if (st) return st;
  }
  if (o.staging_pages < 1 || o.staging_pages > (1 << 20))
    return pkv__fail(ctx, PKV_ERR_RANGE,
                     "opts->staging_pages is %lld, must be 1..%d",
                     (long long)o.staging_pages, 1 << 20);
  if (o.lease_ms < 1)
    return pkv__fail(ctx, PKV_ERR_RANGE, "opts->lease_ms is %lld, must be > 0",
                     (long long)o.lease_ms);
  pkv_status st = get_module(ctx);
  if (st) return st;
  return xmod->endpoint_create(cache, &o, out);
}

void pkv_xfer_endpoint_destroy(pkv_xfer_endpoint *ep) {
  if (ep && xmod) xmod->endpoint_destroy(ep);
}

#define NEED(p, name, ctx)                                                    \
  do {                                                                        \
    if (!(p)) return pkv__fail((ctx), PKV_ERR_NULL, name " is NULL");         \
  } while (0)

pkv_status pkv_xfer_endpoint_blob(pkv_xfer_endpoint *ep, void *buf, size_t cap,
                                  size_t *len) {
  NEED(ep, "ep", NULL);
  NEED(len, "len", ctx_of(ep));
  if (get_module(ctx_of(ep))) return PKV_ERR_NO_BACKEND;
  return xmod->endpoint_blob(ep, buf, cap, len);
}

pkv_status pkv_xfer_connect(pkv_xfer_endpoint *ep, const void *blob,
                            size_t len, pkv_xfer_peer **out) {
  NEED(ep, "ep", NULL);
  NEED(blob, "blob", ctx_of(ep));
  NEED(out, "out", ctx_of(ep));
  if (get_module(ctx_of(ep))) return PKV_ERR_NO_BACKEND;
  return xmod->connect(ep, blob, len, out);
}

pkv_status pkv_xfer_fetch(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                          uint64_t ns, const pkv_page_key *parent,
                          const pkv_page_key *keys, int64_t n,
                          pkv_xfer_request **out) {
  NEED(ep, "ep", NULL);
  const pkv_context *ctx = ctx_of(ep);
  NEED(peer, "peer", ctx);
  NEED(out, "out", ctx);
  if (n < 1)
    return pkv__fail(ctx, PKV_ERR_RANGE, "n is %lld, must be >= 1",
                     (long long)n);
  NEED(keys, "keys", ctx);
  if (get_module(ctx)) return PKV_ERR_NO_BACKEND;
  return xmod->fetch(ep, peer, ns, parent, keys, n, out);
}

pkv_status pkv_xfer_push_seq(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                             pkv_seq_id seq, const pkv_seq_desc *desc,
                             uint64_t tag, pkv_xfer_request **out) {
  NEED(ep, "ep", NULL);
  NEED(peer, "peer", ctx_of(ep));
  NEED(out, "out", ctx_of(ep));
  if (get_module(ctx_of(ep))) return PKV_ERR_NO_BACKEND;
  return xmod->push_seq(ep, peer, seq, desc, tag, out);
}

pkv_status pkv_xfer_progress(pkv_xfer_endpoint *ep) {
  NEED(ep, "ep", NULL);
  if (get_module(ctx_of(ep))) return PKV_ERR_NO_BACKEND;
  return xmod->progress(ep);
}

pkv_status pkv_xfer_poll_arrivals(pkv_xfer_endpoint *ep, uint64_t *tags,
                                  pkv_seq_id *seqs, int64_t max,
                                  int64_t *n_out) {
  NEED(ep, "ep", NULL);
  const pkv_context *ctx = ctx_of(ep);
  NEED(n_out, "n_out", ctx);
  if (max < 0)
    return pkv__fail(ctx, PKV_ERR_RANGE, "max is %lld, must be >= 0",
                     (long long)max);
  if (max > 0 && (!tags || !seqs))
    return pkv__fail(ctx, PKV_ERR_NULL, "%s is NULL with max > 0",
                     tags ? "seqs" : "tags");
  if (get_module(ctx)) return PKV_ERR_NO_BACKEND;
  return xmod->poll_arrivals(ep, tags, seqs, max, n_out);
}

pkv_status pkv_xfer_test(pkv_xfer_request *req, int32_t *done,
                         pkv_status *status) {
  NEED(req, "req", NULL);
  NEED(done, "done", ctx_of(req));
  NEED(status, "status", ctx_of(req));
  if (get_module(ctx_of(req))) return PKV_ERR_NO_BACKEND;
  return xmod->test(req, done, status);
}

pkv_status pkv_xfer_wait(pkv_xfer_request *req, int64_t timeout_ms) {
  NEED(req, "req", NULL);
  if (get_module(ctx_of(req))) return PKV_ERR_NO_BACKEND;
  return xmod->wait(req, timeout_ms);
}

pkv_status pkv_xfer_request_result(const pkv_xfer_request *req,
                                   int64_t *n_imported, int64_t *n_skipped,
                                   pkv_seq_id *remote_seq) {
  NEED(req, "req", NULL);
  if (get_module(ctx_of(req))) return PKV_ERR_NO_BACKEND;
  return xmod->result(req, n_imported, n_skipped, remote_seq);
}

void pkv_xfer_request_free(pkv_xfer_request *req) {
  if (req && xmod) xmod->request_free(req);
}
