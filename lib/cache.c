/* SPDX-License-Identifier: Apache-2.0 */
/* Cache creation: validation of the description, the K/V pools of every
 * layer, the host tier; geometry queries. */
#include "alloc.h"
#include "backend.h"
#include "cache.h"
#include "dtype_convert.h"
#include "prefix.h"
#include "session.h"
#include "struct_size.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool head_dim_ok(int32_t d) {
  static const int32_t dims[] = {64, 80, 96, 112, 128, 192, 256};
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
    if (dims[i] == d) return true;
  return false;
}

/* Checks the description and fills the geometry; num_pages derived from
 * pool_bytes when 0. */
static pkv_status check_desc(pkv_context *ctx, const pkv_cache_desc *d,
                             pkv_cache_geometry *g, int32_t *ncls) {
  if (d->num_layers < 1)
    return pkv__fail(ctx, PKV_ERR_INVALID, "desc->num_layers %d must be >= 1",
                    d->num_layers);
  if (d->num_layers > PKV_MAX_LAYERS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "desc->num_layers %d exceeds PKV_MAX_LAYERS %d",
                    d->num_layers, PKV_MAX_LAYERS);
  if (d->num_kv_heads < 1)
    return pkv__fail(ctx, PKV_ERR_INVALID, "desc->num_kv_heads %d must be >= 1",
                    d->num_kv_heads);
  if (d->num_kv_heads > PKV_MAX_KV_HEADS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "desc->num_kv_heads %d exceeds PKV_MAX_KV_HEADS %d",
                    d->num_kv_heads, PKV_MAX_KV_HEADS);
  if (!head_dim_ok(d->head_dim))
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->head_dim %d is not one of 64, 80, 96, 112, 128, "
                    "192, 256",
                    d->head_dim);
  if (d->page_size < 1 || d->page_size > PKV_MAX_PAGE_SIZE)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->page_size %d is outside 1..%d (PKV_MAX_PAGE_SIZE)",
                    d->page_size, PKV_MAX_PAGE_SIZE);
  size_t esize = pkv_dtype_size(d->dtype);
  if (!esize)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->dtype %d is unknown (f32, f16, bf16, fp8 e4m3, "
                    "fp8 e5m2, int8)",
                    (int)d->dtype);
  if (d->layout != PKV_LAYOUT_HND && d->layout != PKV_LAYOUT_NHD)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->layout %d is unknown (HND=0, NHD=1)", (int)d->layout);
  if (d->num_pages < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "desc->num_pages %lld is negative",
                    (long long)d->num_pages);
  size_t page_elems = 0, page_bytes = 0; /* -Og cannot see through pkv__mul_size */
  if (!pkv__mul_size((size_t)d->num_kv_heads, (size_t)d->page_size,
                    &page_elems) ||
      !pkv__mul_size(page_elems, (size_t)d->head_dim, &page_elems) ||
      !pkv__mul_size(page_elems, esize, &page_bytes))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "page bytes num_kv_heads %d * page_size %d * head_dim %d "
                    "* %zu overflow",
                    d->num_kv_heads, d->page_size, d->head_dim, esize);
  /* int8: the page ends with its f32 scales [num_kv_heads][page_size], so
   * that every page path (copy, copy-on-write, swap, prefix reuse) moves
   * them with the codes; the pool byte budget counts them. */
  const size_t scale_offset = d->dtype == PKV_DTYPE_INT8 ? page_bytes : 0;
  if (d->dtype == PKV_DTYPE_INT8) {
    page_bytes += (size_t)d->num_kv_heads * (size_t)d->page_size * sizeof(float);
    /* the device page moves (kernels/pages.cl) go in 16-byte words: pad
     * the page to a whole number of them (num_kv_heads * page_size not a
     * multiple of 4 would otherwise end a page mid-word) */
    page_bytes = (page_bytes + 15) & ~(size_t)15;
  }
  int64_t num_pages = d->num_pages;
  if (num_pages == 0) {
    size_t per_page;
    if (!pkv__mul_size(page_bytes, 2 * (size_t)d->num_layers, &per_page))
      return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                      "page bytes %zu * 2 * num_layers %d overflow", page_bytes,
                      d->num_layers);
    uint64_t np = d->pool_bytes / per_page;
    if (np == 0)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "desc->num_pages is 0 and desc->pool_bytes %llu is "
                      "smaller than one page of K+V over all layers "
                      "(%zu bytes)",
                      (unsigned long long)d->pool_bytes, per_page);
    if (np > (uint64_t)INT64_MAX) np = (uint64_t)INT64_MAX;
    num_pages = (int64_t)np;
  }
  if (num_pages > PKV_MAX_PAGES)
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "num_pages %lld exceeds PKV_MAX_PAGES %lld: page ids are "
                    "int32",
                    (long long)num_pages, (long long)PKV_MAX_PAGES);
  size_t layer_bytes = 0, total = 0; /* set by the checked products below (-Og cannot tell) */
  if (!pkv__mul_size(page_bytes, (size_t)num_pages, &layer_bytes) ||
      !pkv__mul_size(layer_bytes, 2 * (size_t)d->num_layers, &total))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "pool bytes num_pages %lld * page bytes %zu * 2 * "
                    "num_layers %d overflow",
                    (long long)num_pages, page_bytes, d->num_layers);
  /* Priority classes. */
  int32_t nc = d->num_classes == 0 ? 1 : d->num_classes;
  if (nc < 1 || nc > PKV_MAX_CLASSES)
    return pkv__fail(ctx, PKV_ERR_RANGE, "desc->num_classes %d is outside 0..%d",
                    d->num_classes, PKV_MAX_CLASSES);
  double frac = d->max_reserved_fraction == 0 ? 0.9 : d->max_reserved_fraction;
  if (!(frac > 0 && frac <= 1))
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->max_reserved_fraction %g is outside (0, 1]", frac);
  int64_t sum = 0;
  for (int32_t c = 0; c < PKV_MAX_CLASSES; c++) {
    int64_t r = d->class_reserved[c];
    if (r < 0)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "desc->class_reserved[%d] %lld is negative", c,
                      (long long)r);
    if (r > 0 && c >= nc)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "desc->class_reserved[%d] is set but num_classes is %d",
                      c, nc);
    if (r > num_pages)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "desc->class_reserved[%d] %lld exceeds num_pages %lld", c,
                      (long long)r, (long long)num_pages);
    sum += r;
  }
  int64_t cap = (int64_t)floor(frac * (double)num_pages);
  if (sum > cap)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->class_reserved sums to %lld pages, over the cap "
                    "max_reserved_fraction %g * num_pages %lld = %lld",
                    (long long)sum, frac, (long long)num_pages, (long long)cap);
  if (d->num_host_pages < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "desc->num_host_pages %lld is negative",
                    (long long)d->num_host_pages);
  if (d->num_host_pages > PKV_MAX_PAGES)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "desc->num_host_pages %lld exceeds PKV_MAX_PAGES %lld",
                    (long long)d->num_host_pages, (long long)PKV_MAX_PAGES);
  size_t host_bytes, host_index;
  if (!pkv__mul3_size((size_t)d->num_host_pages, page_bytes,
                      2 * (size_t)d->num_layers, &host_bytes) ||
      !pkv__mul_size((size_t)d->num_host_pages, sizeof(int64_t), &host_index))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "host tier num_host_pages %lld * page bytes %zu * 2 * "
                    "num_layers %d overflow",
                    (long long)d->num_host_pages, page_bytes, d->num_layers);

  memset(g, 0, sizeof *g);
  g->num_layers = d->num_layers;
  g->num_kv_heads = d->num_kv_heads;
  g->head_dim = d->head_dim;
  g->page_size = d->page_size;
  g->num_pages = num_pages;
  g->dtype = d->dtype;
  g->layout = d->layout;
  int64_t H = d->num_kv_heads, P = d->page_size, D = d->head_dim;
  if (d->layout == PKV_LAYOUT_HND) {
    g->page_stride = H * P * D;
    g->head_stride = P * D;
    g->token_stride = D;
  } else {
    g->page_stride = P * H * D;
    g->head_stride = D;
    g->token_stride = H * D;
  }
  if (scale_offset) g->page_stride = (int64_t)page_bytes; /* 1-byte elements */
  g->scale_offset = scale_offset;
  g->page_bytes = page_bytes;
  g->layer_bytes = layer_bytes;
  *ncls = nc;
  return PKV_OK;
}

static void free_cache(pkv_cache *c) {
  if (!c) return;
  for (int32_t i = 0; c->pools && i < c->num_pools; i++)
    if (c->pools[i]) pkv__buffer_free_view(c->pools[i]);
  for (int32_t i = 0; c->natives && i < c->num_pools; i++)
    if (c->natives[i] && !c->external) c->ctx->ops->mem_free(c->ctx, c->natives[i]);
  pkv__free(c->pools);
  pkv__free(c->natives);
  pkv__free(c->k_scales);
  pkv__free(c->v_scales);
  pkv_buffer_destroy(c->cow_dev);
  pkv__free(c->cow_pairs);
  pkv__free(c->host_base);
  pkv__free(c->host_free);
  pkv__pool_fini(&c->pool);
  pkv__free(c);
}

static void evict_hook(void *ud, int32_t page) {
  pkv__prefix_forget((pkv_cache *)ud, page);
}

/* Engine buffers for every pool: present, of this context, large enough. */
static pkv_status check_over(pkv_context *ctx, const pkv_cache_geometry *g,
                             pkv_buffer *const *k_bufs,
                             pkv_buffer *const *v_bufs) {
  if (!k_bufs) return pkv__fail(ctx, PKV_ERR_NULL, "k_bufs is NULL");
  if (!v_bufs) return pkv__fail(ctx, PKV_ERR_NULL, "v_bufs is NULL");
  for (int32_t l = 0; l < 2 * g->num_layers; l++) {
    const pkv_buffer *b = (l & 1) ? v_bufs[l / 2] : k_bufs[l / 2];
    const char *name = (l & 1) ? "v_bufs" : "k_bufs";
    if (!b) return pkv__fail(ctx, PKV_ERR_NULL, "%s[%d] is NULL", name, l / 2);
    if (b->ctx != ctx)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "%s[%d] belongs to another context than ctx", name, l / 2);
    if (b->bytes < g->layer_bytes)
      return pkv__fail(ctx, PKV_ERR_SIZE,
                      "%s[%d] holds %zu bytes but num_pages %lld x %zu-byte "
                      "pages need %zu",
                      name, l / 2, b->bytes, (long long)g->num_pages,
                      g->page_bytes, g->layer_bytes);
    if (ctx->kind != PKV_BACKEND_OPENCL && (uintptr_t)b->native % 16 != 0)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "%s[%d] is not 16-byte aligned: the vector kernels load "
                      "whole rows",
                      name, l / 2);
  }
  return PKV_OK;
}

static pkv_status create(pkv_context *ctx, const pkv_cache_desc *user_desc,
                         pkv_buffer *const *k_bufs, pkv_buffer *const *v_bufs,
                         bool over, pkv_cache **out) {
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  if (!user_desc) return pkv__fail(ctx, PKV_ERR_NULL, "desc is NULL");
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  /* The caller's struct may be of an older or newer header: work on a copy
   * at this library's size, absent fields at their defaults. */
  pkv_cache_desc full;
  pkv_cache_desc_init(&full);
  pkv_status st = pkv__struct_in(ctx, "desc", user_desc, PKV__V1_CACHE_DESC,
                                 &full, sizeof full);
  if (st != PKV_OK) return st;
  const pkv_cache_desc *desc = &full;
  pkv_cache_geometry g;
  int32_t ncls = 1;
  st = check_desc(ctx, desc, &g, &ncls);
  if (st != PKV_OK) return st;
  /* what this device cannot run is refused before any allocation */
  st = pkv__backend_check_caps(ctx, desc->dtype, desc->head_dim,
                               desc->page_size);
  if (st != PKV_OK) return st;
  if (over && (st = check_over(ctx, &g, k_bufs, v_bufs)) != PKV_OK) return st;

  pkv_cache *c = pkv__calloc(1, sizeof *c);
  if (!c) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "cache allocation");
  c->ctx = ctx;
  c->desc = *desc;
  c->desc.num_pages = g.num_pages;
  c->desc.num_classes = ncls;
  if (c->desc.max_reserved_fraction == 0) c->desc.max_reserved_fraction = 0.9;
  c->geom = g;
  c->next_id = 1;
  c->num_pools = 2 * g.num_layers;
  c->external = over;
  if (!pkv__pool_init(&c->pool, g.num_pages, g.page_size, ncls)) {
    free_cache(c);
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                    "page table of num_pages %lld entries",
                    (long long)g.num_pages);
  }
  c->pool.on_evict = evict_hook;
  c->pool.ud = c;
  for (int32_t k = 0; k < ncls; k++) c->pool.reserved[k] = desc->class_reserved[k];
  c->natives = pkv__calloc((size_t)c->num_pools, sizeof *c->natives);
  c->pools = pkv__calloc((size_t)c->num_pools, sizeof *c->pools);
  const size_t nsc = (size_t)g.num_layers * (size_t)g.num_kv_heads;
  c->k_scales = pkv__malloc(nsc * sizeof(float));
  c->v_scales = pkv__malloc(nsc * sizeof(float));
  for (size_t i = 0; c->k_scales && c->v_scales && i < nsc; i++)
    c->k_scales[i] = c->v_scales[i] = 1.0f;
  if (!c->natives || !c->pools || !c->k_scales || !c->v_scales) {
    free_cache(c);
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "pool tables");
  }
  for (int32_t i = 0; i < c->num_pools; i++) {
    if (over) {
      c->natives[i] = ((i & 1) ? v_bufs : k_bufs)[i / 2]->native;
      st = PKV_OK;
    } else {
      st = ctx->ops->mem_alloc(ctx, g.layer_bytes, &c->natives[i]);
    }
    if (st != PKV_OK) {
      int32_t np = c->num_pools;
      c->natives[i] = NULL;
      free_cache(c);
      return pkv__fail(ctx, st,
                      "pool %d of %d (layer %d %s): %zu bytes for num_pages "
                      "%lld could not be allocated",
                      i, np, i / 2, (i & 1) ? "V" : "K", g.layer_bytes,
                      (long long)g.num_pages);
    }
    st = pkv__buffer_make_view(ctx, c->natives[i], g.layer_bytes, &c->pools[i]);
    if (st != PKV_OK) {
      free_cache(c);
      return st;
    }
  }
  if (desc->num_host_pages > 0) {
    /* check_desc proved both products fit size_t. */
    size_t bytes = (size_t)desc->num_host_pages * (size_t)c->num_pools *
                   g.page_bytes;
    c->host_base = pkv__malloc(bytes);
    c->host_free =
        pkv__calloc((size_t)desc->num_host_pages, sizeof *c->host_free);
    if (!c->host_base || !c->host_free) {
      free_cache(c);
      return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                      "host tier of num_host_pages %lld (%zu bytes)",
                      (long long)desc->num_host_pages, bytes);
    }
    /* Popped from the end: host page 0 first. */
    for (int64_t i = 0; i < desc->num_host_pages; i++)
      c->host_free[i] = desc->num_host_pages - 1 - i;
    c->host_nfree = desc->num_host_pages;
  }
  *out = c;
  return PKV_OK;
}

pkv_status pkv_cache_create(pkv_context *ctx, const pkv_cache_desc *desc,
                            pkv_cache **out) {
  return create(ctx, desc, NULL, NULL, false, out);
}

pkv_status pkv_cache_create_over(pkv_context *ctx, const pkv_cache_desc *desc,
                                 pkv_buffer *const *k_bufs,
                                 pkv_buffer *const *v_bufs, pkv_cache **out) {
  return create(ctx, desc, k_bufs, v_bufs, true, out);
}

void pkv_cache_destroy(pkv_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->seqs.cap; i++) {
    pkv_seq *s = c->seqs.vals[i];
    if (!s) continue;
    pkv__free(s->pages);
    pkv__free(s->spare);
    pkv__free(s->host_pages);
    pkv__free(s->host_tokens);
    pkv__free(s->host_known);
    pkv__free(s);
  }
  pkv__hmap_free(&c->seqs);
  pkv__session_free_all(c);
  pkv__prefix_free(c);
  pkv__events_free(c);
  free_cache(c);
}

pkv_context *pkv_cache_context(const pkv_cache *c) { return c ? c->ctx : NULL; }

pkv_status pkv__check_scales(pkv_context *ctx, const float *s, int32_t n,
                             const char *name) {
  for (int32_t h = 0; s && h < n; h++)
    if (!isfinite(s[h]) || !(s[h] > 0.0f))
      return pkv__fail(ctx, PKV_ERR_SCALE,
                       "%s[%d] = %g: a scale must be finite and > 0", name, h,
                       (double)s[h]);
  return PKV_OK;
}

pkv_status pkv_cache_set_kv_scales(pkv_cache *c, int32_t layer,
                                   const float *k_scales,
                                   const float *v_scales) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (layer < 0 || layer >= c->geom.num_layers)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "layer %d is outside 0..%d", layer,
                     c->geom.num_layers - 1);
  if (!pkv__dtype_fp8(c->geom.dtype))
    return pkv__fail(c->ctx, PKV_ERR_INVALID,
                     "cache dtype %d is not fp8: it has no scales",
                     (int)c->geom.dtype);
  const int32_t n = c->geom.num_kv_heads;
  pkv_status st;
  /* both checked before either is stored: nothing changes on failure */
  if ((st = pkv__check_scales(c->ctx, k_scales, n, "k_scales")) != PKV_OK ||
      (st = pkv__check_scales(c->ctx, v_scales, n, "v_scales")) != PKV_OK)
    return st;
  if (k_scales)
    memcpy(c->k_scales + (size_t)layer * n, k_scales, n * sizeof(float));
  if (v_scales)
    memcpy(c->v_scales + (size_t)layer * n, v_scales, n * sizeof(float));
  return PKV_OK;
}

pkv_status pkv_cache_get_kv_scales(const pkv_cache *c, int32_t layer,
                                   float *k_scales, float *v_scales) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (layer < 0 || layer >= c->geom.num_layers)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "layer %d is outside 0..%d", layer,
                     c->geom.num_layers - 1);
  const int32_t n = c->geom.num_kv_heads;
  if (k_scales)
    memcpy(k_scales, c->k_scales + (size_t)layer * n, n * sizeof(float));
  if (v_scales)
    memcpy(v_scales, c->v_scales + (size_t)layer * n, n * sizeof(float));
  return PKV_OK;
}

pkv_status pkv_cache_get_geometry(const pkv_cache *c, pkv_cache_geometry *out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st =
      pkv__struct_out_check(c->ctx, "out", out, PKV__V1_CACHE_GEOMETRY);
  if (st != PKV_OK) return st;
  pkv__struct_out(out, &c->geom, sizeof c->geom);
  return PKV_OK;
}

pkv_status pkv_cache_kv(pkv_cache *c, int32_t layer, pkv_buffer **k,
                        pkv_buffer **v) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (layer < 0 || layer >= c->geom.num_layers)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "layer %d is outside 0..%d", layer,
                    c->geom.num_layers - 1);
  if (k) *k = c->pools[2 * layer];
  if (v) *v = c->pools[2 * layer + 1];
  return PKV_OK;
}

pkv_status pkv__cache_find_seq(const pkv_cache *c, pkv_seq_id id,
                              const char *what, pkv_seq **out) {
  pkv_seq *s = id > 0 ? pkv__hmap_get(&c->seqs, (uint64_t)id) : NULL;
  if (!s)
    return pkv__fail(c->ctx, PKV_ERR_NOT_FOUND, "%s %lld is not an open sequence",
                    what, (long long)id);
  *out = s;
  return PKV_OK;
}

pkv_status pkv__cache_no_pages(pkv_cache *c, int32_t cls, int64_t need,
                              const char *what) {
  c->alloc_failures++;
  const pkv_pool *p = &c->pool;
  return pkv__fail(c->ctx, PKV_ERR_NO_PAGES,
                  "%s needs %lld pages for class %d; free %lld, cached %lld "
                  "(evictable by this class %lld), class may still take %lld "
                  "(reserve %lld, in use %lld)",
                  what, (long long)need, cls, (long long)p->nfree,
                  (long long)p->ncached,
                  (long long)(pkv__pool_reclaimable(p, cls) - p->nfree),
                  (long long)pkv__pool_quota(p, cls),
                  (long long)p->reserved[cls], (long long)p->in_use[cls]);
}
