/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness over the public API (issue 8, item 3), CPU backend.
 *
 * The input is a 4-byte geometry header, then operations of 8 bytes each:
 * an opcode and 7 argument bytes (tests/fuzz/gen_corpus.py writes the same
 * encoding). Arguments are often hostile: bad and stale ids, negative and
 * huge counts, NULL pointers, duplicates, buffers too small or from another
 * context, NaN parameters, and an injected allocation failure.
 *
 * Checked after every call:
 *  - a failed call changed nothing observable (tests/api_state.h: stats,
 *    page info, sequences, batch views, pool bytes) and left a message;
 *  - free + live + cached = total, page states agree with refcounts and
 *    statistics, class use adds up, tokens and waste match the sequences;
 *  - every sequence's length and block table agree (ceil(len/page_size)
 *    distinct live pages), its pages are referenced at least once per
 *    holder (exactly, once no copy can be pending);
 *  - content model: each token slot carries the identity of the history
 *    that wrote it (a hash over namespace and every earlier token, dropped
 *    ones included). A sequence must only ever see slots carrying its own
 *    history, whatever forks, prefix matches, sessions, truncation and
 *    swaps did; K/V bytes the harness wrote must read back unchanged after
 *    a flush.
 * A violation prints what and aborts (libFuzzer records the input). */
#include "alloc.h"
#include "api_state.h"
#include "pagedkv.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Bugs 1-6 of issue 8 (fixed): -DFUZZ_AVOID_BUGn=1 makes the harness
 * avoid the sequences that trigger bug n, so that fuzzing the rest goes on
 * while a regression of it is being fixed. */
#ifndef FUZZ_AVOID_BUG1 /* copy-on-write ignores session holds */
#define FUZZ_AVOID_BUG1 0
#endif
#ifndef FUZZ_AVOID_BUG2 /* indexed page written in place */
#define FUZZ_AVOID_BUG2 0
#endif
#ifndef FUZZ_AVOID_BUG3 /* queued copy overwrites a written slot */
#define FUZZ_AVOID_BUG3 0
#endif
#ifndef FUZZ_AVOID_BUG4 /* pages computed after dropped context matchable */
#define FUZZ_AVOID_BUG4 0
#endif
#ifndef FUZZ_AVOID_BUG5 /* stale batch writes into other pages */
#define FUZZ_AVOID_BUG5 0
#endif
#ifndef FUZZ_AVOID_BUG6 /* failed swap runs the queued copies */
#define FUZZ_AVOID_BUG6 0
#endif

enum {
  MAXS = 16,     /* sequences tracked */
  MAXP = 32,     /* pages at most */
  MAXPS = 8,     /* page size at most */
  MAXSLOT = MAXP * MAXPS,
  MAXL = MAXSLOT, /* a sequence's pages are distinct */
  NKEYS = 4,     /* session keys 0..3 (4 is never used) */
  NBATCH = 2,
  MAXTOK = 128,  /* tokens of one batch the harness writes */
  HD = 64,
  MAXQH = 8,
  OPS_MAX = 96
};

typedef struct mseq {
  pkv_seq_id id;
  uint64_t ns;
  int32_t cls;
  int64_t len;
  uint64_t hbase;          /* history before position 0 */
  uint64_t salt;           /* nonzero once context was dropped: later
                            * tokens were computed without it */
  uint64_t H[MAXL];        /* history identity of each position */
  int32_t tok[MAXL];       /* token id, -1 when appended without ids */
  bool swapped;
  uint64_t sw_wr[2][MAXL]; /* K/V written, carried while swapped */
  bool sw_ok[2][MAXL];
  int64_t wfrom;           /* positions [wfrom, len) not written yet */
  uint32_t ver;            /* bumped by every change of the sequence */
  bool spares;             /* pkv_seq_reserve left spare pages on it */
} mseq;

typedef struct msess {
  bool used;
  uint64_t ns, salt;
  int64_t len;
  uint64_t hbase;
  uint64_t H[MAXL];
  int32_t tok[MAXL];
} msess;

typedef struct mbatch {
  pkv_batch *b;
  bool recorded;      /* last build succeeded and fits the harness */
  int n;
  pkv_seq_id ids[MAXS];
  uint32_t ver[MAXS];
  int64_t ntok;
  uint64_t H[MAXTOK]; /* identity of each query token at build time */
  int64_t slot[MAXTOK];
  bool removed;       /* one of its sequences was released, closed,
                       * swapped, truncated or copied on write since the
                       * build: doc/control-plane.md calls the batch stale */
} mbatch;

typedef struct fz {
  pkv_cache *c;
  pkv_cache_geometry g;
  int32_t ps, ncls;
  int64_t npages, nslots;
  mseq S[MAXS];
  int ns;
  msess sess[NKEYS];
  mbatch B[NBATCH];
  uint64_t slot_id[MAXSLOT];   /* identity the engine wrote in each slot */
  uint64_t wr[2][MAXSLOT];     /* identity encoded in the K/V bytes */
  bool wr_ok[2][MAXSLOT];
  bool pending;                /* a copy-on-write copy may be queued */
  uint64_t nonce;
  pkv_buffer *k, *v, *q, *out, *lse, *slots, *tiny, *foreign;
  pkv_seq_id dead[4];          /* ids released or closed, for stale use */
  int ndead;
  const char *op;
  int64_t inject; /* the call under test fails its inject-th allocation */
  int sticky;
} fz;

static pkv_context *ctx, *ctx2;
static int trace; /* PKV_FUZZ_TRACE=1: each operation on stderr */

static void fail(fz *f, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3), noreturn))
#endif
    ;
static void fail(fz *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_api: after %s: ", f->op ? f->op : "?");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

/* ---------------------------------------------------------------- input */

typedef struct rd {
  const uint8_t *p;
  size_t n, i;
} rd;

static uint8_t u8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }

static uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t ns_base(uint64_t ns) { return mix(0x6e616d657370ull, ns); }

/* Counts: mostly small, sometimes hostile. */
static int64_t count_arg(const fz *f, uint8_t b) {
  if (b < 200) return b % 41;
  static const int64_t hostile[] = {-1, -100, INT32_MAX, (int64_t)INT32_MAX - 1,
                                    INT64_MAX, INT64_MIN, (int64_t)1 << 31,
                                    (int64_t)1 << 40};
  switch (b % 12) {
  case 8: return f->nslots;
  case 9: return f->nslots + 1;
  case 10: return f->ps;
  case 11: return f->ps + 1;
  default: return hostile[b % 8];
  }
}

/* A tracked sequence (index into S) or -1 with a hostile id in *id. */
static int seq_arg(fz *f, uint8_t b, pkv_seq_id *id) {
  if (b < 0xE0 && f->ns > 0) {
    int i = b % f->ns;
    *id = f->S[i].id;
    return i;
  }
  static const pkv_seq_id bad[] = {0, -1, INT64_MAX, INT64_MIN, 1000000};
  if (b >= 0xF8 && f->ndead > 0) *id = f->dead[b % f->ndead];
  else *id = bad[b % 5];
  return -1;
}

static int find_seq(const fz *f, pkv_seq_id id) {
  for (int i = 0; i < f->ns; i++)
    if (f->S[i].id == id) return i;
  return -1;
}

static void forget_seq(fz *f, int i) {
  if (f->ndead < 4) f->dead[f->ndead++] = f->S[i].id;
  else f->dead[f->S[i].id % 4] = f->S[i].id;
  for (int b = 0; b < NBATCH; b++)
    for (int r = 0; r < f->B[b].n; r++)
      if (f->B[b].ids[r] == f->S[i].id) f->B[b].removed = true;
  f->S[i] = f->S[--f->ns];
}

static void touched(fz *f, int i, bool removes_pages) {
  f->S[i].ver++;
  if (!removes_pages) return;
  for (int b = 0; b < NBATCH; b++)
    for (int r = 0; r < f->B[b].n; r++)
      if (f->B[b].ids[r] == f->S[i].id) f->B[b].removed = true;
}

/* Fault injection covers the call under test only, not the harness's own
 * queries around it. */
static void arm(fz *f) {
  if (f->inject > 0) pkv__fail_alloc(f->inject, f->sticky);
}
static void disarm(fz *f) {
  pkv__fail_alloc(0, 0);
  f->inject = 0;
}

/* ---------------------------------------------------------------- snapshot */

typedef struct snap {
  as_state s;
  bool bufs;
} snap;

static void take(fz *f, snap *sn, bool bufs) {
  pkv_seq_id ids[MAXS + 4];
  int n = 0;
  for (int i = 0; i < f->ns; i++) ids[n++] = f->S[i].id;
  for (int i = 0; i < f->ndead; i++) ids[n++] = f->dead[i];
  pkv_batch *bs[NBATCH];
  int nb = 0;
  for (int b = 0; b < NBATCH; b++)
    if (f->B[b].b) bs[nb++] = f->B[b].b;
  pkv_buffer *bf[2] = {f->out, f->lse};
  as_take(f->c, ids, n, bs, nb, bf, bufs ? 2 : 0, 0, &sn->s);
  sn->bufs = bufs;
}

/* The rule for every call: PKV_OK, or a failure that changed nothing and
 * says why. */
static bool outcome(fz *f, const snap *before, pkv_status st) {
  disarm(f);
  if (st == PKV_OK) return true;
  if ((int)st < 0 || st > PKV_ERR_TIMEOUT)
    fail(f, "status %d is not a pkv_status", (int)st);
  /* Calls without a context keep their message per thread. */
  const char *m = pkv_last_error(ctx);
  if (!*m) m = pkv_last_error(NULL);
  if (!m || !*m) fail(f, "%s without a message", pkv_status_name(st));
  if (trace) fprintf(stderr, "    -> %s\n", m);
  snap after;
  take(f, &after, before->bufs);
  int d = as_diff(&before->s, &after.s);
  if (d >= 0)
    fail(f, "failed with %s (%s) but the %s changed", pkv_status_name(st), m,
         as_part_name[d]);
  return false;
}

/* ---------------------------------------------------------------- checks */

static void check_content(fz *f) {
  /* Only after a flush: the bytes of the pool as the engine reads them. */
  size_t es = pkv_dtype_size(f->g.dtype);
  size_t lb = f->g.layer_bytes;
  unsigned char *raw = malloc(lb);
  float *row = malloc(HD * sizeof(float));
  if (!raw || !row) abort();
  for (int32_t l = 0; l < f->g.num_layers; l++) {
    pkv_buffer *kb = NULL, *vb = NULL;
    pkv_cache_kv(f->c, l, &kb, &vb);
    for (int kv = 0; kv < 2; kv++) {
      if (pkv_buffer_download(kv ? vb : kb, 0, raw, lb) != PKV_OK)
        fail(f, "pool download");
      for (int64_t s = 0; s < f->nslots; s++) {
        if (!f->wr_ok[l][s]) continue;
        int64_t p = s / f->ps, o = s % f->ps;
        for (int32_t h = 0; h < f->g.num_kv_heads; h++) {
          int64_t e = p * f->g.page_stride + h * f->g.head_stride +
                      o * f->g.token_stride;
          pkv_convert_to_f32(f->g.dtype, raw + (size_t)e * es, row, HD);
          for (int d = 0; d < HD; d++) {
            float want = (float)((f->wr[l][s] >> (8 * (d % 8))) & 0x7f) +
                         (kv ? 128.0f : 0.0f);
            if (row[d] != want)
              fail(f, "layer %d %s slot %lld (page %lld) dim %d reads %g, "
                   "written %g",
                   l, kv ? "V" : "K", (long long)s, (long long)p, d,
                   (double)row[d], (double)want);
          }
        }
      }
    }
  }
  free(raw);
  free(row);
}

static void check_batch_view(fz *f, mbatch *mb) {
  pkv_batch_view v;
  pkv_batch_view_init(&v);
  if (!mb->b || pkv_batch_get_view(mb->b, &v) != PKV_OK) return;
  if (v.q_indptr[0] != 0 || v.kv_indptr[0] != 0)
    fail(f, "batch indptr does not start at 0");
  for (int32_t i = 0; i < v.num_seqs; i++) {
    int32_t np = v.kv_indptr[i + 1] - v.kv_indptr[i];
    int32_t q = v.q_indptr[i + 1] - v.q_indptr[i];
    if (np < 0 || q < 0 || np > v.max_pages)
      fail(f, "batch row %d: %d pages, %d queries", i, np, q);
    if (np != (v.seq_lens[i] + f->ps - 1) / f->ps)
      fail(f, "batch row %d: %d pages for %d tokens", i, np, v.seq_lens[i]);
    int32_t last = np ? v.seq_lens[i] - (np - 1) * f->ps : 0;
    if (v.kv_last_page_len[i] != last)
      fail(f, "batch row %d: last page length %d, not %d", i,
           v.kv_last_page_len[i], last);
    for (int32_t j = 0; j < np; j++) {
      int32_t p = v.kv_indices[v.kv_indptr[i] + j];
      if (p < 0 || p >= f->npages || p != v.block_table[(size_t)i * v.max_pages + j])
        fail(f, "batch row %d page %d: %d", i, j, p);
    }
  }
  if (v.q_indptr[v.num_seqs] != v.num_tokens) fail(f, "batch token count");
  for (int64_t t = 0; t < v.num_tokens; t++)
    if (v.slot_mapping[t] < 0 || v.slot_mapping[t] >= f->nslots)
      fail(f, "batch slot %lld out of range", (long long)v.slot_mapping[t]);
}

static void check_all(fz *f) {
  pkv_stats st;
  pkv_stats_init(&st);
  if (pkv_cache_stats(f->c, &st) != PKV_OK) fail(f, "stats");
  if (st.pages_free + st.pages_live + st.pages_cached != st.pages_total)
    fail(f, "free %lld + live %lld + cached %lld != total %lld",
         (long long)st.pages_free, (long long)st.pages_live,
         (long long)st.pages_cached, (long long)st.pages_total);
  int refs[MAXP] = {0};
  int64_t tokens = 0, waste = 0, host = 0;
  for (int i = 0; i < f->ns; i++) {
    mseq *m = &f->S[i];
    int64_t len = -1;
    if (pkv_seq_length(f->c, m->id, &len) != PKV_OK || len != m->len)
      fail(f, "seq %lld length %lld, model %lld", (long long)m->id,
           (long long)len, (long long)m->len);
    int sw = pkv_seq_is_swapped(f->c, m->id);
    if (sw != (m->swapped ? 1 : 0))
      fail(f, "seq %lld swapped %d, model %d", (long long)m->id, sw, m->swapped);
    int64_t want = (m->len + f->ps - 1) / f->ps;
    if (m->swapped) {
      host += want;
      continue;
    }
    int32_t pg[MAXP + 1];
    int64_t np = -1;
    if (pkv_seq_pages(f->c, m->id, pg, MAXP + 1, &np) != PKV_OK || np != want)
      fail(f, "seq %lld has %lld pages for %lld tokens", (long long)m->id,
           (long long)np, (long long)m->len);
    tokens += m->len;
    waste += np * f->ps - m->len;
    for (int64_t j = 0; j < np; j++) {
      if (pg[j] < 0 || pg[j] >= f->npages)
        fail(f, "seq %lld page %lld = %d", (long long)m->id, (long long)j, pg[j]);
      for (int64_t k = 0; k < j; k++)
        if (pg[k] == pg[j]) fail(f, "seq %lld holds page %d twice", (long long)m->id, pg[j]);
      refs[pg[j]]++;
    }
    for (int64_t pos = 0; pos < m->len; pos++) {
      int64_t s = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
      if (f->slot_id[s] != m->H[pos])
        fail(f, "seq %lld position %lld (page %d): the slot holds another "
             "history's K/V",
             (long long)m->id, (long long)pos, pg[pos / f->ps]);
      for (int l = 0; l < f->g.num_layers; l++)
        if (f->wr_ok[l][s] && f->wr[l][s] != m->H[pos])
          fail(f, "seq %lld position %lld (page %d) layer %d: K/V bytes "
               "written for another history",
               (long long)m->id, (long long)pos, pg[pos / f->ps], l);
    }
  }
  if (st.tokens_stored != tokens || st.waste_slots != waste ||
      st.num_seqs != f->ns || st.host_pages_used != host)
    fail(f, "stats tokens %lld/%lld waste %lld/%lld seqs %lld/%d host %lld/%lld",
         (long long)st.tokens_stored, (long long)tokens,
         (long long)st.waste_slots, (long long)waste, (long long)st.num_seqs,
         f->ns, (long long)st.host_pages_used, (long long)host);
  int64_t nstate[3] = {0, 0, 0}, live_cls[8] = {0};
  bool spares = false;
  for (int i = 0; i < f->ns; i++) spares |= f->S[i].spares;
  for (int32_t p = 0; p < f->npages; p++) {
    pkv_page_info pi;
    pkv_page_info_init(&pi);
    if (pkv_page_get_info(f->c, p, &pi) != PKV_OK) fail(f, "page info %d", p);
    if (pi.state < 0 || pi.state > 2) fail(f, "page %d state %d", p, pi.state);
    nstate[pi.state]++;
    if ((pi.state == PKV_PAGE_LIVE) != (pi.refcount > 0))
      fail(f, "page %d state %d with refcount %d", p, pi.state, pi.refcount);
    /* A spare page of pkv_seq_reserve is live with refcount 1 and in no
     * block table. */
    bool spare = spares && refs[p] == 0 && pi.refcount == 1;
    if (pi.refcount < refs[p] ||
        (!f->pending && pi.refcount != refs[p] && !spare))
      fail(f, "page %d refcount %d, held by %d sequences%s", p, pi.refcount,
           refs[p], f->pending ? "" : " (no copy pending)");
    if (pi.indexed && pi.state == PKV_PAGE_FREE) fail(f, "free page %d indexed", p);
    if (pi.state == PKV_PAGE_LIVE) {
      if (pi.priority_class < 0 || pi.priority_class >= f->ncls)
        fail(f, "page %d class %d", p, pi.priority_class);
      live_cls[pi.priority_class]++;
    }
  }
  if (nstate[0] != st.pages_free || nstate[1] != st.pages_live ||
      nstate[2] != st.pages_cached)
    fail(f, "page states %lld/%lld/%lld, stats %lld/%lld/%lld",
         (long long)nstate[0], (long long)nstate[1], (long long)nstate[2],
         (long long)st.pages_free, (long long)st.pages_live,
         (long long)st.pages_cached);
  for (int32_t c = 0; c < f->ncls; c++)
    if (st.classes[c].in_use != live_cls[c])
      fail(f, "class %d in use %lld, live pages of the class %lld", c,
           (long long)st.classes[c].in_use, (long long)live_cls[c]);
  for (int b = 0; b < NBATCH; b++) check_batch_view(f, &f->B[b]);
}

/* ---------------------------------------------------------------- model */

/* A page filled wholesale (copy-on-write destination, swap-in): its slots
 * hold whatever the source page held, known only where set again. */
static void page_reset(fz *f, int64_t page) {
  for (int l = 0; l < 2; l++)
    memset(&f->wr_ok[l][page * f->ps], 0, (size_t)f->ps);
}

/* After a successful append of n tokens to S[i]: the copy-on-write copy
 * (when the last page moved) and the engine's writes of the new slots. */
static void model_append(fz *f, int i, const int32_t *pg_before, int64_t np_before,
                         int64_t n, const int32_t *ids) {
  mseq *m = &f->S[i];
  int32_t pg[MAXP + 1];
  int64_t np = 0;
  pkv_seq_pages(f->c, m->id, pg, MAXP + 1, &np);
  int64_t off = m->len % f->ps;
  if (off && pg[np_before - 1] != pg_before[np_before - 1]) {
    int64_t src = (int64_t)pg_before[np_before - 1] * f->ps;
    int64_t dst = (int64_t)pg[np_before - 1] * f->ps;
    page_reset(f, pg[np_before - 1]);
    memcpy(&f->slot_id[dst], &f->slot_id[src], (size_t)off * 8);
    for (int l = 0; l < 2; l++) {
      memcpy(&f->wr[l][dst], &f->wr[l][src], (size_t)off * 8);
      memcpy(&f->wr_ok[l][dst], &f->wr_ok[l][src], (size_t)off);
    }
    f->pending = true;
    touched(f, i, true); /* a batch's slot in the old page is stale now */
  }
  for (int64_t j = 0; j < n; j++) {
    int64_t pos = m->len + j;
    uint64_t prev = pos ? m->H[pos - 1] : m->hbase;
    m->tok[pos] = ids ? ids[j] : -1;
    m->H[pos] = mix(prev, ids ? (uint64_t)(uint32_t)ids[j]
                              : (0x8000000000000000ull | ++f->nonce));
    if (m->salt) m->H[pos] = mix(m->H[pos], m->salt);
    int64_t s = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
    f->slot_id[s] = m->H[pos];
    f->wr_ok[0][s] = f->wr_ok[1][s] = false;
  }
  m->len += n;
  touched(f, i, false);
}

static void load_history(mseq *m, uint64_t hbase, const uint64_t *H,
                         const int32_t *tok, int64_t len) {
  m->hbase = hbase;
  m->len = len;
  memcpy(m->H, H, (size_t)len * 8);
  memcpy(m->tok, tok, (size_t)len * 4);
  m->wfrom = len;
}

/* ---------------------------------------------------------------- ops */

static pkv_status call_append(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  int64_t n = count_arg(f, u8(r));
  uint8_t mode = u8(r), t0 = u8(r);
  int32_t ids[64];
  int64_t slots[64];
  bool with_ids = (mode & 3) != 0 && n >= 0 && n <= 64;
  for (int j = 0; j < 64; j++) ids[j] = 1 + (int32_t)((t0 + j * (mode >> 4)) % 3);
  bool with_slots = (mode & 4) && n >= 0 && n <= 64;
  int32_t pg[MAXP + 1];
  int64_t np = 0;
  if (i >= 0 && !f->S[i].swapped) pkv_seq_pages(f->c, id, pg, MAXP + 1, &np);
#if FUZZ_AVOID_BUG1 || FUZZ_AVOID_BUG2
  /* An append into a partial last page that another holder (a session, the
   * index) also keeps is written in place: bugs 1 and 2. */
  if (i >= 0 && !f->S[i].swapped && f->S[i].len % f->ps && n > 0) {
    pkv_page_info pi;
    pkv_page_info_init(&pi);
    pkv_page_get_info(f->c, pg[np - 1], &pi);
    if (pi.refcount == 1 && pi.indexed) return PKV_OK;
    for (int k = 0; k < NKEYS; k++)
      if (f->sess[k].used) return PKV_OK; /* coarse: any session */
  }
#endif
  arm(f);
  pkv_status st = pkv_seq_append(f->c, id, n, with_ids ? ids : NULL,
                                 with_slots ? slots : NULL);
  if (!outcome(f, sn, st)) return st;
  if (i < 0) fail(f, "append to a bad id %lld succeeded", (long long)id);
  if (n > MAXL - f->S[i].len) fail(f, "append of %lld tokens succeeded", (long long)n);
  model_append(f, i, pg, np, n, with_ids ? ids : NULL);
  if (with_slots) {
    int32_t now[MAXP + 1];
    int64_t nn = 0;
    pkv_seq_pages(f->c, id, now, MAXP + 1, &nn);
    for (int64_t j = 0; j < n; j++) {
      int64_t pos = f->S[i].len - n + j;
      int64_t want = (int64_t)now[pos / f->ps] * f->ps + pos % f->ps;
      if (slots[j] != want)
        fail(f, "append slot %lld = %lld, block table says %lld", (long long)j,
             (long long)slots[j], (long long)want);
    }
  }
  return st;
}

static pkv_status call_open(fz *f, rd *r, snap *sn) {
  uint8_t a = u8(r), b = u8(r);
  if (f->ns >= MAXS) return PKV_OK;
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = (a & 0x80) ? (int32_t)(a % 10) - 1 : a % f->ncls,
                    .namespace_id = b % 3};
  pkv_seq_id id = -1;
  arm(f);
  pkv_status st = pkv_seq_open(f->c, (a & 0x40) ? NULL : &d, (b & 0x80) ? NULL : &id);
  if (!outcome(f, sn, st)) return st;
  if (b & 0x80) fail(f, "open with a NULL out succeeded");
  mseq *m = &f->S[f->ns++];
  memset(m, 0, sizeof *m);
  m->id = id;
  m->ns = (a & 0x40) ? 0 : d.namespace_id;
  m->cls = (a & 0x40) ? 0 : d.priority_class;
  m->hbase = ns_base(m->ns);
  return st;
}

static pkv_status call_commit(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  int64_t len = i >= 0 ? f->S[i].len : 0;
  int64_t n = b < 128 ? len : b < 160 ? len - (b % 5) : b < 192 ? len + 1 : count_arg(f, b);
#if FUZZ_AVOID_BUG4
  /* A sequence that dropped context has a history that does not start
   * at its namespace root: committing it is bug 4's trigger. */
  if (i >= 0 && (f->S[i].salt || f->S[i].hbase != ns_base(f->S[i].ns)))
    return PKV_OK;
#endif
  arm(f);
  pkv_status st = pkv_seq_commit(f->c, id, n);
  outcome(f, sn, st);
  return st;
}

/* Tokens of a tracked sequence or session, maybe perturbed. */
static int64_t pick_tokens(fz *f, uint8_t a, uint8_t b, int32_t *t) {
  int64_t n = 0;
  const int32_t *src = NULL;
  if ((a & 1) && f->ns > 0) {
    mseq *m = &f->S[b % f->ns];
    src = m->tok;
    n = m->len;
  } else if (f->sess[b % NKEYS].used) {
    src = f->sess[b % NKEYS].tok;
    n = f->sess[b % NKEYS].len;
  }
  for (int64_t j = 0; j < n; j++) t[j] = src[j] < 0 ? 0 : src[j];
  if (a & 2) {
    int64_t extra = (a >> 2) % 17;
    for (int64_t j = 0; j < extra && n < MAXL; j++) t[n++] = 1 + (int32_t)((b + j) % 3);
  }
  if ((a & 0x40) && n > 0) t[(a >> 3) % n] ^= 1;
  if ((a & 0x80) && n > 0) n -= (b % 5) < n ? (b % 5) : n;
  return n;
}

static pkv_status call_match(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t a = u8(r), b = u8(r), c = u8(r);
  int32_t t[MAXL + 32];
  int64_t n = pick_tokens(f, a, b, t);
  if (c & 1) {
    /* Usually on a fresh sequence, as an engine would. */
    if (f->ns >= MAXS) return PKV_OK;
    pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = (c >> 1) % f->ncls, .namespace_id = (c >> 3) % 3};
    if (pkv_seq_open(f->c, &d, &id) != PKV_OK) return PKV_OK;
    mseq *m = &f->S[f->ns];
    memset(m, 0, sizeof *m);
    m->id = id;
    m->ns = d.namespace_id;
    m->cls = d.priority_class;
    m->hbase = ns_base(m->ns);
    i = f->ns++;
    take(f, sn, false);
  }
  int64_t reused = -1;
  int64_t ncall = (c & 0x80) ? count_arg(f, b) : n;
  const int32_t *tp = (c & 0x40) ? NULL : t;
  if (ncall > n) tp = NULL; /* never let the library read past t */
  bool legit = !(c & 0x20) && ncall >= 0 && ncall <= n && (tp || ncall == 0);
  arm(f);
  pkv_status st = pkv_seq_match_prefix(f->c, id, tp, ncall,
                                       (c & 0x20) ? NULL : &reused);
  if (!outcome(f, sn, st)) return st;
  if (i < 0 || !legit) fail(f, "match with a bad argument succeeded");
  n = ncall;
  mseq *m = &f->S[i];
  if (reused < 0 || reused > n || reused % f->ps)
    fail(f, "match reused %lld of %lld", (long long)reused, (long long)n);
  uint64_t h = m->hbase;
  for (int64_t j = 0; j < reused; j++) {
    h = mix(h, (uint64_t)(uint32_t)t[j]);
    m->H[j] = h;
    m->tok[j] = t[j];
  }
  m->len = reused;
  m->wfrom = reused;
  touched(f, i, false);
  return st;
}

static pkv_status call_fork(fz *f, rd *r, snap *sn) {
  pkv_seq_id id, child = -1;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  if (f->ns >= MAXS) return PKV_OK;
  arm(f);
  pkv_status st = pkv_seq_fork(f->c, id, (b & 0x80) ? NULL : &child);
  if (!outcome(f, sn, st)) return st;
  if (i < 0 || (b & 0x80)) fail(f, "fork with a bad argument succeeded");
  f->S[f->ns] = f->S[i];
  f->S[f->ns].id = child;
  f->S[f->ns].ver = 0;
  f->ns++;
  return st;
}

static pkv_status call_release(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  arm(f);
  pkv_status st = pkv_seq_release(f->c, id);
  if (!outcome(f, sn, st)) return st;
  if (i < 0) fail(f, "release of a bad id succeeded");
  forget_seq(f, i);
  return st;
}

static pkv_status call_close(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t k = u8(r) % NKEYS;
  arm(f);
  pkv_status st = pkv_seq_close_session(f->c, id, k);
  if (!outcome(f, sn, st)) return st;
  if (i < 0) fail(f, "close_session of a bad id succeeded");
  msess *s = &f->sess[k];
  mseq *m = &f->S[i];
  s->used = true;
  s->ns = m->ns;
  s->len = m->len;
  s->hbase = m->hbase;
  s->salt = m->salt;
  memcpy(s->H, m->H, (size_t)m->len * 8);
  memcpy(s->tok, m->tok, (size_t)m->len * 4);
  forget_seq(f, i);
  return st;
}

static pkv_status call_session_open(fz *f, rd *r, snap *sn) {
  uint8_t a = u8(r), b = u8(r);
  uint64_t key = a % (NKEYS + 1);
  if (f->ns >= MAXS) return PKV_OK;
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = (b & 0x80) ? (int32_t)(b % 10) - 1 : b % f->ncls,
                    .namespace_id = 7};
  pkv_seq_id id = -1;
  int64_t tokens = -1;
  arm(f);
  pkv_status st = pkv_session_open(f->c, key, (b & 0x40) ? NULL : &d,
                                   (a & 0x80) ? NULL : &id,
                                   (a & 0x40) ? NULL : &tokens);
  if (!outcome(f, sn, st)) return st;
  if (key >= NKEYS || !f->sess[key].used || (a & 0xC0))
    fail(f, "session_open of key %llu succeeded", (unsigned long long)key);
  msess *s = &f->sess[key];
  if (tokens < 0 || tokens > s->len)
    fail(f, "session_open: %lld tokens of %lld", (long long)tokens, (long long)s->len);
  mseq *m = &f->S[f->ns++];
  memset(m, 0, sizeof *m);
  m->id = id;
  m->ns = s->ns;
  m->cls = (b & 0x40) ? 0 : d.priority_class;
  load_history(m, s->hbase, s->H, s->tok, tokens);
  m->salt = s->salt;
  s->used = false;
  return st;
}

static pkv_status call_truncate(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r), c = u8(r);
  int64_t len = i >= 0 ? f->S[i].len : 0;
  int64_t max = b < 160 ? len - (b % (2 * f->ps + 2)) : count_arg(f, b);
  if (max < 0 && b < 160) max = 0;
  int64_t dropped = -1;
  arm(f);
  pkv_status st = pkv_seq_truncate_front(f->c, id, max, (c & 1) ? NULL : &dropped);
  if (!outcome(f, sn, st)) return st;
  if (i < 0 || max < 0) fail(f, "truncate with a bad argument succeeded");
  mseq *m = &f->S[i];
  if (c & 1) {
    int64_t now = -1;
    pkv_seq_length(f->c, id, &now);
    dropped = m->len - now;
  }
  if (dropped < 0 || dropped > m->len || (m->len - dropped) > max ||
      (dropped % f->ps && dropped != m->len))
    fail(f, "truncate to %lld dropped %lld of %lld", (long long)max,
         (long long)dropped, (long long)m->len);
  if (dropped > 0) {
    m->salt = mix(m->salt, ++f->nonce);
    m->hbase = m->H[dropped - 1];
    memmove(m->H, m->H + dropped, (size_t)(m->len - dropped) * 8);
    memmove(m->tok, m->tok + dropped, (size_t)(m->len - dropped) * 4);
    m->len -= dropped;
    m->wfrom = m->wfrom > dropped ? m->wfrom - dropped : 0;
    touched(f, i, true);
  }
  return st;
}

static pkv_status call_truncate_back(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  int64_t len = i >= 0 ? f->S[i].len : 0;
  int64_t n = b < 160 ? b % (2 * f->ps + 2) : b < 176 ? len : count_arg(f, b);
  arm(f);
  pkv_status st = pkv_seq_truncate_back(f->c, id, n);
  if (!outcome(f, sn, st)) return st;
  if (i < 0 || n < 0 || n > len || f->S[i].swapped)
    fail(f, "truncate_back of %lld tokens succeeded", (long long)n);
  mseq *m = &f->S[i];
  if (n > 0) {
    m->len -= n;
    if (m->wfrom > m->len) m->wfrom = m->len;
    touched(f, i, true);
  }
  return st;
}

static pkv_status call_reserve(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  int64_t n = b < 200 ? b % (4 * f->ps + 1) : count_arg(f, b);
  arm(f);
  pkv_status st = pkv_seq_reserve(f->c, id, n);
  if (!outcome(f, sn, st)) return st;
  if (i < 0 || n < 0) fail(f, "reserve of %lld tokens succeeded", (long long)n);
  f->S[i].spares = n > 0;
  return st;
}

/* A list of up to 4 ids from tracked sequences, duplicates and bad ids. */
static int32_t id_list(fz *f, rd *r, pkv_seq_id *ids, int *idx) {
  uint8_t a = u8(r);
  int32_t n = 1 + a % 4;
  for (int32_t j = 0; j < n; j++) idx[j] = seq_arg(f, u8(r), &ids[j]);
  return n;
}

static pkv_status call_swap(fz *f, rd *r, snap *sn, bool out) {
  pkv_seq_id ids[4];
  int idx[4];
  int32_t n = id_list(f, r, ids, idx);
  uint8_t c = u8(r);
#if FUZZ_AVOID_BUG6
  if (f->pending) {
    pkv_status fs = pkv_cache_flush(f->c);
    if (fs != PKV_OK) fail(f, "flush: %s", pkv_status_name(fs));
    f->pending = false;
    take(f, sn, false);
  }
#endif
  int32_t nn = (c & 0x80) ? (int32_t)count_arg(f, c) : n;
  if (nn > n) nn = n;
  pkv_status st = out ? pkv_seq_swap_out(f->c, (c & 0x40) ? NULL : ids, nn)
                      : pkv_seq_swap_in(f->c, (c & 0x40) ? NULL : ids, nn);
  if (!outcome(f, sn, st)) return st;
  f->pending = false; /* a swap runs the queued copies first */
  for (int32_t j = 0; j < nn; j++) {
    int i = idx[j];
    if (i < 0) fail(f, "swap of a bad id succeeded");
    mseq *m = &f->S[i];
    if (m->swapped == out) fail(f, "swap of a sequence already in that state");
    if (out) {
      int32_t pg[MAXP + 1];
      int64_t np = 0;
      /* Pages are gone now: the model keeps what they held. */
      (void)pg;
      (void)np;
      m->swapped = true;
      m->spares = false; /* spares go back to the pool */
      touched(f, i, true);
    } else {
      int32_t pg[MAXP + 1];
      int64_t np = 0;
      pkv_seq_pages(f->c, m->id, pg, MAXP + 1, &np);
      m->swapped = false;
      for (int64_t pj = 0; pj < np; pj++) page_reset(f, pg[pj]);
      for (int64_t pos = 0; pos < m->len; pos++) {
        int64_t s = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
        f->slot_id[s] = m->H[pos];
        for (int l = 0; l < 2; l++) {
          f->wr[l][s] = m->sw_wr[l][pos];
          f->wr_ok[l][s] = m->sw_ok[l][pos];
        }
      }
      touched(f, i, true);
    }
  }
  return st;
}

/* The swap-out copy of a sequence's written K/V, taken before the call. */
static void save_for_swap(fz *f) {
  for (int i = 0; i < f->ns; i++) {
    mseq *m = &f->S[i];
    if (m->swapped) continue;
    int32_t pg[MAXP + 1];
    int64_t np = 0;
    pkv_seq_pages(f->c, m->id, pg, MAXP + 1, &np);
    for (int64_t pos = 0; pos < m->len; pos++) {
      int64_t s = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
      for (int l = 0; l < 2; l++) {
        m->sw_wr[l][pos] = f->wr[l][s];
        m->sw_ok[l][pos] = f->wr_ok[l][s];
      }
    }
  }
}

static pkv_status call_ns_drop(fz *f, rd *r, snap *sn) {
  arm(f);
  pkv_status st = pkv_namespace_drop(f->c, u8(r) % 4);
  outcome(f, sn, st);
  return st;
}

static pkv_status call_class(fz *f, rd *r, snap *sn) {
  uint8_t a = u8(r), b = u8(r);
  int32_t cls = (a & 0x80) ? (int32_t)(a % 12) - 2 : a % f->ncls;
  int64_t n = (b & 0x80) ? count_arg(f, b) : b % (f->npages + 1);
  arm(f);
  pkv_status st = pkv_class_set_reserved(f->c, cls, n);
  outcome(f, sn, st);
  return st;
}

static pkv_status call_flush(fz *f, snap *sn) {
  arm(f);
  pkv_status st = pkv_cache_flush(f->c);
  if (!outcome(f, sn, st)) return st;
  f->pending = false;
  check_content(f);
  return st;
}

static pkv_status call_build(fz *f, rd *r, snap *sn) {
  mbatch *mb = &f->B[u8(r) % NBATCH];
  pkv_seq_id ids[4];
  int idx[4];
  int32_t n = id_list(f, r, ids, idx);
  uint8_t qm = u8(r), qa = u8(r);
  int32_t ql[4];
  for (int32_t j = 0; j < n; j++) {
    int64_t len = idx[j] >= 0 ? f->S[idx[j]].len : 0;
    int64_t q = (qm & 3) == 1 ? 1 + (qa + j) % (len > 0 ? len : 1)
              : (qm & 3) == 2 ? len - f->S[idx[j] >= 0 ? idx[j] : 0].wfrom
              : (qm & 3) == 3 ? count_arg(f, (uint8_t)(qa + j)) : len > 0;
    if (idx[j] < 0 && (qm & 3) == 2) q = 0;
    if ((qm & 3) == 2 && q == 0 && len > 0) q = 1;
    ql[j] = (int32_t)(q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : q);
  }
  if (!mb->b) {
    pkv_status cs = pkv_batch_create(f->c, &mb->b);
    if (cs != PKV_OK) fail(f, "batch_create: %s", pkv_status_name(cs));
    take(f, sn, false);
  }
  int32_t nn = (qm & 0x80) ? (int32_t)count_arg(f, qa) : n;
  if (nn > n) nn = n;
  arm(f);
  pkv_status st = pkv_batch_build(mb->b, (qm & 0x40) ? NULL : ids, nn,
                                  (qm & 3) ? ql : NULL);
  if (!outcome(f, sn, st)) return st;
  f->pending = false;
  pkv_batch_view v;
  pkv_batch_view_init(&v);
  pkv_batch_get_view(mb->b, &v);
  mb->n = nn;
  mb->removed = false;
  mb->recorded = v.num_tokens <= MAXTOK;
  mb->ntok = v.num_tokens;
  for (int32_t j = 0; j < nn; j++) {
    int i = idx[j];
    if (i < 0) fail(f, "build with a bad id succeeded");
    mb->ids[j] = ids[j];
    mb->ver[j] = f->S[i].ver;
    if (v.seq_lens[j] != f->S[i].len) fail(f, "batch row %d length", j);
    int32_t pg[MAXP + 1];
    int64_t np = 0;
    pkv_seq_pages(f->c, ids[j], pg, MAXP + 1, &np);
    if (np > v.max_pages || memcmp(pg, v.block_table + (size_t)j * v.max_pages, (size_t)np * 4))
      fail(f, "batch row %d differs from the block table of seq %lld", j,
           (long long)ids[j]);
    for (int32_t t = v.q_indptr[j]; mb->recorded && t < v.q_indptr[j + 1]; t++) {
      int64_t pos = f->S[i].len - (v.q_indptr[j + 1] - t);
      mb->H[t] = f->S[i].H[pos];
      mb->slot[t] = v.slot_mapping[t];
      int64_t want = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
      if (v.slot_mapping[t] != want) fail(f, "batch slot %d", t);
    }
  }
  return st;
}

/* K and V rows of n tokens with the given identities, uploaded. */
static void fill_kv(fz *f, const uint64_t *H, int64_t n) {
  size_t es = pkv_dtype_size(f->g.dtype);
  size_t row = (size_t)f->g.num_kv_heads * HD;
  float *k = malloc((size_t)n * row * 4 + 4), *v = malloc((size_t)n * row * 4 + 4);
  unsigned char *kb = malloc((size_t)n * row * es + 4), *vb = malloc((size_t)n * row * es + 4);
  if (!k || !v || !kb || !vb) abort();
  for (int64_t t = 0; t < n; t++)
    for (size_t e = 0; e < row; e++) {
      int d = (int)(e % HD);
      k[t * row + e] = (float)((H[t] >> (8 * (d % 8))) & 0x7f);
      v[t * row + e] = k[t * row + e] + 128.0f;
    }
  pkv_convert_from_f32(f->g.dtype, k, kb, (size_t)n * row);
  pkv_convert_from_f32(f->g.dtype, v, vb, (size_t)n * row);
  if (n > 0) {
    pkv_buffer_upload(f->k, 0, kb, (size_t)n * row * es);
    pkv_buffer_upload(f->v, 0, vb, (size_t)n * row * es);
  }
  free(k);
  free(v);
  free(kb);
  free(vb);
}

static bool batch_changed(const fz *f, const mbatch *mb) {
  for (int j = 0; j < mb->n; j++) {
    int i = find_seq(f, mb->ids[j]);
    if (i < 0 || f->S[i].ver != mb->ver[j]) return true;
  }
  return mb->removed;
}

static pkv_status call_write_kv(fz *f, rd *r, snap *sn) {
  mbatch *mb = &f->B[u8(r) % NBATCH];
  uint8_t a = u8(r);
  int32_t layer = (a & 0x80) ? (int32_t)(a % 5) - 2 : a % f->g.num_layers;
  if (!mb->b) return PKV_OK;
  bool changed = batch_changed(f, mb);
#if FUZZ_AVOID_BUG5
  if (changed) return PKV_OK;
#endif
#if FUZZ_AVOID_BUG3
  if (f->pending) return PKV_OK;
#endif
  if (mb->recorded) fill_kv(f, mb->H, mb->ntok);
  pkv_buffer *k = (a & 0x40) ? f->tiny : (a & 0x20) ? f->foreign : f->k;
  pkv_buffer *v = (a & 0x10) ? NULL : f->v;
  arm(f);
  pkv_status st = pkv_write_kv(mb->b, layer, k, v);
  if (!outcome(f, sn, st)) return st;
  if (mb->removed) fail(f, "write_kv through a stale batch succeeded");
  if (!mb->recorded) {
    /* Content the harness did not lay out: forget what those slots held. */
    pkv_batch_view vw;
    pkv_batch_view_init(&vw);
    pkv_batch_get_view(mb->b, &vw);
    for (int64_t t = 0; t < vw.num_tokens; t++) f->wr_ok[layer][vw.slot_mapping[t]] = false;
    return st;
  }
  for (int64_t t = 0; t < mb->ntok; t++) {
    f->wr[layer][mb->slot[t]] = mb->H[t];
    f->wr_ok[layer][mb->slot[t]] = true;
  }
  (void)changed;
  return st;
}

/* The engine writes the not yet written tokens of one sequence, with
 * padding and (sometimes) a slot past the pool. */
static pkv_status call_write_slots(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t a = u8(r), b = u8(r);
  int32_t layer = (a & 0x80) ? (int32_t)(a % 5) - 2 : a % f->g.num_layers;
  if (i < 0 || f->S[i].swapped) return PKV_OK;
#if FUZZ_AVOID_BUG3
  if (f->pending) return PKV_OK;
#endif
  mseq *m = &f->S[i];
  int32_t pg[MAXP + 1];
  int64_t np = 0;
  pkv_seq_pages(f->c, m->id, pg, MAXP + 1, &np);
  int64_t sl[MAXTOK];
  uint64_t H[MAXTOK];
  int64_t n = 0;
  for (int64_t pos = m->wfrom; pos < m->len && n < MAXTOK - 2; pos++) {
    if (b & 1 && n % 3 == 1) {
      sl[n] = -1 - (b >> 4);
      H[n++] = 0;
    }
    sl[n] = (int64_t)pg[pos / f->ps] * f->ps + pos % f->ps;
    H[n++] = m->H[pos];
  }
  bool past = (b & 2) != 0;
  if (past) {
    sl[n] = f->nslots + (b >> 2);
    H[n++] = 0;
  }
  fill_kv(f, H, n);
  /* Entries past n are padding, should a hostile count reach them. */
  for (int64_t j = n; j < MAXTOK; j++) sl[j] = -1;
  pkv_buffer_upload(f->slots, 0, sl, sizeof sl);
  int64_t nn = (a & 0x40) ? count_arg(f, b) : n;
  arm(f);
  pkv_status st = pkv_write_kv_slots(f->c, layer, (a & 0x20) ? f->tiny : f->k,
                                     f->v, (a & 0x10) ? f->foreign : f->slots, nn);
  if (!outcome(f, sn, st)) return st;
  if (past && nn == n) fail(f, "write_kv_slots past the pool succeeded");
  for (int64_t j = 0; j < nn && j < n; j++) {
    if (sl[j] < 0) continue;
    f->wr[layer][sl[j]] = H[j];
    f->wr_ok[layer][sl[j]] = true;
  }
  if (nn == n) m->wfrom = m->len;
  return st;
}

static pkv_status call_attention(fz *f, rd *r, snap *sn) {
  mbatch *mb = &f->B[u8(r) % NBATCH];
  uint8_t a = u8(r), b = u8(r), c = u8(r), d = u8(r);
  if (!mb->b) return PKV_OK;
#if FUZZ_AVOID_BUG5
  if (batch_changed(f, mb)) return PKV_OK;
#endif
  static const float alibi[MAXQH] = {0.5f, 0.25f, 0.125f, 1, 2, 0.1f, 0.2f, 0.3f};
  static const float alibi_nan[MAXQH] = {0.5f, NAN, 1, 1, 1, 1, 1, 1};
  int32_t kvh = f->g.num_kv_heads;
  static const int32_t qh_mul[] = {1, 2, 4, 0, -1, 3};
  int32_t nq = (a & 7) < 6 ? kvh * qh_mul[a & 7] : (a & 8) ? 1 << 30 : INT32_MIN;
  if (nq == kvh * 3 && kvh == 1) nq = 3;
  pkv_attn_params p;
  pkv_attn_params_init(&p, nq);
  static const float scales[] = {0, 0.125f, 1, -1, NAN, INFINITY, 1e-30f, 3e38f};
  p.scale = scales[(a >> 4) & 7];
  p.causal = (b & 3) == 3 ? 2 : (b & 1);
  p.window_left = (int32_t)((b >> 2) % 6) - 2;
  static const float caps[] = {0, 0, 5, 30, -1, NAN};
  p.softcap = caps[(b >> 5) % 6];
  if ((c & 1) && nq > 0 && nq <= MAXQH) p.alibi_slopes = (c & 2) ? alibi_nan : alibi;
  pkv_buffer *q = (c & 4) ? f->tiny : (c & 8) ? f->foreign : f->q;
  pkv_buffer *out = (c & 0x10) ? NULL : f->out;
  pkv_buffer *lse = (c & 0x20) ? f->lse : NULL;
  int32_t layer = (d & 0x80) ? (int32_t)(d % 5) - 2 : d % f->g.num_layers;
  snap s2;
  take(f, &s2, true);
  arm(f);
  pkv_status st = pkv_attention(mb->b, layer, (d & 0x40) ? NULL : &p, q, out, lse);
  if (!outcome(f, &s2, st)) return st;
  if (mb->removed) fail(f, "attention through a stale batch succeeded");
  /* Attention reads the pool; it never writes it. */
  snap after;
  take(f, &after, false);
  if (after.s.h[AS_POOL] != sn->s.h[AS_POOL]) fail(f, "attention changed the pool");
  return st;
}

/* Queries with hostile arguments: they fail or read, never change. */
static pkv_status call_query(fz *f, rd *r, snap *sn) {
  uint8_t a = u8(r), b = u8(r);
  pkv_seq_id id;
  seq_arg(f, b, &id);
  pkv_status st = PKV_OK;
  int64_t n = 0;
  int32_t pg[4];
  arm(f);
  pkv_seq_id out[4];
  unsigned char tmp[64];
  switch (a % 10) {
  case 0: st = pkv_seq_pages(f->c, id, NULL, 3, &n); break;
  case 1: st = pkv_seq_pages(f->c, id, pg, -1, &n); break;
  case 2: {
    pkv_page_info pi;
    pkv_page_info_init(&pi);
    st = pkv_page_get_info(f->c, (int32_t)count_arg(f, b), &pi);
    break;
  }
  case 3:
    st = pkv_preemption_candidates(f->c, (int32_t)(b % 12) - 2, (a & 0x10) ? NULL : out,
                                   (a & 0x20) ? count_arg(f, b) : 4, &n);
    break;
  case 4: st = pkv_cache_kv(f->c, (int32_t)(b % 6) - 2, NULL, NULL); break;
  case 5: st = pkv_buffer_upload(f->tiny, (size_t)count_arg(f, b), tmp, 16); break;
  case 6: st = pkv_buffer_download(f->tiny, 8, tmp, (size_t)count_arg(f, b) & 0xffff); break;
  case 7: st = pkv_buffer_copy(f->tiny, 0, f->foreign, 0, 8); break;
  case 8: st = pkv_seq_length(f->c, id, NULL); break;
  default: {
    pkv_batch_view v;
    pkv_batch_view_init(&v);
    st = pkv_batch_get_view(f->B[b % NBATCH].b, &v);
    break;
  }
  }
  outcome(f, sn, st);
  return st;
}

/* ---------------------------------------------------------------- driver */

/* Copies the model of every slot of page sp to page dp (a page filled
 * wholesale from another's bytes). */
static void model_copy_page(fz *f, int64_t sp, int64_t dp) {
  for (int64_t o = 0; o < f->ps; o++) {
    int64_t s = sp * f->ps + o, d = dp * f->ps + o;
    f->slot_id[d] = f->slot_id[s];
    for (int l = 0; l < 2; l++) {
      f->wr[l][d] = f->wr[l][s];
      f->wr_ok[l][d] = f->wr_ok[l][s];
    }
  }
}

/* Whether a sequence's token ids chain from its namespace root (what an
 * exporter may hand out with its K/V): all known, no context dropped. */
static bool root_chained(const fz *f, const mseq *m) {
  if (m->salt || m->hbase != ns_base(m->ns)) return false;
  for (int64_t p = 0; p < m->len; p++)
    if (m->tok[p] < 0) return false;
  (void)f;
  return true;
}

/* seq_export then seq_import into the same cache: a new sequence with the
 * same history and bytes (a prefill -> decode handover within one pool). */
static pkv_status call_seq_transfer(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  if (f->ns >= MAXS) return PKV_OK;
  size_t wb = 0;
  pkv_cache_page_wire_bytes(f->c, &wb);
  pkv_layout lay = (pkv_layout)(b & 1);
  bool ids = (b & 2) && i >= 0 && root_chained(f, &f->S[i]);
  int64_t len = i >= 0 ? f->S[i].len : 0;
  int64_t np = (len + f->ps - 1) / f->ps;
  bool short_buf = (b & 0x80) && np > 0;
  size_t bytes = (size_t)np * wb - (short_buf ? 1 : 0);
  unsigned char *buf = malloc(bytes ? bytes : 1);
  int32_t tok[MAXL];
  int64_t n = -1;
  int32_t spg[MAXP + 1];
  int64_t snp = 0;
  if (i >= 0 && !f->S[i].swapped) pkv_seq_pages(f->c, id, spg, MAXP + 1, &snp);
  arm(f);
  pkv_status st = pkv_seq_export(f->c, id, lay, buf, bytes, ids ? tok : NULL, &n);
  if (!outcome(f, sn, st)) {
    free(buf);
    return st;
  }
  if (i < 0 || short_buf) fail(f, "seq_export with a bad argument succeeded");
  f->pending = false; /* the export ran the queued copies */
  if (n != len) fail(f, "seq_export length %lld, model %lld", (long long)n, (long long)len);
  for (int64_t p = 0; ids && p < len; p++)
    if (tok[p] != f->S[i].tok[p]) fail(f, "seq_export token %lld differs", (long long)p);
  mseq *m = &f->S[i];
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = m->cls,
                    .namespace_id = m->ns};
  snap sn2;
  take(f, &sn2, false);
  pkv_seq_id nid = -1;
  st = pkv_seq_import(f->c, &d, ids ? tok : NULL, len, (pkv_layout)((b >> 2) & 1),
                      buf, bytes, &nid);
  /* the import's layout may differ from the export's: then the bytes are
   * those of the other layout, a corruption the content check must see,
   * so only equal layouts are modelled */
  if (!outcome(f, &sn2, st)) {
    free(buf);
    return st;
  }
  free(buf);
  mseq *c = &f->S[f->ns++];
  *c = *m;
  c->id = nid;
  c->ver = 0;
  c->spares = false;
  c->swapped = false;
  int32_t pg[MAXP + 1];
  int64_t cnp = 0;
  pkv_seq_pages(f->c, nid, pg, MAXP + 1, &cnp);
  if (cnp != np) fail(f, "seq_import made %lld pages, want %lld", (long long)cnp, (long long)np);
  bool same_layout = (pkv_layout)((b >> 2) & 1) == lay;
  for (int64_t p = 0; p < np && p < snp; p++) {
    model_copy_page(f, spg[p], pg[p]);
    if (!same_layout) page_reset(f, pg[p]);
  }
  return st;
}

/* The chained page key (doc/kv-events.md), computed here independently of
 * the library: XXH3-128(parent key, namespace, the page's token ids). */
static pkv_page_key page_key(pkv_page_key parent, uint64_t ns, const int32_t *t,
                             int32_t ps) {
  unsigned char buf[24 + MAXPS * 4];
  memcpy(buf, &parent.lo, 8);
  memcpy(buf + 8, &parent.hi, 8);
  memcpy(buf + 16, &ns, 8);
  memcpy(buf + 24, t, (size_t)ps * 4);
  XXH128_hash_t h = XXH3_128bits(buf, 24 + (size_t)ps * 4);
  pkv_page_key k = {h.low64, h.high64};
  return k;
}

/* A sequence's full pages imported as pages of another namespace (what a
 * node receiving another node's pages does), sometimes with a bad parent,
 * a changed token (key mismatch) or a short buffer. The new pages' K/V is
 * the other namespace's, so the model marks it unknown; their slots carry
 * the importing namespace's history, which a later match expects. */
static pkv_status call_pages_import(fz *f, rd *r, snap *sn) {
  pkv_seq_id id;
  int i = seq_arg(f, u8(r), &id);
  uint8_t b = u8(r);
  if (i < 0 || f->S[i].swapped || !root_chained(f, &f->S[i])) return PKV_OK;
  mseq *m = &f->S[i];
  int64_t full = m->len / f->ps;
  if (full < 1 || full > 16) return PKV_OK;
  uint64_t ns = (m->ns + 1 + (b & 1)) % 3;
  pkv_page_key keys[16], k = {0, 0};
  int32_t tok[16 * MAXPS];
  memcpy(tok, m->tok, (size_t)(full * f->ps) * 4);
  for (int64_t j = 0; j < full; j++) keys[j] = k = page_key(k, ns, tok + j * f->ps, f->ps);
  size_t wb = 0;
  pkv_cache_page_wire_bytes(f->c, &wb);
  int64_t np = (m->len + f->ps - 1) / f->ps;
  unsigned char *buf = malloc((size_t)np * wb);
  int64_t n = 0;
  pkv_layout lay = (pkv_layout)((b >> 1) & 1);
  if (pkv_seq_export(f->c, id, lay, buf, (size_t)np * wb, NULL, &n) != PKV_OK) {
    free(buf);
    return PKV_OK; /* harness preparation, not the call under test */
  }
  f->pending = false; /* the export ran the queued copies */
  snap sn2;
  take(f, &sn2, false);
  (void)sn;
  pkv_page_key bogus = {1, 2};
  if (b & 0x10) tok[(b >> 5) % (full * f->ps)] ^= 0x40; /* key mismatch */
  size_t bytes = (size_t)full * wb - ((b & 0x08) ? 1 : 0);
  int64_t ni = -1, nsk = -1;
  arm(f);
  pkv_status st = pkv_pages_import(f->c, ns, (b & 0x04) ? &bogus : NULL, keys, tok,
                                   full, lay, buf, bytes, &ni, &nsk);
  free(buf);
  if (!outcome(f, &sn2, st)) return st;
  if (b & 0x1c) fail(f, "pages_import with a bad argument succeeded");
  if (ni + nsk != full) fail(f, "pages_import: %lld + %lld of %lld pages",
                             (long long)ni, (long long)nsk, (long long)full);
  /* Where the imported pages are: a hold names them. */
  pkv_page_hold *h = NULL;
  int32_t pg[16];
  int64_t cnt = 0;
  if (pkv_pages_hold(f->c, ns, keys, full, &h) != PKV_OK ||
      pkv_page_hold_pages(h, pg, 16, &cnt) != PKV_OK || cnt != full)
    fail(f, "the imported chain cannot be held: %s", pkv_last_error(ctx));
  pkv_page_hold_release(f->c, h);
  uint64_t hist = ns_base(ns);
  for (int64_t pos = 0; pos < full * f->ps; pos++) {
    hist = mix(hist, (uint64_t)(uint32_t)tok[pos]);
    int64_t j = pos / f->ps;
    if (j < nsk) continue; /* skipped: an equal page already indexed */
    if (pos % f->ps == 0) page_reset(f, pg[j]);
    f->slot_id[(int64_t)pg[j] * f->ps + pos % f->ps] = hist;
  }
  return st;
}

/* The event queue: resize (sometimes hostile) and poll. */
static pkv_status call_events(fz *f, rd *r, snap *sn) {
  uint8_t a = u8(r), b = u8(r);
  pkv_kv_event ev[8];
  pkv_kv_event_init(&ev[0]);
  int64_t n = -1, lost = -1;
  arm(f);
  pkv_status st = (a & 1) ? pkv_cache_set_event_queue(f->c, (int64_t)(a >> 1) - 8)
                          : pkv_cache_poll_events(f->c, ev, (int64_t)(b % 10) - 1, &n, &lost);
  if (!outcome(f, sn, st)) return st;
  if ((a & 1) && (a >> 1) < 8) fail(f, "a negative event queue capacity succeeded");
  if (!(a & 1) && (n < 0 || n > 8 || lost < 0))
    fail(f, "poll_events gave n %lld lost %lld", (long long)n, (long long)lost);
  for (int64_t k = 1; k < n; k++)
    if (ev[k].seqno <= ev[k - 1].seqno) fail(f, "event seqnos not increasing");
  return st;
}

static bool setup(fz *f, rd *r) {
  uint8_t g0 = u8(r), g1 = u8(r), g2 = u8(r), g3 = u8(r);
  static const int32_t pss[] = {1, 2, 3, 4, 8};
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = 1 + ((g0 >> 3) & 1);
  d.num_kv_heads = 1 + ((g2 >> 4) & 1);
  d.head_dim = HD;
  d.page_size = pss[(g0 & 7) % 5];
  d.num_pages = 4 + (g1 & 31) % 29;
  d.dtype = (pkv_dtype)((g0 >> 4) % 3);
  d.layout = (pkv_layout)((g0 >> 6) & 1);
  d.num_host_pages = (g1 >> 5) * 4;
  d.num_classes = 1 + (g2 & 3) % 3;
  if (d.num_classes > 1) d.class_reserved[1] = (g2 >> 2) & 3;
  d.max_reserved_fraction = (g3 & 1) ? 0.5 : 0;
  memset(f, 0, sizeof *f);
  if (pkv_cache_create(ctx, &d, &f->c) != PKV_OK) return false;
  pkv_cache_geometry_init(&f->g);
  pkv_cache_get_geometry(f->c, &f->g);
  f->ps = f->g.page_size;
  f->npages = f->g.num_pages;
  f->nslots = f->npages * f->ps;
  f->ncls = d.num_classes;
  pkv_cache_set_event_queue(f->c, 16); /* events flow through every op */
  size_t row = (size_t)f->g.num_kv_heads * HD * pkv_dtype_size(f->g.dtype);
  size_t qrow = (size_t)MAXQH * f->g.num_kv_heads * HD * pkv_dtype_size(f->g.dtype);
  if (pkv_buffer_create(ctx, MAXTOK * row, &f->k) != PKV_OK ||
      pkv_buffer_create(ctx, MAXTOK * row, &f->v) != PKV_OK ||
      pkv_buffer_create(ctx, MAXTOK * qrow, &f->q) != PKV_OK ||
      pkv_buffer_create(ctx, MAXTOK * qrow, &f->out) != PKV_OK ||
      pkv_buffer_create(ctx, MAXTOK * MAXQH * 2 * 4, &f->lse) != PKV_OK ||
      pkv_buffer_create(ctx, MAXTOK * 8, &f->slots) != PKV_OK ||
      pkv_buffer_create(ctx, 16, &f->tiny) != PKV_OK ||
      pkv_buffer_create(ctx2, MAXTOK * qrow, &f->foreign) != PKV_OK)
    abort();
  return true;
}

static void teardown(fz *f) {
  for (int b = 0; b < NBATCH; b++) pkv_batch_destroy(f->B[b].b);
  pkv_buffer_destroy(f->k);
  pkv_buffer_destroy(f->v);
  pkv_buffer_destroy(f->q);
  pkv_buffer_destroy(f->out);
  pkv_buffer_destroy(f->lse);
  pkv_buffer_destroy(f->slots);
  pkv_buffer_destroy(f->tiny);
  pkv_buffer_destroy(f->foreign);
  pkv_cache_destroy(f->c);
}

static const char *const op_names[] = {
    "open", "append", "commit", "match_prefix", "fork", "release",
    "close_session", "session_open", "truncate_front", "swap_out", "swap_in",
    "namespace_drop", "class_set_reserved", "flush", "batch_build",
    "write_kv", "write_kv_slots", "attention", "query", "append",
    "inject allocation failure", "truncate_back", "reserve", "seq_transfer",
    "events", "pages_import"};
enum { NOPS = sizeof op_names / sizeof op_names[0] };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx) {
    const char *t = getenv("PKV_FUZZ_TRACE");
    trace = t && *t == '1';
    pkv_context_desc cd;
    pkv_context_desc_init(&cd);
    cd.backend = PKV_BACKEND_CPU;
    cd.cpu_threads = 1;
    if (pkv_context_create(&cd, &ctx) != PKV_OK ||
        pkv_context_create(&cd, &ctx2) != PKV_OK)
      abort();
  }
  static fz F;
  fz *f = &F;
  rd r = {data, size, 0};
  int64_t live0 = pkv__alloc_live();
  if (size < 4 || !setup(f, &r)) return 0;
  int64_t inject = 0;
  int sticky = 0;
  for (int ops = 0; ops < OPS_MAX && r.i + 8 <= r.n; ops++) {
    uint8_t op = u8(&r) % NOPS;
    rd a = {r.p + r.i, 7, 0};
    r.i += 7;
    f->op = op_names[op];
    if (trace)
      fprintf(stderr, "op %d %s %02x %02x %02x %02x %02x %02x %02x\n", ops,
              f->op, a.p[0], a.p[1], a.p[2], a.p[3], a.p[4], a.p[5], a.p[6]);
    snap sn;
    take(f, &sn, false);
    f->inject = inject;
    f->sticky = sticky;
    switch (op) {
    case 0: call_open(f, &a, &sn); break;
    case 1: case 19: call_append(f, &a, &sn); break;
    case 2: call_commit(f, &a, &sn); break;
    case 3: call_match(f, &a, &sn); break;
    case 4: call_fork(f, &a, &sn); break;
    case 5: call_release(f, &a, &sn); break;
    case 6: call_close(f, &a, &sn); break;
    case 7: call_session_open(f, &a, &sn); break;
    case 8: call_truncate(f, &a, &sn); break;
    case 9: save_for_swap(f); call_swap(f, &a, &sn, true); break;
    case 10: call_swap(f, &a, &sn, false); break;
    case 11: call_ns_drop(f, &a, &sn); break;
    case 12: call_class(f, &a, &sn); break;
    case 13: call_flush(f, &sn); break;
    case 14: call_build(f, &a, &sn); break;
    case 15: call_write_kv(f, &a, &sn); break;
    case 16: call_write_slots(f, &a, &sn); break;
    case 17: call_attention(f, &a, &sn); break;
    case 18: call_query(f, &a, &sn); break;
    case 21: call_truncate_back(f, &a, &sn); break;
    case 22: call_reserve(f, &a, &sn); break;
    case 23: call_seq_transfer(f, &a, &sn); break;
    case 24: call_events(f, &a, &sn); break;
    case 25: call_pages_import(f, &a, &sn); break;
    default: {
      /* The next call's k-th allocation fails (and every later one). */
      uint8_t k = u8(&a);
      inject = 1 + k % 8;
      sticky = k >> 7;
      continue;
    }
    }
    disarm(f);
    inject = 0;
    if (trace) fprintf(stderr, "    done\n");
    check_all(f);
  }
  pkv__fail_alloc(0, 0);
  /* Everything flushed must read back as written. */
  f->op = "final flush";
  if (pkv_cache_flush(f->c) == PKV_OK) {
    f->pending = false;
    check_content(f);
    check_all(f);
  }
  teardown(f);
  if (pkv__alloc_live() != live0)
    fail(f, "%lld blocks of the library leak", (long long)(pkv__alloc_live() - live0));
  return 0;
}
