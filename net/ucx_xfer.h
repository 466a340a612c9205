/* SPDX-License-Identifier: Apache-2.0 */
/* The UCX transfer module's objects (transfer-ucx.so), shared by
 * net/ucx_endpoint.c (worker, staging, blob, connect, message intake) and
 * net/ucx_xfer.c (fetch, push and serving). Names are pkv__ux_*: internal,
 * and hidden by the module's version script. */
#ifndef PKV_UCX_XFER_H
#define PKV_UCX_XFER_H

#include "pagedkv.h"
#include "xfer_module.h"
#include "xfer_wire.h"

#include <ucp/api/ucp.h>

extern const pkv_xfer_host *pkv__ux_host;

pkv_status pkv__ux_fail(const pkv_context *ctx, pkv_status st,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *pkv__ux_malloc(size_t n);
void *pkv__ux_calloc(size_t n, size_t size);
void pkv__ux_free(void *p);
double pkv__ux_now_ms(void);

/* A message taken in by the active-message handler, processed after the
 * worker's progress returns (never inside UCX's callback). */
typedef struct ux_msg {
  struct ux_msg *next;
  unsigned id;
  ucp_ep_h reply_ep;
  size_t len;
  unsigned char data[]; /* 8-aligned */
} ux_msg;

typedef struct ux_am_arg {
  struct pkv_xfer_endpoint *ep;
  unsigned id;
} ux_am_arg;

struct pkv_xfer_peer {
  pkv_context *ctx; /* first: lib/xfer.c reads it */
  struct pkv_xfer_endpoint *ep;
  struct pkv_xfer_peer *next;
  ucp_ep_h uep;
  ucp_rkey_h rkey;
  uint64_t staging_addr;
  int64_t staging_pages;
  pkv_layout layout;
  int failed; /* the error handler ran: every request of the peer fails */
  int no_failure_detection; /* only transports without it reach the peer */
  /* a peer this endpoint connected to by itself, to get a pushed sequence:
   * its worker address, to find it again (NULL for pkv_xfer_connect's) */
  unsigned char *back_addr;
  size_t back_addr_len;
};

typedef enum ux_kind {
  UX_FETCH, /* ours: pages of a peer into this cache */
  UX_PUSH,  /* ours: a sequence of this cache to a peer */
  UX_SERVE  /* internal: a peer's push being received */
} ux_kind;
typedef enum ux_state {
  UX_SEND_STAGE, /* fetch: the next batch's STAGE is to be sent */
  UX_WAIT_STAGED,
  UX_WAIT_GET,
  UX_WAIT_PUSHED, /* push: the peer gets and imports */
  UX_DONE
} ux_state;

struct pkv_xfer_request {
  pkv_context *ctx; /* first: lib/xfer.c reads it */
  struct pkv_xfer_endpoint *ep;
  struct pkv_xfer_request *next;
  struct pkv_xfer_peer *peer;
  ux_kind kind;
  ux_state state;
  uint64_t id;
  pkv_status status;
  char msg[XFER_MSG_LEN];
  /* fetch */
  uint64_t ns;
  int has_parent;
  pkv_page_key parent;
  pkv_page_key *keys;
  int64_t n, off, batch;
  unsigned char *kv;  /* n * wire bytes, in this cache's layout */
  int32_t *tokens;    /* n * page_size */
  void *get_req[2];
  ucs_status_t get_err;
  int staged;         /* the peer's staging holds our batch */
  int gets_stuck;     /* a get outlived its cancel: never free kv/tokens */
  int64_t n_imported, n_skipped;
  /* push */
  pkv_seq_id remote_seq;
  /* serving a peer's push (internal, freed by progress when done) */
  int internal;
  ucp_ep_h reply_ep;
  ucp_rkey_h rkey;
  xfer_push_msg push;
  double deadline;
};

struct pkv_xfer_endpoint {
  pkv_context *ctx; /* first: lib/xfer.c reads it */
  pkv_cache *cache;
  pkv_cache_geometry geo;
  size_t wire;        /* bytes of one page's K/V on the wire */
  size_t tok_bytes;   /* page_size int32 token ids */
  int64_t staging_pages;
  int64_t lease_ms;
  ucp_context_h uctx;
  ucp_worker_h worker;
  void *staging;
  size_t staging_bytes;
  ucp_mem_h memh;
  void *rkey_buf;
  size_t rkey_len;
  ucp_address_t *addr;
  size_t addr_len;
  uint64_t scales_hash;
  ux_am_arg am_args[XFER_AM_COUNT];
  ux_msg *inbox, *inbox_tail;
  struct pkv_xfer_peer *peers;
  struct pkv_xfer_request *reqs;
  uint64_t next_id;
  /* staging: 0 free, 1 a peer's batch (until RELEASE or the lease), 2 our
   * own push (until PUSHED) */
  int staging_use;
  uint64_t staging_req;     /* the peer's request id */
  ucp_ep_h staging_ep;      /* and its endpoint */
  double staging_deadline;  /* lease end (ms, monotonic) */
  int staging_orphan;       /* our push's request was freed before PUSHED */
  /* sequences peers pushed here, not yet polled */
  uint64_t *arr_tags;
  pkv_seq_id *arr_seqs;
  int64_t arr_n, arr_cap;
};

/* net/ucx_endpoint.c */
pkv_status pkv__ux_endpoint_create(pkv_cache *cache,
                                   const pkv_xfer_options *o,
                                   pkv_xfer_endpoint **out);
void pkv__ux_endpoint_destroy(pkv_xfer_endpoint *ep);
pkv_status pkv__ux_endpoint_blob(pkv_xfer_endpoint *ep, void *buf, size_t cap,
                                 size_t *len);
pkv_status pkv__ux_connect(pkv_xfer_endpoint *ep, const void *blob,
                           size_t len, pkv_xfer_peer **out);
/* The endpoint to the worker of a pusher's address, made on first use. */
pkv_xfer_peer *pkv__ux_back_peer(pkv_xfer_endpoint *ep, const void *addr,
                                 size_t len);
/* Sends a small active message (copied; never blocks): UCS_OK, or UCX's
 * error when it could not even be queued. */
ucs_status_t pkv__ux_send(pkv_xfer_endpoint *ep, ucp_ep_h to, unsigned id,
                          const void *data, size_t len);
/* Waits (progressing) for a UCX request until deadline_ms; frees it. */
ucs_status_t pkv__ux_wait_ucx(pkv_xfer_endpoint *ep, void *r,
                              double deadline_ms);

/* net/ucx_xfer.c */
pkv_status pkv__ux_fetch(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                         uint64_t ns, const pkv_page_key *parent,
                         const pkv_page_key *keys, int64_t n,
                         pkv_xfer_request **out);
pkv_status pkv__ux_push_seq(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                            pkv_seq_id seq, const pkv_seq_desc *desc,
                            uint64_t tag, pkv_xfer_request **out);
pkv_status pkv__ux_progress(pkv_xfer_endpoint *ep);
pkv_status pkv__ux_poll_arrivals(pkv_xfer_endpoint *ep, uint64_t *tags,
                                 pkv_seq_id *seqs, int64_t max,
                                 int64_t *n_out);
pkv_status pkv__ux_test(pkv_xfer_request *req, int32_t *done,
                        pkv_status *st);
pkv_status pkv__ux_wait(pkv_xfer_request *req, int64_t timeout_ms);
pkv_status pkv__ux_result(const pkv_xfer_request *req, int64_t *n_imported,
                          int64_t *n_skipped, pkv_seq_id *remote_seq);
void pkv__ux_request_free(pkv_xfer_request *req);

#endif
