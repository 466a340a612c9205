/* SPDX-License-Identifier: Apache-2.0 */
/* Statistics: a snapshot of the pool and the counters. */
#include "cache.h"
#include "struct_size.h"

#include <string.h>

pkv_status pkv_cache_stats(const pkv_cache *c, pkv_stats *user_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!user_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st =
      pkv__struct_out_check(c->ctx, "out", user_out, PKV__V1_STATS);
  if (st != PKV_OK) return st;
  /* Filled at this library's size, then written at the caller's. */
  pkv_stats full;
  pkv_stats *out = &full;
  pkv_stats_init(out);
  const pkv_pool *p = &c->pool;
  out->pages_total = p->n;
  out->pages_free = p->nfree;
  out->pages_live = p->nlive;
  out->pages_cached = p->ncached;
  out->host_pages_total = c->desc.num_host_pages;
  out->host_pages_used = c->desc.num_host_pages - c->host_nfree;
  out->tokens_stored = c->tokens_stored;
  out->waste_slots = c->waste_slots;
  out->num_seqs = (int64_t)c->seqs.count;
  out->prefix_lookups = c->prefix_lookups;
  out->prefix_hit_tokens = c->prefix_hit_tokens;
  out->evictions = p->evictions;
  out->preemptions_suggested = c->preemptions_suggested;
  out->swaps_out = c->swaps_out;
  out->swaps_in = c->swaps_in;
  out->cow_copies = c->cow_copies;
  out->alloc_failures = c->alloc_failures;
  out->num_classes = p->ncls;
  for (int32_t k = 0; k < p->ncls; k++) {
    out->classes[k].reserved = p->reserved[k];
    out->classes[k].in_use = p->in_use[k];
    int64_t b = p->in_use[k] - p->reserved[k];
    out->classes[k].borrowed = b > 0 ? b : 0;
  }
  pkv__struct_out(user_out, &full, sizeof full);
  return PKV_OK;
}

pkv_status pkv_page_get_info(const pkv_cache *c, int32_t page,
                             pkv_page_info *user_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!user_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st =
      pkv__struct_out_check(c->ctx, "out", user_out, PKV__V1_PAGE_INFO);
  if (st != PKV_OK) return st;
  if (page < 0 || page >= c->pool.n)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "page %d is outside 0..%lld", page,
                    (long long)c->pool.n - 1);
  const pkv_page *g = &c->pool.pg[page];
  pkv_page_info out;
  pkv_page_info_init(&out);
  out.state = g->state;
  out.refcount = g->ref;
  out.priority_class = g->cls;
  out.indexed = g->entry != NULL;
  pkv__struct_out(user_out, &out, sizeof out);
  return PKV_OK;
}
