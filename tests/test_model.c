/* SPDX-License-Identifier: Apache-2.0 */
/* Model-based random test of the control plane: 10^5 mixed operations
 * (times PKV_STRESS) against a reference model kept here, checking after
 * every operation the conservation of pages, every page's refcount, every
 * sequence's page list and length, the statistics, and that every prefix
 * hit hands out pages whose recorded tokens and namespace equal the
 * request. PKV_SEED=n picks another random sequence. */
#include "cp_util.h"

#include <stdbool.h>

enum { PS = 4, NP = 32, MAXS = 24, MAXTOK = 48, NKEYS = 6 };

typedef struct {
  pkv_seq_id id;
  int cls;
  uint64_t ns;
  int64_t len;
  int np;
  int32_t pages[MAXTOK / PS + 2];
  int32_t toks[MAXTOK]; /* the ids appended (0 where none were given) */
  int32_t sw_tok[MAXTOK / PS + 2][PS]; /* page contents while swapped */
  bool sw_known[MAXTOK / PS + 2];
  bool swapped;
  long admit;
} mseq;

typedef struct {
  bool used;
  uint64_t ns;
  int np;
  int64_t len;
  int32_t pages[MAXTOK / PS + 2];
} msess;

static mseq S[MAXS];
static int nS;
static msess SESS[NKEYS];
/* What the model knows of each page's content. */
static int32_t ptok[NP][PS];
static bool pknown[NP];
static uint64_t pns[NP];
static bool pcommitted[NP];
static int pending[NP];
static int failures;
static long admissions;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (failures++ < 10) diag(__VA_ARGS__);                                  \
    }                                                                          \
  } while (0)

static void fresh_page(int32_t p) {
  pknown[p] = true;
  pcommitted[p] = false;
  memset(ptok[p], 0, sizeof ptok[p]);
}

static void check_all(pkv_cache *c, long op, const char *what) {
  int ref[NP] = {0};
  int64_t tokens = 0, waste = 0;
  for (int i = 0; i < nS; i++) {
    if (S[i].swapped) continue;
    for (int j = 0; j < S[i].np; j++) ref[S[i].pages[j]]++;
    tokens += S[i].len;
    waste += (int64_t)S[i].np * PS - S[i].len;
  }
  int live = 0;
  for (int p = 0; p < NP; p++) {
    ref[p] += pending[p];
    pkv_page_info pi;
    pkv_page_info_init(&pi);
    pkv_page_get_info(c, p, &pi);
    CHECK(pi.refcount == ref[p], "op %ld (%s): page %d refcount %d, model %d",
          op, what, p, pi.refcount, ref[p]);
    CHECK((pi.state == PKV_PAGE_LIVE) == (ref[p] > 0),
          "op %ld (%s): page %d state %d with model refcount %d", op, what, p,
          pi.state, ref[p]);
    live += ref[p] > 0;
  }
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  CHECK(st.pages_free + st.pages_live + st.pages_cached == st.pages_total,
        "op %ld (%s): free %lld + live %lld + cached %lld != %lld", op, what,
        (long long)st.pages_free, (long long)st.pages_live,
        (long long)st.pages_cached, (long long)st.pages_total);
  CHECK(st.pages_live == live, "op %ld (%s): live %lld, model %d", op, what,
        (long long)st.pages_live, live);
  CHECK(st.tokens_stored == tokens && st.waste_slots == waste &&
            st.num_seqs == nS,
        "op %ld (%s): tokens %lld/%lld waste %lld/%lld seqs %lld/%d", op, what,
        (long long)st.tokens_stored, (long long)tokens,
        (long long)st.waste_slots, (long long)waste, (long long)st.num_seqs,
        nS);
  CHECK(st.classes[0].in_use + st.classes[1].in_use == st.pages_live,
        "op %ld (%s): class use does not add up to live pages", op, what);
  /* Preemption candidates for class 1: resident class-0 sequences holding
   * pages, most recently admitted first. */
  pkv_seq_id cand[MAXS];
  int64_t ncand = -1;
  pkv_preemption_candidates(c, 1, cand, MAXS, &ncand);
  int want = 0;
  long last = -1;
  bool order = true;
  for (int i = 0; i < nS; i++)
    want += S[i].cls == 0 && !S[i].swapped && S[i].np > 0;
  for (int64_t k = 0; k < ncand && k < MAXS; k++) {
    const mseq *m = NULL;
    for (int i = 0; i < nS; i++)
      if (S[i].id == cand[k]) m = &S[i];
    order &= m && m->cls == 0 && !m->swapped && m->np > 0 &&
             (last < 0 || m->admit < last);
    if (m) last = m->admit;
  }
  CHECK(ncand == want && order,
        "op %ld (%s): %lld preemption candidates, model %d, order %d", op,
        what, (long long)ncand, want, order);
  for (int i = 0; i < nS; i++) {
    int64_t len = -1;
    pkv_seq_length(c, S[i].id, &len);
    CHECK(len == S[i].len, "op %ld (%s): seq %lld length %lld, model %lld", op,
          what, (long long)S[i].id, (long long)len, (long long)S[i].len);
    if (S[i].swapped) continue;
    int32_t pg[MAXTOK / PS + 2];
    int64_t n = cp_pages(c, S[i].id, pg, MAXTOK / PS + 2);
    CHECK(n == S[i].np && !memcmp(pg, S[i].pages, (size_t)n * 4),
          "op %ld (%s): seq %lld page list differs", op, what,
          (long long)S[i].id);
  }
}

static int32_t tok(void) { return 1 + (int32_t)rnd(2); }

static void do_append(pkv_cache *c, mseq *s) {
  int64_t n = 1 + rnd(9);
  if (s->len + n > MAXTOK) return;
  int32_t ids[16];
  int64_t slots[16];
  for (int i = 0; i < n; i++) ids[i] = tok();
  bool with_ids = rnd(10) != 0;
  pkv_stats before;
  pkv_stats_init(&before);
  pkv_cache_stats(c, &before);
  pkv_status st = pkv_seq_append(c, s->id, n, with_ids ? ids : NULL, slots);
  if (s->swapped) {
    CHECK(st == PKV_ERR_STATE, "append to a swapped sequence: %d", st);
    return;
  }
  if (st == PKV_ERR_NO_PAGES) return; /* check_all proves nothing changed */
  CHECK(st == PKV_OK, "append failed: %s", pkv_last_error(pkv_cache_context(c)));
  if (st != PKV_OK) return;
  int64_t off = s->len % PS;
  int32_t pg[MAXTOK / PS + 2];
  int64_t np = cp_pages(c, s->id, pg, MAXTOK / PS + 2);
  /* Unchanged prefix; a copy-on-write at the partial last page. */
  int keep = off ? s->np - 1 : s->np;
  CHECK(!memcmp(pg, s->pages, (size_t)keep * 4), "append moved a full page");
  if (off && pg[s->np - 1] != s->pages[s->np - 1]) {
    int32_t src = s->pages[s->np - 1], dst = pg[s->np - 1];
    fresh_page(dst);
    memcpy(ptok[dst], ptok[src], sizeof ptok[src]);
    pknown[dst] = pknown[src];
    pns[dst] = s->ns;
    pending[src]++;
  }
  for (int64_t j = s->np; j < np; j++) {
    fresh_page(pg[j]);
    pns[pg[j]] = s->ns;
  }
  for (int i = 0; i < n; i++) {
    int64_t pos = s->len + i;
    int32_t p = pg[pos / PS];
    CHECK(slots[i] == (int64_t)p * PS + pos % PS, "slot %d wrong", i);
    if (with_ids) ptok[p][pos % PS] = ids[i];
    else pknown[p] = false;
    s->toks[pos] = with_ids ? ids[i] : 0;
  }
  s->np = (int)np;
  memcpy(s->pages, pg, (size_t)np * 4);
  s->len += n;
  /* Engines commit what a step computed: usually all of it. */
  if (rnd(3)) {
    CHECK(pkv_seq_commit(c, s->id, s->len) == PKV_OK, "commit failed");
    for (int64_t j = 0; (j + 1) * PS <= s->len; j++)
      pcommitted[s->pages[j]] = true;
  }
}

static void remove_seq(int i) { S[i] = S[--nS]; }

static mseq *add_seq(pkv_seq_id id, int cls, uint64_t ns) {
  mseq *s = &S[nS++];
  memset(s, 0, sizeof *s);
  s->id = id;
  s->cls = cls;
  s->ns = ns;
  s->admit = ++admissions;
  return s;
}

static void do_match(pkv_cache *c) {
  if (nS >= MAXS) return;
  int cls = rnd(2);
  uint64_t ns = rnd(2);
  pkv_seq_id id = cp_open(c, cls, ns);
  mseq *s = add_seq(id, cls, ns);
  int32_t req[64];
  int64_t n = 1 + rnd(40);
  for (int i = 0; i < n; i++) req[i] = tok();
  /* Mostly a prefix of a live sequence's tokens: hits are likely. */
  if (nS > 1 && rnd(4)) {
    mseq *o = &S[rnd(nS - 1)];
    int64_t m = o->len < n ? o->len : n;
    memcpy(req, o->toks, (size_t)m * 4);
  }
  int64_t reused = -1;
  pkv_status st = pkv_seq_match_prefix(c, id, req, n, &reused);
  CHECK(st == PKV_OK, "match failed: %s", pkv_last_error(pkv_cache_context(c)));
  int32_t pg[32];
  int64_t np = cp_pages(c, id, pg, 32);
  CHECK(reused == np * PS, "reused %lld with %lld pages", (long long)reused,
        (long long)np);
  for (int j = 0; j < np; j++) {
    int32_t p = pg[j];
    CHECK(pknown[p] && pcommitted[p] && pns[p] == ns &&
              !memcmp(ptok[p], req + j * PS, PS * 4),
          "match handed out page %d whose content is not the request "
          "(known %d committed %d ns %llu/%llu)",
          p, pknown[p], pcommitted[p], (unsigned long long)pns[p],
          (unsigned long long)ns);
  }
  s->np = (int)np;
  memcpy(s->pages, pg, (size_t)np * 4);
  s->len = reused;
  memcpy(s->toks, req, (size_t)reused * 4);
}

static void do_commit(pkv_cache *c, mseq *s) {
  int64_t upto = s->len ? rnd((uint32_t)s->len + 1) : 0;
  pkv_status st = pkv_seq_commit(c, s->id, upto);
  if (s->swapped) {
    CHECK(st == PKV_ERR_STATE, "commit of a swapped sequence: %d", st);
    return;
  }
  CHECK(st == PKV_OK, "commit failed");
  for (int64_t j = 0; (j + 1) * PS <= upto; j++) pcommitted[s->pages[j]] = true;
}

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.page_size = PS;
  d.num_pages = NP;
  d.num_classes = 2;
  d.class_reserved[1] = 6;
  d.num_host_pages = 16;
  pkv_cache *c = cp_cache_desc(ctx, &d);
  pkv_batch *b = NULL;
  pkv_batch_create(c, &b);
  const char *seed = getenv("PKV_SEED");
  if (seed && strtoull(seed, NULL, 0)) rng = strtoull(seed, NULL, 0);
  const char *env = getenv("PKV_STRESS");
  long ops = 100000L * (env && atol(env) > 0 ? atol(env) : 1);
  long done[16] = {0};
  for (long op = 0; op < ops; op++) {
    int kind = rnd(16);
    int i = nS ? (int)rnd(nS) : -1;
    if (nS > MAXS / 2 && rnd(3) == 0) kind = 7;
    const char *what = "";
    if (kind <= 1 || i < 0) {
      what = "open";
      if (nS < MAXS) {
        int cls = rnd(2);
        uint64_t ns = rnd(2);
        add_seq(cp_open(c, cls, ns), cls, ns);
      }
      kind = 0;
    } else if (kind <= 5) {
      what = "append";
      do_append(c, &S[i]);
    } else if (kind == 6) {
      what = "commit";
      do_commit(c, &S[i]);
    } else if (kind == 7) {
      what = "release";
      CHECK(pkv_seq_release(c, S[i].id) == PKV_OK, "release failed");
      remove_seq(i);
    } else if (kind == 8) {
      what = "fork";
      if (nS < MAXS && !S[i].swapped) {
        pkv_seq_id ch;
        CHECK(pkv_seq_fork(c, S[i].id, &ch) == PKV_OK, "fork failed");
        mseq *s = add_seq(ch, 0, 0);
        long adm = s->admit;
        *s = S[i];
        s->id = ch;
        s->admit = adm;
      }
    } else if (kind == 9) {
      what = "match";
      do_match(c);
    } else if (kind == 10) {
      what = "truncate";
      if (!S[i].swapped) {
        int64_t max = S[i].len ? rnd((uint32_t)S[i].len + 1) : 0, dropped;
        CHECK(pkv_seq_truncate_front(c, S[i].id, max, &dropped) == PKV_OK,
              "truncate failed");
        int k = (int)((dropped + PS - 1) / PS);
        memmove(S[i].pages, S[i].pages + k, (size_t)(S[i].np - k) * 4);
        memmove(S[i].toks, S[i].toks + dropped,
                (size_t)(S[i].len - dropped) * 4);
        S[i].np -= k;
        S[i].len -= dropped;
        CHECK(S[i].len <= max, "truncate left %lld > %lld",
              (long long)S[i].len, (long long)max);
      }
    } else if (kind == 11) {
      what = "close_session";
      if (!S[i].swapped) {
        int key = rnd(NKEYS);
        CHECK(pkv_seq_close_session(c, S[i].id, (uint64_t)key) == PKV_OK,
              "close_session failed");
        SESS[key].used = true;
        SESS[key].ns = S[i].ns;
        SESS[key].np = S[i].np;
        SESS[key].len = S[i].len;
        memcpy(SESS[key].pages, S[i].pages, (size_t)S[i].np * 4);
        remove_seq(i);
      }
    } else if (kind == 12) {
      what = "session_open";
      int key = rnd(NKEYS);
      pkv_seq_id id;
      int64_t t = -1;
      int cls = rnd(2);
      pkv_seq_desc sd = {.struct_size = sizeof sd, .priority_class = cls};
      pkv_status st = nS < MAXS ? pkv_session_open(c, (uint64_t)key, &sd, &id, &t)
                                : PKV_ERR_STATE;
      if (nS >= MAXS) {
      } else if (!SESS[key].used) {
        CHECK(st == PKV_ERR_NOT_FOUND, "unknown session opened: %d", st);
      } else if (st == PKV_OK) {
        SESS[key].used = false;
        mseq *s = add_seq(id, cls, 0);
        int32_t pg[MAXTOK / PS + 2];
        int64_t np = cp_pages(c, id, pg, MAXTOK / PS + 2);
        CHECK(np <= SESS[key].np && !memcmp(pg, SESS[key].pages, (size_t)np * 4),
              "session reopened with pages that are not its prefix");
        int64_t want = SESS[key].len < np * PS ? SESS[key].len : np * PS;
        CHECK(t == want, "session gave %lld tokens, want %lld", (long long)t,
              (long long)want);
        s->np = (int)np;
        memcpy(s->pages, pg, (size_t)np * 4);
        s->len = t;
        s->ns = SESS[key].ns; /* the closed sequence's namespace */
        memset(s->toks, 0, sizeof s->toks);
      } else {
        CHECK(0, "session_open: %s", pkv_last_error(ctx));
      }
    } else if (kind == 13) {
      what = "namespace_drop";
      uint64_t ns = rnd(2);
      CHECK(pkv_namespace_drop(c, ns) == PKV_OK, "drop failed");
      for (int p = 0; p < NP; p++)
        if (pns[p] == ns) pcommitted[p] = false;
    } else if (kind == 14) {
      what = "batch";
      pkv_seq_id ids[MAXS];
      int n = 0;
      for (int j = 0; j < nS; j++)
        if (!S[j].swapped && rnd(2)) ids[n++] = S[j].id;
      if (n > 0) {
        pkv_status st = pkv_batch_build(b, ids, n, NULL);
        bool any_pending = false;
        for (int p = 0; p < NP; p++) any_pending |= pending[p] > 0;
        if (st == PKV_OK) memset(pending, 0, sizeof pending);
        else CHECK(st == PKV_ERR_UNSUPPORTED && any_pending,
                   "batch build failed: %s", pkv_last_error(ctx));
      }
    } else {
      what = "swap";
      /* Run pending copies first, so the model knows their references. */
      if (pkv_cache_flush(c) == PKV_OK) memset(pending, 0, sizeof pending);
      if (S[i].swapped) {
        pkv_status st = pkv_seq_swap_in(c, &S[i].id, 1);
        if (st == PKV_OK) {
          S[i].swapped = false;
          int64_t np = cp_pages(c, S[i].id, S[i].pages, MAXTOK / PS + 2);
          for (int j = 0; j < np; j++) {
            int32_t p = S[i].pages[j];
            fresh_page(p);
            memcpy(ptok[p], S[i].sw_tok[j], sizeof ptok[p]);
            pknown[p] = S[i].sw_known[j];
            pns[p] = S[i].ns;
          }
        } else {
          CHECK(st == PKV_ERR_NO_PAGES, "swap_in: %d", st);
        }
      } else {
        pkv_status st = pkv_seq_swap_out(c, &S[i].id, 1);
        if (st == PKV_OK) {
          S[i].swapped = true;
          for (int j = 0; j < S[i].np; j++) {
            memcpy(S[i].sw_tok[j], ptok[S[i].pages[j]], sizeof ptok[0]);
            S[i].sw_known[j] = pknown[S[i].pages[j]];
          }
          memset(pending, 0, sizeof pending);
        } else {
          CHECK(st == PKV_ERR_NO_HOST_PAGES || st == PKV_ERR_UNSUPPORTED,
                "swap_out: %s", pkv_last_error(ctx));
        }
      }
    }
    done[kind]++;
    check_all(c, op, what);
    if (failures > 10) break;
  }
  is_int(failures, 0, "%ld random operations agree with the model", ops);
  diag("opens %ld appends %ld commits %ld releases %ld forks %ld matches %ld",
       done[0], done[2] + done[3] + done[4] + done[5], done[6], done[7],
       done[8], done[9]);
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(c, &st);
  diag("lookups %lld hit tokens %lld evictions %lld cow %lld failures %lld",
       (long long)st.prefix_lookups, (long long)st.prefix_hit_tokens,
       (long long)st.evictions, (long long)st.cow_copies,
       (long long)st.alloc_failures);
  ok(st.prefix_hit_tokens > 0 && st.evictions > 0,
     "the run exercised prefix hits and evictions");
  for (int i = nS; i-- > 0;) {
    pkv_seq_release(c, S[i].id);
    remove_seq(i);
  }
  pkv_batch_destroy(b);
  pkv_cache_flush(c);
  pkv_cache_stats(c, &st);
  ok(st.pages_live == (int64_t)0 || st.cow_copies > 0,
     "nothing live after releasing everything (but pending copies)");
  ok(st.pages_free + st.pages_cached + st.pages_live == st.pages_total,
     "the pool is whole");
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  return done_testing();
}
