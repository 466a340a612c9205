/* SPDX-License-Identifier: Apache-2.0 */
/* Prefix index: committed full pages keyed by a chained XXH3-128 hash of
 * (parent key, namespace, token ids), every hit verified token by token. */
#ifndef PKV_PREFIX_H
#define PKV_PREFIX_H

#include "cache.h"

struct pkv_pentry {
  XXH128_hash_t key;
  XXH128_hash_t parent_key; /* the parent's key when has_parent (events) */
  bool has_parent;
  uint64_t ns;
  int32_t page;
  int32_t parent;        /* indexed parent page, -1 at the root */
  uint32_t parent_gen;   /* the parent's generation when indexed */
  pkv_pentry *bnext, *bprev;   /* bucket chain */
  pkv_pentry *nnext, *nprev;   /* namespace list */
};

/* The chained key of a page: XXH3-128(parent key, ns, token ids). */
XXH128_hash_t pkv__prefix_page_key(XXH128_hash_t parent, uint64_t ns,
                                   const int32_t *tokens, int32_t ps);
/* The entry of (key, ns) under the indexed parent page (-1: root) whose
 * page holds exactly these tokens; NULL when none. */
pkv_pentry *pkv__prefix_lookup(const pkv_cache *c, XXH128_hash_t key,
                               uint64_t ns, int32_t parent,
                               const int32_t *tokens);
/* Room for `extra` more entries of namespace ns; false when memory is
 * short (nothing else changed then). */
bool pkv__prefix_reserve(pkv_cache *c, uint64_t ns, int64_t extra);
/* Links a preallocated entry (pkv__prefix_reserve made room) for a page
 * whose tokens are set; sends its PAGE_STORED event. Cannot fail. */
void pkv__prefix_insert(pkv_cache *c, pkv_pentry *e, int32_t page,
                        XXH128_hash_t key, uint64_t ns, int32_t parent,
                        XXH128_hash_t parent_key);
/* The page is being evicted or invalidated: drop its entry. */
void pkv__prefix_forget(pkv_cache *c, int32_t page);
void pkv__prefix_free(pkv_cache *c);
/* Indexes the sequence's full committed pages not yet considered, linking
 * the preallocated entries spare[0..nspare) (enough for every such page);
 * returns how many it used, from the front. Cannot fail. */
int64_t pkv__prefix_index_seq(pkv_cache *c, pkv_seq *s, pkv_pentry **spare,
                              int64_t nspare);

/* pkv_seq_commit in two steps, for callers that must do device work
 * between the part that can fail and the part that changes the index:
 * prepare allocates the entries (PKV_ERR_NO_MEMORY, nothing changed),
 * finish indexes (cannot fail), cancel gives the entries back. */
typedef struct pkv_prefix_spare {
  pkv_pentry **spare;
  int64_t bound, committed;
} pkv_prefix_spare;
pkv_status pkv__prefix_commit_prepare(pkv_cache *c, pkv_seq *s,
                                      int64_t committed, pkv_prefix_spare *sp);
void pkv__prefix_commit_finish(pkv_cache *c, pkv_seq *s, pkv_prefix_spare *sp);
void pkv__prefix_commit_cancel(pkv_prefix_spare *sp);

#endif
