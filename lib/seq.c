/* SPDX-License-Identifier: Apache-2.0 */
/* Sequences: open, append (all-or-nothing page reservation, copy-on-write
 * of a shared last page), release, fork, truncation, queries. */
#include "alloc.h"
#include "cache.h"
#include "cow.h"
#include "struct_size.h"

#include <stdlib.h>
#include <string.h>

void pkv__seq_account(pkv_cache *c, const pkv_seq *s, int sign) {
  if (s->swapped) return;
  c->tokens_stored += sign * s->len;
  c->waste_slots += sign * (s->npages * c->geom.page_size - s->len);
}

static void class_link(pkv_cache *c, pkv_seq *s) {
  s->cprev = c->cls_tail[s->cls];
  s->cnext = NULL;
  if (s->cprev) s->cprev->cnext = s;
  else c->cls_head[s->cls] = s;
  c->cls_tail[s->cls] = s;
}

static void class_unlink(pkv_cache *c, pkv_seq *s) {
  if (s->cprev) s->cprev->cnext = s->cnext;
  else c->cls_head[s->cls] = s->cnext;
  if (s->cnext) s->cnext->cprev = s->cprev;
  else c->cls_tail[s->cls] = s->cprev;
}

bool pkv__seq_grow(pkv_seq *s, int64_t need) {
  if (need <= s->cap) return true;
  int64_t cap = s->cap ? s->cap : 4;
  while (cap < need) cap *= 2;
  int32_t *p = pkv__realloc(s->pages, (size_t)cap * sizeof *p);
  if (!p) return false;
  s->pages = p;
  s->cap = cap;
  return true;
}

/* A new sequence, registered and admitted; NULL when memory is short. */
static pkv_seq *new_seq(pkv_cache *c, int32_t cls, uint64_t ns,
                        int64_t npages) {
  if (!pkv__hmap_reserve(&c->seqs, 1)) return NULL;
  pkv_seq *s = pkv__calloc(1, sizeof *s);
  if (!s) return NULL;
  if (npages > 0 && !pkv__seq_grow(s, npages)) {
    pkv__free(s);
    return NULL;
  }
  s->id = c->next_id++;
  s->cls = cls;
  s->ns = ns;
  s->admit = ++c->admit_counter;
  s->chain_ok = true;
  s->chain_page = -1;
  pkv__hmap_put(&c->seqs, (uint64_t)s->id, s);
  class_link(c, s);
  return s;
}

pkv_seq *pkv__seq_new_internal(pkv_cache *c, int32_t cls, uint64_t ns,
                              int64_t npages) {
  return new_seq(c, cls, ns, npages);
}

pkv_status pkv__seq_check_desc(const pkv_cache *c, const pkv_seq_desc *user,
                                pkv_seq_desc *full) {
  pkv_seq_desc_init(full);
  if (!user) return PKV_OK;
  pkv_status st = pkv__struct_in(c->ctx, "desc", user, PKV__V1_SEQ_DESC, full,
                                 sizeof *full);
  if (st != PKV_OK) return st;
  const pkv_seq_desc *desc = full;
  if (desc->priority_class < 0 || desc->priority_class >= c->desc.num_classes)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                    "desc->priority_class %d is outside 0..%d",
                    desc->priority_class, c->desc.num_classes - 1);
  return PKV_OK;
}

pkv_status pkv_seq_open(pkv_cache *c, const pkv_seq_desc *user_desc,
                        pkv_seq_id *out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_seq_desc desc;
  pkv_status st = pkv__seq_check_desc(c, user_desc, &desc);
  if (st != PKV_OK) return st;
  pkv_seq *s = new_seq(c, desc.priority_class, desc.namespace_id, 0);
  if (!s) return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "sequence allocation");
  *out = s->id;
  return PKV_OK;
}

/* A fresh page for the sequence: a reserved one, else from the pool. */
static int32_t take_page(pkv_cache *c, pkv_seq *s) {
  if (s->nspare > 0) return s->spare[--s->nspare];
  return pkv__pool_take(&c->pool, s->cls);
}

/* Gives the reserved pages back to the pool. */
static void drop_spares(pkv_cache *c, pkv_seq *s) {
  while (s->nspare > 0) pkv__pool_unref(&c->pool, s->spare[--s->nspare]);
}

pkv_status pkv_seq_append(pkv_cache *c, pkv_seq_id id, int64_t n,
                          const int32_t *token_ids, int64_t *slots_out) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (n < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n %lld is negative",
                    (long long)n);
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out to the host tier: swap it in "
                    "before appending",
                    (long long)id);
  if (n > INT32_MAX - s->len)
    return pkv__fail(c->ctx, PKV_ERR_OVERFLOW,
                    "seq %lld length %lld + n %lld exceeds %d (seq_lens are "
                    "int32)",
                    (long long)id, (long long)s->len, (long long)n, INT32_MAX);
  if (n > PKV_MAX_SEQ_TOKENS - s->len)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                    "seq %lld length %lld + n %lld exceeds PKV_MAX_SEQ_TOKENS "
                    "%lld",
                    (long long)id, (long long)s->len, (long long)n,
                    (long long)PKV_MAX_SEQ_TOKENS);
  if (n == 0) return PKV_OK;
  const int32_t ps = c->geom.page_size;
  int64_t off = s->len % ps;
  int64_t room = off ? ps - off : 0;
  int64_t k = n > room ? pkv_pages_for(n - room, ps) : 0;
  int32_t last = off ? s->pages[s->npages - 1] : -1;
  int cow = last >= 0 && !pkv__page_writable(&c->pool, last);
  /* Pages reserved ahead are used first; only the rest comes from the
   * pool. */
  int64_t from_pool = k + cow > s->nspare ? k + cow - s->nspare : 0;
  if (!pkv__pool_can_take(&c->pool, s->cls, from_pool))
    return pkv__cache_no_pages(c, s->cls, from_pool, "append");

  /* Everything that can fail, before any mutation. */
  if (!pkv__seq_grow(s, s->npages + k) || (cow && !pkv__cow_reserve(c, 1)))
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "page list of seq %lld",
                    (long long)id);
  int64_t ntok = token_ids ? k + cow : 0;
  int32_t **tok = NULL;
  if (ntok) {
    tok = pkv__calloc((size_t)ntok, sizeof *tok);
    bool fail = !tok;
    for (int64_t i = 0; !fail && i < ntok; i++)
      fail = !(tok[i] = pkv__malloc((size_t)ps * sizeof(int32_t)));
    if (fail) {
      for (int64_t i = 0; tok && i < ntok; i++) pkv__free(tok[i]);
      pkv__free(tok);
      return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY,
                      "token id storage for %lld pages", (long long)ntok);
    }
  }

  pkv__seq_account(c, s, -1);
  int64_t t = 0;
  if (cow) {
    int32_t dst = take_page(c, s);
    pkv_page *src = &c->pool.pg[last], *d = &c->pool.pg[dst];
    d->known = src->known;
    if (src->tokens && tok) {
      d->tokens = tok[t++];
      memcpy(d->tokens, src->tokens, (size_t)off * sizeof(int32_t));
    } else if (src->tokens) {
      d->known = 0; /* no storage reserved: ids are unknown from here */
    }
    pkv__cow_push(c, last, dst);
    s->pages[s->npages - 1] = dst;
    pkv__seq_remapped(c, s);
  }
  for (int64_t i = 0; i < k; i++) {
    int32_t p = take_page(c, s);
    if (tok) c->pool.pg[p].tokens = tok[t++];
    s->pages[s->npages++] = p;
  }
  for (; tok && t < ntok; t++) pkv__free(tok[t]); /* a copy of an unknown page */
  pkv__free(tok);
  /* Page by page: token ids and slots of [len, len + n). */
  for (int64_t i = 0; i < n;) {
    int64_t pos = s->len + i, o = pos % ps;
    int64_t m = ps - o < n - i ? ps - o : n - i;
    int32_t p = s->pages[pos / ps];
    pkv_page *g = &c->pool.pg[p];
    if (token_ids && g->known && g->tokens)
      memcpy(g->tokens + o, token_ids + i, (size_t)m * sizeof(int32_t));
    else
      g->known = 0;
    if (slots_out)
      for (int64_t j = 0; j < m; j++) slots_out[i + j] = (int64_t)p * ps + o + j;
    i += m;
  }
  s->len += n;
  pkv__seq_account(c, s, +1);
  return PKV_OK;
}

/* Drops the sequence's references, deepest page first so that its pages
 * enter the LRU list in eviction order. */
void pkv__seq_drop_pages(pkv_cache *c, pkv_seq *s) {
  drop_spares(c, s);
  if (s->swapped) {
    for (int64_t i = 0; i < s->npages; i++)
      c->host_free[c->host_nfree++] = s->host_pages[i];
  } else {
    for (int64_t i = s->npages; i-- > 0;) pkv__pool_unref(&c->pool, s->pages[i]);
  }
}

void pkv__seq_remapped(pkv_cache *c, pkv_seq *s) {
  s->version++;
  c->map_gen++;
}

void pkv__seq_destroy_internal(pkv_cache *c, pkv_seq *s) {
  /* Ids are never reused: a batch row naming this id finds it gone. */
  c->map_gen++;
  pkv__seq_account(c, s, -1);
  class_unlink(c, s);
  pkv__hmap_del(&c->seqs, (uint64_t)s->id);
  pkv__free(s->pages);
  pkv__free(s->spare);
  pkv__free(s->host_pages);
  pkv__free(s->host_tokens);
  pkv__free(s->host_known);
  pkv__free(s);
}

pkv_status pkv_seq_release(pkv_cache *c, pkv_seq_id id) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  pkv__seq_drop_pages(c, s);
  pkv__seq_destroy_internal(c, s);
  return PKV_OK;
}

pkv_status pkv_seq_length(const pkv_cache *c, pkv_seq_id id, int64_t *len) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!len) return pkv__fail(c->ctx, PKV_ERR_NULL, "len is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  *len = s->len;
  return PKV_OK;
}

pkv_status pkv_seq_pages(const pkv_cache *c, pkv_seq_id id, int32_t *pages,
                         int64_t capacity, int64_t *count) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!count) return pkv__fail(c->ctx, PKV_ERR_NULL, "count is NULL");
  if (capacity < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "capacity %lld is negative",
                    (long long)capacity);
  if (capacity > 0 && !pages)
    return pkv__fail(c->ctx, PKV_ERR_NULL, "pages is NULL with capacity %lld",
                    (long long)capacity);
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out: it has no device pages",
                    (long long)id);
  int64_t m = s->npages < capacity ? s->npages : capacity;
  if (m > 0) memcpy(pages, s->pages, (size_t)m * sizeof *pages);
  *count = s->npages;
  return PKV_OK;
}

pkv_status pkv_seq_fork(pkv_cache *c, pkv_seq_id parent, pkv_seq_id *child) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!child) return pkv__fail(c->ctx, PKV_ERR_NULL, "child is NULL");
  pkv_seq *p;
  pkv_status st = pkv__cache_find_seq(c, parent, "parent", &p);
  if (st != PKV_OK) return st;
  if (p->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "parent %lld is swapped out: swap it in before forking",
                    (long long)parent);
  pkv_seq *s = new_seq(c, p->cls, p->ns, p->npages);
  if (!s) return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "sequence allocation");
  for (int64_t i = 0; i < p->npages; i++) {
    s->pages[i] = p->pages[i];
    pkv__pool_ref(&c->pool, p->pages[i], p->cls);
  }
  s->npages = p->npages;
  s->len = p->len;
  s->committed = p->committed;
  s->chain_pages = p->chain_pages;
  s->chain_ok = p->chain_ok;
  s->detached = p->detached;
  s->chain_page = p->chain_page;
  s->chain_gen = p->chain_gen;
  s->chain_key = p->chain_key;
  pkv__seq_account(c, s, +1);
  *child = s->id;
  return PKV_OK;
}

pkv_status pkv_seq_truncate_front(pkv_cache *c, pkv_seq_id id,
                                  int64_t max_tokens, int64_t *dropped) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (max_tokens < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "max_tokens %lld is negative",
                    (long long)max_tokens);
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out: swap it in before truncating",
                    (long long)id);
  int64_t drop = 0;
  if (s->len > max_tokens) {
    const int32_t ps = c->geom.page_size;
    int64_t k = pkv_pages_for(s->len - max_tokens, ps);
    if (k > s->npages) k = s->npages;
    drop = k == s->npages ? s->len : k * ps;
    pkv__seq_account(c, s, -1);
    for (int64_t i = k; i-- > 0;) pkv__pool_unref(&c->pool, s->pages[i]);
    memmove(s->pages, s->pages + k, (size_t)(s->npages - k) * sizeof *s->pages);
    s->npages -= k;
    s->len -= drop;
    pkv__seq_remapped(c, s);
    /* The remaining KV, and all KV appended from now on, depends on the
     * dropped context, which no chain key can name any more: the sequence
     * leaves the index for good (pages already indexed stay matchable,
     * they were computed with their whole prefix). */
    s->detached = true;
    s->chain_ok = false;
    s->chain_pages = 0;
    s->committed = s->committed > drop ? s->committed - drop : 0;
    pkv__seq_account(c, s, +1);
  }
  if (dropped) *dropped = drop;
  return PKV_OK;
}

pkv_status pkv_seq_truncate_back(pkv_cache *c, pkv_seq_id id,
                                 int64_t n_tokens) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (n_tokens < 0 || n_tokens > s->len)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                    "n_tokens %lld is outside 0..%lld (the length of seq %lld)",
                    (long long)n_tokens, (long long)s->len, (long long)id);
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out: swap it in before truncating",
                    (long long)id);
  if (n_tokens == 0) return PKV_OK;
  const int32_t ps = c->geom.page_size;
  int64_t len = s->len - n_tokens, np = pkv_pages_for(len, ps);
  pkv__seq_account(c, s, -1);
  /* Pages past the new end go, deepest first. An indexed one stays cached
   * and matchable: its K/V is what its key names. The new last page keeps
   * its content; the next append writes into it in place only when it is
   * writable (pkv__page_writable), else copies it first, so a fork sibling,
   * a session or the index never sees the replacement tokens. */
  for (int64_t i = s->npages; i-- > np;) pkv__pool_unref(&c->pool, s->pages[i]);
  s->npages = np;
  s->len = len;
  if (s->committed > len) s->committed = len;
  /* The chain stands for whole considered pages; cutting into them ends it
   * (rejected speculative tokens are not committed, so an engine that
   * commits only accepted tokens never gets here). */
  if (s->chain_pages * (int64_t)ps > len) {
    s->chain_ok = false;
    s->chain_pages = len / ps;
  }
  /* Slots of the dropped tokens no longer belong to the sequence. */
  pkv__seq_remapped(c, s);
  pkv__seq_account(c, s, +1);
  return PKV_OK;
}

pkv_status pkv_seq_reserve(pkv_cache *c, pkv_seq_id id, int64_t n_tokens) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (n_tokens < 0)
    return pkv__fail(c->ctx, PKV_ERR_INVALID, "n_tokens %lld is negative",
                    (long long)n_tokens);
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out: swap it in before reserving",
                    (long long)id);
  if (n_tokens > INT32_MAX - s->len)
    return pkv__fail(c->ctx, PKV_ERR_OVERFLOW,
                    "seq %lld length %lld + n_tokens %lld exceeds %d",
                    (long long)id, (long long)s->len, (long long)n_tokens,
                    INT32_MAX);
  if (n_tokens > PKV_MAX_SEQ_TOKENS - s->len)
    return pkv__fail(c->ctx, PKV_ERR_RANGE,
                    "seq %lld length %lld + n_tokens %lld exceeds "
                    "PKV_MAX_SEQ_TOKENS %lld",
                    (long long)id, (long long)s->len, (long long)n_tokens,
                    (long long)PKV_MAX_SEQ_TOKENS);
  const int32_t ps = c->geom.page_size;
  int64_t off = s->len % ps, room = off ? ps - off : 0;
  int64_t need = n_tokens > room ? pkv_pages_for(n_tokens - room, ps) : 0;
  if (n_tokens > 0 && off && !pkv__page_writable(&c->pool, s->pages[s->npages - 1]))
    need++; /* the first append will copy the shared last page */
  if (need > s->nspare) {
    int64_t more = need - s->nspare;
    if (!pkv__pool_can_take(&c->pool, s->cls, more))
      return pkv__cache_no_pages(c, s->cls, more, "reserve");
    if (need > s->spare_cap) {
      int32_t *p = pkv__realloc(s->spare, (size_t)need * sizeof *p);
      if (!p)
        return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY,
                        "reserve list of %lld pages", (long long)need);
      s->spare = p;
      s->spare_cap = need;
    }
    while (s->nspare < need)
      s->spare[s->nspare++] = pkv__pool_take(&c->pool, s->cls);
  } else {
    while (s->nspare > need) pkv__pool_unref(&c->pool, s->spare[--s->nspare]);
  }
  return PKV_OK;
}
