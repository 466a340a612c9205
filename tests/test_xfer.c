/* SPDX-License-Identifier: Apache-2.0 */
/* Page transfer over UCX between two processes on this machine (TAP).
 *
 * The parent is the receiving (decode) side, a forked child the serving
 * (prefill) side; they exchange connection blobs over a socketpair, which
 * also carries the parent's commands to the child. Covered: blob checks
 * (corrupt, truncated, bad magic, other version, other geometry), fetch by
 * keys in several batches with HND (child) -> NHD (parent) conversion and
 * a bitwise check of the pages, a second fetch that skips, the push of a
 * sequence (partial last page), and the faults: unknown key, receiver
 * pool exhausted, page evicted on the sender before the get, a peer that
 * stops answering (timeout), and a peer killed with SIGKILL between the
 * request and its completion. Every failure must leave the receiving
 * cache's page counts as they were. Without the UCX module: SKIP. */
#include "pagedkv.h"
#include "tap.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PS 16
#define LAYERS 2
#define HEADS 2
#define DIM 64
#define A_TOKENS (3 * PS + 5) /* three full pages and a partial one */
#define B_TOKENS (PS + 9) /* two pages: fits the child's 2-page staging */

static int sock = -1;

static void die(const char *what) {
  fprintf(stderr, "test_xfer: %s: %s\n", what, strerror(errno));
  _exit(99);
}

static void put(const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(sock, c, n);
    if (w <= 0) die("write");
    c += w;
    n -= (size_t)w;
  }
}

static void get(void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(sock, c, n);
    if (r <= 0) die("read");
    c += r;
    n -= (size_t)r;
  }
}

/* Deterministic K/V bytes that are finite f16 values (no NaN patterns, so
 * that "equal" means equal bytes and equal numbers). */
static void fill(uint16_t *h, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    h[i] = (uint16_t)(((x >> 9) & 0x3bff) | ((x & 1u) << 15));
  }
}

static void tokens_of(int32_t *t, int64_t n, int32_t base) {
  for (int64_t i = 0; i < n; i++) t[i] = base + (int32_t)(i * 7 % 1000);
}

static pkv_cache *make_cache(pkv_context *ctx, pkv_layout layout, int dim,
                             int64_t pages) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = LAYERS;
  d.num_kv_heads = HEADS;
  d.head_dim = dim;
  d.page_size = PS;
  d.num_pages = pages;
  d.dtype = PKV_DTYPE_F16;
  d.layout = layout;
  pkv_cache *c = NULL;
  if (pkv_cache_create(ctx, &d, &c) != PKV_OK) return NULL;
  return c;
}

static size_t wire_of(pkv_cache *c) {
  size_t w = 0;
  pkv_cache_page_wire_bytes(c, &w);
  return w;
}

/* ---------------------------------------------------------------- child */


static pkv_context *cpu_context(void) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  return pkv_context_create(&cd, &ctx) == PKV_OK ? ctx : NULL;
}

static void child_main(void) {
  pkv_context *ctx = cpu_context();
  if (!ctx) _exit(9);
  pkv_cache *c = make_cache(ctx, PKV_LAYOUT_HND, DIM, 64);
  if (!c) _exit(10);
  size_t wire = wire_of(c);
  /* sequence A: the pages the parent fetches by key */
  uint16_t *srca = malloc(4 * wire), *srcb = malloc(3 * wire);
  int32_t toka[A_TOKENS], tokb[B_TOKENS];
  fill(srca, 4 * wire / 2, 1);
  fill(srcb, 3 * wire / 2, 2);
  tokens_of(toka, A_TOKENS, 100);
  tokens_of(tokb, B_TOKENS, 5000);
  pkv_seq_id a, b;
  if (pkv_seq_import(c, NULL, toka, A_TOKENS, PKV_LAYOUT_HND, srca, 4 * wire,
                     &a) ||
      pkv_seq_import(c, NULL, tokb, B_TOKENS, PKV_LAYOUT_HND, srcb, 3 * wire,
                     &b))
    _exit(11);
  pkv_page_key keys[8];
  int64_t nk = 0;
  if (pkv_seq_page_keys(c, a, 0, 8, keys, &nk) || nk != 3) _exit(12);
  pkv_xfer_options o;
  pkv_xfer_options_init(&o);
  o.staging_pages = 2; /* three pages: two batches */
  o.lease_ms = 3000;
  pkv_xfer_endpoint *ep = NULL;
  if (pkv_xfer_endpoint_create(c, &o, &ep)) {
    uint64_t zero = 0; /* no module: the parent skips */
    put(&zero, sizeof zero);
    _exit(13);
  }
  size_t len = 0;
  pkv_xfer_endpoint_blob(ep, NULL, 0, &len);
  void *blob = malloc(len);
  if (pkv_xfer_endpoint_blob(ep, blob, len, &len)) _exit(14);
  uint64_t l64 = len;
  put(&l64, sizeof l64);
  put(blob, len);
  put(&nk, sizeof nk);
  put(keys, (size_t)nk * sizeof *keys);
  pkv_xfer_peer *parent = NULL;
  for (;;) {
    pkv_xfer_progress(ep);
    struct pollfd pf = {.fd = sock, .events = POLLIN};
    if (poll(&pf, 1, 0) <= 0) {
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
      continue;
    }
    char cmd;
    get(&cmd, 1);
    int32_t st = 0;
    switch (cmd) {
    case 'q': _exit(0);
    case 'c': { /* the parent's blob, for the push */
      uint64_t pl;
      get(&pl, sizeof pl);
      void *pb = malloc(pl);
      get(pb, pl);
      st = pkv_xfer_connect(ep, pb, pl, &parent);
      free(pb);
      put(&st, sizeof st);
      break;
    }
    case 'p': { /* push sequence B to the parent */
      pkv_xfer_request *r = NULL;
      pkv_seq_desc d;
      pkv_seq_desc_init(&d);
      d.namespace_id = 7;
      int64_t remote = -1;
      st = parent ? (int32_t)pkv_xfer_push_seq(ep, parent, b, &d, 77, &r) : -1;
      if (st == 0) {
        pkv_status ws;
        ws = pkv_xfer_wait(r, 20000);
        st = ws;
        pkv_xfer_request_result(r, NULL, NULL, &remote);
        pkv_xfer_request_free(r);
      }
      put(&st, sizeof st);
      put(&remote, sizeof remote);
      break;
    }
    case 'd': /* evict sequence A's pages: release it, drop the namespace */
      st = pkv_seq_release(c, a);
      if (st == 0) st = pkv_namespace_drop(c, 0);
      put(&st, sizeof st);
      break;
    case 's': /* stop serving: the parent kills us */
      put(&st, sizeof st);
      for (;;) pause();
    default: _exit(20);
    }
  }
}

/* ---------------------------------------------------------------- parent */

typedef struct counts {
  int64_t free, live, cached, seqs;
} counts;

static counts counts_of(pkv_cache *c) {
  pkv_stats s;
  pkv_stats_init(&s);
  pkv_cache_stats(c, &s);
  counts k = {s.pages_free, s.pages_live, s.pages_cached, s.num_seqs};
  return k;
}

static int same(counts a, counts b) {
  return a.free == b.free && a.live == b.live && a.cached == b.cached &&
         a.seqs == b.seqs;
}

static int32_t cmd(char c) {
  put(&c, 1);
  int32_t st;
  get(&st, sizeof st);
  return st;
}

/* Runs a fetch to completion; the status, with the counts after. */
static pkv_status fetch(pkv_xfer_endpoint *ep, pkv_xfer_peer *peer,
                        const pkv_page_key *keys, int64_t n, int64_t *imp,
                        int64_t *skip) {
  pkv_xfer_request *r = NULL;
  pkv_status st = pkv_xfer_fetch(ep, peer, 0, NULL, keys, n, &r);
  if (st) return st;
  st = pkv_xfer_wait(r, 20000);
  if (imp) pkv_xfer_request_result(r, imp, skip, NULL);
  pkv_xfer_request_free(r);
  return st;
}

int main(void) {
  /* TCP notices a killed peer at once (the kernel closes its socket);
   * the caller's UCX_TLS wins. */
  setenv("UCX_TLS", "tcp,self", 0);
  /* Fork before either side starts UCX. */
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sv[0]);
    sock = sv[1];
    child_main();
    _exit(0);
  }
  close(sv[1]);
  sock = sv[0];
  pkv_context *ctx = cpu_context();
  if (!ctx) die("CPU context");
  pkv_cache *rc = make_cache(ctx, PKV_LAYOUT_NHD, DIM, 64);
  pkv_xfer_endpoint *ep = NULL;
  pkv_status st = pkv_xfer_endpoint_create(rc, NULL, &ep);
  if (st == PKV_ERR_NO_BACKEND) {
    char why[300];
    snprintf(why, sizeof why, "UCX transfer module not built or not found: %.250s",
             pkv_last_error(ctx));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    plan_skip_all(why);
    return 0;
  }
  plan(36);
  ok(st == PKV_OK, "endpoint on an NHD cache: %s", pkv_status_name(st));
  if (st) return 1;
  uint64_t blen;
  get(&blen, sizeof blen);
  if (blen == 0) {
    waitpid(pid, NULL, 0);
    ok(0, "the child could not make its endpoint");
    return 1;
  }
  unsigned char *blob = malloc(blen), *bad = malloc(blen);
  get(blob, blen);
  int64_t nk;
  get(&nk, sizeof nk);
  pkv_page_key keys[8];
  get(keys, (size_t)nk * sizeof *keys);
  ok(nk == 3, "the child's sequence has 3 full pages with keys");

  /* ---- blob checks */
  size_t need = 0;
  st = pkv_xfer_endpoint_blob(ep, NULL, 0, &need);
  ok(st == PKV_ERR_SIZE && need > 64, "blob size query: %s, %zu bytes",
     pkv_status_name(st), need);
  pkv_xfer_peer *peer = NULL;
  memcpy(bad, blob, blen);
  bad[blen / 2 + 40 < blen ? blen / 2 + 40 : blen - 1] ^= 0x5a;
  st = pkv_xfer_connect(ep, bad, blen, &peer);
  ok(st == PKV_ERR_INVALID, "a flipped byte: PKV_ERR_INVALID (%s: %s)",
     pkv_status_name(st), pkv_last_error(ctx));
  st = pkv_xfer_connect(ep, blob, blen - 1, &peer);
  ok(st == PKV_ERR_SIZE, "a truncated blob: PKV_ERR_SIZE (%s)",
     pkv_status_name(st));
  memcpy(bad, blob, blen);
  bad[0] ^= 1;
  st = pkv_xfer_connect(ep, bad, blen, &peer);
  ok(st == PKV_ERR_INVALID, "bad magic: PKV_ERR_INVALID (%s)",
     pkv_status_name(st));
  memcpy(bad, blob, blen);
  bad[8] ^= 2; /* the version, after the 8-byte magic */
  st = pkv_xfer_connect(ep, bad, blen, &peer);
  ok(st == PKV_ERR_UNSUPPORTED, "another version: PKV_ERR_UNSUPPORTED (%s)",
     pkv_status_name(st));
  st = pkv_xfer_connect(ep, blob, 3, &peer);
  ok(st == PKV_ERR_SIZE && peer == NULL, "3 bytes: PKV_ERR_SIZE, no peer");
  pkv_cache *other = make_cache(ctx, PKV_LAYOUT_HND, 128, 8);
  pkv_xfer_endpoint *oep = NULL;
  pkv_xfer_peer *opeer = NULL;
  st = other ? pkv_xfer_endpoint_create(other, NULL, &oep) : PKV_ERR_NULL;
  if (st == PKV_OK) st = pkv_xfer_connect(oep, blob, blen, &opeer);
  ok(st == PKV_ERR_INCOMPATIBLE, "head_dim 128 vs 64: PKV_ERR_INCOMPATIBLE (%s: %s)",
     pkv_status_name(st), pkv_last_error(ctx));
  pkv_xfer_endpoint_destroy(oep);
  pkv_cache_destroy(other);
  st = pkv_xfer_connect(ep, blob, blen, &peer);
  ok(st == PKV_OK && peer, "connect NHD to HND: %s", pkv_status_name(st));
  if (!peer) return 1;

  /* ---- bad arguments */
  pkv_xfer_request *r = NULL;
  ok(pkv_xfer_fetch(ep, peer, 0, NULL, keys, 0, &r) == PKV_ERR_RANGE,
     "fetch of 0 pages: PKV_ERR_RANGE");
  ok(pkv_xfer_fetch(ep, peer, 0, NULL, NULL, 1, &r) == PKV_ERR_NULL,
     "fetch with keys NULL: PKV_ERR_NULL");

  /* ---- unknown key */
  counts before = counts_of(rc);
  pkv_page_key wrong[3];
  memcpy(wrong, keys, sizeof wrong);
  wrong[1].lo ^= 1;
  st = fetch(ep, peer, wrong, 3, NULL, NULL);
  ok(st == PKV_ERR_NOT_FOUND, "an unknown key: PKV_ERR_NOT_FOUND (%s: %s)",
     pkv_status_name(st), pkv_last_error(ctx));
  ok(same(before, counts_of(rc)), "the receiving cache is unchanged");

  /* ---- receiver pool exhausted */
  /* 4 pages, 2 of them live: 3 do not fit */
  pkv_cache *small = make_cache(ctx, PKV_LAYOUT_NHD, DIM, 4);
  pkv_seq_id hog = -1;
  if (small && pkv_seq_open(small, NULL, &hog) == PKV_OK)
    pkv_seq_append(small, hog, 2 * PS, NULL, NULL);
  pkv_xfer_endpoint *sep = NULL;
  pkv_xfer_peer *speer = NULL;
  st = small ? pkv_xfer_endpoint_create(small, NULL, &sep) : PKV_ERR_NULL;
  if (st == PKV_OK) st = pkv_xfer_connect(sep, blob, blen, &speer);
  counts sbefore = counts_of(small);
  if (st == PKV_OK) st = fetch(sep, speer, keys, 3, NULL, NULL);
  ok(st == PKV_ERR_NO_PAGES, "3 pages into a pool with 2 free: PKV_ERR_NO_PAGES (%s: %s)",
     pkv_status_name(st), pkv_last_error(ctx));
  ok(same(sbefore, counts_of(small)), "the small cache is unchanged");
  pkv_xfer_endpoint_destroy(sep);
  pkv_cache_destroy(small);

  /* ---- fetch in two batches, HND -> NHD, bitwise */
  int64_t imp = -1, skp = -1;
  st = fetch(ep, peer, keys, 3, &imp, &skp);
  ok(st == PKV_OK && imp == 3 && skp == 0, "fetch 3 pages: %s, %lld imported, "
     "%lld skipped (%s)", pkv_status_name(st), (long long)imp,
     (long long)skp, st ? pkv_last_error(ctx) : "");
  size_t wire = wire_of(rc);
  uint16_t *srca = malloc(4 * wire), *srcb = malloc(3 * wire);
  unsigned char *out = malloc(4 * wire);
  fill(srca, 4 * wire / 2, 1);
  fill(srcb, 3 * wire / 2, 2);
  int32_t toka[A_TOKENS], tokb[B_TOKENS], tout[4 * PS];
  tokens_of(toka, A_TOKENS, 100);
  tokens_of(tokb, B_TOKENS, 5000);
  pkv_seq_id s = -1;
  int64_t reused = 0, ntok = 0;
  pkv_seq_open(rc, NULL, &s);
  st = pkv_seq_match_prefix(rc, s, toka, A_TOKENS, &reused);
  ok(st == PKV_OK && reused == 3 * PS, "the fetched pages are prefix hits: "
     "%lld tokens reused", (long long)reused);
  st = pkv_seq_export(rc, s, PKV_LAYOUT_HND, out, 3 * wire, tout, &ntok);
  ok(st == PKV_OK && ntok == 3 * PS && memcmp(out, srca, 3 * wire) == 0 &&
         memcmp(tout, toka, sizeof(int32_t) * 3 * PS) == 0,
     "their K/V and tokens equal the sender's bitwise (%s)",
     pkv_status_name(st));
  pkv_seq_release(rc, s);
  st = fetch(ep, peer, keys, 3, &imp, &skp);
  ok(st == PKV_OK && imp == 0 && skp == 3, "fetching them again skips all 3");

  /* ---- push of a sequence with a partial last page */
  size_t mylen = 0;
  pkv_xfer_endpoint_blob(ep, NULL, 0, &mylen);
  unsigned char *mine = malloc(mylen);
  pkv_xfer_endpoint_blob(ep, mine, mylen, &mylen);
  char c = 'c';
  uint64_t ml = mylen;
  put(&c, 1);
  put(&ml, sizeof ml);
  put(mine, mylen);
  int32_t cst;
  get(&cst, sizeof cst);
  ok(cst == 0, "the child connects to this endpoint (%d)", cst);
  c = 'p';
  put(&c, 1);
  /* serve the child's push while waiting for its answer */
  for (;;) {
    pkv_xfer_progress(ep);
    struct pollfd pf = {.fd = sock, .events = POLLIN};
    if (poll(&pf, 1, 0) > 0) break;
  }
  int64_t remote = -1;
  get(&cst, sizeof cst);
  get(&remote, sizeof remote);
  ok(cst == 0 && remote >= 0, "push: the child's request completes (%s), "
     "seq %lld here", pkv_status_name((pkv_status)cst), (long long)remote);
  uint64_t tags[4];
  pkv_seq_id seqs[4];
  int64_t na = 0;
  pkv_xfer_poll_arrivals(ep, tags, seqs, 4, &na);
  ok(na == 1 && tags[0] == 77 && seqs[0] == remote,
     "one arrival, tag 77, the same seq id");
  st = pkv_seq_export(rc, remote, PKV_LAYOUT_HND, out, 3 * wire, tout, &ntok);
  int eq = st == PKV_OK && ntok == B_TOKENS &&
           memcmp(tout, tokb, sizeof(int32_t) * B_TOKENS) == 0;
  /* whole pages: the wire carries the last page's unused slots too */
  eq = eq && memcmp(out, srcb, 2 * wire) == 0;
  ok(eq, "the pushed sequence's K/V and tokens equal the sender's (%s)",
     pkv_status_name(st));
  pkv_xfer_poll_arrivals(ep, tags, seqs, 4, &na);
  ok(na == 0, "arrivals are reported once");
  pkv_seq_release(rc, remote);

  /* ---- evicted on the sender before the get */
  pkv_namespace_drop(rc, 0); /* forget what we fetched, to fetch again */
  before = counts_of(rc);
  ok(cmd('d') == 0, "the child evicts the pages");
  st = fetch(ep, peer, keys, 3, NULL, NULL);
  ok(st == PKV_ERR_NOT_FOUND, "evicted on the sender: PKV_ERR_NOT_FOUND (%s)",
     pkv_status_name(st));
  ok(same(before, counts_of(rc)), "the receiving cache is unchanged");

  /* ---- a peer that stops answering, then dies mid-transfer */
  ok(cmd('s') == 0, "the child stops serving");
  r = NULL;
  st = pkv_xfer_fetch(ep, peer, 0, NULL, keys, 3, &r);
  ok(st == PKV_OK, "fetch to a silent peer is accepted");
  st = pkv_xfer_wait(r, 200);
  ok(st == PKV_ERR_TIMEOUT, "wait 200 ms: PKV_ERR_TIMEOUT (%s)",
     pkv_status_name(st));
  kill(pid, SIGKILL);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  ok(WIFSIGNALED(wstatus), "the child was killed");
  st = pkv_xfer_wait(r, 20000);
  ok(st == PKV_ERR_PEER, "the request fails with PKV_ERR_PEER (%s: %s)",
     pkv_status_name(st), pkv_last_error(ctx));
  int32_t done = 0;
  pkv_status rs = PKV_OK;
  pkv_xfer_test(r, &done, &rs);
  ok(done == 1 && rs == PKV_ERR_PEER, "pkv_xfer_test agrees");
  pkv_xfer_request_free(r);
  ok(same(before, counts_of(rc)), "the receiving cache is unchanged, no page leaked");
  r = NULL;
  st = pkv_xfer_fetch(ep, peer, 0, NULL, keys, 1, &r);
  ok(st == PKV_ERR_PEER && r == NULL, "a new fetch from the dead peer: "
     "PKV_ERR_PEER at once");

  pkv_xfer_endpoint_destroy(ep);
  pkv_cache_destroy(rc);
  pkv_context_destroy(ctx);
  free(blob);
  free(bad);
  free(mine);
  free(srca);
  free(srcb);
  free(out);
  return tap_failed ? 1 : 0;
}
