/* SPDX-License-Identifier: Apache-2.0 */
/* Prefix reuse. A full, committed page is indexed under
 *   key = XXH3-128(parent key, namespace, its token ids)
 * and a hit needs the key, the namespace, the parent page (and that
 * page's generation) and every token id to be equal, so neither a hash
 * collision nor a recycled parent page can hand out wrong KV. */
#include "alloc.h"
#include "events.h"
#include "prefix.h"

#include <stdlib.h>
#include <string.h>

XXH128_hash_t pkv__prefix_page_key(XXH128_hash_t parent, uint64_t ns,
                                   const int32_t *tokens, int32_t ps) {
  unsigned char buf[16 + 8 + 1024 * 4];
  memcpy(buf, &parent.low64, 8);
  memcpy(buf + 8, &parent.high64, 8);
  memcpy(buf + 16, &ns, 8);
  memcpy(buf + 24, tokens, (size_t)ps * 4);
  return XXH3_128bits(buf, 24 + (size_t)ps * 4);
}

static size_t bucket_of(const pkv_prefix_index *x, XXH128_hash_t k) {
  return (size_t)k.low64 & (x->nbuckets - 1);
}

pkv_pentry *pkv__prefix_lookup(const pkv_cache *c, XXH128_hash_t key,
                               uint64_t ns, int32_t parent,
                               const int32_t *tokens) {
  const pkv_prefix_index *x = &c->prefix;
  if (!x->nbuckets) return NULL;
  const int32_t ps = c->geom.page_size;
  for (pkv_pentry *e = x->buckets[bucket_of(x, key)]; e; e = e->bnext) {
    if (!XXH128_isEqual(e->key, key) || e->ns != ns || e->parent != parent)
      continue;
    if (parent >= 0 && e->parent_gen != c->pool.pg[parent].gen) continue;
    const pkv_page *g = &c->pool.pg[e->page];
    if (g->tokens && !memcmp(g->tokens, tokens, (size_t)ps * 4)) return e;
  }
  return NULL;
}

static void event_of(pkv_cache *c, int32_t kind, const pkv_pentry *e) {
  pkv_page_key k = {e->key.low64, e->key.high64};
  pkv_page_key pk = {e->parent_key.low64, e->parent_key.high64};
  pkv__event_emit(c, kind, e->ns, &k, e->has_parent ? &pk : NULL);
}

/* emit: a PAGE_EVICTED event (a namespace drop sends one event instead). */
static void unlink_entry(pkv_cache *c, pkv_pentry *e, bool emit) {
  pkv_prefix_index *x = &c->prefix;
  if (emit) event_of(c, PKV_EVENT_PAGE_EVICTED, e);
  if (e->bprev) e->bprev->bnext = e->bnext;
  else x->buckets[bucket_of(x, e->key)] = e->bnext;
  if (e->bnext) e->bnext->bprev = e->bprev;
  if (e->nprev) {
    e->nprev->nnext = e->nnext;
  } else if (e->nnext) {
    pkv__hmap_put(&x->namespaces, e->ns, e->nnext);
  } else {
    pkv__hmap_del(&x->namespaces, e->ns);
  }
  if (e->nnext) e->nnext->nprev = e->nprev;
  x->count--;
  c->pool.pg[e->page].entry = NULL;
  pkv__free(e);
}

void pkv__prefix_forget(pkv_cache *c, int32_t page) {
  pkv_pentry *e = c->pool.pg[page].entry;
  if (e) unlink_entry(c, e, true);
}

void pkv__prefix_free(pkv_cache *c) {
  pkv_prefix_index *x = &c->prefix;
  for (size_t b = 0; b < x->nbuckets; b++) {
    for (pkv_pentry *e = x->buckets[b], *nx; e; e = nx) {
      nx = e->bnext;
      pkv__free(e);
    }
  }
  pkv__free(x->buckets);
  x->buckets = NULL;
  x->nbuckets = 0;
  pkv__hmap_free(&x->namespaces);
}

bool pkv__prefix_reserve(pkv_cache *c, uint64_t ns, int64_t extra) {
  pkv_prefix_index *x = &c->prefix;
  if (!pkv__hmap_get(&x->namespaces, ns) && !pkv__hmap_reserve(&x->namespaces, 1))
    return false;
  if ((size_t)(x->count + extra) <= x->nbuckets) return true;
  size_t nb = x->nbuckets ? x->nbuckets * 2 : 1024;
  while (nb < (size_t)(x->count + extra)) nb *= 2;
  pkv_pentry **bk = pkv__calloc(nb, sizeof *bk);
  if (!bk) return false;
  for (size_t b = 0; b < x->nbuckets; b++) {
    for (pkv_pentry *e = x->buckets[b], *nx; e; e = nx) {
      nx = e->bnext;
      size_t i = (size_t)e->key.low64 & (nb - 1);
      e->bprev = NULL;
      e->bnext = bk[i];
      if (bk[i]) bk[i]->bprev = e;
      bk[i] = e;
    }
  }
  pkv__free(x->buckets);
  x->buckets = bk;
  x->nbuckets = nb;
  return true;
}

void pkv__prefix_insert(pkv_cache *c, pkv_pentry *e, int32_t page,
                        XXH128_hash_t key, uint64_t ns, int32_t parent,
                        XXH128_hash_t parent_key) {
  pkv_prefix_index *x = &c->prefix;
  e->key = key;
  e->parent_key = parent_key;
  e->has_parent = parent >= 0;
  e->ns = ns;
  e->page = page;
  e->parent = parent;
  e->parent_gen = parent >= 0 ? c->pool.pg[parent].gen : 0;
  size_t b = bucket_of(x, key);
  e->bnext = x->buckets[b];
  if (e->bnext) e->bnext->bprev = e;
  x->buckets[b] = e;
  pkv_pentry *head = pkv__hmap_get(&x->namespaces, ns);
  e->nnext = head;
  if (head) head->nprev = e;
  pkv__hmap_put(&x->namespaces, ns, e);
  x->count++;
  c->pool.pg[page].entry = e;
  event_of(c, PKV_EVENT_PAGE_STORED, e);
}

/* Whether the chain's last canonical page is still the one indexed. */
static bool chain_alive(const pkv_cache *c, const pkv_seq *s) {
  if (s->chain_page < 0) return true;
  const pkv_page *g = &c->pool.pg[s->chain_page];
  return g->gen == s->chain_gen && g->entry != NULL;
}

/* How many entries indexing the sequence may insert at most. */
static int64_t index_bound(const pkv_cache *c, const pkv_seq *s,
                           int64_t committed) {
  if (!s->chain_ok || s->detached) return 0;
  int64_t full = committed / c->geom.page_size;
  if (full > s->npages) full = s->npages;
  return full > s->chain_pages ? full - s->chain_pages : 0;
}

int64_t pkv__prefix_index_seq(pkv_cache *c, pkv_seq *s, pkv_pentry **spare,
                              int64_t nspare) {
  const int32_t ps = c->geom.page_size;
  int64_t used = 0;
  if (s->detached) s->chain_ok = false;
  while (s->chain_ok && s->chain_pages < s->npages &&
         (s->chain_pages + 1) * ps <= s->committed) {
    int32_t page = s->pages[s->chain_pages];
    pkv_page *g = &c->pool.pg[page];
    if (!g->known || !g->tokens || !chain_alive(c, s)) {
      s->chain_ok = false;
      break;
    }
    XXH128_hash_t key = pkv__prefix_page_key(s->chain_key, s->ns, g->tokens, ps);
    pkv_pentry *e = pkv__prefix_lookup(c, key, s->ns, s->chain_page, g->tokens);
    /* An equal page already indexed stands for this one: the chain goes on
     * from it, so that later pages of this sequence stay reachable. */
    int32_t canon = e ? e->page : page;
    if (!e && (g->entry || used == nspare)) {
      /* The page is indexed under another chain: it cannot stand for this
       * one too, so the chain ends here (nspare covers every other page). */
      s->chain_ok = false;
      break;
    }
    if (!e)
      pkv__prefix_insert(c, spare[used++], page, key, s->ns, s->chain_page,
                         s->chain_key);
    s->chain_page = canon;
    s->chain_gen = c->pool.pg[canon].gen;
    s->chain_key = key;
    s->chain_pages++;
  }
  return used;
}

pkv_status pkv__prefix_commit_prepare(pkv_cache *c, pkv_seq *s,
                                      int64_t committed, pkv_prefix_spare *sp) {
  sp->committed = committed > s->committed ? committed : s->committed;
  sp->bound = index_bound(c, s, sp->committed);
  sp->spare = NULL;
  /* All-or-nothing: the entries the walk may need are allocated first, so
   * that a short memory fails the call with nothing changed, instead of
   * leaving pages unindexed (and the chain cut) behind a PKV_OK. */
  bool fail = false;
  if (sp->bound > 0) {
    sp->spare = pkv__calloc((size_t)sp->bound, sizeof *sp->spare);
    fail = !sp->spare || !pkv__prefix_reserve(c, s->ns, sp->bound);
    for (int64_t i = 0; !fail && i < sp->bound; i++)
      fail = !(sp->spare[i] = pkv__calloc(1, sizeof **sp->spare));
  }
  if (fail) {
    pkv__prefix_commit_cancel(sp);
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY,
                    "prefix index entries for %lld pages of seq %lld",
                    (long long)sp->bound, (long long)s->id);
  }
  return PKV_OK;
}

void pkv__prefix_commit_cancel(pkv_prefix_spare *sp) {
  for (int64_t i = 0; sp->spare && i < sp->bound; i++) pkv__free(sp->spare[i]);
  pkv__free(sp->spare);
  sp->spare = NULL;
  sp->bound = 0;
}

void pkv__prefix_commit_finish(pkv_cache *c, pkv_seq *s, pkv_prefix_spare *sp) {
  s->committed = sp->committed;
  int64_t used = pkv__prefix_index_seq(c, s, sp->spare, sp->bound);
  for (int64_t i = used; i < sp->bound; i++) pkv__free(sp->spare[i]);
  pkv__free(sp->spare);
  sp->spare = NULL;
  sp->bound = 0;
}

pkv_status pkv_seq_commit(pkv_cache *c, pkv_seq_id id, int64_t computed) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (computed < 0 || computed > s->len)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                    "computed %lld is outside 0..%lld (the length of seq %lld)",
                    (long long)computed, (long long)s->len, (long long)id);
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE, "seq %lld is swapped out",
                    (long long)id);
  pkv_prefix_spare sp;
  st = pkv__prefix_commit_prepare(c, s, computed, &sp);
  if (st != PKV_OK) return st;
  pkv__prefix_commit_finish(c, s, &sp);
  return PKV_OK;
}

pkv_status pkv_seq_match_prefix(pkv_cache *c, pkv_seq_id id,
                                const int32_t *tokens, int64_t n,
                                int64_t *reused) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!reused) return pkv__fail(c->ctx, PKV_ERR_NULL, "reused is NULL");
  if (n < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n %lld is negative",
                    (long long)n);
  if (!tokens && n > 0) return pkv__fail(c->ctx, PKV_ERR_NULL, "tokens is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (s->len != 0 || s->npages != 0 || s->swapped || !s->chain_ok ||
      s->chain_pages != 0)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is not a fresh empty sequence (length %lld): "
                    "match a prefix before appending",
                    (long long)id, (long long)s->len);
  const int32_t ps = c->geom.page_size;
  int64_t quota = pkv__pool_quota(&c->pool, s->cls), cost = 0, m = 0;
  int32_t parent = -1;
  XXH128_hash_t key = {0, 0};
  while ((m + 1) * ps <= n) {
    const int32_t *t = tokens + m * ps;
    XXH128_hash_t k = pkv__prefix_page_key(key, s->ns, t, ps);
    pkv_pentry *e = pkv__prefix_lookup(c, k, s->ns, parent, t);
    if (!e) break;
    /* A cached page becomes live again: it counts against the class. */
    int64_t more = c->pool.pg[e->page].ref == 0;
    if (cost + more > quota) break;
    if (!pkv__seq_grow(s, m + 1))
      return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "page list of seq %lld",
                      (long long)id);
    s->pages[m++] = e->page;
    cost += more;
    parent = e->page;
    key = k;
  }
  c->prefix_lookups++;
  for (int64_t i = 0; i < m; i++) pkv__pool_ref(&c->pool, s->pages[i], s->cls);
  s->npages = m;
  s->len = m * ps;
  s->committed = s->len;
  s->chain_pages = m;
  if (m > 0) {
    s->chain_page = parent;
    s->chain_gen = c->pool.pg[parent].gen;
    s->chain_key = key;
  }
  c->prefix_hit_tokens += s->len;
  pkv__seq_account(c, s, +1);
  *reused = s->len;
  return PKV_OK;
}

pkv_status pkv_namespace_drop(pkv_cache *c, uint64_t ns) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_pentry *e;
  while ((e = pkv__hmap_get(&c->prefix.namespaces, ns)) != NULL) {
    int32_t page = e->page;
    unlink_entry(c, e, false);
    pkv__pool_maybe_free(&c->pool, page);
  }
  /* One event for the namespace: a router drops every key of it. */
  pkv__event_emit(c, PKV_EVENT_NAMESPACE_DROPPED, ns, NULL, NULL);
  return PKV_OK;
}
