/* SPDX-License-Identifier: Apache-2.0 */
/* Page keys and page export/import (doc/kv-events.md): the chained keys of
 * a sequence's pages, holds that keep indexed pages from eviction while a
 * transport reads them, and the host wire form of pages and sequences
 * (every layer's K page then V page, in either layout). Device memory is
 * reached through the backend's mem_upload/mem_download, so the same code
 * serves the CPU, OpenCL and HIP pools. */
#include "alloc.h"
#include "cache.h"
#include "prefix.h"
#include "struct_size.h"

#include <string.h>

struct pkv_page_hold {
  const pkv_cache *cache;
  int64_t n;
  int32_t *pages;
};

static pkv_page_key to_key(XXH128_hash_t h) {
  pkv_page_key k = {h.low64, h.high64};
  return k;
}

static XXH128_hash_t from_key(const pkv_page_key *k) {
  XXH128_hash_t h;
  h.low64 = k->lo;
  h.high64 = k->hi;
  return h;
}

static size_t wire_bytes(const pkv_cache *c) {
  /* cannot overflow: the pools of every layer were allocated */
  return 2 * (size_t)c->geom.num_layers * c->geom.page_bytes;
}

static pkv_status check_layout(const pkv_cache *c, pkv_layout layout) {
  if (layout != PKV_LAYOUT_HND && layout != PKV_LAYOUT_NHD)
    return pkv__fail(c->ctx, PKV_ERR_INVALID,
                     "layout %d is unknown (HND=0, NHD=1)", (int)layout);
  return PKV_OK;
}

/* n * wire bytes, PKV_ERR_OVERFLOW / PKV_ERR_SIZE against have (named). */
static pkv_status check_bytes(const pkv_cache *c, int64_t n, size_t have,
                              const char *name, size_t *need_out) {
  size_t need;
  if (!pkv__mul_size((size_t)n, wire_bytes(c), &need))
    return pkv__fail(c->ctx, PKV_ERR_OVERFLOW, "%lld pages of %zu bytes overflow",
                     (long long)n, wire_bytes(c));
  if (have < need)
    return pkv__fail(c->ctx, PKV_ERR_SIZE,
                     "%s %zu is smaller than %lld pages * %zu wire bytes = %zu",
                     name, have, (long long)n, wire_bytes(c), need);
  *need_out = need;
  return PKV_OK;
}

/* ---- keys ---------------------------------------------------------- */

pkv_status pkv_seq_page_keys(pkv_cache *c, pkv_seq_id id, int64_t first_page,
                             int64_t max, pkv_page_key *keys, int64_t *n_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!n_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "n_out is NULL");
  if (first_page < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "first_page %lld is negative",
                     (long long)first_page);
  if (max < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "max %lld is negative",
                     (long long)max);
  if (max > 0 && !keys) return pkv__fail(c->ctx, PKV_ERR_NULL, "keys is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  const int32_t ps = c->geom.page_size;
  int64_t full = s->len / ps, n = 0;
  if (s->detached || s->swapped) full = 0;
  int64_t end = max < full - first_page ? first_page + max : full; /* no overflow */
  XXH128_hash_t key = {0, 0};
  /* The chain starts at the root: keys of later pages need every earlier
   * one. */
  for (int64_t i = 0; i < end; i++) {
    const pkv_page *g = &c->pool.pg[s->pages[i]];
    if (!g->known || !g->tokens) break;
    key = pkv__prefix_page_key(key, s->ns, g->tokens, ps);
    if (i >= first_page) keys[n++] = to_key(key);
  }
  *n_out = n;
  return PKV_OK;
}

pkv_status pkv_cache_page_wire_bytes(const pkv_cache *c, size_t *bytes_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!bytes_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "bytes_out is NULL");
  *bytes_out = wire_bytes(c);
  return PKV_OK;
}

/* ---- layout conversion and device access --------------------------- */

/* One page of one pool from layout `from` to `to` (int8: the scale block
 * after the codes is the same in both). */
static void convert_page(const pkv_cache *c, const unsigned char *src,
                         unsigned char *dst, pkv_layout from) {
  const pkv_cache_geometry *g = &c->geom;
  const size_t row = (size_t)g->head_dim * pkv_dtype_size(g->dtype);
  const int32_t H = g->num_kv_heads, P = g->page_size;
  for (int32_t h = 0; h < H; h++) {
    for (int32_t t = 0; t < P; t++) {
      size_t hnd = ((size_t)h * P + t) * row, nhd = ((size_t)t * H + h) * row;
      if (from == PKV_LAYOUT_HND) memcpy(dst + nhd, src + hnd, row);
      else memcpy(dst + hnd, src + nhd, row);
    }
  }
  if (g->scale_offset)
    memcpy(dst + g->scale_offset, src + g->scale_offset,
           g->page_bytes - g->scale_offset);
}

/* Host memory of one transfer: the host page index list of the backend's
 * batched page moves (0..n-1: the wire form is the host tier's page
 * layout, host page i of pool b at (i * num_pools + b) * page_bytes), and
 * a staging area of up to XFER_CHUNK pages for a layout conversion on the
 * way in. Allocated before anything changes, so that a short memory fails
 * a call with the cache untouched. */
enum { XFER_CHUNK = 32 };
typedef struct xfer {
  int64_t *idx;
  unsigned char *stage;
} xfer;

static void xfer_free(xfer *x) {
  pkv__free(x->idx);
  pkv__free(x->stage);
  x->idx = NULL;
  x->stage = NULL;
}

static pkv_status xfer_alloc(pkv_cache *c, int64_t n, bool stage, xfer *x) {
  x->idx = NULL;
  x->stage = NULL;
  int64_t k = n < XFER_CHUNK ? n : XFER_CHUNK;
  if (n > 0 && !(x->idx = pkv__malloc((size_t)k * sizeof *x->idx)))
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "page list of %lld pages",
                     (long long)k);
  if (n > 0 && stage && !(x->stage = pkv__malloc((size_t)k * wire_bytes(c)))) {
    xfer_free(x);
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "staging of %lld pages",
                     (long long)k);
  }
  for (int64_t i = 0; i < k; i++) x->idx[i] = i;
  return PKV_OK;
}

/* One batched backend move of pages[0..n) (n <= XFER_CHUNK) to or from
 * host memory in the wire form of the cache's layout. */
static pkv_status move(pkv_cache *c, const int32_t *pages, int64_t n,
                       unsigned char *host, const xfer *x, bool to_host) {
  pkv_context *ctx = c->ctx;
  const pkv_backend_ops *ops = ctx->ops;
  const size_t pb = c->geom.page_bytes;
  if (to_host ? ops->pages_to_host : ops->pages_from_host) {
    pkv_host_move_args a = {.geom = &c->geom,
                            .pools = c->pools,
                            .num_pools = c->num_pools,
                            .h_dev_pages = pages,
                            .h_host_pages = x->idx,
                            .n = n,
                            .host_base = host};
    return to_host ? ops->pages_to_host(ctx, &a) : ops->pages_from_host(ctx, &a);
  }
  /* a backend without batched page moves: one buffer copy per page */
  pkv_status st = PKV_OK;
  for (int64_t i = 0; st == PKV_OK && i < n; i++) {
    for (int32_t q = 0; st == PKV_OK && q < c->num_pools; q++) {
      unsigned char *h = host + ((size_t)i * (size_t)c->num_pools + (size_t)q) * pb;
      size_t off = (size_t)pages[i] * pb;
      st = to_host ? ops->mem_download(ctx, c->natives[q], off, h, pb)
                   : ops->mem_upload(ctx, c->natives[q], off, h, pb);
    }
  }
  return st;
}

/* Reads pages[0..n) into dst (wire form, `layout`), converting in place
 * page by page when the layouts differ. */
static pkv_status read_pages(pkv_cache *c, const int32_t *pages, int64_t n,
                             pkv_layout layout, unsigned char *dst) {
  const size_t pb = c->geom.page_bytes, wb = wire_bytes(c);
  const bool conv = layout != c->geom.layout;
  xfer x;
  pkv_status st = xfer_alloc(c, n, false, &x);
  if (st != PKV_OK) return st;
  unsigned char *tmp = NULL;
  if (conv && n > 0 && !(tmp = pkv__malloc(pb))) {
    xfer_free(&x);
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "page buffer of %zu bytes", pb);
  }
  st = pkv__cache_flush_copies(c); /* copies into these pages first */
  for (int64_t i0 = 0; st == PKV_OK && i0 < n; i0 += XFER_CHUNK) {
    int64_t k = n - i0 < XFER_CHUNK ? n - i0 : XFER_CHUNK;
    st = move(c, pages + i0, k, dst + (size_t)i0 * wb, &x, true);
  }
  for (int64_t i = 0; st == PKV_OK && conv && i < n * c->num_pools; i++) {
    memcpy(tmp, dst + (size_t)i * pb, pb);
    convert_page(c, tmp, dst + (size_t)i * pb, c->geom.layout);
  }
  pkv__free(tmp);
  xfer_free(&x);
  return st;
}

/* Writes src (wire form, `layout`) into pages[0..n); x from xfer_alloc
 * with a staging area when the layouts differ. */
static pkv_status write_pages(pkv_cache *c, const int32_t *pages, int64_t n,
                              pkv_layout layout, const unsigned char *src,
                              const xfer *x) {
  const size_t pb = c->geom.page_bytes, wb = wire_bytes(c);
  const bool conv = layout != c->geom.layout;
  pkv_status st = PKV_OK;
  for (int64_t i0 = 0; st == PKV_OK && i0 < n; i0 += XFER_CHUNK) {
    int64_t k = n - i0 < XFER_CHUNK ? n - i0 : XFER_CHUNK;
    const unsigned char *in = src + (size_t)i0 * wb;
    if (conv)
      for (int64_t i = 0; i < k * c->num_pools; i++)
        convert_page(c, in + (size_t)i * pb, x->stage + (size_t)i * pb, layout);
    /* the backends only read host_base when moving from the host */
    st = move(c, pages + i0, k, conv ? x->stage : (unsigned char *)(uintptr_t)in,
              x, false);
  }
  return st;
}

/* ---- holds --------------------------------------------------------- */

/* An indexed page of (key, ns): the child of `parent` (a page, -1 = root)
 * when there is one; else, with any_parent, one whose own parent link is
 * still alive (so that pages chained under it stay reachable from the
 * root), else any entry of the key (its K/V is what the key names all the
 * same). */
static pkv_pentry *find_key(const pkv_cache *c, XXH128_hash_t key, uint64_t ns,
                            int32_t parent, bool any_parent) {
  const pkv_prefix_index *x = &c->prefix;
  if (!x->nbuckets) return NULL;
  pkv_pentry *alive = NULL, *other = NULL;
  for (pkv_pentry *e = x->buckets[(size_t)key.low64 & (x->nbuckets - 1)]; e;
       e = e->bnext) {
    if (!XXH128_isEqual(e->key, key) || e->ns != ns) continue;
    bool linked = e->parent < 0 || (e->parent_gen == c->pool.pg[e->parent].gen &&
                                    c->pool.pg[e->parent].entry != NULL);
    if (e->parent == parent && linked) return e;
    if (linked && !alive) alive = e;
    if (!other) other = e;
  }
  if (!any_parent) return NULL;
  return alive ? alive : other;
}

pkv_status pkv_pages_hold(pkv_cache *c, uint64_t ns, const pkv_page_key *keys,
                          int64_t n, pkv_page_hold **hold_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!hold_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "hold_out is NULL");
  if (n < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n %lld is negative", (long long)n);
  if (n > c->geom.num_pages)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "n %lld exceeds num_pages %lld",
                     (long long)n, (long long)c->geom.num_pages);
  if (n > 0 && !keys) return pkv__fail(c->ctx, PKV_ERR_NULL, "keys is NULL");
  pkv_page_hold *h = pkv__calloc(1, sizeof *h);
  int32_t *pages = pkv__malloc((size_t)(n ? n : 1) * sizeof *pages);
  if (!h || !pages) {
    pkv__free(h);
    pkv__free(pages);
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "hold of %lld pages",
                     (long long)n);
  }
  int32_t parent = -1;
  for (int64_t i = 0; i < n; i++) {
    /* keys[0] may start anywhere in a chain; later keys follow it. */
    pkv_pentry *e = find_key(c, from_key(&keys[i]), ns, parent, true);
    if (!e) {
      pkv__free(h);
      pkv__free(pages);
      return pkv__fail(c->ctx, PKV_ERR_NOT_FOUND,
                       "keys[%lld] (%016llx%016llx) is not indexed in "
                       "namespace %llu",
                       (long long)i, (unsigned long long)keys[i].hi,
                       (unsigned long long)keys[i].lo, (unsigned long long)ns);
    }
    pages[i] = parent = e->page;
  }
  /* A held page is referenced (live, charged to class 0) so that eviction
   * cannot take it and a namespace drop only unindexes it. */
  for (int64_t i = 0; i < n; i++) pkv__pool_ref(&c->pool, pages[i], 0);
  h->cache = c;
  h->n = n;
  h->pages = pages;
  *hold_out = h;
  return PKV_OK;
}

int64_t pkv_page_hold_count(const pkv_page_hold *h) { return h ? h->n : 0; }

pkv_status pkv_page_hold_pages(const pkv_page_hold *h, int32_t *pages,
                               int64_t capacity, int64_t *count) {
  if (!h) return pkv__fail(NULL, PKV_ERR_NULL, "hold is NULL");
  const pkv_context *ctx = h->cache->ctx;
  if (!count) return pkv__fail(ctx, PKV_ERR_NULL, "count is NULL");
  if (capacity < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID, "capacity %lld is negative",
                     (long long)capacity);
  if (capacity > 0 && !pages) return pkv__fail(ctx, PKV_ERR_NULL, "pages is NULL");
  int64_t m = capacity < h->n ? capacity : h->n;
  if (m > 0) memcpy(pages, h->pages, (size_t)m * sizeof *pages);
  *count = h->n;
  return PKV_OK;
}

pkv_status pkv_pages_read(pkv_cache *c, const pkv_page_hold *h,
                          pkv_layout layout, void *dst, size_t dst_bytes,
                          int32_t *tokens) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!h) return pkv__fail(c->ctx, PKV_ERR_NULL, "hold is NULL");
  if (h->cache != c)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "hold belongs to another cache");
  pkv_status st = check_layout(c, layout);
  if (st != PKV_OK) return st;
  if (h->n > 0 && !dst) return pkv__fail(c->ctx, PKV_ERR_NULL, "dst is NULL");
  size_t need;
  st = check_bytes(c, h->n, dst_bytes, "dst_bytes", &need);
  if (st != PKV_OK) return st;
  st = read_pages(c, h->pages, h->n, layout, dst);
  if (st != PKV_OK) return st;
  const int32_t ps = c->geom.page_size;
  for (int64_t i = 0; tokens && i < h->n; i++) /* indexed: tokens known */
    memcpy(tokens + i * ps, c->pool.pg[h->pages[i]].tokens, (size_t)ps * 4);
  return PKV_OK;
}

void pkv_page_hold_release(pkv_cache *c, pkv_page_hold *h) {
  if (!h) return;
  if (c && h->cache == c) {
    /* deepest first, so that the pages enter the LRU in eviction order */
    for (int64_t i = h->n; i-- > 0;) pkv__pool_unref(&c->pool, h->pages[i]);
  }
  pkv__free(h->pages);
  pkv__free(h);
}

/* ---- page import --------------------------------------------------- */

pkv_status pkv_pages_import(pkv_cache *c, uint64_t ns, const pkv_page_key *parent,
                            const pkv_page_key *keys, const int32_t *tokens,
                            int64_t n, pkv_layout layout, const void *src,
                            size_t src_bytes, int64_t *n_imported,
                            int64_t *n_skipped) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (n < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n %lld is negative", (long long)n);
  if (n > c->geom.num_pages)
    return pkv__fail(c->ctx, PKV_ERR_RANGE, "n %lld exceeds num_pages %lld",
                     (long long)n, (long long)c->geom.num_pages);
  if (n > 0 && !keys) return pkv__fail(c->ctx, PKV_ERR_NULL, "keys is NULL");
  if (n > 0 && !tokens) return pkv__fail(c->ctx, PKV_ERR_NULL, "tokens is NULL");
  if (n > 0 && !src) return pkv__fail(c->ctx, PKV_ERR_NULL, "src is NULL");
  pkv_status st = check_layout(c, layout);
  if (st != PKV_OK) return st;
  size_t need;
  st = check_bytes(c, n, src_bytes, "src_bytes", &need);
  if (st != PKV_OK) return st;
  const int32_t ps = c->geom.page_size;

  /* The parent, then every key recomputed from its tokens. */
  int32_t ppage = -1;
  XXH128_hash_t pkey = {0, 0};
  if (parent) {
    pkey = from_key(parent);
    pkv_pentry *e = find_key(c, pkey, ns, -1, true);
    if (!e)
      return pkv__fail(c->ctx, PKV_ERR_NOT_FOUND,
                       "parent key %016llx%016llx is not indexed in namespace "
                       "%llu",
                       (unsigned long long)parent->hi,
                       (unsigned long long)parent->lo, (unsigned long long)ns);
    ppage = e->page;
  }
  XXH128_hash_t k = pkey;
  for (int64_t i = 0; i < n; i++) {
    k = pkv__prefix_page_key(k, ns, tokens + i * ps, ps);
    if (!XXH128_isEqual(k, from_key(&keys[i])))
      return pkv__fail(c->ctx, PKV_ERR_KEY_MISMATCH,
                       "keys[%lld] is not the key of its parent, namespace "
                       "%llu and tokens[%lld..%lld)",
                       (long long)i, (unsigned long long)ns,
                       (long long)(i * ps), (long long)((i + 1) * ps));
  }

  /* Pages already indexed along the chain are skipped; the first missing
   * one and every later one are new. */
  int64_t skip = 0;
  int32_t chain = ppage;
  while (skip < n) {
    pkv_pentry *e = pkv__prefix_lookup(c, from_key(&keys[skip]), ns, chain,
                                       tokens + skip * ps);
    if (!e) break;
    chain = e->page;
    skip++;
  }
  const int64_t m = n - skip;
  /* Pages the import keeps referenced while it takes the new ones (so that
   * taking them cannot evict the chain it extends): the parent and the
   * skipped pages. */
  int32_t *prot = pkv__malloc((size_t)(skip + 1) * sizeof *prot);
  int32_t *pages = pkv__malloc((size_t)(m ? m : 1) * sizeof *pages);
  int32_t **toks = pkv__calloc((size_t)(m ? m : 1), sizeof *toks);
  pkv_pentry **ents = pkv__calloc((size_t)(m ? m : 1), sizeof *ents);
  xfer x = {NULL, NULL};
  bool fail = !prot || !pages || !toks || !ents ||
              xfer_alloc(c, m, layout != c->geom.layout, &x) != PKV_OK;
  for (int64_t i = 0; !fail && i < m; i++) {
    fail = !(toks[i] = pkv__malloc((size_t)ps * sizeof **toks)) ||
           !(ents[i] = pkv__calloc(1, sizeof **ents));
  }
  if (!fail && m > 0) fail = !pkv__prefix_reserve(c, ns, m);
  if (fail) {
    st = pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "import of %lld pages",
                   (long long)m);
    goto out;
  }
  int64_t nprot = 0;
  if (m > 0) {
    if (ppage >= 0) prot[nprot++] = ppage;
    chain = ppage;
    for (int64_t i = 0; i < skip; i++) {
      chain = pkv__prefix_lookup(c, from_key(&keys[i]), ns, chain,
                                 tokens + i * ps)->page;
      prot[nprot++] = chain;
    }
    /* The pool as it will be once the protected pages are referenced. */
    pkv_pool after = c->pool;
    for (int64_t i = 0; i < nprot; i++) {
      const pkv_page *g = &c->pool.pg[prot[i]];
      bool dup = false;
      for (int64_t j = 0; j < i; j++) dup |= prot[j] == prot[i];
      if (g->ref > 0 || dup) continue;
      after.ncached--;
      after.ncached_cls[g->cls]--;
      after.nlive++;
      after.in_use[0]++;
    }
    if (!pkv__pool_can_take(&after, 0, m)) {
      st = pkv__cache_no_pages(c, 0, m, "pages_import");
      goto out;
    }
    for (int64_t i = 0; i < nprot; i++) pkv__pool_ref(&c->pool, prot[i], 0);
    for (int64_t i = 0; i < m; i++) pages[i] = pkv__pool_take(&c->pool, 0);
    st = write_pages(c, pages, m, layout,
                     (const unsigned char *)src + (size_t)skip * wire_bytes(c),
                     &x);
    if (st == PKV_OK) {
      XXH128_hash_t pk = skip > 0 ? from_key(&keys[skip - 1]) : pkey;
      int32_t pp = skip > 0 ? prot[nprot - 1] : ppage;
      for (int64_t i = 0; i < m; i++) {
        pkv_page *g = &c->pool.pg[pages[i]];
        memcpy(toks[i], tokens + (skip + i) * ps, (size_t)ps * sizeof **toks);
        g->tokens = toks[i];
        toks[i] = NULL;
        g->known = 1;
        XXH128_hash_t key = from_key(&keys[skip + i]);
        pkv__prefix_insert(c, ents[i], pages[i], key, ns, pp, pk);
        ents[i] = NULL;
        pp = pages[i];
        pk = key;
      }
    }
    /* Deepest first, so that the chain enters the LRU in eviction order
     * (on a device error the new pages, unindexed, go back free). */
    for (int64_t i = m; i-- > 0;) pkv__pool_unref(&c->pool, pages[i]);
    for (int64_t i = nprot; i-- > 0;) pkv__pool_unref(&c->pool, prot[i]);
    if (st != PKV_OK) goto out;
  }
  if (n_imported) *n_imported = m;
  if (n_skipped) *n_skipped = skip;
out:
  for (int64_t i = 0; toks && ents && i < m; i++) {
    pkv__free(toks[i]);
    pkv__free(ents[i]);
  }
  pkv__free(prot);
  pkv__free(pages);
  pkv__free(toks);
  pkv__free(ents);
  xfer_free(&x);
  return st;
}

/* ---- whole sequences ----------------------------------------------- */

pkv_status pkv_seq_export(pkv_cache *c, pkv_seq_id id, pkv_layout layout,
                          void *dst, size_t dst_bytes, int32_t *tokens,
                          int64_t *n_tokens_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!n_tokens_out)
    return pkv__fail(c->ctx, PKV_ERR_NULL, "n_tokens_out is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  st = check_layout(c, layout);
  if (st != PKV_OK) return st;
  if (!dst && dst_bytes == 0 && !tokens) { /* the length only */
    *n_tokens_out = s->len;
    return PKV_OK;
  }
  if (!dst) return pkv__fail(c->ctx, PKV_ERR_NULL, "dst is NULL");
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE, "seq %lld is swapped out",
                     (long long)id);
  const int32_t ps = c->geom.page_size;
  const int64_t np = pkv_pages_for(s->len, ps);
  size_t need;
  st = check_bytes(c, np, dst_bytes, "dst_bytes", &need);
  if (st != PKV_OK) return st;
  if (tokens && s->detached)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                     "seq %lld was truncated from the front: its K/V was "
                     "computed with context its token ids no longer name; "
                     "pass tokens = NULL",
                     (long long)id);
  for (int64_t i = 0; tokens && i < np; i++) {
    const pkv_page *g = &c->pool.pg[s->pages[i]];
    if (!g->known || !g->tokens)
      return pkv__fail(c->ctx, PKV_ERR_STATE,
                       "the token ids of page %lld of seq %lld are unknown "
                       "(appended without ids): pass tokens = NULL",
                       (long long)i, (long long)id);
  }
  st = read_pages(c, s->pages, np, layout, dst);
  if (st != PKV_OK) return st;
  for (int64_t i = 0; tokens && i < np; i++) {
    int64_t t = s->len - i * ps < ps ? s->len - i * ps : ps;
    memcpy(tokens + i * ps, c->pool.pg[s->pages[i]].tokens, (size_t)t * 4);
  }
  *n_tokens_out = s->len;
  return PKV_OK;
}

pkv_status pkv_seq_import(pkv_cache *c, const pkv_seq_desc *desc,
                          const int32_t *tokens, int64_t n_tokens,
                          pkv_layout layout, const void *src, size_t src_bytes,
                          pkv_seq_id *seq_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!seq_out) return pkv__fail(c->ctx, PKV_ERR_NULL, "seq_out is NULL");
  if (n_tokens < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n_tokens %lld is negative",
                     (long long)n_tokens);
  if (n_tokens > PKV_MAX_SEQ_TOKENS)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                     "n_tokens %lld exceeds PKV_MAX_SEQ_TOKENS %lld",
                     (long long)n_tokens, (long long)PKV_MAX_SEQ_TOKENS);
  if (n_tokens > 0 && !src) return pkv__fail(c->ctx, PKV_ERR_NULL, "src is NULL");
  pkv_status st = check_layout(c, layout);
  if (st != PKV_OK) return st;
  pkv_seq_desc full;
  st = pkv__seq_check_desc(c, desc, &full);
  if (st != PKV_OK) return st;
  const int64_t np = pkv_pages_for(n_tokens, c->geom.page_size);
  size_t need;
  st = check_bytes(c, np, src_bytes, "src_bytes", &need);
  if (st != PKV_OK) return st;
  xfer x;
  st = xfer_alloc(c, np, layout != c->geom.layout, &x);
  if (st != PKV_OK) return st;
  /* Built from the public steps. Everything that can fail for memory
   * (open, append, the index entries of the commit) comes before the K/V
   * is written, so that a failure leaves even the free pages' bytes as
   * they were; a failure after the open releases the sequence and gives
   * its id back. */
  const pkv_seq_id next_id = c->next_id;
  const uint64_t admit = c->admit_counter;
  pkv_seq_id id = 0;
  pkv_seq *s = NULL;
  pkv_prefix_spare sp = {NULL, 0, 0};
  st = pkv_seq_open(c, &full, &id);
  bool opened = st == PKV_OK;
  if (st == PKV_OK) st = pkv_seq_append(c, id, n_tokens, tokens, NULL);
  if (st == PKV_OK) st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st == PKV_OK && tokens) st = pkv__prefix_commit_prepare(c, s, n_tokens, &sp);
  /* (the new pages are no pending copy's source or destination: no flush) */
  if (st == PKV_OK) st = write_pages(c, s->pages, np, layout, src, &x);
  xfer_free(&x);
  if (st != PKV_OK) {
    pkv__prefix_commit_cancel(&sp);
    if (opened) {
      pkv__cache_find_seq(c, id, "seq", &s);
      pkv__seq_drop_pages(c, s);
      pkv__seq_destroy_internal(c, s);
      c->next_id = next_id;
      c->admit_counter = admit;
    }
    return st;
  }
  if (tokens) pkv__prefix_commit_finish(c, s, &sp);
  *seq_out = id;
  return PKV_OK;
}
