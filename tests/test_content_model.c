/* SPDX-License-Identifier: Apache-2.0 */
/* Content-checking model test of the control plane (issue 8, item 2).
 *
 * Every K/V row the test writes carries, in its first element, a value
 * derived from (namespace, the whole token history of its position) in K
 * and the id of the write that produced it in V. A plain model keeps, for
 * every live sequence, its tokens, their histories and which write each
 * position holds. Random interleavings of every mutating call (open, append
 * with and without ids, commit, match_prefix, fork, release, session close
 * and open, truncation, swap out and in, namespace drop, class resize,
 * batch build, write through a batch, write through slots, flush) run
 * against the library; after each one every resident sequence is read back
 * through pkv_batch_view and the CPU pool's memory and must hold exactly
 * its own history. (About one operation in four defers its check to the
 * next one, so that copy-on-write copies stay queued across calls.)
 *
 * 10^5 operations over 5 seeds by default; PKV_STRESS=N runs N times as
 * many. The interactions behind issue 8's bugs (sessions x fork x
 * copy-on-write, truncation x commit, stale batches, writes before a flush)
 * are weighted up. */
#include "cp_util.h"

#include <inttypes.h>

#define PS 4
#define DIM 64
#define NPAGES 40
#define NHOST 16
#define MAXS 12     /* model sequences at once */
#define MAXLEN 128  /* tokens per sequence (the pool caps it anyway) */
#define NSESS 4
#define NTPL 4
#define TPLLEN 160

typedef struct mseq {
  pkv_seq_id id;
  uint64_t ns;
  int32_t cls, tpl;
  int swapped;
  int64_t len, base_abs; /* tokens dropped from the front so far */
  uint64_t base_hist;    /* history before position 0 */
  int32_t tok[MAXLEN];
  uint64_t hist[MAXLEN];
  uint32_t writer[MAXLEN]; /* 0: unwritten; 1: any (matched); else write id */
  uint64_t epoch;          /* bumped by anything that may remap its slots */
  /* A truncation dropped context: K/V appended from then on is computed
   * without it, so its history differs from any root history. */
  int detached;
  int64_t resv; /* tokens pkv_seq_reserve guarantees to the next appends */
} mseq;

typedef struct msess {
  int used;
  mseq s;
} msess;

static uint64_t rng;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)((rng >> 11) % n);
}

static uint64_t mix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return h;
}
static uint64_t root_hist(uint64_t ns) { return mix(0x1234, ns); }
static uint32_t cval(uint64_t ns, uint64_t hist) {
  return (uint32_t)mix(hist, ns ^ 0xabcdef) | 1u;
}

/* The test state. */
static pkv_context *ctx;
static pkv_cache *c;
static pkv_batch *chk, *wb;
static pkv_buffer *kbuf, *vbuf, *sbuf;
static const unsigned char *kpool, *vpool;
static pkv_cache_geometry geo;
static mseq S[MAXS];
static int ns_;
static msess SS[NSESS];
static int32_t TPL[NTPL][TPLLEN];
static uint32_t next_writer = 2;
static int64_t n_ops, n_reads, n_fail, n_state_refusals, n_cow_written;
static char fail_msg[256];

/* The work batch's rows as built. */
typedef struct wrow {
  pkv_seq_id id;
  uint64_t epoch;
  int64_t abs_from, n;
} wrow;
static wrow WR[MAXS];
static int nwr, wb_built;

static void fail(const char *fmt, const char *op, long long a, long long b) {
  if (n_fail++ == 0) {
    snprintf(fail_msg, sizeof fail_msg, fmt, op, a, b);
    diag("first failure at op %lld: %s", (long long)n_ops, fail_msg);
  }
}

static mseq *find(pkv_seq_id id) {
  for (int i = 0; i < ns_; i++)
    if (S[i].id == id) return &S[i];
  return NULL;
}
static void drop(mseq *m) { *m = S[--ns_]; }

static int unwritten(const mseq *m) {
  int64_t u = 0;
  while (u < m->len && m->writer[m->len - 1 - u] == 0) u++;
  return (int)u;
}

/* Positions [0, computed) are all written (what an engine may commit). */
static int64_t computed(const mseq *m) {
  int64_t p = 0;
  while (p < m->len && m->writer[p] != 0) p++;
  return p;
}

static int32_t next_token(const mseq *m, int64_t abs) {
  if (abs < TPLLEN && rnd(100) < 85) return TPL[m->tpl][abs];
  return 1 + (int32_t)rnd(40);
}

/* Writes the rows of n positions: K = content, V = writer id. */
static void stage_rows(const mseq *const *seqs, const int64_t *rel, int64_t n,
                       uint32_t writer) {
  static float k[4 * MAXLEN * DIM], v[4 * MAXLEN * DIM];
  for (int64_t i = 0; i < n; i++) {
    uint32_t kv = cval(seqs[i]->ns, seqs[i]->hist[rel[i]]);
    memset(k + i * DIM, 0, DIM * sizeof(float));
    memset(v + i * DIM, 0, DIM * sizeof(float));
    memcpy(k + i * DIM, &kv, 4);
    memcpy(v + i * DIM, &writer, 4);
  }
  pkv_buffer_upload(kbuf, 0, k, (size_t)n * DIM * sizeof(float));
  pkv_buffer_upload(vbuf, 0, v, (size_t)n * DIM * sizeof(float));
}

static void row_at(int32_t page, int64_t off, uint32_t *kv, uint32_t *vv) {
  size_t e = (size_t)(page * geo.page_stride + off * geo.token_stride) * 4;
  memcpy(kv, kpool + e, 4);
  memcpy(vv, vpool + e, 4);
}

/* Every resident sequence reads back its own history (through a batch
 * view, so the build's flush has run the pending copies). */
static void check_all(const char *op) {
  pkv_seq_id ids[MAXS];
  int n = 0;
  for (int i = 0; i < ns_; i++) {
    int64_t len = -1;
    if (pkv_seq_length(c, S[i].id, &len) != PKV_OK || len != S[i].len)
      fail("%s: length %lld, model %lld", op, len, S[i].len);
    if (pkv_seq_is_swapped(c, S[i].id) != S[i].swapped)
      fail("%s: swap state of seq %lld wrong (%lld)", op, S[i].id, 0);
    if (!S[i].swapped) ids[n++] = S[i].id;
  }
  if (!cp_conserved(c)) fail("%s: pages not conserved%lld%lld", op, 0, 0);
  if (n == 0) return;
  if (pkv_batch_build(chk, ids, n, NULL) != PKV_OK) {
    fail("%s: check build failed (%lld seqs)%lld", op, n, 0);
    return;
  }
  pkv_batch_view bv;
  pkv_batch_view_init(&bv);
  pkv_batch_get_view(chk, &bv);
  for (int r = 0; r < n; r++) {
    mseq *m = find(ids[r]);
    const int32_t *row = bv.block_table + (size_t)r * (size_t)bv.max_pages;
    if (bv.seq_lens[r] != m->len) fail("%s: view seq_len %lld != %lld", op, bv.seq_lens[r], m->len);
    for (int64_t p = 0; p < m->len; p++) {
      if (m->writer[p] == 0) continue;
      uint32_t kv, vv;
      row_at(row[p / PS], p % PS, &kv, &vv);
      n_reads++;
      if (kv != cval(m->ns, m->hist[p]) ||
          (m->writer[p] > 1 && vv != m->writer[p])) {
        if (getenv("CM_DEBUG"))
          diag("seq %lld pos %lld page %d: k %08x want %08x, writer %u want %u",
               (long long)m->id, (long long)p, row[p / PS], kv,
               cval(m->ns, m->hist[p]), vv, m->writer[p]);
        fail("%s: seq %lld position %lld holds another token's K/V", op,
             (long long)m->id, (long long)p);
        return;
      }
    }
  }
}

static mseq *pick(int resident) {
  if (ns_ == 0) return NULL;
  for (int t = 0; t < 8; t++) {
    mseq *m = &S[rnd((uint32_t)ns_)];
    if (resident < 0 || m->swapped == !resident) return m;
  }
  return NULL;
}

static void op_open(void) {
  if (ns_ == MAXS) return;
  pkv_seq_desc d = {.struct_size = sizeof d,
                    .priority_class = (int32_t)rnd(2),
                    .namespace_id = rnd(2)};
  pkv_seq_id id;
  if (pkv_seq_open(c, &d, &id) != PKV_OK) {
    fail("%s: failed%lld%lld", "open", 0, 0);
    return;
  }
  mseq *m = &S[ns_++];
  memset(m, 0, sizeof *m);
  m->id = id;
  m->ns = d.namespace_id;
  m->cls = d.priority_class;
  m->tpl = (int32_t)rnd(NTPL);
  m->base_hist = root_hist(m->ns);
  /* Half the time, reuse a cached prefix first. */
  if (rnd(2)) {
    int64_t n = rnd(TPLLEN / 2), reused = -1;
    if (pkv_seq_match_prefix(c, id, TPL[m->tpl], n, &reused) != PKV_OK ||
        reused < 0 || reused > n || reused % PS) {
      fail("%s: match gave %lld of %lld", "match", reused, n);
      return;
    }
    uint64_t h = m->base_hist;
    for (int64_t p = 0; p < reused; p++) {
      m->tok[p] = TPL[m->tpl][p];
      h = m->hist[p] = mix(h, (uint64_t)m->tok[p]);
      m->writer[p] = 1;
    }
    m->len = reused;
  }
}

/* Appends n tokens; returns the slots (NULL when the append was refused). */
static int append(mseq *m, int64_t n, int with_ids, int64_t *slots) {
  if (m->len + n > MAXLEN) return 0;
  int32_t t[MAXLEN];
  for (int64_t i = 0; i < n; i++)
    /* A truncated sequence draws the template from its own start: the
     * tokens equal a root prompt's, the K/V does not. */
    t[i] = m->tok[m->len + i] =
        next_token(m, (m->detached ? 0 : m->base_abs) + m->len + i);
  pkv_status st = pkv_seq_append(c, m->id, n, with_ids ? t : NULL, slots);
  if (st == PKV_ERR_NO_PAGES && n <= m->resv)
    fail("%s: %lld tokens of a reservation of %lld refused", "append", n,
         m->resv);
  if (st == PKV_ERR_NO_PAGES) return 0;
  if (st != PKV_OK) {
    fail("%s: status %lld%lld", "append", st, 0);
    return 0;
  }
  uint64_t h = m->len ? m->hist[m->len - 1] : m->base_hist;
  if (m->detached) h = mix(h, 0xdeadull);
  for (int64_t i = 0; i < n; i++) {
    h = m->hist[m->len + i] = mix(h, (uint64_t)t[i]);
    m->writer[m->len + i] = 0;
  }
  m->len += n;
  m->epoch++;
  m->resv = m->resv > n ? m->resv - n : 0;
  return 1;
}

/* Writes K/V for m's n newest tokens (positions from..from+n-1, in slots)
 * through pkv_write_kv_slots, as one new writer, and records that writer.
 * 0 when the write failed (already reported). */
static int write_new_tokens(mseq *m, int64_t from, int64_t n,
                            const int64_t *slots) {
  if (n < 1 || n > MAXLEN) return 1; /* callers write 1..MAXLEN tokens */
  const mseq *ps[MAXLEN];
  int64_t rel[MAXLEN];
  for (int64_t i = 0; i < n; i++) ps[i] = m, rel[i] = from + i;
  uint32_t w = next_writer++;
  stage_rows(ps, rel, n, w);
  pkv_buffer_upload(sbuf, 0, slots, (size_t)n * sizeof(int64_t));
  if (pkv_write_kv_slots(c, 0, kbuf, vbuf, sbuf, n) != PKV_OK) {
    fail("%s: status%lld%lld", "write_slots", 0, 0);
    return 0;
  }
  for (int64_t i = 0; i < n; i++) m->writer[from + i] = w;
  return 1;
}

/* Append, then write the new tokens through pkv_write_kv_slots at once,
 * with no flush between (copy-on-write copies may still be queued). */
static void op_append_write_slots(void) {
  mseq *m = pick(1);
  /* An engine computes a step's tokens before it appends the next ones. */
  if (!m || computed(m) != m->len) return;
  int64_t n = 1 + rnd(2 * PS), slots[MAXLEN];
  int64_t from = m->len;
  if (!append(m, n, rnd(4) != 0, slots)) return;
  /* Sometimes make another sequence queue a copy in between. */
  if (rnd(2)) {
    mseq *o = pick(1);
    if (o && o != m && computed(o) == o->len && ns_ < MAXS) {
      pkv_seq_id ch;
      if (pkv_seq_fork(c, o->id, &ch) == PKV_OK) {
        mseq *x = &S[ns_++];
        *x = *o;
        x->id = ch;
        x->epoch = 0;
        x->resv = o->resv = 0;
        int64_t s2[MAXLEN];
        int64_t f2 = x->len;
        if (append(x, 1, 1, s2)) {
          const mseq *ps[1] = {x};
          int64_t rel[1] = {f2};
          uint32_t w = next_writer++;
          stage_rows(ps, rel, 1, w);
          pkv_buffer_upload(sbuf, 0, s2, sizeof(int64_t));
          if (pkv_write_kv_slots(c, 0, kbuf, vbuf, sbuf, 1) != PKV_OK)
            fail("%s: status%lld%lld", "write_slots", 0, 0);
          x->writer[f2] = w;
          n_cow_written++;
        }
      }
    }
  }
  write_new_tokens(m, from, n, slots);
}

static void op_append(void) {
  mseq *m = pick(1);
  if (!m) return;
  int64_t slots[MAXLEN];
  append(m, 1 + rnd(2 * PS + 1), rnd(4) != 0, slots);
}

/* Builds the work batch over sequences with unwritten tokens. */
static void op_build(void) {
  pkv_seq_id ids[MAXS];
  int32_t q[MAXS];
  int n = 0;
  for (int i = 0; i < ns_ && n < 4; i++) {
    int u = unwritten(&S[i]);
    if (!S[i].swapped && u > 0 && rnd(3)) {
      ids[n] = S[i].id;
      q[n] = u;
      WR[n].id = S[i].id;
      WR[n].epoch = S[i].epoch;
      WR[n].abs_from = S[i].base_abs + S[i].len - u;
      WR[n].n = u;
      n++;
    }
  }
  if (n == 0) return;
  if (pkv_batch_build(wb, ids, n, q) != PKV_OK) {
    fail("%s: failed%lld%lld", "build", 0, 0);
    return;
  }
  nwr = n;
  wb_built = 1;
}

/* Writes through the work batch, perhaps long after its build. */
static void op_write_batch(void) {
  if (!wb_built) return;
  static const mseq *ps[4 * MAXLEN];
  static int64_t rel[4 * MAXLEN];
  int64_t t = 0;
  int live = 1;
  for (int r = 0; r < nwr; r++) {
    mseq *m = find(WR[r].id);
    if (!m || m->swapped || m->epoch != WR[r].epoch) live = 0;
    for (int64_t i = 0; i < WR[r].n; i++) {
      ps[t] = m;
      rel[t++] = m ? WR[r].abs_from + i - m->base_abs : -1;
    }
  }
  uint32_t w = next_writer++;
  /* Rows of sequences gone get a content no one expects. */
  static const mseq ghost = {0};
  int64_t t2 = 0;
  for (int r = 0; r < nwr; r++)
    for (int64_t i = 0; i < WR[r].n; i++, t2++)
      if (!ps[t2] || rel[t2] < 0 || rel[t2] >= ps[t2]->len) {
        ps[t2] = &ghost;
        rel[t2] = 0;
      }
  stage_rows(ps, rel, t, w);
  pkv_status st = pkv_write_kv(wb, 0, kbuf, vbuf);
  wb_built = 0; /* one write per step, as an engine does */
  if (st == PKV_ERR_STATE) {
    n_state_refusals++;
    if (live) fail("%s: a current batch was refused%lld%lld", "write_kv", 0, 0);
    return;
  }
  if (st != PKV_OK) {
    fail("%s: status %lld%lld", "write_kv", st, 0);
    return;
  }
  /* Only rows whose sequence kept its pages may legally be written; the
   * others are a stale batch the library had to refuse. */
  for (int r = 0; r < nwr; r++) {
    mseq *m = find(WR[r].id);
    if (!m || m->swapped) {
      fail("%s: stale batch written (seq %lld gone or swapped)%lld", "write_kv",
           (long long)WR[r].id, 0);
      continue;
    }
    for (int64_t i = 0; i < WR[r].n; i++) {
      int64_t p = WR[r].abs_from + i - m->base_abs;
      if (p >= 0 && p < m->len) m->writer[p] = w;
    }
  }
}

static void op_commit(void) {
  mseq *m = pick(1);
  if (!m) return;
  int64_t written = computed(m);
  int64_t k = written ? rnd((uint32_t)written + 1) : 0;
  if (rnd(2)) k = written;
  if (pkv_seq_commit(c, m->id, k) != PKV_OK)
    fail("%s: commit %lld failed%lld", "commit", k, 0);
}

static void op_fork(void) {
  mseq *m = pick(1);
  if (!m || ns_ == MAXS || computed(m) != m->len) return;
  pkv_seq_id ch;
  if (pkv_seq_fork(c, m->id, &ch) != PKV_OK) {
    fail("%s: failed%lld%lld", "fork", 0, 0);
    return;
  }
  mseq *x = &S[ns_++];
  *x = *m;
  x->id = ch;
  x->epoch = 0;
  x->resv = m->resv = 0; /* the shared last page may need a copy now */
}

static void op_release(void) {
  mseq *m = pick(-1);
  if (!m) return;
  if (pkv_seq_release(c, m->id) != PKV_OK) fail("%s: failed%lld%lld", "release", 0, 0);
  drop(m);
}

static void op_close_session(void) {
  mseq *m = pick(1);
  if (!m || computed(m) != m->len) return;
  uint32_t k = rnd(NSESS);
  if (pkv_seq_close_session(c, m->id, k + 1) != PKV_OK) {
    fail("%s: failed%lld%lld", "close_session", 0, 0);
    return;
  }
  SS[k].used = 1;
  SS[k].s = *m;
  drop(m);
}

static void op_open_session(void) {
  uint32_t k = rnd(NSESS);
  if (!SS[k].used || ns_ == MAXS) return;
  pkv_seq_desc d = {.struct_size = sizeof d,
                    .priority_class = (int32_t)rnd(2),
                    .namespace_id = 77};
  pkv_seq_id id;
  int64_t n = -1;
  if (pkv_session_open(c, k + 1, &d, &id, &n) != PKV_OK) {
    fail("%s: failed%lld%lld", "session_open", 0, 0);
    return;
  }
  mseq *m = &S[ns_++];
  *m = SS[k].s;
  SS[k].used = 0;
  if (n < 0 || n > m->len || (n < m->len && n % PS)) {
    fail("%s: reopened with %lld of %lld tokens", "session_open", n, m->len);
    n = 0;
  }
  m->id = id;
  m->cls = d.priority_class;
  m->len = n;
  m->epoch = 0;
  m->resv = 0;
}

static void op_truncate_seq(mseq *m) {
  if (m->len == 0) return;
  int64_t keep = rnd(3) ? rnd((uint32_t)m->len) : 0, dropped = -1;
  if (pkv_seq_truncate_front(c, m->id, keep, &dropped) != PKV_OK ||
      dropped < 0 || dropped > m->len || m->len - dropped > keep ||
      (dropped % PS && dropped != m->len)) {
    fail("%s: dropped %lld keeping %lld", "truncate", dropped, keep);
    return;
  }
  if (dropped == 0) return;
  m->base_hist = m->hist[dropped - 1];
  memmove(m->tok, m->tok + dropped, (size_t)(m->len - dropped) * sizeof *m->tok);
  memmove(m->hist, m->hist + dropped, (size_t)(m->len - dropped) * sizeof *m->hist);
  memmove(m->writer, m->writer + dropped,
          (size_t)(m->len - dropped) * sizeof *m->writer);
  m->len -= dropped;
  m->base_abs += dropped;
  m->epoch++;
  m->detached = 1;
  m->resv = 0;
}

static void op_truncate(void) {
  mseq *m = pick(1);
  if (m) op_truncate_seq(m);
}

static void op_swap(int out) {
  mseq *m = pick(out ? 1 : 0);
  if (!m) return;
  pkv_seq_id ids[2] = {m->id, 0};
  int n = 1;
  mseq *o = pick(out ? 1 : 0);
  if (o && o != m) ids[n++] = o->id;
  pkv_status st = out ? pkv_seq_swap_out(c, ids, n) : pkv_seq_swap_in(c, ids, n);
  if (st == PKV_ERR_NO_HOST_PAGES || st == PKV_ERR_NO_PAGES) return;
  if (st != PKV_OK) {
    fail("%s: status %lld%lld", "swap", st, 0);
    return;
  }
  for (int i = 0; i < n; i++) {
    mseq *x = find(ids[i]);
    x->swapped = out;
    x->epoch++;
    x->resv = 0;
  }
}

/* Weighted-up interaction of bugs 1 and 2: a sequence forks and the
 * parent closes into a session, so the child (and later the reopened
 * parent) append next to pages a session holds. */
static void op_fork_close(void) {
  mseq *m = pick(1);
  if (!m || ns_ == MAXS || computed(m) != m->len || m->len % PS == 0) return;
  pkv_seq_id ch;
  if (pkv_seq_fork(c, m->id, &ch) != PKV_OK) {
    fail("%s: failed%lld%lld", "fork", 0, 0);
    return;
  }
  mseq *x = &S[ns_++];
  *x = *m;
  x->id = ch;
  x->epoch = 0;
  x->resv = 0;
  uint32_t k = rnd(NSESS);
  if (pkv_seq_close_session(c, m->id, k + 1) != PKV_OK) {
    fail("%s: failed%lld%lld", "close_session", 0, 0);
    return;
  }
  SS[k].used = 1;
  SS[k].s = *m;
  drop(m);
}

/* Weighted-up interaction of bug 4: truncate, extend, commit, so that the
 * pages computed after the dropped context meet the index. */
static void op_truncate_extend(void) {
  mseq *m = pick(1);
  if (!m || computed(m) != m->len) return;
  pkv_seq_commit(c, m->id, m->len);
  op_truncate_seq(m);
  if (computed(m) != m->len) return;
  if (m->len == 0 && rnd(2)) {
    /* Emptied: a session round trip with no page (the m == 0 reopen). */
    uint32_t k = rnd(NSESS);
    if (pkv_seq_close_session(c, m->id, k + 1) != PKV_OK) return;
    SS[k].used = 1;
    SS[k].s = *m;
    drop(m);
    return;
  }
  int64_t n = 1 + rnd(3 * PS), slots[MAXLEN], from = m->len;
  if (!append(m, n, 1, slots)) return;
  if (!write_new_tokens(m, from, n, slots)) return;
  if (pkv_seq_commit(c, m->id, m->len) != PKV_OK)
    fail("%s: failed%lld%lld", "commit", 0, 0);
  /* A session round trip now and then (the m == 0 reopen path). */
  if (rnd(2) && ns_ < MAXS) {
    uint32_t k = rnd(NSESS);
    pkv_seq_id keep = m->id;
    if (pkv_seq_close_session(c, keep, k + 1) != PKV_OK) return;
    SS[k].used = 1;
    SS[k].s = *m;
    drop(m);
  }
}

/* Speculative decoding: drop rejected draft tokens from the end. */
static void op_truncate_back(void) {
  mseq *m = pick(1);
  if (!m || m->len == 0) return;
  int64_t n = rnd((uint32_t)(m->len < 2 * PS ? m->len : 2 * PS) + 1);
  /* Committed first half the time, so that the cut may fall into an
   * indexed page, which the next append must then copy. */
  if (rnd(2)) pkv_seq_commit(c, m->id, computed(m));
  if (pkv_seq_truncate_back(c, m->id, n) != PKV_OK) {
    fail("%s: dropping %lld of %lld failed", "truncate_back", n, m->len);
    return;
  }
  if (n == 0) return;
  m->len -= n;
  m->epoch++;
  m->resv = 0;
  /* The verified continuation differs from the rejected draft. */
  m->tpl = (m->tpl + 1) % NTPL;
}

/* Lookahead reservation, then the draft tokens appended and written. */
static void op_reserve(void) {
  mseq *m = pick(1);
  if (!m || computed(m) != m->len) return;
  int64_t n = rnd(3 * PS + 1);
  pkv_status st = pkv_seq_reserve(c, m->id, n);
  if (st == PKV_ERR_NO_PAGES) return;
  if (st != PKV_OK) {
    fail("%s: status %lld for %lld", "reserve", st, n);
    return;
  }
  m->resv = n;
}

/* One speculative step: reserve, append and write draft tokens, reject a
 * random tail, commit what was accepted. */
static void op_speculate(void) {
  mseq *m = pick(1);
  if (!m || computed(m) != m->len) return;
  int64_t n = 1 + rnd(2 * PS), slots[MAXLEN], from = m->len;
  if (pkv_seq_reserve(c, m->id, n) == PKV_OK) m->resv = n;
  if (!append(m, n, 1, slots)) return;
  if (!write_new_tokens(m, from, n, slots)) return;
  int64_t reject = rnd((uint32_t)n + 1);
  if (pkv_seq_truncate_back(c, m->id, reject) != PKV_OK) {
    fail("%s: dropping %lld failed%lld", "truncate_back", reject, 0);
    return;
  }
  m->len -= reject;
  if (reject) m->epoch++, m->tpl = (m->tpl + 1) % NTPL;
  m->resv = 0;
  if (pkv_seq_commit(c, m->id, m->len) != PKV_OK)
    fail("%s: failed%lld%lld", "commit", 0, 0);
}

static void run_seed(uint64_t seed, int64_t ops) {
  rng = seed * 0x9e3779b97f4a7c15ull + 1;
  ctx = cp_ctx();
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = DIM;
  d.page_size = PS;
  d.num_pages = NPAGES;
  d.dtype = PKV_DTYPE_F32;
  d.num_classes = 2;
  d.class_reserved[1] = 4;
  d.num_host_pages = NHOST;
  c = cp_cache_desc(ctx, &d);
  pkv_cache_geometry_init(&geo);
  pkv_cache_get_geometry(c, &geo);
  pkv_buffer *kp, *vp;
  pkv_cache_kv(c, 0, &kp, &vp);
  kpool = pkv_buffer_native(kp);
  vpool = pkv_buffer_native(vp);
  pkv_batch_create(c, &chk);
  pkv_batch_create(c, &wb);
  pkv_buffer_create(ctx, 4 * MAXLEN * DIM * sizeof(float), &kbuf);
  pkv_buffer_create(ctx, 4 * MAXLEN * DIM * sizeof(float), &vbuf);
  pkv_buffer_create(ctx, MAXLEN * sizeof(int64_t), &sbuf);
  for (int t = 0; t < NTPL; t++)
    for (int i = 0; i < TPLLEN; i++) TPL[t][i] = 1 + (int32_t)rnd(40);
  ns_ = 0;
  nwr = wb_built = 0;
  memset(SS, 0, sizeof SS);

  for (int64_t i = 0; i < ops && n_fail == 0; i++, n_ops++) {
    uint32_t r = rnd(100);
    const char *name;
    if (r < 10) op_open(), name = "open/match";
    else if (r < 18) op_append(), name = "append";
    else if (r < 30) op_append_write_slots(), name = "append+write_slots";
    else if (r < 38) op_build(), name = "build";
    else if (r < 48) op_write_batch(), name = "write_kv";
    else if (r < 54) op_commit(), name = "commit";
    else if (r < 58) op_fork(), name = "fork";
    else if (r < 63) op_release(), name = "release";
    else if (r < 66) op_close_session(), name = "close_session";
    else if (r < 74) op_open_session(), name = "session_open";
    else if (r < 78) op_truncate(), name = "truncate";
    else if (r < 83) op_fork_close(), name = "fork+close_session";
    else if (r < 87) op_truncate_extend(), name = "truncate+extend+commit";
    else if (r < 90) op_speculate(), name = "reserve+append+truncate_back";
    else if (r < 91) op_swap(1), name = "swap_out";
    else if (r < 93) op_swap(0), name = "swap_in";
    else if (r < 96) op_truncate_back(), name = "truncate_back";
    else if (r < 97) op_reserve(), name = "reserve";
    else if (r < 98) {
      pkv_namespace_drop(c, rnd(2));
      name = "namespace_drop";
    } else if (r < 99) {
      pkv_class_set_reserved(c, 1, rnd(8));
      name = "class resize";
    } else {
      if (pkv_cache_flush(c) != PKV_OK) fail("%s: failed%lld%lld", "flush", 0, 0);
      name = "flush";
    }
    if (getenv("CM_DEBUG")) diag("op %lld %s", (long long)n_ops, name);
    if (rnd(4)) check_all(name);
  }
  check_all("end");
  pkv_buffer_destroy(kbuf);
  pkv_buffer_destroy(vbuf);
  pkv_buffer_destroy(sbuf);
  pkv_batch_destroy(chk);
  pkv_batch_destroy(wb);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
}

int main(void) {
  int64_t mult = 1;
  const char *e = getenv("PKV_STRESS");
  if (e && atoll(e) > 0) mult = atoll(e);
  const int seeds = 5;
  for (int s = 1; s <= seeds; s++) {
    int64_t before = n_ops, reads = n_reads;
    run_seed((uint64_t)s, 20000 * mult);
    ok(n_fail == 0, "seed %d: %lld operations, %lld slot reads, every "
                    "sequence read back its own history%s%s",
       s, (long long)(n_ops - before), (long long)(n_reads - reads),
       n_fail ? ": " : "", n_fail ? fail_msg : "");
    if (n_fail) break;
  }
  ok(n_state_refusals > 0, "stale batches were refused along the way (%lld)",
     (long long)n_state_refusals);
  ok(n_cow_written > 0, "writes landed right after a queued copy (%lld)",
     (long long)n_cow_written);
  diag("total: %lld operations, %lld slot reads", (long long)n_ops,
       (long long)n_reads);
  return done_testing();
}
