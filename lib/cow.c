/* SPDX-License-Identifier: Apache-2.0 */
/* Copy-on-write: copies are queued and run in one backend call per flush,
 * so a step that forks many beams pays one launch, not one per page. */
#include "alloc.h"
#include "cow.h"

#include <stdlib.h>

bool pkv__cow_reserve(pkv_cache *c, int64_t extra) {
  if (c->cow_n + extra <= c->cow_cap) return true;
  int64_t cap = c->cow_cap ? c->cow_cap : 16;
  while (cap < c->cow_n + extra) cap *= 2;
  int32_t *p = pkv__realloc(c->cow_pairs, (size_t)cap * 2 * sizeof *p);
  if (!p) return false;
  c->cow_pairs = p;
  c->cow_cap = cap;
  return true;
}

void pkv__cow_push(pkv_cache *c, int32_t src, int32_t dst) {
  c->cow_pairs[2 * c->cow_n] = src;
  c->cow_pairs[2 * c->cow_n + 1] = dst;
  c->cow_n++;
  c->cow_copies++;
}

pkv_status pkv__cache_flush_copies(pkv_cache *c) {
  if (c->cow_n == 0) return PKV_OK;
  pkv_context *ctx = c->ctx;
  if (!ctx->ops->copy_pages)
    return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                    "backend '%s' has no copy_pages: %lld copy-on-write "
                    "copies cannot run",
                    ctx->ops->name, (long long)c->cow_n);
  size_t bytes = (size_t)c->cow_n * 2 * sizeof(int32_t);
  if (!c->cow_dev || pkv_buffer_size(c->cow_dev) < bytes) {
    size_t want = bytes < 4096 ? 4096 : bytes * 2;
    pkv_buffer *b = NULL;
    pkv_status st = pkv_buffer_create(ctx, want, &b);
    if (st != PKV_OK) return st;
    pkv_buffer_destroy(c->cow_dev);
    c->cow_dev = b;
  }
  pkv_status st = pkv_buffer_upload(c->cow_dev, 0, c->cow_pairs, bytes);
  if (st != PKV_OK) return st;
  pkv_copy_args a = {.geom = &c->geom,
                     .pools = c->pools,
                     .num_pools = c->num_pools,
                     .h_pairs = c->cow_pairs,
                     .pairs = c->cow_dev,
                     .n = c->cow_n};
  st = ctx->ops->copy_pages(ctx, &a);
  if (st != PKV_OK) return st;
  /* The sources' content is no longer needed by the copies. */
  for (int64_t i = 0; i < c->cow_n; i++)
    pkv__pool_unref(&c->pool, c->cow_pairs[2 * i]);
  c->cow_n = 0;
  return PKV_OK;
}

pkv_status pkv_cache_flush(pkv_cache *c) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  return pkv__cache_flush_copies(c);
}
