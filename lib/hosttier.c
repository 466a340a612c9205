/* SPDX-License-Identifier: Apache-2.0 */
/* Host tier: sequences move between device pages and host pages, one
 * batched backend transfer per call. Every page of a sequence is copied,
 * shared ones included: the sequence then drops its device references, so
 * a page shared with a fork or another user of the same prefix stays on the
 * device for them, and comes back as this sequence's private copy. Indexed
 * or session pages stay cached on the device. Token ids travel with the
 * sequence. */
#include "alloc.h"
#include "cache.h"

#include <stdlib.h>
#include <string.h>

/* Resolves and checks ids: found, not twice, in the wanted swap state. */
static pkv_status resolve(pkv_cache *c, const pkv_seq_id *seqs, int32_t n,
                          bool want_swapped, pkv_seq **out, int64_t *pages) {
  uint64_t stamp = ++c->build_stamp;
  *pages = 0;
  for (int32_t i = 0; i < n; i++) {
    pkv_seq *s = seqs[i] > 0 ? pkv__hmap_get(&c->seqs, (uint64_t)seqs[i]) : NULL;
    if (!s)
      return pkv__fail(c->ctx, PKV_ERR_NOT_FOUND,
                      "seqs[%d] = %lld is not an open sequence", i,
                      (long long)seqs[i]);
    if (s->mark == stamp)
      return pkv__fail(c->ctx, PKV_ERR_DUPLICATE,
                      "seqs[%d] and seqs[%d] are both sequence %lld",
                      s->mark_pos, i, (long long)seqs[i]);
    s->mark = stamp;
    s->mark_pos = i;
    if (s->swapped != want_swapped)
      return pkv__fail(c->ctx, PKV_ERR_STATE, "seqs[%d] = %lld is %s", i,
                      (long long)seqs[i],
                      s->swapped ? "already swapped out" : "not swapped out");
    out[i] = s;
    *pages += s->npages;
  }
  return PKV_OK;
}

static pkv_status check_args(pkv_cache *c, const pkv_seq_id *seqs, int32_t n,
                             bool out_dir) {
  if (!seqs) return pkv__fail(c->ctx, PKV_ERR_NULL, "seqs is NULL");
  if (n < 1) return pkv__fail(c->ctx, PKV_ERR_INVALID, "n %d must be >= 1", n);
  if (c->desc.num_host_pages == 0)
    return pkv__fail(c->ctx, PKV_ERR_NO_HOST_PAGES,
                    "the cache has no host tier (desc.num_host_pages is 0)");
  (void)out_dir;
  return PKV_OK;
}

static pkv_status check_backend(pkv_cache *c, bool out_dir) {
  if (out_dir ? !c->ctx->ops->pages_to_host : !c->ctx->ops->pages_from_host)
    return pkv__fail(c->ctx, PKV_ERR_UNSUPPORTED,
                    "backend '%s' cannot move pages %s the host tier",
                    c->ctx->ops->name, out_dir ? "to" : "from");
  return PKV_OK;
}

pkv_status pkv_seq_swap_out(pkv_cache *c, const pkv_seq_id *seqs, int32_t n) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_status st = check_args(c, seqs, n, true);
  if (st != PKV_OK) return st;
  pkv_seq **ss = pkv__malloc((size_t)n * sizeof *ss);
  if (!ss) return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "swap list");
  int64_t k;
  st = resolve(c, seqs, n, false, ss, &k);
  if (st == PKV_OK && k > c->host_nfree)
    st = pkv__fail(c->ctx, PKV_ERR_NO_HOST_PAGES,
                  "swap_out needs %lld host pages; %lld free of %lld",
                  (long long)k, (long long)c->host_nfree,
                  (long long)c->desc.num_host_pages);
  if (st == PKV_OK) st = check_backend(c, true);
  int32_t *dev = NULL, **ptok = NULL;
  int64_t *host = NULL, **per = NULL;
  uint8_t **pknown = NULL;
  if (st == PKV_OK) {
    dev = pkv__malloc((size_t)(k ? k : 1) * sizeof *dev);
    host = pkv__malloc((size_t)(k ? k : 1) * sizeof *host);
    per = pkv__calloc((size_t)n, sizeof *per);
    ptok = pkv__calloc((size_t)n, sizeof *ptok);
    pknown = pkv__calloc((size_t)n, sizeof *pknown);
    bool fail = !dev || !host || !per || !ptok || !pknown;
    for (int32_t i = 0; !fail && i < n; i++) {
      size_t np = (size_t)(ss[i]->npages ? ss[i]->npages : 1);
      fail = !(per[i] = pkv__malloc(np * sizeof **per)) ||
             !(ptok[i] = pkv__malloc(np * (size_t)c->geom.page_size *
                                sizeof **ptok)) ||
             !(pknown[i] = pkv__malloc(np));
    }
    if (fail)
      st = pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "swap lists of %lld pages",
                    (long long)k);
  }
  /* A copy-on-write copy still pending must land before its page is read
   * for the host. Last of the checks: a call refused above changes nothing,
   * not even the refcounts the queue holds. */
  if (st == PKV_OK && c->cow_n > 0) st = pkv__cache_flush_copies(c);
  if (st == PKV_OK) {
    int64_t t = 0;
    for (int32_t i = 0; i < n; i++)
      for (int64_t j = 0; j < ss[i]->npages; j++, t++) {
        dev[t] = ss[i]->pages[j];
        host[t] = c->host_free[c->host_nfree - 1 - t];
        per[i][j] = host[t];
      }
    pkv_host_move_args a = {.geom = &c->geom,
                            .pools = c->pools,
                            .num_pools = c->num_pools,
                            .h_dev_pages = dev,
                            .h_host_pages = host,
                            .n = k,
                            .host_base = c->host_base};
    if (k > 0) st = c->ctx->ops->pages_to_host(c->ctx, &a);
  }
  if (st == PKV_OK) {
    c->host_nfree -= k;
    for (int32_t i = 0; i < n; i++) {
      pkv_seq *s = ss[i];
      pkv__seq_account(c, s, -1);
      /* Token ids travel with the sequence, so that its chain can go on
       * after it comes back. */
      const int32_t ps = c->geom.page_size;
      for (int64_t j = 0; j < s->npages; j++) {
        const pkv_page *g = &c->pool.pg[s->pages[j]];
        pknown[i][j] = g->known && g->tokens;
        if (pknown[i][j])
          memcpy(ptok[i] + j * ps, g->tokens, (size_t)ps * sizeof(int32_t));
      }
      for (int64_t j = s->npages; j-- > 0;) pkv__pool_unref(&c->pool, s->pages[j]);
      /* Reserved pages hold no data: they go back to the pool. */
      while (s->nspare > 0) pkv__pool_unref(&c->pool, s->spare[--s->nspare]);
      s->host_pages = per[i];
      s->host_tokens = ptok[i];
      s->host_known = pknown[i];
      per[i] = NULL;
      ptok[i] = NULL;
      pknown[i] = NULL;
      s->swapped = true;
      pkv__seq_remapped(c, s);
    }
    c->swaps_out += n;
  }
  for (int32_t i = 0; per && i < n; i++) pkv__free(per[i]);
  for (int32_t i = 0; ptok && i < n; i++) pkv__free(ptok[i]);
  for (int32_t i = 0; pknown && i < n; i++) pkv__free(pknown[i]);
  pkv__free(per);
  pkv__free(ptok);
  pkv__free(pknown);
  pkv__free(dev);
  pkv__free(host);
  pkv__free(ss);
  return st;
}

/* Whether the classes of ss can take their pages together: a counter-only
 * run of the pool's take rule, so mixed classes are judged exactly. */
static bool can_take_all(const pkv_pool *p0, pkv_seq **ss, int32_t n,
                         int32_t *fail_cls, int64_t *fail_need) {
  pkv_pool p = *p0;
  for (int32_t i = 0; i < n; i++) {
    int32_t cls = ss[i]->cls;
    for (int64_t j = 0; j < ss[i]->npages; j++) {
      if (!pkv__pool_can_take(&p, cls, 1)) {
        *fail_cls = cls;
        *fail_need = ss[i]->npages;
        return false;
      }
      if (p.nfree > 0) {
        p.nfree--;
      } else {
        int32_t d = 0;
        while (p.ncached_cls[d] == 0) d++;
        p.ncached_cls[d]--;
        p.ncached--;
      }
      p.nlive++;
      p.in_use[cls]++;
    }
  }
  return true;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* The pool's counters as they will be once the pending copies have run
 * (each copy gives back its reference on its source), so that swap_in can
 * judge its page needs before it flushes anything. */
static pkv_status pool_after_flush(pkv_cache *c, pkv_pool *out) {
  *out = c->pool;
  if (c->cow_n == 0) return PKV_OK;
  int32_t *src = pkv__malloc((size_t)c->cow_n * sizeof *src);
  if (!src)
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "copy list of %lld pages",
                    (long long)c->cow_n);
  for (int64_t i = 0; i < c->cow_n; i++) src[i] = c->cow_pairs[2 * i];
  qsort(src, (size_t)c->cow_n, sizeof *src, cmp_i32);
  for (int64_t i = 0, j; i < c->cow_n; i = j) {
    for (j = i; j < c->cow_n && src[j] == src[i]; j++) {}
    const pkv_page *g = &c->pool.pg[src[i]];
    if (g->ref > j - i) continue; /* someone else still holds it */
    out->nlive--;
    out->in_use[g->cls]--;
    if (g->entry || g->holds > 0) {
      out->ncached++;
      out->ncached_cls[g->cls]++;
    } else {
      out->nfree++;
    }
  }
  pkv__free(src);
  return PKV_OK;
}

pkv_status pkv_seq_swap_in(pkv_cache *c, const pkv_seq_id *seqs, int32_t n) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_status st = check_args(c, seqs, n, false);
  if (st != PKV_OK) return st;
  pkv_seq **ss = pkv__malloc((size_t)n * sizeof *ss);
  if (!ss) return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "swap list");
  int64_t k;
  st = resolve(c, seqs, n, true, ss, &k);
  int32_t fcls = 0;
  int64_t fneed = 0;
  pkv_pool after;
  if (st == PKV_OK) st = pool_after_flush(c, &after);
  if (st == PKV_OK && !can_take_all(&after, ss, n, &fcls, &fneed))
    st = pkv__cache_no_pages(c, fcls, fneed, "swap_in");
  if (st == PKV_OK) st = check_backend(c, false);
  int32_t *dev = NULL, **toks = NULL;
  int64_t *host = NULL;
  if (st == PKV_OK) {
    dev = pkv__malloc((size_t)(k ? k : 1) * sizeof *dev);
    host = pkv__malloc((size_t)(k ? k : 1) * sizeof *host);
    toks = pkv__calloc((size_t)(k ? k : 1), sizeof *toks);
    bool fail = !dev || !host || !toks;
    int64_t t = 0;
    for (int32_t i = 0; !fail && i < n; i++) {
      fail = !pkv__seq_grow(ss[i], ss[i]->npages);
      for (int64_t j = 0; !fail && j < ss[i]->npages; j++, t++)
        if (ss[i]->host_known[j])
          fail = !(toks[t] = pkv__malloc((size_t)c->geom.page_size *
                                    sizeof(int32_t)));
    }
    if (fail)
      st = pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "swap lists of %lld pages",
                    (long long)k);
  }
  /* A pending copy may target a page freed since: it must land before the
   * host data does, not after. Only now, once nothing else can refuse the
   * call (the page check above counted what the flush gives back). */
  if (st == PKV_OK && c->cow_n > 0) st = pkv__cache_flush_copies(c);
  if (st == PKV_OK) {
    int64_t t = 0;
    for (int32_t i = 0; i < n; i++)
      for (int64_t j = 0; j < ss[i]->npages; j++, t++) {
        dev[t] = pkv__pool_take(&c->pool, ss[i]->cls);
        host[t] = ss[i]->host_pages[j];
      }
    pkv_host_move_args a = {.geom = &c->geom,
                            .pools = c->pools,
                            .num_pools = c->num_pools,
                            .h_dev_pages = dev,
                            .h_host_pages = host,
                            .n = k,
                            .host_base = c->host_base};
    if (k > 0) st = c->ctx->ops->pages_from_host(c->ctx, &a);
    if (st != PKV_OK) {
      /* The taken pages go back (cached pages evicted for them stay gone). */
      for (int64_t j = k; j-- > 0;) pkv__pool_unref(&c->pool, dev[j]);
    }
  }
  if (st == PKV_OK) {
    int64_t t = 0;
    for (int32_t i = 0; i < n; i++) {
      pkv_seq *s = ss[i];
      for (int64_t j = 0; j < s->npages; j++, t++) {
        s->pages[j] = dev[t];
        c->host_free[c->host_nfree++] = s->host_pages[j];
        pkv_page *g = &c->pool.pg[dev[t]];
        g->known = s->host_known[j];
        if (g->known) {
          g->tokens = toks[t];
          toks[t] = NULL;
          memcpy(g->tokens, s->host_tokens + j * c->geom.page_size,
                 (size_t)c->geom.page_size * sizeof(int32_t));
        }
      }
      pkv__free(s->host_pages);
      pkv__free(s->host_tokens);
      pkv__free(s->host_known);
      s->host_pages = NULL;
      s->host_tokens = NULL;
      s->host_known = NULL;
      s->swapped = false;
      pkv__seq_remapped(c, s);
      pkv__seq_account(c, s, +1);
    }
    c->swaps_in += n;
  }
  for (int64_t t = 0; toks && t < k; t++) pkv__free(toks[t]);
  pkv__free(toks);
  pkv__free(dev);
  pkv__free(host);
  pkv__free(ss);
  return st;
}

int pkv_seq_is_swapped(const pkv_cache *c, pkv_seq_id id) {
  if (!c) {
    pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
    return -1;
  }
  pkv_seq *s;
  if (pkv__cache_find_seq(c, id, "seq", &s) != PKV_OK) return -1;
  return s->swapped ? 1 : 0;
}
