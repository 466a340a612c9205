/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions: closed sequences whose pages stay cached under a key. */
#ifndef PKV_SESSION_H
#define PKV_SESSION_H

#include "cache.h"

typedef struct pkv_session {
  uint64_t key;
  uint64_t ns;
  int64_t len;
  int64_t npages;
  int32_t *pages;
  uint32_t *gens;        /* generation of each page at close */
  int64_t committed, chain_pages;
  bool chain_ok;
  bool detached;         /* see pkv_seq.detached */
  int32_t chain_page;
  uint32_t chain_gen;
  XXH128_hash_t chain_key;
} pkv_session;

void pkv__session_free_all(pkv_cache *c);

#endif
