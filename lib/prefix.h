/* SPDX-License-Identifier: Apache-2.0 */
/* Prefix index: committed full pages keyed by a chained XXH3-128 hash of
 * (parent key, namespace, token ids), every hit verified token by token. */
#ifndef PKV_PREFIX_H
#define PKV_PREFIX_H

#include "cache.h"

struct pkv_pentry {
  XXH128_hash_t key;
  uint64_t ns;
  int32_t page;
  int32_t parent;        /* indexed parent page, -1 at the root */
  uint32_t parent_gen;   /* the parent's generation when indexed */
  pkv_pentry *bnext, *bprev;   /* bucket chain */
  pkv_pentry *nnext, *nprev;   /* namespace list */
};

/* The page is being evicted or invalidated: drop its entry. */
void pkv__prefix_forget(pkv_cache *c, int32_t page);
void pkv__prefix_free(pkv_cache *c);
/* Indexes the sequence's full committed pages not yet considered, linking
 * the preallocated entries spare[0..nspare) (enough for every such page);
 * returns how many it used, from the front. Cannot fail. */
int64_t pkv__prefix_index_seq(pkv_cache *c, pkv_seq *s, pkv_pentry **spare,
                              int64_t nspare);

#endif
