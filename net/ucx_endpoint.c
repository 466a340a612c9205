/* SPDX-License-Identifier: Apache-2.0 */
/* The UCX transfer module's endpoints: one UCP context and worker per
 * cache endpoint (features RMA + AM), a staging buffer registered with
 * ucp_mem_map whose packed rkey travels in the connection blob, peers
 * connected from blobs with peer-failure error handling, and the intake
 * of active messages (copied, then processed outside UCX's callbacks).
 * Also the module's entry point and its host services. */
#include "ucx_xfer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

const pkv_xfer_host *pkv__ux_host;

pkv_status pkv__ux_fail(const pkv_context *ctx, pkv_status st,
                        const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pkv_status r = pkv__ux_host->vfail(ctx, st, fmt, ap);
  va_end(ap);
  return r;
}
void *pkv__ux_malloc(size_t n) { return pkv__ux_host->malloc_fn(n); }
void *pkv__ux_calloc(size_t n, size_t s) {
  return pkv__ux_host->calloc_fn(n, s);
}
void pkv__ux_free(void *p) { pkv__ux_host->free_fn(p); }

double pkv__ux_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---------------------------------------------------------------- intake */

static ucs_status_t am_cb(void *arg, const void *header, size_t header_len,
                          void *data, size_t len,
                          const ucp_am_recv_param_t *param) {
  (void)header;
  (void)header_len;
  ux_am_arg *a = arg;
  /* Rendezvous data would need a receive of its own: our messages are
   * small and sent eager, so a rendezvous one is not from a peer of ours. */
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) return UCS_OK;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) return UCS_OK;
  ux_msg *m = pkv__ux_malloc(sizeof *m + len + 8);
  if (!m) return UCS_OK; /* the requester times out */
  m->next = NULL;
  m->id = a->id;
  m->reply_ep = param->reply_ep;
  m->len = len;
  if (len) memcpy(m->data, data, len);
  pkv_xfer_endpoint *ep = a->ep;
  if (ep->inbox_tail)
    ep->inbox_tail->next = m;
  else
    ep->inbox = m;
  ep->inbox_tail = m;
  return UCS_OK;
}

ucs_status_t pkv__ux_wait_ucx(pkv_xfer_endpoint *ep, void *r,
                              double deadline_ms) {
  if (r == NULL) return UCS_OK;
  if (UCS_PTR_IS_ERR(r)) return UCS_PTR_STATUS(r);
  ucs_status_t st;
  while ((st = ucp_request_check_status(r)) == UCS_INPROGRESS) {
    ucp_worker_progress(ep->worker);
    if (pkv__ux_now_ms() > deadline_ms) {
      ucp_request_cancel(ep->worker, r);
      /* bounded: a request UCX cannot cancel is released when it ends
       * (only requests without our buffers come here) */
      double end = pkv__ux_now_ms() + 1000.0;
      while (ucp_request_check_status(r) == UCS_INPROGRESS &&
             pkv__ux_now_ms() < end)
        ucp_worker_progress(ep->worker);
      st = UCS_ERR_TIMED_OUT;
      break;
    }
  }
  ucp_request_free(r);
  return st;
}

/* A send's own copy of the message, freed when UCX is done with it. */
static void send_done(void *request, ucs_status_t status, void *user_data) {
  (void)status; /* a failed peer shows through its error handler */
  pkv__ux_free(user_data);
  ucp_request_free(request);
}

/* Never blocks: the first message on a new endpoint waits for its wire-up,
 * which needs the peer's progress (two endpoints of one thread would
 * deadlock on a blocking send). */
ucs_status_t pkv__ux_send(pkv_xfer_endpoint *ep, ucp_ep_h to, unsigned id,
                          const void *data, size_t len) {
  (void)ep;
  void *copy = pkv__ux_malloc(len ? len : 1);
  if (!copy) return UCS_ERR_NO_MEMORY;
  memcpy(copy, data, len);
  ucp_request_param_t p;
  memset(&p, 0, sizeof p);
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK |
                   UCP_OP_ATTR_FIELD_USER_DATA;
  p.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  p.cb.send = send_done;
  p.user_data = copy;
  void *r = ucp_am_send_nbx(to, id, NULL, 0, copy, len, &p);
  if (r == NULL) { /* done at once: no callback */
    pkv__ux_free(copy);
    return UCS_OK;
  }
  if (UCS_PTR_IS_ERR(r)) {
    pkv__ux_free(copy);
    return UCS_PTR_STATUS(r);
  }
  return UCS_OK;
}

/* ---------------------------------------------------------------- endpoint */

/* fp8 caches: a hash of every layer's scales, so two caches that would
 * read the same bytes as different values do not connect. */
static pkv_status scales_hash(pkv_xfer_endpoint *ep, uint64_t *out) {
  *out = 0;
  if (ep->geo.dtype != PKV_DTYPE_FP8_E4M3 && ep->geo.dtype != PKV_DTYPE_FP8_E5M2)
    return PKV_OK;
  size_t h = (size_t)ep->geo.num_kv_heads;
  float *s = pkv__ux_malloc(2 * h * sizeof(float));
  if (!s) return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "scales: out of memory");
  XXH3_state_t *x = XXH3_createState();
  if (!x) {
    pkv__ux_free(s);
    return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "scales: out of memory");
  }
  XXH3_64bits_reset(x);
  pkv_status st = PKV_OK;
  for (int32_t l = 0; l < ep->geo.num_layers && st == PKV_OK; l++) {
    st = pkv_cache_get_kv_scales(ep->cache, l, s, s + h);
    if (st == PKV_OK) XXH3_64bits_update(x, s, 2 * h * sizeof(float));
  }
  *out = XXH3_64bits_digest(x) | 1;
  XXH3_freeState(x);
  pkv__ux_free(s);
  return st;
}

static pkv_status ucx_fail(pkv_xfer_endpoint *ep, const char *what,
                           ucs_status_t s) {
  return pkv__ux_fail(ep->ctx, PKV_ERR_DEVICE, "UCX %s: %s", what,
                      ucs_status_string(s));
}

pkv_status pkv__ux_endpoint_create(pkv_cache *cache,
                                   const pkv_xfer_options *o,
                                   pkv_xfer_endpoint **out) {
  pkv_context *ctx = pkv_cache_context(cache);
  pkv_xfer_endpoint *ep = pkv__ux_calloc(1, sizeof *ep);
  if (!ep) return pkv__ux_fail(ctx, PKV_ERR_NO_MEMORY, "endpoint: out of memory");
  ep->ctx = ctx;
  ep->cache = cache;
  ep->staging_pages = o->staging_pages;
  ep->lease_ms = o->lease_ms;
  ep->next_id = 1;
  pkv_cache_geometry_init(&ep->geo);
  pkv_status st = pkv_cache_get_geometry(cache, &ep->geo);
  if (!st) st = pkv_cache_page_wire_bytes(cache, &ep->wire);
  if (!st) st = scales_hash(ep, &ep->scales_hash);
  if (st) {
    pkv__ux_free(ep);
    return st;
  }
  ep->tok_bytes = (size_t)ep->geo.page_size * sizeof(int32_t);
  /* a batch: K/V of all its pages, then their token ids, 8-aligned */
  ep->staging_bytes = (size_t)ep->staging_pages * (ep->wire + ep->tok_bytes) + 8;

  ucp_config_t *cfg = NULL;
  ucs_status_t us = ucp_config_read(NULL, NULL, &cfg);
  if (us != UCS_OK) {
    pkv__ux_free(ep);
    return pkv__ux_fail(ctx, PKV_ERR_DEVICE, "UCX config: %s",
                        ucs_status_string(us));
  }
  ucp_params_t up;
  memset(&up, 0, sizeof up);
  up.field_mask = UCP_PARAM_FIELD_FEATURES;
  up.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
  us = ucp_init(&up, cfg, &ep->uctx);
  ucp_config_release(cfg);
  if (us != UCS_OK) {
    pkv__ux_free(ep);
    return pkv__ux_fail(ctx, PKV_ERR_DEVICE, "UCX init: %s",
                        ucs_status_string(us));
  }
  ucp_worker_params_t wp;
  memset(&wp, 0, sizeof wp);
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  us = ucp_worker_create(ep->uctx, &wp, &ep->worker);
  if (us != UCS_OK) {
    st = ucx_fail(ep, "worker", us);
    goto fail;
  }
  us = ucp_worker_get_address(ep->worker, &ep->addr, &ep->addr_len);
  if (us != UCS_OK) {
    st = ucx_fail(ep, "worker address", us);
    goto fail;
  }
  ep->staging = pkv__ux_malloc(ep->staging_bytes);
  if (!ep->staging) {
    st = pkv__ux_fail(ctx, PKV_ERR_NO_MEMORY,
                      "staging buffer of %zu bytes: out of memory",
                      ep->staging_bytes);
    goto fail;
  }
  ucp_mem_map_params_t mp;
  memset(&mp, 0, sizeof mp);
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = ep->staging;
  mp.length = ep->staging_bytes;
  us = ucp_mem_map(ep->uctx, &mp, &ep->memh);
  if (us != UCS_OK) {
    ep->memh = NULL;
    st = ucx_fail(ep, "registration of the staging buffer", us);
    goto fail;
  }
  us = ucp_rkey_pack(ep->uctx, ep->memh, &ep->rkey_buf, &ep->rkey_len);
  if (us != UCS_OK) {
    st = ucx_fail(ep, "rkey pack", us);
    goto fail;
  }
  for (unsigned id = 1; id < XFER_AM_COUNT; id++) {
    ep->am_args[id].ep = ep;
    ep->am_args[id].id = id;
    ucp_am_handler_param_t hp;
    memset(&hp, 0, sizeof hp);
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                    UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                    UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = id;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = am_cb;
    hp.arg = &ep->am_args[id];
    us = ucp_worker_set_am_recv_handler(ep->worker, &hp);
    if (us != UCS_OK) {
      st = ucx_fail(ep, "active message handler", us);
      goto fail;
    }
  }
  *out = ep;
  return PKV_OK;
fail:
  pkv__ux_endpoint_destroy(ep);
  return st;
}

static void close_uep(pkv_xfer_endpoint *ep, ucp_ep_h uep, int force) {
  ucp_request_param_t p;
  memset(&p, 0, sizeof p);
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  void *r = ucp_ep_close_nbx(uep, &p);
  pkv__ux_wait_ucx(ep, r, pkv__ux_now_ms() + 2000.0);
}

void pkv__ux_endpoint_destroy(pkv_xfer_endpoint *ep) {
  if (!ep) return;
  while (ep->reqs) pkv__ux_request_free(ep->reqs);
  while (ep->peers) {
    pkv_xfer_peer *p = ep->peers;
    ep->peers = p->next;
    if (p->rkey) ucp_rkey_destroy(p->rkey);
    if (p->uep) close_uep(ep, p->uep, p->failed);
    pkv__ux_free(p->back_addr);
    pkv__ux_free(p);
  }
  while (ep->inbox) {
    ux_msg *m = ep->inbox;
    ep->inbox = m->next;
    pkv__ux_free(m);
  }
  if (ep->rkey_buf) ucp_rkey_buffer_release(ep->rkey_buf);
  if (ep->memh) ucp_mem_unmap(ep->uctx, ep->memh);
  if (ep->addr) ucp_worker_release_address(ep->worker, ep->addr);
  if (ep->worker) ucp_worker_destroy(ep->worker);
  if (ep->uctx) ucp_cleanup(ep->uctx);
  pkv__ux_free(ep->staging);
  pkv__ux_free(ep->arr_tags);
  pkv__ux_free(ep->arr_seqs);
  pkv__ux_free(ep);
}

/* ---------------------------------------------------------------- blob */

static uint64_t blob_sum(const unsigned char *b, size_t len) {
  xfer_blob_hdr h;
  memcpy(&h, b, sizeof h);
  h.checksum = 0;
  XXH3_state_t *x = XXH3_createState();
  if (!x) return 0;
  XXH3_64bits_reset(x);
  XXH3_64bits_update(x, &h, sizeof h);
  XXH3_64bits_update(x, b + sizeof h, len - sizeof h);
  uint64_t s = XXH3_64bits_digest(x);
  XXH3_freeState(x);
  return s;
}

pkv_status pkv__ux_endpoint_blob(pkv_xfer_endpoint *ep, void *buf, size_t cap,
                                 size_t *len) {
  size_t need = sizeof(xfer_blob_hdr) + ep->addr_len + ep->rkey_len;
  *len = need;
  if (!buf || cap < need)
    return pkv__ux_fail(ep->ctx, PKV_ERR_SIZE,
                        "buf: the blob needs %zu bytes, cap is %zu", need, cap);
  xfer_blob_hdr h;
  memset(&h, 0, sizeof h);
  h.magic = XFER_BLOB_MAGIC;
  h.version = XFER_BLOB_VERSION;
  h.total_len = (uint32_t)need;
  h.layout = (int32_t)ep->geo.layout;
  h.dtype = (int32_t)ep->geo.dtype;
  h.page_size = ep->geo.page_size;
  h.head_dim = ep->geo.head_dim;
  h.num_kv_heads = ep->geo.num_kv_heads;
  h.num_layers = ep->geo.num_layers;
  h.wire_bytes = ep->wire;
  /* the scales may have changed since the endpoint was made */
  pkv_status st = scales_hash(ep, &ep->scales_hash);
  if (st) return st;
  h.scales_hash = ep->scales_hash;
  h.staging_addr = (uint64_t)(uintptr_t)ep->staging;
  h.staging_pages = ep->staging_pages;
  h.addr_len = (uint32_t)ep->addr_len;
  h.rkey_len = (uint32_t)ep->rkey_len;
  unsigned char *b = buf;
  memcpy(b, &h, sizeof h);
  memcpy(b + sizeof h, ep->addr, ep->addr_len);
  memcpy(b + sizeof h + ep->addr_len, ep->rkey_buf, ep->rkey_len);
  h.checksum = blob_sum(b, need);
  memcpy(b, &h, sizeof h);
  return PKV_OK;
}

static void peer_err_cb(void *arg, ucp_ep_h uep, ucs_status_t status) {
  (void)uep;
  (void)status;
  pkv_xfer_peer *p = arg;
  p->failed = 1;
}

/* An endpoint to a peer's worker address. Peer-failure handling first, so
 * that a dead peer fails its requests with PKV_ERR_PEER; UCX 1.13's shared
 * memory transports have no peer-failure support, so when only they reach
 * the peer the endpoint is made without it (a dead peer is then seen only
 * by a wait's timeout; see doc/disaggregation.md). */
static ucs_status_t create_uep(pkv_xfer_endpoint *ep, const void *addr,
                               pkv_xfer_peer *p) {
  ucp_ep_params_t epp;
  memset(&epp, 0, sizeof epp);
  epp.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                   UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                   UCP_EP_PARAM_FIELD_ERR_HANDLER;
  epp.address = (const ucp_address_t *)addr;
  epp.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  epp.err_handler.cb = peer_err_cb;
  epp.err_handler.arg = p;
  ucs_status_t us = ucp_ep_create(ep->worker, &epp, &p->uep);
  if (us == UCS_OK) return us;
  epp.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  us = ucp_ep_create(ep->worker, &epp, &p->uep);
  if (us == UCS_OK) p->no_failure_detection = 1;
  return us;
}

#define MISMATCH(field, what)                                                 \
  if ((int64_t)h.field != (int64_t)(mine))                                          \
    return pkv__ux_fail(ep->ctx, PKV_ERR_INCOMPATIBLE,                        \
                        "blob: the peer's cache has " what " %lld, this "      \
                        "cache %lld",                                         \
                        (long long)h.field, (long long)(mine));

pkv_status pkv__ux_connect(pkv_xfer_endpoint *ep, const void *blob,
                           size_t len, pkv_xfer_peer **out) {
  const unsigned char *b = blob;
  xfer_blob_hdr h;
  if (len < sizeof h)
    return pkv__ux_fail(ep->ctx, PKV_ERR_SIZE,
                        "blob: %zu bytes, shorter than its %zu-byte header",
                        len, sizeof h);
  memcpy(&h, b, sizeof h);
  if (h.magic != XFER_BLOB_MAGIC)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                        "blob: not a pagedkv transfer blob (bad magic)");
  if (h.version != XFER_BLOB_VERSION)
    return pkv__ux_fail(ep->ctx, PKV_ERR_UNSUPPORTED,
                        "blob: version %u, this module speaks %u", h.version,
                        XFER_BLOB_VERSION);
  if (h.total_len != len ||
      (size_t)h.addr_len + h.rkey_len + sizeof h != (size_t)h.total_len)
    return pkv__ux_fail(ep->ctx, PKV_ERR_SIZE,
                        "blob: len is %zu, the blob says %u bytes", len,
                        h.total_len);
  if (blob_sum(b, len) != h.checksum)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                        "blob: checksum mismatch (corrupt blob)");
  int64_t mine;
  mine = ep->geo.dtype;
  MISMATCH(dtype, "dtype")
  mine = ep->geo.page_size;
  MISMATCH(page_size, "page_size")
  mine = ep->geo.head_dim;
  MISMATCH(head_dim, "head_dim")
  mine = ep->geo.num_kv_heads;
  MISMATCH(num_kv_heads, "num_kv_heads")
  mine = ep->geo.num_layers;
  MISMATCH(num_layers, "num_layers")
  mine = (int64_t)ep->wire;
  MISMATCH(wire_bytes, "page wire bytes")
  pkv_status st = scales_hash(ep, &ep->scales_hash);
  if (st) return st;
  if (h.scales_hash != ep->scales_hash)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INCOMPATIBLE,
                        "blob: the peer's fp8 K/V scales differ from this "
                        "cache's (pkv_cache_set_kv_scales)");
  if (h.layout != PKV_LAYOUT_HND && h.layout != PKV_LAYOUT_NHD)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID, "blob: unknown layout %d",
                        h.layout);
  pkv_xfer_peer *p = pkv__ux_calloc(1, sizeof *p);
  if (!p) return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "peer: out of memory");
  p->ctx = ep->ctx;
  p->ep = ep;
  p->staging_addr = h.staging_addr;
  p->staging_pages = h.staging_pages;
  p->layout = (pkv_layout)h.layout;
  ucs_status_t us = create_uep(ep, b + sizeof h, p);
  if (us != UCS_OK) {
    pkv__ux_free(p);
    return pkv__ux_fail(ep->ctx, PKV_ERR_PEER, "connect: UCX: %s",
                        ucs_status_string(us));
  }
  us = ucp_ep_rkey_unpack(p->uep, b + sizeof h + h.addr_len, &p->rkey);
  if (us != UCS_OK) {
    close_uep(ep, p->uep, 1);
    pkv__ux_free(p);
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID, "blob: rkey: %s",
                        ucs_status_string(us));
  }
  p->next = ep->peers;
  ep->peers = p;
  *out = p;
  return PKV_OK;
}

pkv_xfer_peer *pkv__ux_back_peer(pkv_xfer_endpoint *ep, const void *addr,
                                 size_t len) {
  for (pkv_xfer_peer *p = ep->peers; p; p = p->next)
    if (p->back_addr && p->back_addr_len == len && !p->failed &&
        memcmp(p->back_addr, addr, len) == 0)
      return p;
  pkv_xfer_peer *p = pkv__ux_calloc(1, sizeof *p);
  unsigned char *a = pkv__ux_malloc(len ? len : 1);
  if (!p || !a) {
    pkv__ux_free(p);
    pkv__ux_free(a);
    return NULL;
  }
  memcpy(a, addr, len);
  p->ctx = ep->ctx;
  p->ep = ep;
  p->back_addr = a;
  p->back_addr_len = len;
  if (create_uep(ep, a, p) != UCS_OK) {
    pkv__ux_free(a);
    pkv__ux_free(p);
    return NULL;
  }
  p->next = ep->peers;
  ep->peers = p;
  return p;
}

/* ---------------------------------------------------------------- entry */

#define UX_STR2(x) #x
#define UX_STR(x) UX_STR2(x)

static const pkv_xfer_module module = {
    .version = PKV_XFER_MODULE_VERSION,
    .struct_size = sizeof(pkv_xfer_module),
    .name = "ucx",
    .build_info = "UCX API " UX_STR(UCP_API_MAJOR) "." UX_STR(UCP_API_MINOR),
    .endpoint_create = pkv__ux_endpoint_create,
    .endpoint_destroy = pkv__ux_endpoint_destroy,
    .endpoint_blob = pkv__ux_endpoint_blob,
    .connect = pkv__ux_connect,
    .fetch = pkv__ux_fetch,
    .push_seq = pkv__ux_push_seq,
    .progress = pkv__ux_progress,
    .poll_arrivals = pkv__ux_poll_arrivals,
    .test = pkv__ux_test,
    .wait = pkv__ux_wait,
    .result = pkv__ux_result,
    .request_free = pkv__ux_request_free,
};

const pkv_xfer_module *pkv_xfer_module_v1(const pkv_xfer_host *host) {
  if (!host || host->version != PKV_XFER_MODULE_VERSION ||
      host->struct_size < sizeof(pkv_xfer_host))
    return NULL;
  pkv__ux_host = host;
  return &module;
}
