/* SPDX-License-Identifier: Apache-2.0 */
/* Plan/run (doc/plan-run.md): the host-side split of each request's keys
 * into chunks, made once per step and used by every layer. The chunking
 * functions are pure host code over plain arrays, so that tests reach them
 * without a device. */
#ifndef PKV_PLAN_H
#define PKV_PLAN_H

#include "backend.h"


/* Default smallest chunk in keys: below it, the merge costs more than the
 * parallelism gains (FlashInfer uses 128-256 keys). */
#define PKV_PLAN_MIN_CHUNK 256

/* The smallest chunk (in keys, a multiple of page_size and at least
 * min_chunk rounded up to pages) for which the items sum(ceil(len_i /
 * chunk)) fit `budget`, by binary search as FlashInfer's planner does;
 * the longest length when nothing needs splitting. Lengths of 0 count as
 * one item. */
int64_t pkv__plan_chunk_keys(const int64_t *kv_len, int32_t n,
                            int32_t page_size, int64_t budget,
                            int64_t min_chunk);

/* Items of the split at chunk keys: *num_items, *partial_rows (rows of the
 * split requests, q_len[i] rows per chunk), and, when items is not NULL,
 * the items themselves (capacity >= *num_items). */
void pkv__plan_fill(const int64_t *kv_len, const int32_t *q_len, int32_t n,
                    int64_t chunk, pkv__plan_item *items, int64_t *num_items,
                    int64_t *partial_rows);

/* The merges of the split requests (items of one request are contiguous):
 * merges[slot] = (request, first partial row, chunks, q_len) for the first
 * `slots` split requests, the rest padded with request -1. Returns the
 * number of split requests. */
int64_t pkv__plan_merges(const pkv__plan_item *items, int64_t num_items,
                         const int32_t *q_len, int32_t *merges, int64_t slots);

/* Items the device runs at once, per kv head: blocks per compute unit x
 * compute units / kv heads (each item is launched once per kv head), at
 * least 1. */
int64_t pkv__plan_device_items(int64_t num_sms, int64_t blocks_per_sm,
                              int32_t num_kv_heads);

/* The planner's policy: the budget of items is the device's, or twice the
 * requests when there are more (so that one long request among many short
 * ones is still cut to the short ones' scale); the chunk is the search's
 * answer for that budget, but never below min_chunk nor below an even
 * share of all keys over the device's items (a batch that fills the device
 * is not split: splitting would add merges and no parallelism). *budget
 * gets the budget. */
int64_t pkv__plan_choose(const int64_t *kv_len, int32_t n, int32_t page_size,
                        int64_t device_items, int64_t min_chunk,
                        int64_t *budget);

/* One call's plan, workspace and run (kvlayer.c, backends that consume
 * plans). */
pkv_status pkv__plan_and_run(pkv_context *ctx, const pkv_kv_view *view,
                            const pkv_kv_table *table,
                            const pkv_attn_params *params, const pkv_tensor *q,
                            const pkv_tensor *out, pkv_buffer *lse);

/* Frees the context's cached plan and workspace of the unplanned calls
 * (context.c, before the backend closes). */
void pkv__attn_cache_free(pkv_context *ctx);

#endif
