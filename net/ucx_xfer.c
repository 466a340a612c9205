/* SPDX-License-Identifier: Apache-2.0 */
/* The page protocol of the UCX transfer module.
 *
 * Fetch (receiver R asks server S for the pages of a key chain), per
 * batch of at most S's staging size:
 *   R -> S  STAGE {keys}: S holds the pages (pkv_pages_hold), copies them
 *           and their token ids into its registered staging buffer in R's
 *           layout (pkv_pages_read), releases the hold, answers
 *   S -> R  STAGED {status}: R gets K/V and token ids with two one-sided
 *           RMA gets from S's staging into its own host buffers, then
 *   R -> S  RELEASE: S's staging may serve the next batch (or, without
 *           it, after the lease).
 * After the last batch R imports every page at once (pkv_pages_import):
 * all or nothing, so a failure anywhere leaves R's cache unchanged.
 *
 * Push (prefill P hands a sequence to decode D): P exports the sequence
 * into its staging in D's layout (pkv_seq_export), then
 *   P -> D  PUSH {size, address, rkey}: D gets it, pkv_seq_import,
 *   D -> P  PUSHED {status, new seq id}.
 *
 * One batch or push owns an endpoint's staging at a time; a STAGE that
 * finds it busy waits in the inbox. Messages are handled in
 * pkv_xfer_progress, outside UCX's callbacks. A peer whose UCX endpoint
 * failed (process died, connection reset) fails its requests with
 * PKV_ERR_PEER. */
#include "ucx_xfer.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define ROUND8(x) (((x) + 7u) & ~(size_t)7u)

static pkv_xfer_request *new_req(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                                 ux_kind kind) {
  pkv_xfer_request *r = pkv__ux_calloc(1, sizeof *r);
  if (!r) return NULL;
  r->ctx = ep->ctx;
  r->ep = ep;
  r->peer = peer;
  r->kind = kind;
  r->id = ep->next_id++;
  r->remote_seq = -1;
  r->next = ep->reqs;
  ep->reqs = r;
  return r;
}

static pkv_xfer_request *find_req(pkv_xfer_endpoint *ep, uint64_t id,
                                  ux_kind kind) {
  for (pkv_xfer_request *r = ep->reqs; r; r = r->next)
    if (r->id == id && r->kind == kind && r->state != UX_DONE) return r;
  return NULL;
}

static void finish(pkv_xfer_request *r, pkv_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(pkv_xfer_request *r, pkv_status st, const char *fmt, ...) {
  r->state = UX_DONE;
  r->status = st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
}

/* Waits out (or cancels) the gets still in flight: their buffers go away. */
static void drain_gets(pkv_xfer_request *r) {
  for (int i = 0; i < 2; i++) {
    void *g = r->get_req[i];
    if (!g) continue;
    if (ucp_request_check_status(g) == UCS_INPROGRESS)
      ucp_request_cancel(r->ep->worker, g);
    /* A get ends when its data arrives or its endpoint fails; bounded all
     * the same: past the bound its buffers are leaked, never reused. */
    double end = pkv__ux_now_ms() + 5000.0;
    while (ucp_request_check_status(g) == UCS_INPROGRESS &&
           pkv__ux_now_ms() < end)
      ucp_worker_progress(r->ep->worker);
    if (ucp_request_check_status(g) == UCS_INPROGRESS) r->gets_stuck = 1;
    ucp_request_free(g);
    r->get_req[i] = NULL;
  }
}

static void send_release(pkv_xfer_request *r) {
  if (!r->staged) return;
  r->staged = 0;
  if (r->peer->failed) return;
  xfer_release_msg m = {.req_id = r->id};
  pkv__ux_send(r->ep, r->peer->uep, XFER_AM_RELEASE, &m, sizeof m);
}

static void fail_peer(pkv_xfer_request *r, const char *when) {
  drain_gets(r);
  r->staged = 0; /* nobody to tell */
  finish(r, PKV_ERR_PEER, "peer failed or disconnected %s", when);
}

/* ---------------------------------------------------------------- fetch */

static void get_issue(pkv_xfer_request *r, int i, void *dst, size_t len,
                      uint64_t raddr) {
  r->get_req[i] = NULL;
  if (len == 0) return;
  ucp_request_param_t p;
  memset(&p, 0, sizeof p);
  void *g = ucp_get_nbx(r->peer->uep, dst, len, raddr,
                        r->rkey ? r->rkey : r->peer->rkey, &p);
  if (UCS_PTR_IS_ERR(g))
    r->get_err = UCS_PTR_STATUS(g);
  else
    r->get_req[i] = g; /* NULL: done already */
}

static void serve_push_done(pkv_xfer_request *r);

static void advance(pkv_xfer_request *r) {
  pkv_xfer_endpoint *ep = r->ep;
  for (;;) {
    switch (r->state) {
    case UX_SEND_STAGE: {
      if (r->peer->failed) return fail_peer(r, "before the batch was staged");
      int64_t m = r->n - r->off;
      if (m > r->peer->staging_pages) m = r->peer->staging_pages;
      size_t len = sizeof(xfer_stage_msg) + (size_t)m * sizeof(pkv_page_key);
      xfer_stage_msg *s = pkv__ux_malloc(len);
      if (!s)
        return finish(r, PKV_ERR_NO_MEMORY, "fetch: out of memory (batch)");
      memset(s, 0, sizeof *s);
      s->req_id = r->id;
      s->ns = r->ns;
      s->n = m;
      s->layout = (int32_t)ep->geo.layout;
      memcpy(s + 1, r->keys + r->off, (size_t)m * sizeof(pkv_page_key));
      r->batch = m;
      r->state = UX_WAIT_STAGED;
      ucs_status_t us = pkv__ux_send(ep, r->peer->uep, XFER_AM_STAGE, s, len);
      pkv__ux_free(s);
      if (us != UCS_OK) return fail_peer(r, "(request not sent)");
      return;
    }
    case UX_WAIT_STAGED:
      if (r->peer->failed) return fail_peer(r, "while staging the pages");
      return;
    case UX_WAIT_GET:
      for (int i = 0; i < 2; i++) {
        void *g = r->get_req[i];
        if (!g) continue;
        ucs_status_t s = ucp_request_check_status(g);
        if (s == UCS_INPROGRESS) {
          if (r->peer->failed || (r->kind == UX_SERVE &&
                                  pkv__ux_now_ms() > r->deadline)) {
            drain_gets(r);
            if (r->kind == UX_SERVE) {
              r->get_err = UCS_ERR_TIMED_OUT;
              return serve_push_done(r);
            }
            return fail_peer(r, "during the RMA get");
          }
          return;
        }
        if (s != UCS_OK) r->get_err = s;
        ucp_request_free(g);
        r->get_req[i] = NULL;
      }
      if (r->kind == UX_SERVE) return serve_push_done(r);
      if (r->get_err != UCS_OK || r->peer->failed)
        return fail_peer(r, "during the RMA get");
      send_release(r);
      r->off += r->batch;
      if (r->off < r->n) {
        r->state = UX_SEND_STAGE;
        continue;
      }
      {
        pkv_status st = pkv_pages_import(
            ep->cache, r->ns, r->has_parent ? &r->parent : NULL, r->keys,
            r->tokens, r->n, ep->geo.layout, r->kv, (size_t)r->n * ep->wire,
            &r->n_imported, &r->n_skipped);
        if (st)
          finish(r, st, "import: %s", pkv_last_error(ep->ctx));
        else
          finish(r, PKV_OK, "%s", "");
      }
      return;
    case UX_WAIT_PUSHED:
      if (r->peer->failed) {
        ep->staging_use = 0;
        return fail_peer(r, "before it answered the push");
      }
      return;
    case UX_DONE: return;
    }
  }
}

pkv_status pkv__ux_fetch(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                         uint64_t ns, const pkv_page_key *parent,
                         const pkv_page_key *keys, int64_t n,
                         pkv_xfer_request **out) {
  if (peer->ep != ep)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                        "peer belongs to another endpoint");
  if (peer->failed)
    return pkv__ux_fail(ep->ctx, PKV_ERR_PEER,
                        "peer failed or disconnected earlier");
  if ((uint64_t)n > SIZE_MAX / (ep->wire + ep->tok_bytes + sizeof *keys))
    return pkv__ux_fail(ep->ctx, PKV_ERR_OVERFLOW, "n is %lld: too many pages",
                        (long long)n);
  pkv_xfer_request *r = new_req(ep, peer, UX_FETCH);
  if (!r) return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "fetch: out of memory");
  r->ns = ns;
  r->n = n;
  if (parent) {
    r->has_parent = 1;
    r->parent = *parent;
  }
  r->keys = pkv__ux_malloc((size_t)n * sizeof *keys);
  r->kv = pkv__ux_malloc((size_t)n * ep->wire);
  r->tokens = pkv__ux_malloc((size_t)n * ep->tok_bytes);
  if (!r->keys || !r->kv || !r->tokens) {
    pkv__ux_request_free(r);
    return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY,
                        "fetch: out of memory for %lld pages", (long long)n);
  }
  memcpy(r->keys, keys, (size_t)n * sizeof *keys);
  r->state = UX_SEND_STAGE;
  advance(r);
  *out = r;
  return PKV_OK;
}

/* ---------------------------------------------------------------- push */

pkv_status pkv__ux_push_seq(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                            pkv_seq_id seq, const pkv_seq_desc *desc,
                            uint64_t tag, pkv_xfer_request **out) {
  if (peer->ep != ep)
    return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                        "peer belongs to another endpoint");
  if (peer->failed)
    return pkv__ux_fail(ep->ctx, PKV_ERR_PEER,
                        "peer failed or disconnected earlier");
  pkv_seq_desc d;
  pkv_seq_desc_init(&d);
  if (desc) {
    if (desc->struct_size < sizeof(size_t) + sizeof(int32_t))
      return pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                          "desc->struct_size is %zu: too small",
                          desc->struct_size);
    d.priority_class = desc->priority_class;
    if (desc->struct_size >= sizeof d) d.namespace_id = desc->namespace_id;
  }
  int64_t ntok = 0;
  pkv_status st = pkv_seq_length(ep->cache, seq, &ntok);
  if (st) return st;
  if (ep->staging_use)
    return pkv__ux_fail(ep->ctx, PKV_ERR_STATE,
                        "the endpoint's staging buffer is busy (a peer's "
                        "batch or another push): progress and retry");
  size_t pages = (size_t)((ntok + ep->geo.page_size - 1) / ep->geo.page_size);
  size_t kv_bytes = pages * ep->wire;
  size_t tok_off = ROUND8(kv_bytes);
  if (pages > (size_t)ep->staging_pages ||
      tok_off + (size_t)ntok * sizeof(int32_t) > ep->staging_bytes)
    return pkv__ux_fail(ep->ctx, PKV_ERR_SIZE,
                        "seq %lld: %zu pages do not fit the staging buffer "
                        "(%lld pages; pkv_xfer_options.staging_pages)",
                        (long long)seq, pages, (long long)ep->staging_pages);
  int64_t n_out = 0;
  unsigned char *stg = ep->staging;
  st = pkv_seq_export(ep->cache, seq, peer->layout, stg, kv_bytes,
                      (int32_t *)(void *)(stg + tok_off), &n_out);
  if (st) return st;
  size_t len = sizeof(xfer_push_msg) + ep->rkey_len + ep->addr_len;
  xfer_push_msg *m = pkv__ux_calloc(1, len);
  pkv_xfer_request *r = m ? new_req(ep, peer, UX_PUSH) : NULL;
  if (!r) {
    pkv__ux_free(m);
    return pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "push: out of memory");
  }
  m->req_id = r->id;
  m->tag = tag;
  m->n_tokens = n_out;
  m->kv_bytes = kv_bytes;
  m->tokens_off = tok_off;
  m->addr = (uint64_t)(uintptr_t)ep->staging;
  m->namespace_id = d.namespace_id;
  m->priority_class = d.priority_class;
  m->layout = (int32_t)peer->layout;
  m->rkey_len = (uint32_t)ep->rkey_len;
  m->addr_len = (uint32_t)ep->addr_len;
  memcpy(m + 1, ep->rkey_buf, ep->rkey_len);
  memcpy((unsigned char *)(m + 1) + ep->rkey_len, ep->addr, ep->addr_len);
  ep->staging_use = 2;
  ep->staging_req = r->id;
  ep->staging_orphan = 0;
  r->state = UX_WAIT_PUSHED;
  ucs_status_t us = pkv__ux_send(ep, peer->uep, XFER_AM_PUSH, m, len);
  pkv__ux_free(m);
  if (us != UCS_OK) {
    ep->staging_use = 0;
    pkv__ux_request_free(r);
    return pkv__ux_fail(ep->ctx, PKV_ERR_PEER, "push: UCX: %s",
                        ucs_status_string(us));
  }
  *out = r;
  return PKV_OK;
}

/* ---------------------------------------------------------------- serving */

static void reply_staged(pkv_xfer_endpoint *ep, ucp_ep_h to, uint64_t id,
                         pkv_status st) {
  xfer_staged_msg m;
  memset(&m, 0, sizeof m);
  m.req_id = id;
  m.status = st;
  if (st) snprintf(m.msg, sizeof m.msg, "%s", pkv_last_error(ep->ctx));
  pkv__ux_send(ep, to, XFER_AM_STAGED, &m, sizeof m);
}

/* 0: deferred (staging busy), 1: handled. */
static int serve_stage(pkv_xfer_endpoint *ep, const ux_msg *msg) {
  xfer_stage_msg h;
  if (msg->len < sizeof h) return 1; /* not ours: no id to answer */
  memcpy(&h, msg->data, sizeof h);
  if (h.n < 1 || h.n > ep->staging_pages ||
      msg->len != sizeof h + (size_t)h.n * sizeof(pkv_page_key) ||
      (h.layout != PKV_LAYOUT_HND && h.layout != PKV_LAYOUT_NHD)) {
    pkv__ux_fail(ep->ctx, PKV_ERR_INVALID,
                 "stage request of %lld pages (staging holds %lld)",
                 (long long)h.n, (long long)ep->staging_pages);
    reply_staged(ep, msg->reply_ep, h.req_id, PKV_ERR_INVALID);
    return 1;
  }
  if (ep->staging_use) return 0;
  pkv_page_key *keys = pkv__ux_malloc((size_t)h.n * sizeof *keys);
  if (!keys) {
    pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "peer's stage: out of memory");
    reply_staged(ep, msg->reply_ep, h.req_id, PKV_ERR_NO_MEMORY);
    return 1;
  }
  memcpy(keys, msg->data + sizeof h, (size_t)h.n * sizeof *keys);
  pkv_page_hold *hold = NULL;
  pkv_status st = pkv_pages_hold(ep->cache, h.ns, keys, h.n, &hold);
  pkv__ux_free(keys);
  if (st == PKV_OK) {
    unsigned char *stg = ep->staging;
    size_t kv_bytes = (size_t)h.n * ep->wire;
    st = pkv_pages_read(ep->cache, hold, (pkv_layout)h.layout, stg, kv_bytes,
                        (int32_t *)(void *)(stg + ROUND8(kv_bytes)));
    /* the copy in staging is what the peer gets: the pages may go */
    pkv_page_hold_release(ep->cache, hold);
  }
  if (st == PKV_OK) {
    ep->staging_use = 1;
    ep->staging_req = h.req_id;
    ep->staging_ep = msg->reply_ep;
    ep->staging_deadline = pkv__ux_now_ms() + (double)ep->lease_ms;
  }
  reply_staged(ep, msg->reply_ep, h.req_id, st);
  return 1;
}

static void on_staged(pkv_xfer_endpoint *ep, const ux_msg *msg) {
  xfer_staged_msg h;
  if (msg->len < sizeof h) return;
  memcpy(&h, msg->data, sizeof h);
  pkv_xfer_request *r = find_req(ep, h.req_id, UX_FETCH);
  if (!r || r->state != UX_WAIT_STAGED) {
    /* freed meanwhile: let the peer's staging go */
    if (h.status == PKV_OK) {
      xfer_release_msg m = {.req_id = h.req_id};
      pkv__ux_send(ep, msg->reply_ep, XFER_AM_RELEASE, &m, sizeof m);
    }
    return;
  }
  h.msg[XFER_MSG_LEN - 1] = '\0';
  if (h.status != PKV_OK)
    return finish(r, (pkv_status)h.status, "peer: %s", h.msg);
  r->staged = 1;
  r->get_err = UCS_OK;
  size_t kv_bytes = (size_t)r->batch * ep->wire;
  uint64_t base = r->peer->staging_addr;
  get_issue(r, 0, r->kv + (size_t)r->off * ep->wire, kv_bytes, base);
  get_issue(r, 1, (unsigned char *)r->tokens + (size_t)r->off * ep->tok_bytes,
            (size_t)r->batch * ep->tok_bytes, base + ROUND8(kv_bytes));
  r->state = UX_WAIT_GET;
  advance(r);
}

static void on_release(pkv_xfer_endpoint *ep, const ux_msg *msg) {
  xfer_release_msg h;
  if (msg->len < sizeof h) return;
  memcpy(&h, msg->data, sizeof h);
  if (ep->staging_use == 1 && ep->staging_req == h.req_id &&
      ep->staging_ep == msg->reply_ep)
    ep->staging_use = 0;
}

static int grow_arrivals(pkv_xfer_endpoint *ep) {
  if (ep->arr_n < ep->arr_cap) return 1;
  int64_t cap = ep->arr_cap ? 2 * ep->arr_cap : 16;
  uint64_t *t = pkv__ux_malloc((size_t)cap * sizeof *t);
  pkv_seq_id *s = pkv__ux_malloc((size_t)cap * sizeof *s);
  if (!t || !s) {
    pkv__ux_free(t);
    pkv__ux_free(s);
    return 0;
  }
  if (ep->arr_n) {
    memcpy(t, ep->arr_tags, (size_t)ep->arr_n * sizeof *t);
    memcpy(s, ep->arr_seqs, (size_t)ep->arr_n * sizeof *s);
  }
  pkv__ux_free(ep->arr_tags);
  pkv__ux_free(ep->arr_seqs);
  ep->arr_tags = t;
  ep->arr_seqs = s;
  ep->arr_cap = cap;
  return 1;
}

/* The receiving side of a push: an internal request that gets the
 * sequence (asynchronously, so that progress never blocks on the pusher),
 * imports it and answers PUSHED. */
static void serve_push_reply(pkv_xfer_endpoint *ep, ucp_ep_h to, uint64_t id,
                             pkv_status st, pkv_seq_id seq) {
  xfer_pushed_msg rep;
  memset(&rep, 0, sizeof rep);
  rep.req_id = id;
  rep.status = st;
  rep.seq = seq;
  if (st) snprintf(rep.msg, sizeof rep.msg, "%s", pkv_last_error(ep->ctx));
  pkv__ux_send(ep, to, XFER_AM_PUSHED, &rep, sizeof rep);
}

static void serve_push(pkv_xfer_endpoint *ep, const ux_msg *msg) {
  xfer_push_msg h;
  if (msg->len < sizeof h) return;
  memcpy(&h, msg->data, sizeof h);
  pkv_status st;
  pkv_xfer_peer *back = NULL;
  pkv_xfer_request *r = NULL;
  if (msg->len != sizeof h + (size_t)h.rkey_len + h.addr_len ||
      h.n_tokens < 0 || h.tokens_off < h.kv_bytes ||
      (h.layout != PKV_LAYOUT_HND && h.layout != PKV_LAYOUT_NHD)) {
    st = pkv__ux_fail(ep->ctx, PKV_ERR_INVALID, "malformed push message");
    goto fail;
  }
  back = pkv__ux_back_peer(ep, msg->data + sizeof h + h.rkey_len, h.addr_len);
  if (!back) {
    st = pkv__ux_fail(ep->ctx, PKV_ERR_PEER, "push: cannot reach the pusher");
    goto fail;
  }
  r = new_req(ep, back, UX_SERVE);
  if (!r || !grow_arrivals(ep)) {
    st = pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "push: out of memory");
    goto fail;
  }
  r->internal = 1;
  r->reply_ep = msg->reply_ep;
  r->push = h;
  r->kv = pkv__ux_malloc(h.kv_bytes ? h.kv_bytes : 1);
  r->tokens = pkv__ux_malloc(h.n_tokens ? (size_t)h.n_tokens * sizeof(int32_t) : 1);
  if (!r->kv || !r->tokens) {
    st = pkv__ux_fail(ep->ctx, PKV_ERR_NO_MEMORY, "push: out of memory");
    goto fail;
  }
  if (ucp_ep_rkey_unpack(back->uep, msg->data + sizeof h, &r->rkey) != UCS_OK) {
    r->rkey = NULL;
    st = pkv__ux_fail(ep->ctx, PKV_ERR_INVALID, "push: bad rkey");
    goto fail;
  }
  r->get_err = UCS_OK;
  get_issue(r, 0, r->kv, h.kv_bytes, h.addr);
  get_issue(r, 1, r->tokens, (size_t)h.n_tokens * sizeof(int32_t),
            h.addr + h.tokens_off);
  r->deadline = pkv__ux_now_ms() + (double)ep->lease_ms;
  r->state = UX_WAIT_GET;
  return;
fail:
  serve_push_reply(ep, msg->reply_ep, h.req_id, st, -1);
  if (r) pkv__ux_request_free(r);
}

/* The gets of a served push are done (or failed): import and answer. */
static void serve_push_done(pkv_xfer_request *r) {
  pkv_xfer_endpoint *ep = r->ep;
  pkv_status st;
  pkv_seq_id seq = -1;
  if (r->get_err != UCS_OK || r->peer->failed) {
    st = pkv__ux_fail(ep->ctx, PKV_ERR_PEER, "push: RMA get: %s",
                      ucs_status_string(r->get_err != UCS_OK ? r->get_err
                                                             : UCS_ERR_CONNECTION_RESET));
  } else {
    pkv_seq_desc d;
    pkv_seq_desc_init(&d);
    d.namespace_id = r->push.namespace_id;
    d.priority_class = r->push.priority_class;
    st = pkv_seq_import(ep->cache, &d, r->tokens, r->push.n_tokens,
                        (pkv_layout)r->push.layout, r->kv, r->push.kv_bytes,
                        &seq);
    if (st == PKV_OK) { /* room made by grow_arrivals at the start */
      ep->arr_tags[ep->arr_n] = r->push.tag;
      ep->arr_seqs[ep->arr_n] = seq;
      ep->arr_n++;
    }
  }
  if (!r->peer->failed)
    serve_push_reply(ep, r->reply_ep, r->push.req_id, st, seq);
  finish(r, st, "%s", "");
}

static void on_pushed(pkv_xfer_endpoint *ep, const ux_msg *msg) {
  xfer_pushed_msg h;
  if (msg->len < sizeof h) return;
  memcpy(&h, msg->data, sizeof h);
  if (ep->staging_use == 2 && ep->staging_req == h.req_id) ep->staging_use = 0;
  pkv_xfer_request *r = find_req(ep, h.req_id, UX_PUSH);
  if (!r) return;
  h.msg[XFER_MSG_LEN - 1] = '\0';
  r->remote_seq = h.seq;
  if (h.status != PKV_OK)
    finish(r, (pkv_status)h.status, "peer: %s", h.msg);
  else
    finish(r, PKV_OK, "%s", "");
}

/* One pass; returns how many things happened (0: idle). */
static unsigned progress_once(pkv_xfer_endpoint *ep) {
  unsigned events = 0, e;
  for (int i = 0; i < 64 && (e = ucp_worker_progress(ep->worker)) != 0; i++)
    events += e;
  if (ep->inbox) events++;
  /* Take the inbox: handlers may progress (and so add to it) themselves. */
  ux_msg *m = ep->inbox, *keep = NULL, *keep_tail = NULL;
  ep->inbox = ep->inbox_tail = NULL;
  while (m) {
    ux_msg *next = m->next;
    int done = 1;
    switch (m->id) {
    case XFER_AM_STAGE: done = serve_stage(ep, m); break;
    case XFER_AM_STAGED: on_staged(ep, m); break;
    case XFER_AM_RELEASE: on_release(ep, m); break;
    case XFER_AM_PUSH: serve_push(ep, m); break;
    case XFER_AM_PUSHED: on_pushed(ep, m); break;
    default: break;
    }
    if (done) {
      pkv__ux_free(m);
    } else {
      m->next = NULL;
      if (keep_tail)
        keep_tail->next = m;
      else
        keep = m;
      keep_tail = m;
    }
    m = next;
  }
  if (keep) { /* deferred ones go first, in their order */
    keep_tail->next = ep->inbox;
    if (!ep->inbox) ep->inbox_tail = keep_tail;
    ep->inbox = keep;
  }
  /* A requester that never acknowledged (died, or freed its request
   * without a word) loses the staging after the lease. */
  if ((ep->staging_use == 1 || (ep->staging_use == 2 && ep->staging_orphan)) &&
      pkv__ux_now_ms() > ep->staging_deadline)
    ep->staging_use = 0;
  for (pkv_xfer_request *r = ep->reqs; r; r = r->next)
    if (r->state != UX_DONE) advance(r);
  for (pkv_xfer_request *r = ep->reqs, *next; r; r = next) {
    next = r->next;
    if (r->internal && r->state == UX_DONE) pkv__ux_request_free(r);
  }
  return events;
}

pkv_status pkv__ux_progress(pkv_xfer_endpoint *ep) {
  progress_once(ep);
  return PKV_OK;
}

pkv_status pkv__ux_poll_arrivals(pkv_xfer_endpoint *ep, uint64_t *tags,
                                 pkv_seq_id *seqs, int64_t max,
                                 int64_t *n_out) {
  int64_t k = ep->arr_n < max ? ep->arr_n : max;
  for (int64_t i = 0; i < k; i++) {
    tags[i] = ep->arr_tags[i];
    seqs[i] = ep->arr_seqs[i];
  }
  memmove(ep->arr_tags, ep->arr_tags + k,
          (size_t)(ep->arr_n - k) * sizeof *ep->arr_tags);
  memmove(ep->arr_seqs, ep->arr_seqs + k,
          (size_t)(ep->arr_n - k) * sizeof *ep->arr_seqs);
  ep->arr_n -= k;
  *n_out = k;
  return PKV_OK;
}

/* ---------------------------------------------------------------- completion */

static pkv_status outcome(pkv_xfer_request *r) {
  if (r->status == PKV_OK) return PKV_OK;
  return pkv__ux_fail(r->ctx, r->status, "%s", r->msg);
}

pkv_status pkv__ux_test(pkv_xfer_request *req, int32_t *done,
                        pkv_status *st) {
  pkv__ux_progress(req->ep);
  *done = req->state == UX_DONE;
  *st = *done ? req->status : PKV_OK;
  if (*done && req->status) outcome(req);
  return PKV_OK;
}

pkv_status pkv__ux_wait(pkv_xfer_request *req, int64_t timeout_ms) {
  double end = pkv__ux_now_ms() + (double)timeout_ms;
  unsigned idle = 0;
  while (req->state != UX_DONE) {
    if (progress_once(req->ep)) idle = 0;
    if (req->state == UX_DONE) break;
    if (timeout_ms >= 0 && pkv__ux_now_ms() > end)
      return pkv__ux_fail(req->ctx, PKV_ERR_TIMEOUT,
                          "request not complete after %lld ms",
                          (long long)timeout_ms);
    /* long idle: do not starve the peer of the CPU when both share a core */
    if (++idle > 4096) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
  return outcome(req);
}

pkv_status pkv__ux_result(const pkv_xfer_request *req, int64_t *n_imported,
                          int64_t *n_skipped, pkv_seq_id *remote_seq) {
  if (req->state != UX_DONE)
    return pkv__ux_fail(req->ctx, PKV_ERR_STATE, "req has not completed");
  if (n_imported) *n_imported = req->n_imported;
  if (n_skipped) *n_skipped = req->n_skipped;
  if (remote_seq) *remote_seq = req->remote_seq;
  return PKV_OK;
}

void pkv__ux_request_free(pkv_xfer_request *req) {
  pkv_xfer_endpoint *ep = req->ep;
  if (req->state != UX_DONE) {
    drain_gets(req);
    send_release(req);
    if (req->kind == UX_PUSH && ep->staging_use == 2 &&
        ep->staging_req == req->id) {
      /* the peer may still be reading the staging: keep it until PUSHED
       * or the lease */
      ep->staging_orphan = 1;
      ep->staging_deadline = pkv__ux_now_ms() + (double)ep->lease_ms;
    }
  }
  for (pkv_xfer_request **pp = &ep->reqs; *pp; pp = &(*pp)->next)
    if (*pp == req) {
      *pp = req->next;
      break;
    }
  if (req->rkey) ucp_rkey_destroy(req->rkey);
  pkv__ux_free(req->keys);
  if (!req->gets_stuck) {
    pkv__ux_free(req->kv);
    pkv__ux_free(req->tokens);
  }
  pkv__ux_free(req);
}
