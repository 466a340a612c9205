/* SPDX-License-Identifier: Apache-2.0 */
/* Batch descriptor internals shared with the operations (lib/ops.c). */
#ifndef PKV_BATCH_H
#define PKV_BATCH_H

#include "cache.h"

enum {
  PKV_BA_BLOCK_TABLE = 0,
  PKV_BA_SEQ_LENS,
  PKV_BA_Q_INDPTR,
  PKV_BA_KV_INDPTR,
  PKV_BA_KV_INDICES,
  PKV_BA_KV_LAST,
  PKV_BA_SLOTS,
  PKV_BA_COUNT
};

struct pkv_batch {
  pkv_cache *cache;
  pkv_context *ctx;
  bool valid;            /* a build succeeded and its device copy is current */
  int32_t n;             /* rows of the last build */
  int32_t stride;        /* block-table row length (view max_pages) */
  int64_t num_tokens;
  int32_t max_q_len, max_kv_len;
  /* Host arrays. */
  int32_t *block_table;  size_t bt_cap;     /* elements */
  int32_t *seq_lens, *q_indptr, *kv_indptr, *kv_last;
  int32_t rows_cap;                          /* rows (+1 for indptrs) */
  int32_t *kv_indices;   size_t kvi_cap;
  int64_t *slots;        size_t slots_cap;
  /* What each row held at the last build. */
  pkv_seq_id *row_id;
  uint64_t *row_ver;
  int64_t *row_np;
  pkv_seq **row_seq;     /* scratch: the sequences of the build under way */
  uint64_t map_gen;      /* the cache's map_gen when the rows were last known
                          * to be current */
  /* Device copies, grown geometrically. */
  pkv_buffer *dev[PKV_BA_COUNT];
  /* ALiBi slopes last uploaded. */
  float *alibi_host;
  int32_t alibi_n;
  pkv_buffer *alibi_dev;
};

/* PKV_OK when every row's sequence still maps the slots of the last build
 * (open, resident, page list unchanged but for appended pages); otherwise
 * PKV_ERR_STATE naming the first stale row. O(1) unless some sequence of
 * the cache was remapped since. */
pkv_status pkv__batch_check_current(pkv_batch *b);

/* A device copy of ALiBi slopes kept in the batch, uploaded again only when
 * the values change. *out stays owned by the batch. */
pkv_status pkv__batch_alibi_buffer(pkv_batch *b, const float *slopes, int32_t n,
                                  pkv_buffer **out);

#endif
