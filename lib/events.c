/* SPDX-License-Identifier: Apache-2.0 */
/* KV events (doc/kv-events.md). */
#include "cache.h"
#include "struct_size.h"

#include <string.h>

void pkv_kv_event_init_sized(pkv_kv_event *ev, size_t size) {
  pkv_kv_event full;
  memset(&full, 0, sizeof full);
  pkv__struct_init(ev, size, &full, sizeof full);
}

pkv_status pkv_cache_set_event_queue(pkv_cache *c, int64_t capacity) {
  (void)capacity;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_cache_poll_events(pkv_cache *c, pkv_kv_event *out, int64_t max,
                                 int64_t *n_out, int64_t *lost_out) {
  (void)out; (void)max; (void)n_out; (void)lost_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_cache_set_event_callback(pkv_cache *c, pkv_event_fn fn,
                                        void *user) {
  (void)fn; (void)user;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}
