/* SPDX-License-Identifier: Apache-2.0 */
/* Copy-on-write queue: page copies batched until the next flush. */
#ifndef PKV_COW_H
#define PKV_COW_H

#include "cache.h"

/* Makes room for `extra` more pending copies; false on allocation failure. */
bool pkv__cow_reserve(pkv_cache *c, int64_t extra);
/* Queues a copy; src keeps one reference (the caller's) until it has run. */
void pkv__cow_push(pkv_cache *c, int32_t src, int32_t dst);

#endif
