/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions: a closed sequence's pages stay cached under a key (evictable
 * like any cached page); reopening attaches the leading pages that were
 * not evicted. */
#include "alloc.h"
#include "session.h"
#include "prefix.h"

#include <stdlib.h>
#include <string.h>

static void session_free(pkv_session *r) {
  pkv__free(r->pages);
  pkv__free(r->gens);
  pkv__free(r);
}

/* Gives back the record's holds; pages nobody else keeps become free. */
static void session_drop(pkv_cache *c, pkv_session *r) {
  for (int64_t i = 0; i < r->npages; i++) {
    pkv_page *g = &c->pool.pg[r->pages[i]];
    if (g->gen != r->gens[i]) continue;
    g->holds--;
    pkv__pool_maybe_free(&c->pool, r->pages[i]);
  }
  session_free(r);
}

void pkv__session_free_all(pkv_cache *c) {
  for (size_t i = 0; i < c->sessions.cap; i++)
    if (c->sessions.vals[i]) session_free(c->sessions.vals[i]);
  pkv__hmap_free(&c->sessions);
}

pkv_status pkv_seq_close_session(pkv_cache *c, pkv_seq_id id,
                                 uint64_t session_key) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  pkv_seq *s;
  pkv_status st = pkv__cache_find_seq(c, id, "seq", &s);
  if (st != PKV_OK) return st;
  if (s->swapped)
    return pkv__fail(c->ctx, PKV_ERR_STATE,
                    "seq %lld is swapped out: swap it in or release it",
                    (long long)id);
  pkv_session *r = pkv__calloc(1, sizeof *r);
  size_t np = (size_t)(s->npages ? s->npages : 1);
  if (r) {
    r->pages = pkv__malloc(np * sizeof *r->pages);
    r->gens = pkv__malloc(np * sizeof *r->gens);
  }
  if (!r || !r->pages || !r->gens ||
      !pkv__hmap_reserve(&c->sessions, 1)) {
    if (r) session_free(r);
    return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "session record for seq %lld",
                    (long long)id);
  }
  r->key = session_key;
  r->ns = s->ns;
  r->len = s->len;
  r->npages = s->npages;
  r->committed = s->committed;
  r->chain_pages = s->chain_pages;
  r->chain_ok = s->chain_ok;
  r->detached = s->detached;
  r->chain_page = s->chain_page;
  r->chain_gen = s->chain_gen;
  r->chain_key = s->chain_key;
  for (int64_t i = 0; i < s->npages; i++) {
    r->pages[i] = s->pages[i];
    r->gens[i] = c->pool.pg[s->pages[i]].gen;
    c->pool.pg[s->pages[i]].holds++;
  }
  pkv_session *old = pkv__hmap_get(&c->sessions, session_key);
  pkv__hmap_put(&c->sessions, session_key, r);
  pkv__seq_drop_pages(c, s);
  pkv__seq_destroy_internal(c, s);
  if (old) session_drop(c, old);
  return PKV_OK;
}

pkv_status pkv_session_open(pkv_cache *c, uint64_t session_key,
                            const pkv_seq_desc *user_desc, pkv_seq_id *out,
                            int64_t *tokens) {
  if (!c) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!out) return pkv__fail(c->ctx, PKV_ERR_NULL, "out is NULL");
  if (!tokens) return pkv__fail(c->ctx, PKV_ERR_NULL, "tokens is NULL");
  pkv_seq_desc desc;
  pkv_status st = pkv__seq_check_desc(c, user_desc, &desc);
  if (st != PKV_OK) return st;
  pkv_session *r = pkv__hmap_get(&c->sessions, session_key);
  if (!r)
    return pkv__fail(c->ctx, PKV_ERR_NOT_FOUND,
                    "session_key %llu names no closed session",
                    (unsigned long long)session_key);
  int32_t cls = desc.priority_class;
  const int32_t ps = c->geom.page_size;
  /* Leading pages not evicted since the close; reviving a cached one counts
   * against the class quota, which may cut the run short like an eviction
   * (the engine recomputes the rest, as it would after one). */
  int64_t m = 0, cost = 0, quota = pkv__pool_quota(&c->pool, cls);
  while (m < r->npages && c->pool.pg[r->pages[m]].gen == r->gens[m]) {
    int64_t more = c->pool.pg[r->pages[m]].ref == 0;
    if (cost + more > quota) break;
    cost += more;
    m++;
  }
  pkv_seq *s = pkv__seq_new_internal(c, cls, r->ns, m);
  if (!s) return pkv__fail(c->ctx, PKV_ERR_NO_MEMORY, "sequence allocation");
  for (int64_t i = 0; i < m; i++) {
    s->pages[i] = r->pages[i];
    pkv__pool_ref(&c->pool, r->pages[i], cls);
  }
  s->npages = m;
  s->len = r->len < m * ps ? r->len : m * ps;
  s->committed = r->committed < s->len ? r->committed : s->len;
  s->detached = r->detached;
  if (m == 0) {
    /* Nothing survived: the engine recomputes from the start, which is the
     * root of a new chain, unless a truncation cut that start away. */
    s->chain_ok = !r->detached;
  } else if (r->chain_pages <= m) {
    s->chain_pages = r->chain_pages;
    s->chain_ok = r->chain_ok;
    s->chain_page = r->chain_page;
    s->chain_gen = r->chain_gen;
    s->chain_key = r->chain_key;
  } else {
    pkv_page *g = &c->pool.pg[s->pages[m - 1]];
    s->chain_pages = m;
    s->chain_ok = r->chain_ok && g->entry != NULL;
    if (s->chain_ok) {
      s->chain_page = s->pages[m - 1];
      s->chain_gen = g->gen;
      s->chain_key = g->entry->key;
    }
  }
  pkv__seq_account(c, s, +1);
  pkv__hmap_del(&c->sessions, session_key);
  session_drop(c, r);
  *out = s->id;
  *tokens = s->len;
  return PKV_OK;
}
