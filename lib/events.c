/* SPDX-License-Identifier: Apache-2.0 */
/* KV events (doc/kv-events.md): a preallocated ring and a callback per
 * cache. The prefix index sends them (prefix.c): PAGE_STORED when a page
 * is indexed, PAGE_EVICTED when it leaves the index, NAMESPACE_DROPPED for
 * pkv_namespace_drop. Sending never allocates and never fails. */
#include "alloc.h"
#include "cache.h"
#include "struct_size.h"

#include <string.h>

/* The queue's largest capacity: 2^24 events of 80 bytes = 1.3 GB would be
 * a bug in the caller, not a queue. */
#define PKV__MAX_EVENT_QUEUE (1LL << 24)

/* The 1.0 fields of pkv_kv_event (struct_size rule). */
#define PKV__V1_KV_EVENT PKV__SIZE_THROUGH(pkv_kv_event, seqno)

void pkv_kv_event_init_sized(pkv_kv_event *ev, size_t size) {
  pkv_kv_event full;
  memset(&full, 0, sizeof full);
  pkv__struct_init(ev, size, &full, sizeof full);
}

void pkv__event_emit(pkv_cache *c, int32_t kind, uint64_t ns,
                     const pkv_page_key *key, const pkv_page_key *parent) {
  pkv_events *q = &c->events;
  if (!q->fn && !q->ring) {
    q->seqno++; /* seqno counts every event, seen or not */
    return;
  }
  pkv_kv_event ev;
  memset(&ev, 0, sizeof ev);
  ev.struct_size = sizeof ev;
  ev.kind = kind;
  ev.num_tokens = kind == PKV_EVENT_NAMESPACE_DROPPED ? 0 : c->geom.page_size;
  ev.namespace_id = ns;
  if (key) ev.key = *key;
  if (parent) {
    ev.parent_key = *parent;
    ev.has_parent = 1;
  }
  ev.seqno = ++q->seqno;
  if (q->ring) {
    if (q->count == q->cap) { /* full: the oldest goes */
      q->head = (q->head + 1) % q->cap;
      q->count--;
      q->lost++;
    }
    q->ring[(q->head + q->count) % q->cap] = ev;
    q->count++;
  }
  if (q->fn) q->fn(q->user, &ev);
}

void pkv__events_free(pkv_cache *c) {
  pkv__free(c->events.ring);
  c->events.ring = NULL;
  c->events.cap = c->events.count = c->events.head = 0;
}

pkv_status pkv_cache_set_event_queue(pkv_cache *c, int64_t capacity) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (capacity < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "capacity %lld is negative",
                     (long long)capacity);
  if (capacity > PKV__MAX_EVENT_QUEUE)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                     "capacity %lld exceeds the queue limit %lld",
                     (long long)capacity, (long long)PKV__MAX_EVENT_QUEUE);
  pkv_events *q = &c->events;
  pkv_kv_event *ring = NULL;
  if (capacity > 0) {
    ring = pkv__malloc((size_t)capacity * sizeof *ring);
    if (!ring)
      return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "event queue of %lld events",
                       (long long)capacity);
  }
  /* Keep the newest events that fit; the others count as lost. */
  int64_t keep = q->count < capacity ? q->count : capacity;
  for (int64_t i = 0; i < keep; i++)
    ring[i] = q->ring[(q->head + q->count - keep + i) % q->cap];
  q->lost += q->count - keep;
  pkv__free(q->ring);
  q->ring = ring;
  q->cap = capacity;
  q->head = 0;
  q->count = keep;
  if (capacity == 0) q->lost = 0; /* off: nothing left to report */
  return PKV_OK;
}

pkv_status pkv_cache_poll_events(pkv_cache *c, pkv_kv_event *out, int64_t max,
                                 int64_t *n_out, int64_t *lost_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!n_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "n_out is NULL");
  if (max < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "max %lld is negative",
                     (long long)max);
  if (max > 0 && !out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  size_t stride = 0;
  if (max > 0) {
    pkv_status st = pkv__struct_out_check(c->ctx, "out", out, PKV__V1_KV_EVENT);
    if (st != PKV_OK) return st;
    stride = pkv__struct_size_of(out);
  }
  pkv_events *q = &c->events;
  int64_t n = q->count < max ? q->count : max;
  for (int64_t i = 0; i < n; i++) {
    pkv_kv_event *dst = (pkv_kv_event *)((char *)out + (size_t)i * stride);
    memcpy(dst, &stride, sizeof stride);
    pkv__struct_out(dst, &q->ring[(q->head + i) % q->cap], sizeof(pkv_kv_event));
    if (stride > sizeof(pkv_kv_event)) /* a newer header's fields: defaults */
      memset((char *)dst + sizeof(pkv_kv_event), 0,
             stride - sizeof(pkv_kv_event));
  }
  if (n > 0) {
    q->head = (q->head + n) % q->cap;
    q->count -= n;
  }
  *n_out = n;
  if (lost_out) *lost_out = q->lost;
  q->lost = 0;
  return PKV_OK;
}

pkv_status pkv_cache_set_event_callback(pkv_cache *c, pkv_event_fn fn,
                                        void *user) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  c->events.fn = fn;
  c->events.user = fn ? user : NULL;
  return PKV_OK;
}
