/* SPDX-License-Identifier: Apache-2.0 */
/* KV events: the bounded queue and the callback of a cache. Emitting never
 * fails and never allocates (the queue is preallocated), so the mutating
 * calls that emit stay all-or-nothing. */
#ifndef PKV_EVENTS_H
#define PKV_EVENTS_H

#include "pagedkv.h"

#include <stdint.h>

typedef struct pkv_cache pkv_cache;

typedef struct pkv_events {
  pkv_kv_event *ring;     /* capacity entries; NULL when the queue is off */
  int64_t cap, head, count;
  int64_t lost;           /* dropped since the last poll */
  uint64_t seqno;         /* of the last event sent */
  pkv_event_fn fn;
  void *user;
} pkv_events;

/* Sends one event (kind, namespace, key, parent) to the callback and the
 * queue. */
void pkv__event_emit(pkv_cache *c, int32_t kind, uint64_t ns,
                     const pkv_page_key *key, const pkv_page_key *parent);
void pkv__events_free(pkv_cache *c);

#endif
