/* SPDX-License-Identifier: Apache-2.0 */
/* Sequences: a length and an ordered list of pages (the block-table row). */
#ifndef PKV_SEQ_H
#define PKV_SEQ_H

#include "pagedkv.h"

#include <stdbool.h>
#include <stdint.h>
#include <xxhash.h>

typedef struct pkv_seq pkv_seq;

struct pkv_seq {
  pkv_seq_id id;
  int64_t len;
  int32_t *pages;        /* device pages [npages] while resident */
  int64_t *host_pages;   /* host pages [npages] while swapped out */
  int32_t *host_tokens;  /* token ids [npages][page_size] while swapped */
  uint8_t *host_known;   /* per page: ids known, while swapped */
  int64_t npages, cap;
  /* Pages taken ahead by pkv_seq_reserve (live, refcount 1, not in the
   * block table): appends use them before the pool. */
  int32_t *spare;
  int64_t nspare, spare_cap;
  /* Bumped whenever the page list changes other than by appending pages
   * (copy-on-write, truncation, swap-in): the batch builder compares it to
   * decide whether a block-table row must be rewritten. */
  uint64_t version;
  int32_t cls;
  uint64_t ns;
  uint64_t admit;        /* admission order, for preemption candidates */
  pkv_seq *cprev, *cnext; /* the class's admission list */
  bool swapped;
  /* Prefix chain: leading pages [0, chain_pages) were considered for the
   * index; chain_page/chain_gen/chain_key identify the indexed page that
   * holds the same content as the last of them (-1: the root). */
  int64_t committed;
  int64_t chain_pages;
  bool chain_ok;
  /* Set for good once a truncation dropped pages: the KV that remains (and
   * every token appended later) was computed with context the chain no
   * longer names, so none of it may ever be indexed. Forks and sessions
   * inherit it. */
  bool detached;
  int32_t chain_page;
  uint32_t chain_gen;
  XXH128_hash_t chain_key;
  /* Duplicate detection in batch builds. */
  uint64_t mark;
  int32_t mark_pos;
};

/* Internal sequence helpers (seq.c). */
/* Reads a caller's (possibly NULL) description into *full at this library's
 * size and checks it. */
pkv_status pkv__seq_check_desc(const pkv_cache *c, const pkv_seq_desc *user,
                               pkv_seq_desc *full);
/* Registers a new empty sequence with room for npages pages; NULL when
 * memory is short (nothing changed then). */
pkv_seq *pkv__seq_new_internal(pkv_cache *c, int32_t cls, uint64_t ns,
                              int64_t npages);
/* Room for `need` pages in the page list; false when memory is short. */
bool pkv__seq_grow(pkv_seq *s, int64_t need);
/* Gives back the sequence's device (or host) pages, deepest first. */
void pkv__seq_drop_pages(pkv_cache *c, pkv_seq *s);
/* The page list changed other than by appending pages: slots handed out
 * before (batches built before) no longer name this sequence's tokens. */
void pkv__seq_remapped(pkv_cache *c, pkv_seq *s);
/* Unregisters and frees the sequence (its pages already dropped). */
void pkv__seq_destroy_internal(pkv_cache *c, pkv_seq *s);

#endif
