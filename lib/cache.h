/* SPDX-License-Identifier: Apache-2.0 */
/* The cache object shared by the control-plane files. */
#ifndef PKV_CACHE_H
#define PKV_CACHE_H

#include "backend.h"
#include "events.h"
#include "hmap.h"
#include "pool.h"
#include "seq.h"

typedef struct pkv_prefix_index {
  pkv_pentry **buckets;  /* chained by key */
  size_t nbuckets;       /* power of two */
  int64_t count;
  pkv_hmap namespaces;   /* namespace id -> list head (pkv_pentry*) */
} pkv_prefix_index;

struct pkv_cache {
  pkv_context *ctx;
  pkv_cache_desc desc;
  pkv_cache_geometry geom;
  int32_t num_pools;
  void **natives;        /* K0, V0, K1, V1, ... from ctx->ops->mem_alloc */
  pkv_buffer **pools;    /* views of the same */
  /* fp8 scales [num_layers][num_kv_heads] of K and of V (all 1 at
   * creation); allocated for every cache so the view can point at them */
  float *k_scales, *v_scales;
  bool external;         /* natives are the engine's (create_over): not freed */
  pkv_pool pool;

  pkv_hmap seqs;         /* id -> pkv_seq* */
  pkv_seq_id next_id;
  uint64_t admit_counter;
  pkv_seq *cls_head[PKV_MAX_CLASSES], *cls_tail[PKV_MAX_CLASSES];
  int64_t tokens_stored, waste_slots;

  pkv_prefix_index prefix;
  pkv_hmap sessions;     /* key -> pkv_session* */

  /* Pending copy-on-write copies: pairs (src, dst); each src keeps one
   * reference until the copy has run. */
  int32_t *cow_pairs;
  int64_t cow_n, cow_cap;
  pkv_buffer *cow_dev;

  /* Host tier. */
  unsigned char *host_base;
  int64_t *host_free;    /* stack of free host pages */
  int64_t host_nfree;

  /* Counters since creation. */
  int64_t prefix_lookups, prefix_hit_tokens, preemptions_suggested;
  int64_t swaps_out, swaps_in, cow_copies, alloc_failures;

  pkv_events events;     /* KV events: queue and callback (events.c) */

  uint64_t build_stamp;  /* unique per batch build attempt */
  /* Bumped whenever any sequence's existing slots stop being its own
   * (copy-on-write remap, truncation, swap out/in, release, close): a batch
   * built under an older value re-checks its rows before a write. */
  uint64_t map_gen;
};

/* Looks a sequence up; fails with PKV_ERR_NOT_FOUND naming `what`. */
pkv_status pkv__cache_find_seq(const pkv_cache *c, pkv_seq_id id,
                              const char *what, pkv_seq **out);

/* The per-sequence part of tokens_stored and waste_slots. */
void pkv__seq_account(pkv_cache *c, const pkv_seq *s, int sign);

/* Page arithmetic. */
static inline int64_t pkv_pages_for(int64_t tokens, int32_t page_size) {
  return (tokens + page_size - 1) / page_size;
}

/* Fails with PKV_ERR_NO_PAGES (and counts the failure) describing why class
 * cls cannot take `need` pages. */
pkv_status pkv__cache_no_pages(pkv_cache *c, int32_t cls, int64_t need,
                              const char *what);

/* Runs the pending copy-on-write copies (no-op when none). */
pkv_status pkv__cache_flush_copies(pkv_cache *c);

#endif
