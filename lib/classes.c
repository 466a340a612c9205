/* SPDX-License-Identifier: Apache-2.0 */
/* Priority classes: reservations are accounting only (no address range),
 * so they can be resized at run time; preemption candidates. */
#include "cache.h"

#include <math.h>

pkv_status pkv_class_set_reserved(pkv_cache *c, int32_t cls,
                                  int64_t reserved_pages) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_pool *p = &c->pool;
  if (cls < 0 || cls >= p->ncls)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "cls %d is outside 0..%d", cls,
                    p->ncls - 1);
  if (reserved_pages < 0 || reserved_pages > p->n)
    return pkv__fail(c->ctx, PKV_ERR_INVALID,
                    "reserved_pages %lld is outside 0..%lld",
                    (long long)reserved_pages, (long long)p->n);
  if (reserved_pages < p->reserved[cls] && reserved_pages < p->in_use[cls])
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "reserved_pages %lld is below class %d's current use of "
                    "%lld pages: shrink no further than that",
                    (long long)reserved_pages, cls, (long long)p->in_use[cls]);
  int64_t sum = reserved_pages, claim = 0;
  for (int32_t d = 0; d < p->ncls; d++) {
    int64_t r = d == cls ? reserved_pages : p->reserved[d];
    if (d != cls) sum += r;
    claim += r > p->in_use[d] ? r : p->in_use[d];
  }
  int64_t cap = (int64_t)floor(c->desc.max_reserved_fraction * (double)p->n);
  if (sum > cap)
    return pkv__fail(c->ctx, PKV_ERR_INVALID,
                    "reservations would sum to %lld pages, over the cap "
                    "max_reserved_fraction %g * %lld pages = %lld",
                    (long long)sum, c->desc.max_reserved_fraction,
                    (long long)p->n, (long long)cap);
  if (claim > p->n)
    return pkv__fail(c->ctx, PKV_ERR_NO_PAGES,
                    "reserved_pages %lld for class %d cannot be honoured now: "
                    "other classes use %lld pages beyond their reserves",
                    (long long)reserved_pages, cls,
                    (long long)(claim - reserved_pages - (p->n - claim)));
  p->reserved[cls] = reserved_pages;
  return PKV_OK;
}

pkv_status pkv_preemption_candidates(const pkv_cache *c, int32_t cls,
                                     pkv_seq_id *out, int64_t capacity,
                                     int64_t *count) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!count) return pkv__fail(c->ctx, PKV_ERR_NULL, "count is NULL");
  if (cls < 0 || cls >= c->pool.ncls)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "cls %d is outside 0..%d", cls,
                    c->pool.ncls - 1);
  if (capacity < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "capacity %lld is negative",
                    (long long)capacity);
  if (capacity > 0 && !out)
    return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL with capacity %lld",
                    (long long)capacity);
  int64_t n = 0;
  for (int32_t d = 0; d < cls; d++)
    for (const pkv_seq *s = c->cls_tail[d]; s; s = s->cprev) {
      if (s->swapped || s->npages == 0) continue;
      if (n < capacity) out[n] = s->id;
      n++;
    }
  /* A counter, not logical state: const queries may bump it. */
  ((pkv_cache *)c)->preemptions_suggested += n < capacity ? n : capacity;
  *count = n;
  return PKV_OK;
}
