/* SPDX-License-Identifier: Apache-2.0 */
/* Digest of everything an engine can observe through the public API about
 * a cache: statistics, every page's info, a list of sequences (length,
 * swap state, page list), batch views, the K/V pool bytes and caller
 * buffers. Used by the fault-injection test and the fuzz harness to check
 * that a failed call changes nothing. Header-only; one hash per part, so
 * a difference names the part that changed. */
#ifndef PKV_API_STATE_H
#define PKV_API_STATE_H

#include "pagedkv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
  AS_STATS,  /* pkv_cache_stats */
  AS_PAGES,  /* pkv_page_get_info of every page */
  AS_SEQS,   /* length, swapped, page list of each listed sequence */
  AS_BATCH,  /* view of each listed batch (or its status) */
  AS_POOL,   /* K and V bytes of every layer */
  AS_BUFS,   /* bytes of each listed caller buffer */
  AS_PARTS
};

static const char *const as_part_name[AS_PARTS] = {
    "statistics", "page info", "sequences", "batch views", "pool bytes",
    "caller buffers"};

typedef struct as_state {
  uint64_t h[AS_PARTS];
  pkv_stats st; /* kept whole, for messages */
} as_state;

/* FNV-1a over 8-byte words (then the tail bytes): the pools are hashed
 * before every fuzzed call, so this has to be quick. */
static inline uint64_t as_mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static inline uint64_t as_mix64(uint64_t h, int64_t v) {
  return as_mix(h, &v, sizeof v);
}

static inline uint64_t as_buffer_hash(uint64_t h, pkv_buffer *b) {
  if (!b) return as_mix64(h, -1);
  size_t n = pkv_buffer_size(b);
  void *tmp = malloc(n ? n : 1);
  if (!tmp) abort();
  pkv_status st = pkv_buffer_download(b, 0, tmp, n);
  h = as_mix64(h, st);
  if (st == PKV_OK) h = as_mix(h, tmp, n);
  free(tmp);
  return h;
}

static inline uint64_t as_batch_hash(uint64_t h, const pkv_batch *b) {
  pkv_batch_view v;
  pkv_batch_view_init(&v);
  memset(&v, 0, sizeof v);
  pkv_status st = pkv_batch_get_view(b, &v);
  h = as_mix64(h, st);
  if (st != PKV_OK) return h;
  h = as_mix64(h, v.num_seqs);
  h = as_mix64(h, v.max_pages);
  h = as_mix64(h, v.num_tokens);
  h = as_mix64(h, v.max_q_len);
  h = as_mix64(h, v.max_kv_len);
  size_t ns = (size_t)v.num_seqs;
  h = as_mix(h, v.block_table, ns * (size_t)v.max_pages * 4);
  h = as_mix(h, v.seq_lens, ns * 4);
  h = as_mix(h, v.q_indptr, (ns + 1) * 4);
  h = as_mix(h, v.kv_indptr, (ns + 1) * 4);
  h = as_mix(h, v.kv_indices, (size_t)v.kv_indptr[ns] * 4);
  h = as_mix(h, v.kv_last_page_len, ns * 4);
  h = as_mix(h, v.slot_mapping, (size_t)v.num_tokens * 8);
  return h;
}

/* counters: 0 leaves out alloc_failures, which every PKV_ERR_NO_PAGES
 * answer increments by design (it counts refused page requests). */
static inline void as_take(pkv_cache *c, const pkv_seq_id *ids, int nids,
                           pkv_batch *const *batches, int nb,
                           pkv_buffer *const *bufs, int nbuf, int counters,
                           as_state *s) {
  const uint64_t h0 = 0xcbf29ce484222325ull;
  memset(s, 0, sizeof *s);
  for (int i = 0; i < AS_PARTS; i++) s->h[i] = h0;
  pkv_stats_init(&s->st);
  pkv_status st = pkv_cache_stats(c, &s->st);
  pkv_stats t = s->st;
  if (!counters) t.alloc_failures = 0;
  s->h[AS_STATS] = as_mix(as_mix64(h0, st), &t, sizeof t);
  for (int64_t p = 0; p < s->st.pages_total; p++) {
    pkv_page_info pi;
    pkv_page_info_init(&pi);
    memset(&pi, 0, sizeof pi);
    st = pkv_page_get_info(c, (int32_t)p, &pi);
    s->h[AS_PAGES] = as_mix(as_mix64(s->h[AS_PAGES], st), &pi, sizeof pi);
  }
  for (int i = 0; i < nids; i++) {
    uint64_t h = s->h[AS_SEQS];
    int64_t len = -1, np = -1;
    h = as_mix64(h, pkv_seq_length(c, ids[i], &len));
    h = as_mix64(h, len);
    h = as_mix64(h, pkv_seq_is_swapped(c, ids[i]));
    h = as_mix64(h, pkv_seq_pages(c, ids[i], NULL, 0, &np));
    if (np > 0) {
      int32_t *pg = malloc((size_t)np * sizeof *pg);
      if (!pg) abort();
      pkv_seq_pages(c, ids[i], pg, np, &np);
      h = as_mix(h, pg, (size_t)np * sizeof *pg);
      free(pg);
    }
    s->h[AS_SEQS] = h;
  }
  for (int i = 0; i < nb; i++) s->h[AS_BATCH] = as_batch_hash(s->h[AS_BATCH], batches[i]);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  if (pkv_cache_get_geometry(c, &g) == PKV_OK)
    for (int32_t l = 0; l < g.num_layers; l++) {
      pkv_buffer *k = NULL, *v = NULL;
      pkv_cache_kv(c, l, &k, &v);
      s->h[AS_POOL] = as_buffer_hash(as_buffer_hash(s->h[AS_POOL], k), v);
    }
  for (int i = 0; i < nbuf; i++) s->h[AS_BUFS] = as_buffer_hash(s->h[AS_BUFS], bufs[i]);
}

/* The first part that differs, or -1. */
static inline int as_diff(const as_state *a, const as_state *b) {
  for (int i = 0; i < AS_PARTS; i++)
    if (a->h[i] != b->h[i]) return i;
  return -1;
}

#endif
