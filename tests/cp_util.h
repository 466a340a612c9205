/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the control-plane tests: a CPU context, small caches,
 * and snapshots of the whole visible state for all-or-nothing checks. */
#ifndef PKV_CP_UTIL_H
#define PKV_CP_UTIL_H

#include "pagedkv.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline pkv_context *cp_ctx(void) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&d, &ctx) != PKV_OK) {
    printf("Bail out! CPU context: %s\n", pkv_last_error(NULL));
    exit(1);
  }
  return ctx;
}

static inline pkv_cache *cp_cache(pkv_context *ctx, int32_t page_size,
                           int64_t num_pages) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.page_size = page_size;
  d.num_pages = num_pages;
  d.dtype = PKV_DTYPE_F16;
  pkv_cache *c = NULL;
  if (pkv_cache_create(ctx, &d, &c) != PKV_OK) {
    printf("Bail out! cache: %s\n", pkv_last_error(ctx));
    exit(1);
  }
  return c;
}

/* Everything an engine can observe about a set of sequences. */
typedef struct cp_snap {
  pkv_stats st;
  int n;
  int64_t len[64], np[64];
  int32_t pages[64][256];
} cp_snap;

static inline void cp_take(const pkv_cache *c, const pkv_seq_id *ids, int n,
                    cp_snap *s) {
  memset(s, 0, sizeof *s);
  pkv_stats_init(&s->st);
  pkv_cache_stats(c, &s->st);
  s->n = n;
  for (int i = 0; i < n && i < 64; i++) {
    if (pkv_seq_length(c, ids[i], &s->len[i]) != PKV_OK) s->len[i] = -1;
    if (pkv_seq_pages(c, ids[i], s->pages[i], 256, &s->np[i]) != PKV_OK)
      s->np[i] = -1;
  }
}

static inline int cp_same(const cp_snap *a, const cp_snap *b) {
  return !memcmp(a, b, sizeof *a);
}

/* free + live + cached == total */
static inline int cp_conserved(const pkv_cache *c) {
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  return st.pages_free + st.pages_live + st.pages_cached == st.pages_total;
}

static inline pkv_seq_id cp_open(pkv_cache *c, int32_t cls, uint64_t ns) {
  pkv_seq_desc d;
  pkv_seq_desc_init(&d);
  d.priority_class = cls;
  d.namespace_id = ns;
  pkv_seq_id id = -1;
  if (pkv_seq_open(c, &d, &id) != PKV_OK) return -1;
  return id;
}

static inline int32_t cp_ref(const pkv_cache *c, int32_t page) {
  pkv_page_info pi;
  pkv_page_info_init(&pi);
  if (pkv_page_get_info(c, page, &pi) != PKV_OK) return -1;
  return pi.refcount;
}

static inline int32_t cp_state(const pkv_cache *c, int32_t page) {
  pkv_page_info pi;
  pkv_page_info_init(&pi);
  if (pkv_page_get_info(c, page, &pi) != PKV_OK) return -1;
  return pi.state;
}

static inline int64_t cp_pages(const pkv_cache *c, pkv_seq_id id,
                               int32_t *pages, int64_t cap) {
  int64_t n = -1;
  if (pkv_seq_pages(c, id, pages, cap, &n) != PKV_OK) return -1;
  return n;
}

static inline pkv_cache *cp_cache_desc(pkv_context *ctx, pkv_cache_desc *d) {
  pkv_cache *c = NULL;
  if (pkv_cache_create(ctx, d, &c) != PKV_OK) {
    printf("Bail out! cache: %s\n", pkv_last_error(ctx));
    exit(1);
  }
  return c;
}

/* Every page's info, for before/after comparisons. */
static inline pkv_page_info *cp_all_pages(const pkv_cache *c) {
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  pkv_page_info *a = calloc((size_t)st.pages_total, sizeof *a);
  for (int64_t i = 0; i < st.pages_total; i++) {
    pkv_page_info_init(&a[i]);
    pkv_page_get_info(c, (int32_t)i, &a[i]);
  }
  return a;
}

#endif
