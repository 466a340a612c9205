/* SPDX-License-Identifier: Apache-2.0 */
/* The page pool: per-page state and refcounts, the free list, the LRU lists
 * of cached pages (one per priority class) and the per-class accounting.
 * Every operation here is O(1) per page and cannot fail: callers check
 * pkv__pool_can_take() (and reserve host memory) before mutating. */
#ifndef PKV_POOL_H
#define PKV_POOL_H

#include "pagedkv.h"

#include <stdbool.h>
#include <stdint.h>


typedef struct pkv_pentry pkv_pentry;

typedef struct pkv_page {
  int32_t ref;          /* sequences (and pending copies) holding the page */
  int32_t next, prev;   /* free list (next) or the class LRU list */
  uint32_t gen;         /* bumped each time the page is freed or evicted */
  int32_t holds;        /* closed sessions that keep the page cached */
  uint8_t state;        /* PKV_PAGE_* */
  uint8_t known;        /* every token written so far has a known id */
  int8_t cls;           /* class charged (live) or attributed (cached) */
  int32_t *tokens;      /* page_size ids when known, else NULL */
  pkv_pentry *entry;    /* prefix-index entry, NULL when not indexed */
} pkv_page;

typedef struct pkv_pool {
  pkv_page *pg;
  int64_t n;
  int32_t page_size;
  int32_t free_head;
  int64_t nfree, nlive, ncached;
  int32_t ncls;
  int32_t lru_head[PKV_MAX_CLASSES], lru_tail[PKV_MAX_CLASSES];
  int64_t ncached_cls[PKV_MAX_CLASSES];
  int64_t reserved[PKV_MAX_CLASSES], in_use[PKV_MAX_CLASSES];
  int64_t evictions;
  /* Called when a cached page is evicted, before it is reused, so that the
   * prefix index forgets it. */
  void (*on_evict)(void *ud, int32_t page);
  void *ud;
} pkv_pool;

bool pkv__pool_init(pkv_pool *p, int64_t num_pages, int32_t page_size,
                   int32_t num_classes);
void pkv__pool_fini(pkv_pool *p);

/* Unused part of a class's reservation. */
int64_t pkv__pool_unused_reserve(const pkv_pool *p, int32_t cls);
/* Pages class cls may still make live (quota rule, see control-plane.md). */
int64_t pkv__pool_quota(const pkv_pool *p, int32_t cls);
/* Free pages plus cached pages class cls may evict. */
int64_t pkv__pool_reclaimable(const pkv_pool *p, int32_t cls);
/* Whether class cls may take k fresh pages now. */
bool pkv__pool_can_take(const pkv_pool *p, int32_t cls, int64_t k);

/* Takes one page for class cls: the free list first, else evicts the least
 * recently used cached page of the lowest class <= cls. The page is live
 * with refcount 1, known = 1, no tokens. */
int32_t pkv__pool_take(pkv_pool *p, int32_t cls);
/* +1 reference; a cached page becomes live, charged to cls. */
void pkv__pool_ref(pkv_pool *p, int32_t page, int32_t cls);
/* -1 reference; at 0 the page becomes cached when it is indexed or held by
 * a session, else free. */
void pkv__pool_unref(pkv_pool *p, int32_t page);
/* A cached page that lost its last reason to be cached becomes free. */
void pkv__pool_maybe_free(pkv_pool *p, int32_t page);

/* Whether an append may write into the page in place: only its one live
 * holder keeps it. Any other holder (a second sequence, a pending copy, a
 * closed session's hold, an index entry that can hand the page to another
 * request) would see the new tokens, so the append copies the page first. */
static inline bool pkv__page_writable(const pkv_pool *p, int32_t page) {
  const pkv_page *g = &p->pg[page];
  return g->ref == 1 && g->holds == 0 && g->entry == NULL;
}

#endif
