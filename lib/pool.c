/* SPDX-License-Identifier: Apache-2.0 */
/* Page pool: free list, refcounts, per-class LRU of cached pages. */
#include "alloc.h"
#include "pool.h"

#include <stdlib.h>

bool pkv__pool_init(pkv_pool *p, int64_t num_pages, int32_t page_size,
                   int32_t num_classes) {
  p->pg = pkv__calloc((size_t)num_pages, sizeof *p->pg);
  if (!p->pg) return false;
  p->n = num_pages;
  p->page_size = page_size;
  /* Pages come out in index order at first: predictable for engines and
   * tests, and cache friendly. */
  for (int64_t i = 0; i < num_pages; i++) {
    p->pg[i].next = i + 1 < num_pages ? (int32_t)(i + 1) : -1;
    p->pg[i].prev = -1;
  }
  p->free_head = 0;
  p->nfree = num_pages;
  p->ncls = num_classes;
  for (int c = 0; c < PKV_MAX_CLASSES; c++) p->lru_head[c] = p->lru_tail[c] = -1;
  return true;
}

void pkv__pool_fini(pkv_pool *p) {
  if (!p->pg) return;
  for (int64_t i = 0; i < p->n; i++) pkv__free(p->pg[i].tokens);
  pkv__free(p->pg);
  p->pg = NULL;
}

int64_t pkv__pool_unused_reserve(const pkv_pool *p, int32_t cls) {
  int64_t u = p->reserved[cls] - p->in_use[cls];
  return u > 0 ? u : 0;
}

int64_t pkv__pool_quota(const pkv_pool *p, int32_t cls) {
  int64_t q = p->nfree + p->ncached;
  for (int32_t d = 0; d < p->ncls; d++)
    if (d != cls) q -= pkv__pool_unused_reserve(p, d);
  return q > 0 ? q : 0;
}

int64_t pkv__pool_reclaimable(const pkv_pool *p, int32_t cls) {
  int64_t r = p->nfree;
  for (int32_t d = 0; d <= cls; d++) r += p->ncached_cls[d];
  return r;
}

bool pkv__pool_can_take(const pkv_pool *p, int32_t cls, int64_t k) {
  return k <= pkv__pool_quota(p, cls) && k <= pkv__pool_reclaimable(p, cls);
}

static void lru_unlink(pkv_pool *p, int32_t page) {
  pkv_page *g = &p->pg[page];
  int c = g->cls;
  if (g->prev >= 0) p->pg[g->prev].next = g->next;
  else p->lru_head[c] = g->next;
  if (g->next >= 0) p->pg[g->next].prev = g->prev;
  else p->lru_tail[c] = g->prev;
  g->next = g->prev = -1;
  p->ncached_cls[c]--;
  p->ncached--;
}

static void lru_push_tail(pkv_pool *p, int32_t page) {
  pkv_page *g = &p->pg[page];
  int c = g->cls;
  g->prev = p->lru_tail[c];
  g->next = -1;
  if (g->prev >= 0) p->pg[g->prev].next = page;
  else p->lru_head[c] = page;
  p->lru_tail[c] = page;
  p->ncached_cls[c]++;
  p->ncached++;
  g->state = PKV_PAGE_CACHED;
}

static void to_free_list(pkv_pool *p, int32_t page) {
  pkv_page *g = &p->pg[page];
  pkv__free(g->tokens);
  g->tokens = NULL;
  g->gen++;
  g->holds = 0;
  g->entry = NULL;
  g->state = PKV_PAGE_FREE;
  g->prev = -1;
  g->next = p->free_head;
  p->free_head = page;
  p->nfree++;
}

static void make_live(pkv_pool *p, int32_t page, int32_t cls) {
  pkv_page *g = &p->pg[page];
  g->state = PKV_PAGE_LIVE;
  g->cls = (int8_t)cls;
  p->nlive++;
  p->in_use[cls]++;
}

int32_t pkv__pool_take(pkv_pool *p, int32_t cls) {
  int32_t page = p->free_head;
  if (page >= 0) {
    p->free_head = p->pg[page].next;
    p->nfree--;
  } else {
    int32_t c = 0;
    while (p->lru_head[c] < 0) c++; /* can_take guaranteed one exists */
    page = p->lru_head[c];
    lru_unlink(p, page);
    if (p->on_evict) p->on_evict(p->ud, page);
    pkv_page *g = &p->pg[page];
    pkv__free(g->tokens);
    g->tokens = NULL;
    g->gen++;
    g->holds = 0;
    g->entry = NULL;
    p->evictions++;
  }
  pkv_page *g = &p->pg[page];
  g->next = g->prev = -1;
  g->ref = 1;
  g->known = 1;
  make_live(p, page, cls);
  return page;
}

void pkv__pool_ref(pkv_pool *p, int32_t page, int32_t cls) {
  pkv_page *g = &p->pg[page];
  if (g->ref++ == 0) {
    lru_unlink(p, page);
    make_live(p, page, cls);
  }
}

void pkv__pool_unref(pkv_pool *p, int32_t page) {
  pkv_page *g = &p->pg[page];
  if (--g->ref > 0) return;
  p->nlive--;
  p->in_use[g->cls]--;
  if (g->entry || g->holds > 0) lru_push_tail(p, page);
  else to_free_list(p, page);
}

void pkv__pool_maybe_free(pkv_pool *p, int32_t page) {
  pkv_page *g = &p->pg[page];
  if (g->state != PKV_PAGE_CACHED || g->entry || g->holds > 0) return;
  lru_unlink(p, page);
  to_free_list(p, page);
}
