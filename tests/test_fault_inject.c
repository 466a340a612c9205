/* SPDX-License-Identifier: Apache-2.0 */
/* Fault injection (issue 8, item 4): every host allocation a public call
 * makes is failed in turn, alone and together with all later ones.
 *
 * For each scenario the call is first run once on a fresh "world" (a CPU
 * cache with forks, prefix pages, a closed session, a swapped-out sequence,
 * a built batch and a queued copy-on-write) to count its N allocations and
 * to record what a fixed series of follow-up calls (the probe) observes
 * after it. Then, for every k in 1..N, on a fresh identical world:
 *  - the call with allocation k failing answers PKV_ERR_NO_MEMORY and
 *    everything observable (statistics, every page's info, every
 *    sequence's length and pages, batch views, pool and buffer bytes) is
 *    as before; or it answers PKV_OK when the allocation was optional;
 *  - after a NO_MEMORY, the same call without injection succeeds;
 *  - the probe then observes exactly what it observed in the reference
 *    run (prefix matches, session reopenings, swap-ins, a batch over every
 *    sequence, the pool bytes), so a failure left no hidden damage;
 *  - once the world is destroyed, no block from the library is left
 *    (pkv__alloc_live, and LeakSanitizer in the sanitizer build).
 * Linked statically: the injection hook is internal. */
#include "alloc.h"
#include "api_state.h"
#include "tap.h"

#include <stdbool.h>

enum { PS = 4, NPAGES = 32, NHOST = 16, HD = 64, MAXIDS = 32 };

typedef struct world {
  pkv_context *ctx;
  pkv_cache *c;
  pkv_batch *b, *b2;
  pkv_buffer *k, *v, *q, *out, *lse, *slots;
  pkv_seq_id A, B, C, E, F, G, X;
  pkv_seq_id ids[MAXIDS];
  int nids;
  pkv_cache *extra_cache;
  pkv_context *extra_ctx;
  pkv_buffer *extra_buf;
  pkv_batch *extra_batch;
} world;

static int32_t tA[16], tC[16], tE[8], tF[16];
static int failures;

#define BAIL(...)                                                              \
  do {                                                                         \
    printf("Bail out! ");                                                      \
    printf(__VA_ARGS__);                                                       \
    printf("\n");                                                              \
    exit(1);                                                                   \
  } while (0)

#define MUST(call)                                                             \
  do {                                                                         \
    pkv_status st_ = (call);                                                   \
    if (st_ != PKV_OK)                                                         \
      BAIL("%s: %s (%s)", #call, pkv_status_name(st_), pkv_last_error(w->ctx)); \
  } while (0)

static void add_id(world *w, pkv_seq_id id) {
  if (w->nids < MAXIDS) w->ids[w->nids++] = id;
}

static pkv_seq_id open_seq(world *w, int32_t cls, uint64_t ns) {
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = cls, .namespace_id = ns};
  pkv_seq_id id = -1;
  MUST(pkv_seq_open(w->c, &d, &id));
  add_id(w, id);
  return id;
}

static pkv_buffer *filled_buffer(world *w, size_t bytes, float base) {
  pkv_buffer *b = NULL;
  MUST(pkv_buffer_create(w->ctx, bytes, &b));
  float *h = malloc(bytes);
  for (size_t i = 0; i < bytes / 4; i++) h[i] = base + (float)(i % 97) / 97.0f;
  MUST(pkv_buffer_upload(b, 0, h, bytes));
  free(h);
  return b;
}

static void world_init(world *w) {
  memset(w, 0, sizeof *w);
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  cd.cpu_threads = 1;
  if (pkv_context_create(&cd, &w->ctx) != PKV_OK)
    BAIL("CPU context: %s", pkv_last_error(NULL));
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = 2;
  d.head_dim = HD;
  d.page_size = PS;
  d.num_pages = NPAGES;
  d.dtype = PKV_DTYPE_F32;
  d.num_classes = 2;
  d.class_reserved[1] = 4;
  d.num_host_pages = NHOST;
  MUST(pkv_cache_create(w->ctx, &d, &w->c));
  MUST(pkv_batch_create(w->c, &w->b));
  size_t row = HD * sizeof(float);
  w->k = filled_buffer(w, 64 * row, 1.0f);
  w->v = filled_buffer(w, 64 * row, 2.0f);
  w->q = filled_buffer(w, 64 * row, 0.5f);
  w->out = filled_buffer(w, 64 * row, 0.0f);
  w->lse = filled_buffer(w, 64 * sizeof(float), 0.0f);
  MUST(pkv_buffer_create(w->ctx, 64 * sizeof(int64_t), &w->slots));

  /* A: ten tokens, committed: two indexed pages and a partial one. */
  w->A = open_seq(w, 0, 1);
  MUST(pkv_seq_append(w->c, w->A, 10, tA, NULL));
  MUST(pkv_seq_commit(w->c, w->A, 10));
  /* B: a fork of A whose append copies A's partial page. */
  MUST(pkv_seq_fork(w->c, w->A, &w->B));
  add_id(w, w->B);
  MUST(pkv_seq_append(w->c, w->B, 2, tF, NULL));
  /* C: reuses A's two pages, then one page of its own (full, uncommitted). */
  w->C = open_seq(w, 0, 1);
  int64_t reused = 0;
  MUST(pkv_seq_match_prefix(w->c, w->C, tA, 10, &reused));
  if (reused != 8) BAIL("setup: C reused %lld tokens, not 8", (long long)reused);
  MUST(pkv_seq_append(w->c, w->C, 4, tC, NULL));
  /* D: class 1, no token ids, closed under session 77. */
  pkv_seq_id D = open_seq(w, 1, 2);
  MUST(pkv_seq_append(w->c, D, 6, NULL, NULL));
  MUST(pkv_seq_close_session(w->c, D, 77));
  /* E: swapped out to the host tier. */
  w->E = open_seq(w, 0, 1);
  MUST(pkv_seq_append(w->c, w->E, 5, tE, NULL));
  MUST(pkv_seq_swap_out(w->c, &w->E, 1));
  /* F: a partial page. */
  w->F = open_seq(w, 0, 1);
  MUST(pkv_seq_append(w->c, w->F, 3, tF, NULL));
  /* One step: batch, K/V of the new tokens on both layers. */
  pkv_seq_id step[4] = {w->A, w->B, w->C, w->F};
  int32_t ql[4] = {10, 12, 4, 3};
  MUST(pkv_batch_build(w->b, step, 4, ql));
  MUST(pkv_write_kv(w->b, 0, w->k, w->v));
  MUST(pkv_write_kv(w->b, 1, w->k, w->v));
  /* G: a fork of A; A's next token then queues a copy-on-write copy. */
  MUST(pkv_seq_fork(w->c, w->A, &w->G));
  add_id(w, w->G);
  MUST(pkv_seq_append(w->c, w->A, 1, tA + 10, NULL));
}

static void world_free(world *w) {
  pkv_batch_destroy(w->extra_batch);
  pkv_batch_destroy(w->b2);
  pkv_batch_destroy(w->b);
  pkv_buffer_destroy(w->extra_buf);
  pkv_buffer_destroy(w->k);
  pkv_buffer_destroy(w->v);
  pkv_buffer_destroy(w->q);
  pkv_buffer_destroy(w->out);
  pkv_buffer_destroy(w->lse);
  pkv_buffer_destroy(w->slots);
  pkv_cache_destroy(w->extra_cache);
  pkv_cache_destroy(w->c);
  pkv_context_destroy(w->extra_ctx);
  pkv_context_destroy(w->ctx);
}

static void observe(world *w, as_state *s) {
  pkv_batch *bs[2] = {w->b, w->b2};
  pkv_buffer *bufs[3] = {w->out, w->lse, w->slots};
  as_take(w->c, w->ids, w->nids, bs, w->b2 ? 2 : 1, bufs, 3, 1, s);
}

/* ---------------------------------------------------------------- probe */

enum { PROBE_MAX = 64 };
typedef struct probe {
  uint64_t h[PROBE_MAX];
  const char *what[PROBE_MAX];
  int n;
} probe;

static void probe_add(probe *p, const char *what, uint64_t h) {
  if (p->n < PROBE_MAX) {
    p->what[p->n] = what;
    p->h[p->n++] = h;
  }
}

static uint64_t state_hash(world *w) {
  as_state s;
  observe(w, &s);
  return as_mix(0, s.h, sizeof s.h);
}

static void match_probe(world *w, probe *p, const char *what, uint64_t ns,
                        const int32_t *t, int64_t n) {
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = 0, .namespace_id = ns};
  pkv_seq_id id = -1;
  uint64_t h = as_mix64(0, pkv_seq_open(w->c, &d, &id));
  int64_t reused = -1, np = 0;
  int32_t pg[16];
  h = as_mix64(h, pkv_seq_match_prefix(w->c, id, t, n, &reused));
  h = as_mix64(h, reused);
  h = as_mix64(h, pkv_seq_pages(w->c, id, pg, 16, &np));
  h = as_mix(h, pg, (size_t)(np < 16 ? np : 16) * 4);
  pkv_seq_release(w->c, id);
  probe_add(p, what, h);
}

/* What an engine would see next: the call's effects must be exactly those
 * of one successful call, whatever failed before it. */
static void run_probe(world *w, probe *p) {
  memset(p, 0, sizeof *p);
  probe_add(p, "state after the call", state_hash(w));
  match_probe(w, p, "match of A's tokens", 1, tA, 16);
  match_probe(w, p, "match of C's tokens", 1, tC, 12);
  int32_t tX[16];
  memcpy(tX, tA, 8 * 4);
  memcpy(tX + 8, tC, 8 * 4);
  match_probe(w, p, "match of A's prefix then C's page", 1, tX, 16);
  match_probe(w, p, "match of X's tokens", 3, tF, 16);
  static const uint64_t keys[3] = {77, 5, 9};
  for (int i = 0; i < 3; i++) {
    pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = 1, .namespace_id = 0};
    pkv_seq_id id = -1;
    int64_t tokens = -1;
    uint64_t h = as_mix64(0, pkv_session_open(w->c, keys[i], &d, &id, &tokens));
    h = as_mix64(as_mix64(h, id), tokens);
    if (id > 0) add_id(w, id);
    probe_add(p, "session reopen", h);
  }
  for (int i = 0; i < w->nids; i++)
    if (pkv_seq_is_swapped(w->c, w->ids[i]) == 1)
      probe_add(p, "swap in", as_mix64(0, pkv_seq_swap_in(w->c, &w->ids[i], 1)));
  /* Every resident sequence gets one more token, then one batch over all. */
  pkv_seq_id live[MAXIDS];
  int nl = 0;
  for (int i = 0; i < w->nids; i++) {
    int64_t len = 0;
    if (pkv_seq_is_swapped(w->c, w->ids[i]) != 0 ||
        pkv_seq_length(w->c, w->ids[i], &len) != PKV_OK)
      continue;
    int32_t t = 1000 + i;
    int64_t slot = -1;
    uint64_t h = as_mix64(0, pkv_seq_append(w->c, w->ids[i], 1, &t, &slot));
    probe_add(p, "append", as_mix64(h, slot));
    live[nl++] = w->ids[i];
  }
  probe_add(p, "flush", as_mix64(0, pkv_cache_flush(w->c)));
  if (nl > 0) {
    pkv_batch *b = NULL;
    uint64_t h = as_mix64(0, pkv_batch_create(w->c, &b));
    h = as_mix64(h, pkv_batch_build(b, live, nl, NULL));
    h = as_batch_hash(h, b);
    pkv_batch_destroy(b);
    probe_add(p, "batch over every resident sequence", h);
  }
  probe_add(p, "final state", state_hash(w));
}

static int probe_diff(const probe *a, const probe *b) {
  if (a->n != b->n) return 0;
  for (int i = 0; i < a->n; i++)
    if (a->h[i] != b->h[i]) return i;
  return -1;
}

/* ---------------------------------------------------------------- scenarios */

typedef struct scenario {
  const char *name;
  void (*prep)(world *w);       /* extra setup, not injected */
  pkv_status (*call)(world *w); /* the call under injection */
  int allocs; /* 1: must allocate; 0: must not; -1: either (capacity left) */
  const char *todo;             /* known failure, fixed elsewhere */
} scenario;

static pkv_status s_open(world *w) {
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = 0, .namespace_id = 3};
  pkv_seq_id id = -1;
  pkv_status st = pkv_seq_open(w->c, &d, &id);
  if (st == PKV_OK) add_id(w, id);
  return st;
}
static pkv_status s_append_ids(world *w) {
  int32_t t[9] = {91, 92, 93, 94, 95, 96, 97, 98, 99};
  int64_t slots[9];
  return pkv_seq_append(w->c, w->C, 9, t, slots);
}
static pkv_status s_append_noids(world *w) {
  return pkv_seq_append(w->c, w->F, 21, NULL, NULL);
}
static pkv_status s_append_inplace(world *w) {
  return pkv_seq_append(w->c, w->F, 1, tF + 3, NULL);
}
static void p_fork_f(world *w) {
  pkv_seq_id h = -1;
  MUST(pkv_seq_fork(w->c, w->F, &h));
  add_id(w, h);
}
static pkv_status s_append_cow(world *w) {
  return pkv_seq_append(w->c, w->F, 1, tF + 3, NULL);
}
static pkv_status s_append_cow_noids(world *w) {
  return pkv_seq_append(w->c, w->F, 2, NULL, NULL);
}
static pkv_status s_fork(world *w) {
  pkv_seq_id id = -1;
  pkv_status st = pkv_seq_fork(w->c, w->C, &id);
  if (st == PKV_OK) add_id(w, id);
  return st;
}
static pkv_status s_commit(world *w) {
  return pkv_seq_commit(w->c, w->C, 12);
}
static void p_fresh_ns(world *w) {
  w->X = open_seq(w, 0, 3);
  MUST(pkv_seq_append(w->c, w->X, 12, tF, NULL));
}
static pkv_status s_commit_ns(world *w) {
  return pkv_seq_commit(w->c, w->X, 12);
}
static void p_empty(world *w) { w->X = open_seq(w, 0, 1); }
static pkv_status s_match(world *w) {
  int64_t reused = 0;
  return pkv_seq_match_prefix(w->c, w->X, tA, 10, &reused);
}
static void p_grow_c(world *w) {
  MUST(pkv_seq_append(w->c, w->C, 5, tC + 4, NULL));
}
static pkv_status s_build(world *w) {
  pkv_seq_id s[4] = {w->A, w->B, w->C, w->F};
  int32_t ql[4] = {1, 1, 6, 1};
  return pkv_batch_build(w->b, s, 4, ql);
}
static void p_batch2(world *w) { MUST(pkv_batch_create(w->c, &w->b2)); }
static pkv_status s_build_new(world *w) {
  pkv_seq_id s[5] = {w->G, w->F, w->C, w->B, w->A};
  return pkv_batch_build(w->b2, s, 5, NULL);
}
static pkv_status s_swap_out(world *w) {
  pkv_seq_id s[2] = {w->C, w->G};
  return pkv_seq_swap_out(w->c, s, 2);
}
static void p_flush(world *w) { MUST(pkv_cache_flush(w->c)); }
static pkv_status s_swap_in(world *w) {
  return pkv_seq_swap_in(w->c, &w->E, 1);
}
static pkv_status s_close(world *w) {
  return pkv_seq_close_session(w->c, w->C, 5);
}
static pkv_status s_close_replace(world *w) {
  return pkv_seq_close_session(w->c, w->F, 77);
}
static pkv_status s_session_open(world *w) {
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = 1, .namespace_id = 0};
  pkv_seq_id id = -1;
  int64_t tokens = 0;
  pkv_status st = pkv_session_open(w->c, 77, &d, &id, &tokens);
  if (st == PKV_OK) add_id(w, id);
  return st;
}
static void p_session_c(world *w) {
  MUST(pkv_seq_close_session(w->c, w->C, 5));
}
static pkv_status s_session_open_c(world *w) {
  pkv_seq_id id = -1;
  int64_t tokens = 0;
  pkv_status st = pkv_session_open(w->c, 5, NULL, &id, &tokens);
  if (st == PKV_OK) add_id(w, id);
  return st;
}
static pkv_status s_ns_drop(world *w) { return pkv_namespace_drop(w->c, 1); }
static pkv_status s_truncate(world *w) {
  int64_t dropped = 0;
  return pkv_seq_truncate_front(w->c, w->A, 4, &dropped);
}
static pkv_status s_release(world *w) { return pkv_seq_release(w->c, w->B); }
static pkv_status s_truncate_back(world *w) {
  return pkv_seq_truncate_back(w->c, w->C, 5);
}
static pkv_status s_reserve(world *w) {
  return pkv_seq_reserve(w->c, w->F, 14);
}
static void p_reserve(world *w) { MUST(pkv_seq_reserve(w->c, w->F, 14)); }
static pkv_status s_append_reserved(world *w) {
  return pkv_seq_append(w->c, w->F, 13, tF + 3, NULL);
}
static pkv_status s_flush(world *w) { return pkv_cache_flush(w->c); }
/* A batch is stale once one of its sequences changed (A's last append
 * after the setup's build): rebuild it, as an engine's next step does. */
static void p_rebuild(world *w) {
  pkv_seq_id s[4] = {w->A, w->B, w->C, w->F};
  MUST(pkv_batch_build(w->b, s, 4, NULL));
}
/* A batch over A, B, C, then a copy-on-write copy queued for F (not in
 * the batch, which stays current). */
static void p_queued_elsewhere(world *w) {
  pkv_seq_id s[3] = {w->A, w->B, w->C};
  MUST(pkv_batch_build(w->b, s, 3, NULL));
  p_fork_f(w);
  MUST(pkv_seq_append(w->c, w->F, 1, tF + 3, NULL));
}
static pkv_status s_write_kv(world *w) {
  return pkv_write_kv(w->b, 1, w->k, w->v);
}
static void p_slots(world *w) {
  int64_t s[3] = {5, -1, 17};
  MUST(pkv_buffer_upload(w->slots, 0, s, sizeof s));
}
static void p_slots_flushed(world *w) {
  p_slots(w);
  MUST(pkv_cache_flush(w->c));
}
static pkv_status s_write_slots(world *w) {
  return pkv_write_kv_slots(w->c, 0, w->k, w->v, w->slots, 3);
}
static pkv_status s_attention(world *w) {
  pkv_attn_params p;
  pkv_attn_params_init(&p, 2);
  return pkv_attention(w->b, 0, &p, w->q, w->out, w->lse);
}
static pkv_status s_attention_alibi(world *w) {
  static const float slopes[2] = {0.25f, 0.5f};
  pkv_attn_params p;
  pkv_attn_params_init(&p, 2);
  p.alibi_slopes = slopes;
  p.softcap = 30.0f;
  p.window_left = 6;
  return pkv_attention(w->b, 1, &p, w->q, w->out, NULL);
}
static pkv_status s_class(world *w) {
  return pkv_class_set_reserved(w->c, 1, 6);
}
static pkv_status s_candidates(world *w) {
  pkv_seq_id out[8];
  int64_t n = 0;
  return pkv_preemption_candidates(w->c, 1, out, 8, &n);
}
static pkv_status s_batch_create(world *w) {
  return pkv_batch_create(w->c, &w->extra_batch);
}
static pkv_status s_buffer_create(world *w) {
  return pkv_buffer_create(w->ctx, 4096, &w->extra_buf);
}
static pkv_status s_buffer_wrap(world *w) {
  static float host[64];
  return pkv_buffer_wrap(w->ctx, host, sizeof host, &w->extra_buf);
}
static pkv_status s_cache_create(world *w) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = 3;
  d.head_dim = HD;
  d.page_size = 8;
  d.num_pages = 16;
  d.num_classes = 3;
  d.num_host_pages = 4;
  return pkv_cache_create(w->ctx, &d, &w->extra_cache);
}
static pkv_status s_cache_create_big(world *w) {
  /* Pools of 1 MiB and more are mapped, not allocated. */
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 128;
  d.page_size = 16;
  d.num_pages = 512;
  return pkv_cache_create(w->ctx, &d, &w->extra_cache);
}
static pkv_status s_context_create(world *w) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  return pkv_context_create(&d, &w->extra_ctx);
}

/* ---- page keys, events, export/import (issue 14) ---- */
enum { WIRE = 2 * 2 * PS * HD * 4 }; /* 2 layers, K and V, 1 kv head, f32 */
static pkv_page_key kA[4], kF[2]; /* keys of tA (ns 1) and tF (ns 4) */
static unsigned char wire[4 * WIRE];

static void compute_keys(void) {
  pkv_context *ctx = NULL;
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.page_size = PS;
  d.num_pages = 16;
  pkv_cache *c = NULL;
  pkv_seq_id a = -1, f = -1;
  pkv_seq_desc sd;
  pkv_seq_desc_init(&sd);
  int64_t n = 0;
  if (pkv_context_create(&cd, &ctx) != PKV_OK ||
      pkv_cache_create(ctx, &d, &c) != PKV_OK)
    BAIL("keys: %s", pkv_last_error(ctx));
  sd.namespace_id = 1;
  pkv_seq_open(c, &sd, &a);
  pkv_seq_append(c, a, 16, tA, NULL);
  sd.namespace_id = 4;
  pkv_seq_open(c, &sd, &f);
  pkv_seq_append(c, f, 8, tF, NULL);
  if (pkv_seq_page_keys(c, a, 0, 4, kA, &n) != PKV_OK || n != 4 ||
      pkv_seq_page_keys(c, f, 0, 2, kF, &n) != PKV_OK || n != 2)
    BAIL("keys: %s", pkv_last_error(ctx));
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
  for (size_t i = 0; i < sizeof wire; i++) wire[i] = (unsigned char)(i * 7 + 3);
}

static pkv_status s_pages_import(world *w) {
  int64_t ni = 0, ns = 0;
  return pkv_pages_import(w->c, 4, NULL, kF, tF, 2, PKV_LAYOUT_HND, wire,
                          2 * WIRE, &ni, &ns);
}
static pkv_status s_pages_import_parent(world *w) {
  int64_t ni = 0, ns = 0;
  return pkv_pages_import(w->c, 1, &kA[1], kA + 2, tA + 2 * PS, 2,
                          PKV_LAYOUT_NHD, wire, 2 * WIRE, &ni, &ns);
}
static pkv_status s_seq_import(world *w) {
  pkv_seq_id id = -1;
  pkv_seq_desc d = {.struct_size = sizeof(pkv_seq_desc), .priority_class = 0, .namespace_id = 1};
  pkv_status st = pkv_seq_import(w->c, &d, tC, 6, PKV_LAYOUT_NHD, wire,
                                 2 * WIRE, &id);
  if (st == PKV_OK) add_id(w, id);
  return st;
}
static pkv_status s_seq_export(world *w) {
  static unsigned char out[4 * WIRE];
  int32_t ids[16];
  int64_t n = 0;
  return pkv_seq_export(w->c, w->A, PKV_LAYOUT_NHD, out, sizeof out, ids, &n);
}
static pkv_status s_hold_read(world *w) {
  static unsigned char out[2 * WIRE];
  pkv_page_hold *h = NULL;
  pkv_status st = pkv_pages_hold(w->c, 1, kA, 2, &h);
  if (st == PKV_OK)
    st = pkv_pages_read(w->c, h, PKV_LAYOUT_NHD, out, sizeof out, NULL);
  pkv_page_hold_release(w->c, h);
  return st;
}
static pkv_status s_event_queue(world *w) {
  return pkv_cache_set_event_queue(w->c, 8);
}

/* A scenario may carry a known failure as a TAP TODO, naming the bug and
 * where it is fixed; a TODO that passes counts as a failure. None now:
 * bugs 6 (a failed swap had run the queued copies) and 8 (a failed index
 * insert turned indexing off) of issue 8 are fixed. */

static const scenario scenarios[] = {
    {"pkv_context_create", NULL, s_context_create, 1, NULL},
    {"pkv_cache_create with classes and a host tier", NULL, s_cache_create, 1, NULL},
    {"pkv_cache_create with mapped pools", NULL, s_cache_create_big, 1, NULL},
    {"pkv_batch_create", NULL, s_batch_create, 1, NULL},
    {"pkv_buffer_create", NULL, s_buffer_create, 1, NULL},
    {"pkv_buffer_wrap", NULL, s_buffer_wrap, 1, NULL},
    {"pkv_seq_open", NULL, s_open, 1, NULL},
    {"pkv_seq_append of new pages with ids", NULL, s_append_ids, 1, NULL},
    {"pkv_seq_append of new pages without ids", NULL, s_append_noids, 1, NULL},
    {"pkv_seq_append into its own partial page", NULL, s_append_inplace, 0, NULL},
    {"pkv_seq_append with copy-on-write", p_fork_f, s_append_cow, 1, NULL},
    {"pkv_seq_append with copy-on-write, no ids", p_fork_f, s_append_cow_noids, -1, NULL},
    {"pkv_seq_fork", NULL, s_fork, 1, NULL},
    {"pkv_seq_commit after a prefix match", NULL, s_commit, 1, NULL},
    {"pkv_seq_commit in a new namespace", p_fresh_ns, s_commit_ns, 1, NULL},
    {"pkv_seq_match_prefix", p_empty, s_match, 1, NULL},
    {"pkv_batch_build, incremental, with a queued copy", p_grow_c, s_build, 1, NULL},
    {"pkv_batch_build of a new batch", p_batch2, s_build_new, 1, NULL},
    {"pkv_seq_swap_out with a queued copy", NULL, s_swap_out, 1, NULL},
    {"pkv_seq_swap_out", p_flush, s_swap_out, 1, NULL},
    {"pkv_seq_swap_in with a queued copy", NULL, s_swap_in, 1, NULL},
    {"pkv_seq_swap_in", p_flush, s_swap_in, 1, NULL},
    {"pkv_seq_close_session", NULL, s_close, 1, NULL},
    {"pkv_seq_close_session replacing a session", NULL, s_close_replace, 1, NULL},
    {"pkv_session_open without ids", NULL, s_session_open, 1, NULL},
    {"pkv_session_open with ids", p_session_c, s_session_open_c, 1, NULL},
    {"pkv_namespace_drop", NULL, s_ns_drop, 0, NULL},
    {"pkv_seq_truncate_front", NULL, s_truncate, 0, NULL},
    {"pkv_seq_release", NULL, s_release, 0, NULL},
    {"pkv_seq_truncate_back", NULL, s_truncate_back, -1, NULL},
    {"pkv_seq_reserve", NULL, s_reserve, 1, NULL},
    {"pkv_seq_append into reserved pages", p_reserve, s_append_reserved, -1, NULL},
    {"pkv_cache_flush", NULL, s_flush, 0, NULL},
    {"pkv_write_kv", p_rebuild, s_write_kv, 0, NULL},
    {"pkv_write_kv_slots with a queued copy", p_slots, s_write_slots, 1, NULL},
    {"pkv_write_kv_slots", p_slots_flushed, s_write_slots, 0, NULL},
    {"pkv_attention", p_rebuild, s_attention, 1, NULL},
    {"pkv_attention with ALiBi", p_rebuild, s_attention_alibi, 1, NULL},
    {"pkv_attention with a copy queued elsewhere", p_queued_elsewhere, s_attention, 1, NULL},
    {"pkv_write_kv with a copy queued elsewhere", p_queued_elsewhere, s_write_kv, 0, NULL},
    {"pkv_class_set_reserved", NULL, s_class, 0, NULL},
    {"pkv_preemption_candidates", NULL, s_candidates, 0, NULL},
    {"pkv_pages_import of a new chain", NULL, s_pages_import, 1, NULL},
    {"pkv_pages_import under a parent, NHD", NULL, s_pages_import_parent, 1, NULL},
    {"pkv_seq_import", NULL, s_seq_import, 1, NULL},
    {"pkv_seq_export with a queued copy", NULL, s_seq_export, 1, NULL},
    {"pkv_pages_hold, read, release", NULL, s_hold_read, 1, NULL},
    {"pkv_cache_set_event_queue", NULL, s_event_queue, 1, NULL},
};

#define FAIL(...)                                                              \
  do {                                                                         \
    if (bad++ < 3) diag(__VA_ARGS__);                                          \
  } while (0)

static long total_points;

/* One scenario, sticky or not: the number of problems found. */
static int sweep(const scenario *sc, int sticky, int64_t *n_out) {
  int bad = 0;
  world w;
  int64_t live0 = pkv__alloc_live();
  world_init(&w);
  if (sc->prep) sc->prep(&w);
  as_state s0, s1;
  observe(&w, &s0);
  int64_t a0 = pkv__alloc_count();
  pkv_status st = sc->call(&w);
  int64_t n = pkv__alloc_count() - a0;
  *n_out = n;
  if (st != PKV_OK) BAIL("%s without injection: %s", sc->name, pkv_status_name(st));
  probe ref;
  run_probe(&w, &ref);
  world_free(&w);
  if (pkv__alloc_live() != live0)
    FAIL("%s without injection leaks %lld blocks", sc->name,
         (long long)(pkv__alloc_live() - live0));
  for (int64_t k = 1; k <= n; k++) {
    world_init(&w);
    if (sc->prep) sc->prep(&w);
    observe(&w, &s1);
    if (as_diff(&s0, &s1) >= 0)
      BAIL("%s: the world is not deterministic (%s)", sc->name,
           as_part_name[as_diff(&s0, &s1)]);
    pkv__fail_alloc(k, sticky);
    st = sc->call(&w);
    pkv__fail_alloc(0, 0);
    total_points++;
    if (st == PKV_ERR_NO_MEMORY) {
      observe(&w, &s1);
      int d = as_diff(&s0, &s1);
      if (d >= 0)
        FAIL("%s, allocation %lld of %lld failing: NO_MEMORY but the %s changed",
             sc->name, (long long)k, (long long)n, as_part_name[d]);
      st = sc->call(&w);
      if (st != PKV_OK)
        FAIL("%s, allocation %lld failed before: the retry answers %s (%s)",
             sc->name, (long long)k, pkv_status_name(st), pkv_last_error(w.ctx));
    } else if (st != PKV_OK) {
      FAIL("%s, allocation %lld of %lld failing: %s (%s), not NO_MEMORY",
           sc->name, (long long)k, (long long)n, pkv_status_name(st),
           pkv_last_error(w.ctx));
    }
    if (st == PKV_OK) {
      probe p;
      run_probe(&w, &p);
      int d = probe_diff(&ref, &p);
      if (d >= 0)
        FAIL("%s, allocation %lld of %lld failing: afterwards the probe "
             "step '%s' differs from a run without injection",
             sc->name, (long long)k, (long long)n, ref.what[d]);
    }
    world_free(&w);
    if (pkv__alloc_live() != live0)
      FAIL("%s, allocation %lld of %lld failing: %lld blocks leak", sc->name,
           (long long)k, (long long)n, (long long)(pkv__alloc_live() - live0));
  }
  return bad;
}

/* Not an allocation failure, found by the fuzzer: a pkv_write_kv_slots
 * whose slot list the backend refuses must not have run the queued
 * copy-on-write copies first. */
static void bad_slot_with_queued_copy(void) {
  world w0, *w = &w0;
  int64_t live0 = pkv__alloc_live();
  world_init(w);
  p_queued_elsewhere(w);
  int64_t sl[2] = {5, NPAGES * PS + 3};
  MUST(pkv_buffer_upload(w->slots, 0, sl, sizeof sl));
  as_state s0, s1;
  observe(w, &s0);
  pkv_status st = pkv_write_kv_slots(w->c, 0, w->k, w->v, w->slots, 2);
  observe(w, &s1);
  int d = as_diff(&s0, &s1);
  ok(st == PKV_ERR_RANGE && d < 0,
     "pkv_write_kv_slots with a slot past the pool and a queued copy: %s, "
     "%s changed",
     pkv_status_name(st), d < 0 ? "nothing" : as_part_name[d]);
  world_free(w);
  ok(pkv__alloc_live() == live0, "... and nothing leaks");
}

int main(void) {
  for (int i = 0; i < 16; i++) {
    tA[i] = 100 + i;
    tC[i] = 200 + i;
    tF[i] = 300 + i;
  }
  for (int i = 0; i < 8; i++) tE[i] = 400 + i;
  compute_keys();
  int ns = (int)(sizeof scenarios / sizeof scenarios[0]);
  plan(2 * ns + 3);
  for (int i = 0; i < ns; i++) {
    const scenario *sc = &scenarios[i];
    for (int sticky = 0; sticky < 2; sticky++) {
      int64_t n = 0;
      int bad = sweep(sc, sticky, &n);
      if (sc->allocs >= 0 && sc->allocs != (n > 0)) {
        diag("%s makes %lld allocations: expected %s", sc->name, (long long)n,
             sc->allocs ? "some" : "none (it must not fail for memory)");
        bad++;
      }
      failures += bad;
      if (sc->todo) {
        printf("%sok %d - %s: %lld allocations failed %s # TODO %s\n",
               bad ? "not " : "", ++tap_n, sc->name, (long long)n,
               sticky ? "from each on" : "one at a time", sc->todo);
        fflush(stdout);
      } else {
        ok(bad == 0, "%s: %lld allocations failed %s", sc->name, (long long)n,
           sticky ? "from each on" : "one at a time");
      }
    }
  }
  ok(total_points > 100, "%ld injection points swept over %d scenarios",
     total_points, ns);
  bad_slot_with_queued_copy();
  return tap_failed ? 1 : 0;
}
