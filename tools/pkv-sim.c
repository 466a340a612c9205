/* SPDX-License-Identifier: Apache-2.0 */
/* pkv-sim — plays a serving day through pagedkv on the default backend with
 * real kernels: every step writes K/V and runs attention for every layer of
 * a small random-weight model. The trace is synthetic and seeded: tenants
 * with shared system prompts (one prefix namespace per tenant), multi-turn
 * sessions, two priority classes (class 1 has reserved pages) and a burst
 * that exhausts the pool. The scheduler does continuous batching of chunked
 * prefill and decode; when an append meets PKV_ERR_NO_PAGES it asks the
 * library for preemption candidates and swaps them to the host tier (or
 * releases them for recompute), swapping them back in later.
 *
 * It ends with a table: memory utilisation against a per-request contiguous
 * allocation of the same requests, prefix hits against the trace's own
 * maximum, refused admissions per class, preemptions, swaps, throughput.
 * Uses the public API only. */
/* isatty: POSIX, also when built outside the tree with -std=c11 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "tool_common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* options                                                              */
/* ------------------------------------------------------------------ */

typedef struct options {
  pkv_backend_kind backend;
  int device;
  uint64_t seed;
  int steps;          /* 0 = default */
  int quick;
  int events;         /* --events: count KV events, check them at the end */
  int64_t pages;      /* 0 = default */
  const char *csv;
  int dtype;          /* -1 = default (f16 on a GPU, f32 otherwise) */
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: pkv-sim [--backend auto|cpu|opencl|hip] [--device N]\n"
          "               [--seed S] [--steps N] [--pages N] [--quick]\n"
          "               [--csv FILE] [--dtype f32|f16|bf16|e4m3|e5m2|int8]\n"
          "               [--events]\n"
          "Plays a synthetic multi-tenant serving trace through pagedkv with\n"
          "real K/V writes and attention (a random-weight model), then prints\n"
          "utilisation, prefix reuse, admissions, preemptions, swaps and\n"
          "throughput. --csv writes the per-step time series. --dtype stores\n"
          "K/V in that type within the default dtype's pool bytes (unless\n"
          "--pages), and reports the capacity gain. --events counts the KV\n"
          "events (pages stored, evicted) a router would receive.\n");
}

static int parse_options(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->backend = PKV_BACKEND_AUTO;
  o->device = -1;
  o->seed = 1;
  o->dtype = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long long v;
    if (!strcmp(a, "--quick")) { o->quick = 1; continue; }
    if (!strcmp(a, "--events")) { o->events = 1; continue; }
    if (tool_std_option("pkv-sim", a, usage)) exit(0);
    if (i + 1 >= argc) {
      fprintf(stderr, "pkv-sim: unknown option or missing value: %s\n", a);
      usage(stderr);
      return 0;
    }
    const char *val = argv[++i];
    if (!strcmp(a, "--backend")) {
      if (!tool_parse_backend("pkv-sim", val, &o->backend)) return 0;
    } else if (!strcmp(a, "--csv")) {
      o->csv = val;
    } else if (!strcmp(a, "--dtype")) {
      static const char *names[] = {"f32", "f16", "bf16", "e4m3", "e5m2", "int8"};
      o->dtype = -2;
      for (int k = 0; k < 6; k++)
        if (!strcmp(val, names[k])) o->dtype = k; /* = pkv_dtype */
      if (o->dtype == -2) {
        fprintf(stderr, "pkv-sim: --dtype %s is not f32, f16, bf16, e4m3, e5m2 or int8\n", val);
        return 0;
      }
    } else if (!strcmp(a, "--device") && tool_parse_ll(val, 0, 1024, &v)) {
      o->device = (int)v;
    } else if (!strcmp(a, "--seed") && tool_parse_ll(val, 0, (long long)1 << 62, &v)) {
      o->seed = (uint64_t)v;
    } else if (!strcmp(a, "--steps") && tool_parse_ll(val, 1, 10000000, &v)) {
      o->steps = (int)v;
    } else if (!strcmp(a, "--pages") && tool_parse_ll(val, 64, (long long)1 << 30, &v)) {
      o->pages = v;
    } else {
      fprintf(stderr, "pkv-sim: bad option or value: %s %s\n", a, val);
      usage(stderr);
      return 0;
    }
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* random numbers (one seeded stream: the trace is reproducible)        */
/* ------------------------------------------------------------------ */

static uint64_t rs;
static uint64_t rnext(void) { /* splitmix64 */
  uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double runif(void) { return (double)(rnext() >> 11) / 9007199254740992.0; }
static int64_t rrange(int64_t lo, int64_t hi) { /* inclusive */
  return lo + (int64_t)(rnext() % (uint64_t)(hi - lo + 1));
}
static int32_t rtoken(void) { return (int32_t)(rnext() % 32000u) + 100; }

/* ------------------------------------------------------------------ */
/* the trace                                                            */
/* ------------------------------------------------------------------ */

enum { ST_PENDING, ST_WAITING, ST_RUNNING, ST_SWAPPED, ST_DONE };

typedef struct trace_cfg {
  int tenants;
  int64_t sys_lo, sys_hi;    /* system prompt length */
  int64_t user_lo, user_hi;  /* user message length per turn */
  int64_t new_lo, new_hi;    /* max_new_tokens per request */
  int turns_max, think_lo, think_hi;
  double hi_frac;            /* share of sessions in class 1 */
  int initial;               /* sessions arriving at step 0 */
  double fork_frac;          /* requests asking for two answers (n = 2) */
  double rate, burst_rate;   /* new sessions per step */
  int burst_start, burst_end, arrivals_end;
} trace_cfg;

typedef struct tenant {
  int32_t *sys;
  int64_t sys_len;
  uint64_t ns;
  int64_t sys_committed; /* most system-prompt tokens any request committed */
} tenant;

typedef struct session {
  int tenant, cls, turns, turn;
  uint64_t key;
  int32_t *hist;          /* the conversation so far */
  int64_t hist_len;
  int64_t cached_len;     /* tokens the closed sequence held */
  int closed;             /* its last sequence was closed under key */
} session;

typedef struct req {
  int id, sess, cls, tenant, turn;
  int state;
  int64_t arrival;        /* step */
  int32_t *toks;          /* prompt, then generated tokens */
  int64_t ntoks, cap, prompt_len;
  int64_t max_new, out_len, generated;
  pkv_seq_id seq;
  int64_t len, computed;  /* tokens in the cache; of which K/V written */
  int64_t reserved;       /* what a contiguous allocator reserves: prompt+max_new */
  int64_t max_hit;        /* the most tokens the trace lets it reuse */
  int admitted_once, recompute, refused_once, in_plan;
  int samples;            /* 2: parallel sampling, a forked second answer */
  int child;              /* the forked second answer of another request */
  int64_t admit_order;
} req;

typedef struct sim {
  options o;
  trace_cfg tc;
  pkv_context *ctx;
  pkv_cache *cache;
  pkv_batch *batch;
  pkv_device_info info;
  int gpu;
  pkv_dtype dtype;    /* K/V storage */
  pkv_dtype io;       /* q, out and new K/V rows: dtype, or for a quantized
                         cache the default float type (kernel-level layer) */
  int64_t default_pages; /* pool of the default dtype in the same bytes */
  pkv_dtype default_dtype;
  int layers, kv_heads, q_heads, head_dim, page;
  int64_t num_pages, host_pages, reserve_hi;
  int steps, budget, chunk, max_running;
  tenant *tenants;
  session *sessions;
  int nsessions, sess_cap;
  req **reqs;
  int nreqs, req_cap;
  int64_t admit_counter;
  /* step buffers on the device: random K/V/Q stand in for projections */
  pkv_buffer *kin, *vin, *qin, *out;
  int64_t buf_tokens;
  /* the current step's plan */
  int *plan;
  int32_t *qlen;
  pkv_seq_id *pseq;
  int nplan, plan_cap;
  int *tmp;
  /* counters */
  int64_t refused[2], refused_reqs[2], admitted[2], admitted_new[2];
  int64_t preempt_swap, preempt_recompute, swapins, self_preempt, stalls;
  int pressure; /* this step met PKV_ERR_NO_PAGES */
  int64_t swap_shared; /* swap-outs refused with PKV_ERR_STATE */
  int64_t forks;       /* second answers forked (parallel sampling) */
  int64_t hit_tokens, hit_max, session_tokens, recompute_hit_tokens;
  int64_t prefill_tokens, decode_tokens, completed, generated, max_running_seen;
  double util_sum, util_load_sum, logical_sum, contig_sum, contig_load_sum;
  double live_load_sum, cached_load_sum, waste_load_sum;
  int64_t nsteps_run, load_steps, contig_steps, contig_load_steps;
  double kernel_s, wall_s;
  FILE *csv;
  /* --events: KV events by kind, and whether their seqnos were contiguous */
  int64_t ev_count[4];
  uint64_t ev_last_seqno;
  int ev_gap;
  int64_t ev_indexed; /* pages indexed at the end */
} sim;

/* The event callback (--events): what a KV-aware router would consume. */
static void on_event(void *user, const pkv_kv_event *ev) {
  sim *s = user;
  if (ev->kind >= 1 && ev->kind <= 3) s->ev_count[ev->kind]++;
  if (ev->seqno != s->ev_last_seqno + 1) s->ev_gap = 1;
  s->ev_last_seqno = ev->seqno;
}

static void die(const sim *s, pkv_status st, const char *what) {
  fprintf(stderr, "\npkv-sim: %s failed: %s (%s)\n", what,
          pkv_last_error(s ? s->ctx : NULL), pkv_status_name(st));
  exit(1);
}
#define CHECK(s, call)                                                        \
  do {                                                                        \
    pkv_status st_ = (call);                                                  \
    if (st_ != PKV_OK) die((s), st_, #call);                                  \
  } while (0)

static void oom(void) {
  fprintf(stderr, "pkv-sim: out of host memory\n");
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom();
  return q;
}

static void push_tok(req *r, int32_t t) {
  if (r->ntoks == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 256;
    r->toks = xrealloc(r->toks, (size_t)r->cap * sizeof *r->toks);
  }
  r->toks[r->ntoks++] = t;
}

static int64_t floor_page(const sim *s, int64_t n) {
  return n < 0 ? 0 : n / s->page * s->page;
}

/* The request of the current turn of session si, arriving at `step`. */
static void new_request(sim *s, int si, int64_t step) {
  session *ss = &s->sessions[si];
  if (s->nreqs == s->req_cap) {
    s->req_cap = s->req_cap ? 2 * s->req_cap : 256;
    s->reqs = xrealloc(s->reqs, (size_t)s->req_cap * sizeof *s->reqs);
  }
  req *r = calloc(1, sizeof *r);
  if (!r) oom();
  s->reqs[s->nreqs] = r;
  r->id = s->nreqs++;
  r->sess = si;
  r->cls = ss->cls;
  r->tenant = ss->tenant;
  r->turn = ss->turn;
  r->state = step > 0 && ss->turn > 0 ? ST_PENDING : ST_WAITING;
  r->arrival = step;
  r->seq = -1;
  const tenant *t = &s->tenants[ss->tenant];
  if (ss->turn == 0)
    for (int64_t i = 0; i < t->sys_len; i++) push_tok(r, t->sys[i]);
  else
    for (int64_t i = 0; i < ss->hist_len; i++) push_tok(r, ss->hist[i]);
  int64_t user = rrange(s->tc.user_lo, s->tc.user_hi);
  for (int64_t i = 0; i < user; i++) push_tok(r, rtoken());
  r->prompt_len = r->ntoks;
  r->max_new = rrange(s->tc.new_lo, s->tc.new_hi);
  /* answers are mostly much shorter than the max_tokens a client asks for */
  double u = runif();
  r->out_len = (int64_t)((double)r->max_new * u * u);
  if (r->out_len < 4) r->out_len = 4;
  r->reserved = r->prompt_len + r->max_new;
  r->samples = runif() < s->tc.fork_frac ? 2 : 1;
}

static void new_session(sim *s, int64_t step) {
  if (s->nsessions == s->sess_cap) {
    s->sess_cap = s->sess_cap ? 2 * s->sess_cap : 128;
    s->sessions = xrealloc(s->sessions, (size_t)s->sess_cap * sizeof *s->sessions);
  }
  int si = s->nsessions++;
  session *ss = &s->sessions[si];
  memset(ss, 0, sizeof *ss);
  ss->tenant = (int)rrange(0, s->tc.tenants - 1);
  /* the burst is low-class batch traffic */
  int burst = step >= s->tc.burst_start && step < s->tc.burst_end;
  ss->cls = !burst && runif() < s->tc.hi_frac ? 1 : 0;
  ss->turns = (int)rrange(1, s->tc.turns_max);
  ss->key = 0x5e55000000000000ull + (uint64_t)si;
  new_request(s, si, step);
}

/* ------------------------------------------------------------------ */
/* scheduling                                                           */
/* ------------------------------------------------------------------ */

static req *req_of_seq(sim *s, pkv_seq_id seq) {
  for (int i = 0; i < s->nreqs; i++)
    if (s->reqs[i]->state == ST_RUNNING && s->reqs[i]->seq == seq)
      return s->reqs[i];
  return NULL;
}

static void plan_drop(sim *s, const req *r) {
  for (int i = 0; i < s->nplan; i++)
    if (s->plan[i] == r->id) s->plan[i] = -1;
}

/* Takes a running request off the device: to the host tier when it has
 * computed K/V worth keeping and the tier has room, else released for
 * recompute (its tokens are kept; it is admitted again later). */
static void preempt(sim *s, req *v) {
  if (v->in_plan) {
    plan_drop(s, v);
    v->in_plan = 0;
  }
  if (v->computed > 0 && s->host_pages > 0) {
    pkv_status st = pkv_seq_swap_out(s->cache, &v->seq, 1);
    if (st == PKV_OK) {
      v->state = ST_SWAPPED;
      s->preempt_swap++;
      return;
    }
    /* a full host tier, or a swap the library refuses (PKV_ERR_STATE):
     * recompute instead */
    if (st == PKV_ERR_STATE) s->swap_shared++;
    else if (st != PKV_ERR_NO_HOST_PAGES) die(s, st, "pkv_seq_swap_out");
  }
  CHECK(s, pkv_seq_release(s->cache, v->seq));
  v->seq = -1;
  v->len = v->computed = 0;
  v->state = ST_WAITING;
  v->recompute = 1;
  s->preempt_recompute++;
}

/* Appends the request's next n tokens. On PKV_ERR_NO_PAGES asks the library
 * whom to preempt; max_victim_cls bounds the classes it may take (-1: none).
 * Returns 1 when appended, 0 when it could not (r may have been preempted
 * itself when may_preempt_self: check r->state). */
static int append_or_preempt(sim *s, req *r, int64_t n, int max_victim_cls,
                             int may_preempt_self) {
  for (;;) {
    pkv_status st = pkv_seq_append(s->cache, r->seq, n, r->toks + r->len, NULL);
    if (st == PKV_OK) {
      r->len += n;
      return 1;
    }
    if (st != PKV_ERR_NO_PAGES) die(s, st, "pkv_seq_append");
    s->pressure = 1;
    if (max_victim_cls < 0) return 0;
    pkv_seq_id cand[64];
    int64_t nc = 0;
    CHECK(s, pkv_preemption_candidates(s->cache, r->cls, cand, 64, &nc));
    s->pressure = 1;
    req *victim = NULL;
    for (int64_t i = 0; i < nc && i < 64 && !victim; i++) {
      req *v = req_of_seq(s, cand[i]);
      if (v && v->cls <= max_victim_cls && (may_preempt_self || v != r))
        victim = v;
    }
    /* The library names only lower classes. Within a class the engine
     * decides: like vLLM, the most recently admitted running request of
     * the same class goes (possibly r itself). */
    if (!victim && r->cls <= max_victim_cls) {
      for (int i = 0; i < s->nreqs; i++) {
        req *v = s->reqs[i];
        if (v->state != ST_RUNNING || v->cls != r->cls || v->len == 0) continue;
        if (!may_preempt_self && v == r) continue;
        if (!victim || v->admit_order > victim->admit_order) victim = v;
      }
    }
    if (!victim) {
      s->stalls++;
      return 0;
    }
    if (victim == r) s->self_preempt++;
    preempt(s, victim);
    if (victim == r) return 0;
  }
}

static void plan_add(sim *s, req *r) {
  if (s->nplan == s->plan_cap) {
    s->plan_cap = s->plan_cap ? 2 * s->plan_cap : 64;
    s->plan = xrealloc(s->plan, (size_t)s->plan_cap * sizeof *s->plan);
  }
  s->plan[s->nplan++] = r->id;
  r->in_plan = 1;
}

static sim *sort_sim; /* qsort has no context argument in C11 */

/* higher class first, then the order of admission */
static int by_admission(const void *a, const void *b) {
  const req *x = sort_sim->reqs[*(const int *)a], *y = sort_sim->reqs[*(const int *)b];
  if (x->cls != y->cls) return y->cls - x->cls;
  return (x->admit_order > y->admit_order) - (x->admit_order < y->admit_order);
}
/* higher class first; recomputes before new work; then arrival */
static int by_arrival(const void *a, const void *b) {
  const req *x = sort_sim->reqs[*(const int *)a], *y = sort_sim->reqs[*(const int *)b];
  if (x->cls != y->cls) return y->cls - x->cls;
  if (x->recompute != y->recompute) return y->recompute - x->recompute;
  if (x->arrival != y->arrival) return (x->arrival > y->arrival) - (x->arrival < y->arrival);
  return x->id - y->id;
}

static int collect(sim *s, int state, int (*cmp)(const void *, const void *)) {
  int n = 0;
  s->tmp = xrealloc(s->tmp, (size_t)s->nreqs * sizeof *s->tmp);
  for (int i = 0; i < s->nreqs; i++)
    if (s->reqs[i]->state == state) s->tmp[n++] = i;
  sort_sim = s;
  qsort(s->tmp, (size_t)n, sizeof *s->tmp, cmp);
  return n;
}

static int count_state(const sim *s, int state) {
  int n = 0;
  for (int i = 0; i < s->nreqs; i++) n += s->reqs[i]->state == state;
  return n;
}

/* Opens the request's sequence: its session's cached pages if it continues
 * one, else a prefix match in its tenant's namespace. */
static void open_seq(sim *s, req *r, int64_t *reused, int *from_session) {
  session *ss = &s->sessions[r->sess];
  pkv_seq_desc d;
  pkv_seq_desc_init(&d);
  d.priority_class = r->cls;
  d.namespace_id = s->tenants[r->tenant].ns;
  *reused = 0;
  *from_session = 0;
  if (r->turn > 0 && ss->closed && !r->recompute && !r->child) {
    int64_t tokens = 0;
    pkv_status st = pkv_session_open(s->cache, ss->key, &d, &r->seq, &tokens);
    if (st == PKV_OK) {
      ss->closed = 0;
      *from_session = 1;
      if (tokens > 0) {
        *reused = tokens;
        return;
      }
      /* everything was evicted: an empty sequence, try the prefix index */
    } else if (st == PKV_ERR_NOT_FOUND) {
      ss->closed = 0;
      CHECK(s, pkv_seq_open(s->cache, &d, &r->seq));
    } else {
      die(s, st, "pkv_session_open");
    }
  } else {
    CHECK(s, pkv_seq_open(s->cache, &d, &r->seq));
  }
  /* keep at least one token to compute: its logits start the answer */
  CHECK(s, pkv_seq_match_prefix(s->cache, r->seq, r->toks, r->ntoks - 1, reused));
}

/* Tries to admit a waiting request with its first prefill chunk. */
static int admit(sim *s, req *r, int64_t *budget_left) {
  int64_t reused = 0;
  int from_session = 0;
  open_seq(s, r, &reused, &from_session);
  r->len = r->computed = reused;
  int64_t n = r->ntoks - r->len;
  if (n > s->chunk) n = s->chunk;
  if (n > *budget_left) n = *budget_left;
  if (n < 1) n = 1;
  r->state = ST_RUNNING; /* visible to req_of_seq while it may preempt */
  /* a high-class request may preempt lower classes; a low one waits */
  int okay = append_or_preempt(s, r, n, r->cls > 0 ? r->cls - 1 : -1, 0);
  if (!okay) {
    r->state = ST_WAITING;
    if (from_session) {
      /* give the pages back under the key so the session survives */
      CHECK(s, pkv_seq_close_session(s->cache, r->seq, s->sessions[r->sess].key));
      s->sessions[r->sess].closed = 1;
    } else {
      CHECK(s, pkv_seq_release(s->cache, r->seq));
    }
    r->seq = -1;
    r->len = r->computed = 0;
    s->refused[r->cls]++;
    if (!r->refused_once) s->refused_reqs[r->cls]++;
    r->refused_once = 1;
    return 0;
  }
  *budget_left -= n;
  r->admit_order = s->admit_counter++;
  s->admitted[r->cls]++;
  if (r->recompute) {
    s->recompute_hit_tokens += reused;
  } else if (!r->admitted_once) {
    s->admitted_new[r->cls]++;
    s->hit_tokens += from_session ? 0 : reused;
    s->session_tokens += from_session ? reused : 0;
    s->hit_max += r->max_hit;
  }
  r->admitted_once = 1;
  plan_add(s, r);
  return 1;
}

/* The most tokens of this request the trace itself lets anyone reuse: its
 * tenant's system prompt as far as some request committed it (whole pages), or
 * the previous turn's cached tokens for a session. */
static void set_max_hit(sim *s, req *r) {
  const tenant *t = &s->tenants[r->tenant];
  const session *ss = &s->sessions[r->sess];
  int64_t m = floor_page(s, t->sys_committed);
  if (r->turn > 0 && ss->cached_len > m) m = ss->cached_len;
  if (m > r->ntoks - 1) m = floor_page(s, r->ntoks - 1);
  r->max_hit = m;
}

static void ensure_buffers(sim *s, int64_t tokens) {
  if (tokens <= s->buf_tokens) return;
  int64_t n = s->buf_tokens ? s->buf_tokens : 256;
  while (n < tokens) n *= 2;
  pkv_buffer_destroy(s->kin);
  pkv_buffer_destroy(s->vin);
  pkv_buffer_destroy(s->qin);
  pkv_buffer_destroy(s->out);
  size_t esz = pkv_dtype_size(s->io);
  size_t kvb = (size_t)n * (size_t)s->kv_heads * (size_t)s->head_dim * esz;
  size_t qb = (size_t)n * (size_t)s->q_heads * (size_t)s->head_dim * esz;
  CHECK(s, pkv_buffer_create(s->ctx, kvb, &s->kin));
  CHECK(s, pkv_buffer_create(s->ctx, kvb, &s->vin));
  CHECK(s, pkv_buffer_create(s->ctx, qb, &s->qin));
  CHECK(s, pkv_buffer_create(s->ctx, qb, &s->out));
  /* random "projections": small values in the storage type */
  unsigned char *h = malloc(qb);
  if (!h) oom();
  size_t ne = qb / esz;
  for (size_t i = 0; i < ne; i++) {
    float f = (float)(runif() - 0.5);
    uint32_t x;
    memcpy(&x, &f, 4);
    if (s->io == PKV_DTYPE_F32) {
      memcpy(h + 4 * i, &f, 4);
    } else if (s->io == PKV_DTYPE_BF16) {
      uint16_t b = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
      memcpy(h + 2 * i, &b, 2);
    } else { /* f16: |f| < 0.5, normal or flushed to zero */
      uint32_t sign = (x >> 16) & 0x8000u;
      int32_t e = (int32_t)((x >> 23) & 0xff) - 112;
      uint16_t b = (uint16_t)(e <= 0 ? sign
                                     : sign | ((uint32_t)e << 10) | ((x & 0x7fffffu) >> 13));
      memcpy(h + 2 * i, &b, 2);
    }
  }
  CHECK(s, pkv_buffer_upload(s->kin, 0, h, kvb));
  CHECK(s, pkv_buffer_upload(s->vin, 0, h + (qb - kvb), kvb));
  CHECK(s, pkv_buffer_upload(s->qin, 0, h, qb));
  free(h);
  s->buf_tokens = n;
}

static void finish(sim *s, req *r, int64_t step) {
  session *ss = &s->sessions[r->sess];
  CHECK(s, pkv_seq_commit(s->cache, r->seq, r->computed));
  if (r->child) { /* the second answer is not part of the conversation */
    CHECK(s, pkv_seq_release(s->cache, r->seq));
    r->state = ST_DONE;
    r->seq = -1;
    s->completed++;
    return;
  }
  ss->hist = xrealloc(ss->hist, (size_t)r->ntoks * sizeof *ss->hist);
  memcpy(ss->hist, r->toks, (size_t)r->ntoks * sizeof *ss->hist);
  ss->hist_len = r->ntoks;
  if (ss->turn + 1 < ss->turns) {
    CHECK(s, pkv_seq_close_session(s->cache, r->seq, ss->key));
    ss->closed = 1;
    ss->cached_len = r->len;
    ss->turn++;
    r->state = ST_DONE;
    new_request(s, r->sess, step + rrange(s->tc.think_lo, s->tc.think_hi));
  } else {
    CHECK(s, pkv_seq_release(s->cache, r->seq));
    r->state = ST_DONE;
  }
  r->seq = -1;
  s->completed++;
}

/* A second answer (parallel sampling, n = 2) forked from r right after its
 * prefill: the child shares all of r's pages; the first append into the
 * shared last page copies it. */
static void fork_answer(sim *s, req *r) {
  if (s->nreqs == s->req_cap) {
    s->req_cap = s->req_cap ? 2 * s->req_cap : 256;
    s->reqs = xrealloc(s->reqs, (size_t)s->req_cap * sizeof *s->reqs);
  }
  req *c = calloc(1, sizeof *c);
  if (!c) oom();
  *c = *r;
  c->id = s->nreqs;
  c->toks = NULL;
  c->ntoks = c->cap = 0;
  for (int64_t i = 0; i < r->ntoks; i++) push_tok(c, r->toks[i]);
  CHECK(s, pkv_seq_fork(s->cache, r->seq, &c->seq));
  s->reqs[s->nreqs++] = c;
  c->child = 1;
  c->samples = 1;
  c->in_plan = 0;
  c->admit_order = s->admit_counter++;
  double u = runif();
  c->out_len = (int64_t)((double)c->max_new * u * u);
  if (c->out_len < 4) c->out_len = 4;
  push_tok(c, rtoken());
  c->generated = 1;
  s->generated++;
  s->forks++;
  if (c->generated >= c->out_len) finish(s, c, 0);
}

/* ------------------------------------------------------------------ */
/* one step                                                             */
/* ------------------------------------------------------------------ */

static void swap_ins(sim *s) {
  int n = collect(s, ST_SWAPPED, by_admission);
  int running = count_state(s, ST_RUNNING);
  pkv_stats st;
  pkv_stats_init(&st);
  CHECK(s, pkv_cache_stats(s->cache, &st));
  int64_t avail = st.pages_free + st.pages_cached;
  for (int i = 0; i < n && running < s->max_running; i++) {
    req *r = s->reqs[s->tmp[i]];
    /* room for its pages and a page of growth for each running sequence,
     * else it would be preempted again at once */
    int64_t need = (r->len + s->page - 1) / s->page + running / 2 + 1;
    if (avail < need) break;
    pkv_status rc = pkv_seq_swap_in(s->cache, &r->seq, 1);
    if (rc == PKV_ERR_NO_PAGES) break;
    if (rc != PKV_OK) die(s, rc, "pkv_seq_swap_in");
    r->state = ST_RUNNING;
    s->swapins++;
    running++;
    avail -= need;
  }
}

static void step_once(sim *s, int64_t step) {
  /* arrivals: new sessions, and next turns whose think time is over */
  double rate = (step >= s->tc.burst_start && step < s->tc.burst_end)
                    ? s->tc.burst_rate : s->tc.rate;
  if (step < s->tc.arrivals_end) {
    int k = (int)rate;
    if (runif() < rate - k) k++;
    if (step == 0) k += s->tc.initial;
    for (int i = 0; i < k; i++) new_session(s, step);
  }
  for (int i = 0; i < s->nreqs; i++)
    if (s->reqs[i]->state == ST_PENDING && s->reqs[i]->arrival <= step)
      s->reqs[i]->state = ST_WAITING;

  swap_ins(s);

  /* running sequences: decode tokens, then prefill chunks */
  s->nplan = 0;
  s->pressure = 0;
  int64_t budget_left = s->budget;
  int n = collect(s, ST_RUNNING, by_admission);
  int *order = xrealloc(NULL, (size_t)(n ? n : 1) * sizeof *order);
  memcpy(order, s->tmp, (size_t)n * sizeof *order);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < n; i++) {
      req *r = s->reqs[order[i]];
      if (r->state != ST_RUNNING || r->in_plan) continue;
      int64_t want = r->ntoks - r->len;
      int decode = want <= 1;
      if (pass == 0 && !decode) continue;
      if (pass == 1) {
        if (want > s->chunk) want = s->chunk;
        if (want > budget_left) want = budget_left;
        if (want < 1) continue;
      }
      if (want > 0 && !append_or_preempt(s, r, want, r->cls, 1)) continue;
      if (r->state != ST_RUNNING) continue;
      budget_left -= want;
      if (r->len > r->computed) plan_add(s, r);
    }
  }
  free(order);

  /* admissions: high class first; a refused low-class request ends them */
  n = collect(s, ST_WAITING, by_arrival);
  int running = count_state(s, ST_RUNNING);
  int *wait = xrealloc(NULL, (size_t)(n ? n : 1) * sizeof *wait);
  memcpy(wait, s->tmp, (size_t)n * sizeof *wait);
  for (int i = 0; i < n && running < s->max_running && budget_left > 0; i++) {
    req *r = s->reqs[wait[i]];
    if (r->state != ST_WAITING) continue;
    if (!r->admitted_once && !r->recompute) set_max_hit(s, r);
    if (admit(s, r, &budget_left)) {
      running++;
    } else if (r->cls == 0) {
      break;
    }
  }
  free(wait);

  /* the step's batch: every layer writes K/V and runs attention */
  int np = 0;
  int64_t tokens = 0;
  s->qlen = xrealloc(s->qlen, (size_t)(s->nplan ? s->nplan : 1) * sizeof *s->qlen);
  s->pseq = xrealloc(s->pseq, (size_t)(s->nplan ? s->nplan : 1) * sizeof *s->pseq);
  for (int i = 0; i < s->nplan; i++) {
    if (s->plan[i] < 0) continue;
    req *r = s->reqs[s->plan[i]];
    s->plan[np] = s->plan[i];
    s->pseq[np] = r->seq;
    s->qlen[np] = (int32_t)(r->len - r->computed);
    tokens += s->qlen[np];
    np++;
  }
  s->nplan = np;
  pkv_stats st;
  pkv_stats_init(&st);
  if (np > 0) {
    ensure_buffers(s, tokens);
    double t_kernel = tool_now_s();
    CHECK(s, pkv_batch_build(s->batch, s->pseq, np, s->qlen));
    pkv_attn_params p;
    pkv_attn_params_init(&p, s->q_heads);
    if (s->io != s->dtype) {
      /* quantized K/V: the kernel-level layer takes the rows and q/out
       * in their own (float) dtype */
      pkv_kv_table t;
      pkv_batch_device dev;
      pkv_batch_device_init(&dev);
      pkv_tensor kt, vt, qt, ot;
      pkv_kv_table_init(&t);
      pkv_tensor_init(&kt);
      pkv_tensor_init(&vt);
      pkv_tensor_init(&qt);
      pkv_tensor_init(&ot);
      kt.buf = s->kin, vt.buf = s->vin, qt.buf = s->qin, ot.buf = s->out;
      kt.dtype = vt.dtype = qt.dtype = ot.dtype = s->io;
      CHECK(s, pkv_cache_flush(s->cache));
      CHECK(s, pkv_batch_get_table(s->batch, PKV_TABLE_DENSE, &t));
      CHECK(s, pkv_batch_get_device(s->batch, &dev));
      for (int l = 0; l < s->layers; l++) {
        pkv_kv_view v;
        pkv_kv_view_init(&v);
        CHECK(s, pkv_cache_kv_view(s->cache, l, &v));
        CHECK(s, pkv_kv_write(s->ctx, &v, dev.slot_mapping, NULL, t.num_tokens,
                              &kt, &vt));
        CHECK(s, pkv_kv_attention(s->ctx, &v, &t, &p, &qt, &ot, NULL));
      }
    } else {
      for (int l = 0; l < s->layers; l++) {
        CHECK(s, pkv_write_kv(s->batch, l, s->kin, s->vin));
        CHECK(s, pkv_attention(s->batch, l, &p, s->qin, s->out, NULL));
      }
    }
    CHECK(s, pkv_context_synchronize(s->ctx));
    s->kernel_s += tool_now_s() - t_kernel;
  }
  CHECK(s, pkv_cache_stats(s->cache, &st));

  /* memory utilisation at the step's peak, before finished requests leave */
  double cap = (double)st.pages_total * s->page;
  double live_slots = (double)st.pages_live * s->page - (double)st.waste_slots;
  if (live_slots < 0) live_slots = 0;
  /* slots holding K/V: live tokens, plus cached pages kept for prefix and
   * session reuse (they are evicted on demand) */
  double util = (live_slots + (double)st.pages_cached * s->page) / cap;
  double logical = (double)st.tokens_stored / cap;
  double used = 0, reserved = 0;
  for (int i = 0; i < s->nreqs; i++) {
    const req *r = s->reqs[i];
    if (r->state != ST_RUNNING) continue;
    used += (double)r->len;
    reserved += (double)r->reserved;
  }
  int waiting = count_state(s, ST_WAITING), swapped = count_state(s, ST_SWAPPED);
  /* "pool-limited": an allocation of this step met PKV_ERR_NO_PAGES */
  int loaded = s->pressure;
  s->nsteps_run++;
  s->util_sum += util;
  s->logical_sum += logical;
  if (loaded) {
    s->load_steps++;
    s->util_load_sum += util;
    s->live_load_sum += live_slots / cap;
    s->cached_load_sum += (double)st.pages_cached * s->page / cap;
    s->waste_load_sum += (double)st.waste_slots / cap;
  }
  double contig = reserved > 0 ? used / reserved : 0;
  if (reserved > 0) {
    s->contig_steps++;
    s->contig_sum += contig;
    if (loaded) {
      s->contig_load_steps++;
      s->contig_load_sum += contig;
    }
  }

  /* the answers: commit, sample, finish */
  int64_t pf = 0, dec = 0;
  for (int i = 0; i < np; i++) {
    req *r = s->reqs[s->plan[i]];
    r->in_plan = 0;
    if (s->qlen[i] == 1 && r->computed >= r->prompt_len) dec++;
    else pf += s->qlen[i];
    r->computed = r->len;
    CHECK(s, pkv_seq_commit(s->cache, r->seq, r->computed));
    tenant *tn = &s->tenants[r->tenant];
    int64_t sc = r->computed < tn->sys_len ? r->computed : tn->sys_len;
    if (sc > tn->sys_committed) tn->sys_committed = sc;
    if (r->computed == r->ntoks) {
      /* the prompt's logits also start a second answer: fork before this
       * answer's first token, sharing every page (copy-on-write) */
      if (r->samples == 2 && r->generated == 0 && !r->recompute) fork_answer(s, r);
      push_tok(r, rtoken());
      r->generated++;
      s->generated++;
      if (r->generated >= r->out_len) finish(s, r, step);
    }
  }
  s->prefill_tokens += pf;
  s->decode_tokens += dec;
  if (np > s->max_running_seen) s->max_running_seen = np;

  if (s->csv)
    fprintf(s->csv,
            "%lld,%d,%d,%d,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,"
            "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld\n",
            (long long)step, np, waiting, swapped, (long long)pf, (long long)dec,
            (long long)st.pages_free, (long long)st.pages_live,
            (long long)st.pages_cached, (long long)st.host_pages_used,
            (long long)st.tokens_stored, (long long)st.waste_slots, util, logical,
            contig, (long long)(s->hit_tokens + s->session_tokens),
            (long long)(s->preempt_swap + s->preempt_recompute),
            (long long)st.swaps_out, (long long)st.swaps_in,
            (long long)s->refused[1], (long long)s->refused[0],
            (long long)st.evictions, (long long)s->completed);
}

/* ------------------------------------------------------------------ */
/* set-up, report                                                       */
/* ------------------------------------------------------------------ */

static void setup(sim *s) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = s->o.backend;
  cd.device = s->o.device;
  pkv_status st = pkv_context_create(&cd, &s->ctx);
  if (st != PKV_OK) {
    fprintf(stderr, "pkv-sim: cannot create a context: %s\n", pkv_last_error(NULL));
    exit(1);
  }
  pkv_device_info_init(&s->info);
  CHECK(s, pkv_context_device_info(s->ctx, &s->info));
  s->gpu = s->info.type == PKV_DEVICE_GPU;

  /* the model: small, so that the CPU reference plays a day in seconds */
  s->layers = 2;
  s->kv_heads = 4;
  s->q_heads = 16;
  s->head_dim = 64;
  s->page = 16;
  s->default_dtype = s->gpu ? PKV_DTYPE_F16 : PKV_DTYPE_F32;
  s->dtype = s->o.dtype >= 0 ? (pkv_dtype)s->o.dtype : s->default_dtype;
  s->io = (s->dtype == PKV_DTYPE_FP8_E4M3 || s->dtype == PKV_DTYPE_FP8_E5M2 ||
           s->dtype == PKV_DTYPE_INT8)
              ? s->default_dtype
              : s->dtype;
  int64_t pages = s->o.pages ? s->o.pages : s->gpu ? 4096 : s->o.quick ? 192 : 320;
  s->default_pages = pages;
  if (!s->o.pages && s->dtype != s->default_dtype) {
    /* the same pool bytes in the chosen dtype (int8 pages carry an f32
     * scale per token and head) */
    double dflt = (double)s->head_dim * (double)pkv_dtype_size(s->default_dtype);
    double mine = (double)s->head_dim * (double)pkv_dtype_size(s->dtype) +
                  (s->dtype == PKV_DTYPE_INT8 ? 4.0 : 0.0);
    pages = (int64_t)((double)pages * dflt / mine);
  }
  s->num_pages = pages;
  s->host_pages = pages / 2;
  s->reserve_hi = pages / 10;
  s->steps = s->o.steps ? s->o.steps : s->gpu ? 1500 : s->o.quick ? 160 : 320;
  /* scheduler limits scale with the pool */
  s->budget = (int)(pages / 2 > 64 ? (pages / 2 < 4096 ? pages / 2 : 4096) : 64);
  s->chunk = s->budget / 2;
  s->max_running = (int)(pages / 6 > 8 ? pages / 6 : 8);

  trace_cfg *t = &s->tc;
  t->tenants = 4;
  t->sys_lo = 3 * s->page + 5;
  t->sys_hi = 12 * s->page + 9;
  t->user_lo = 8;
  t->user_hi = 6 * s->page;
  t->new_lo = 4 * s->page;
  t->new_hi = 24 * s->page;
  t->turns_max = 4;
  t->think_lo = 2;
  t->think_hi = 12;
  t->hi_frac = 0.25;
  t->fork_frac = 0.15;
  /* about the arrival rate at which the pool stays full */
  /* arrivals that keep the pool a little over-subscribed: C requests fit,
   * each lives about mean_out steps, a session has ~2.5 turns */
  double mean_out = (double)(t->new_lo + t->new_hi) / 2.0 / 3.0;
  double mean_user = (double)(t->user_lo + t->user_hi) / 2.0;
  double footprint = mean_user + mean_out + 0.75 * (mean_user + mean_out);
  double fit = (double)pages * s->page / footprint;
  t->rate = 1.6 * fit / (mean_out + 3.0) / 2.5;
  t->initial = (int)fit;
  t->burst_rate = t->rate * 4;
  t->burst_start = s->steps * 45 / 100;
  t->burst_end = s->steps * 55 / 100;
  t->arrivals_end = s->steps * 80 / 100;

  s->tenants = calloc((size_t)t->tenants, sizeof *s->tenants);
  if (!s->tenants) oom();
  for (int i = 0; i < t->tenants; i++) {
    tenant *tn = &s->tenants[i];
    /* tenant 0 sends raw completions without a system prompt */
    tn->sys_len = i == 0 ? 0 : rrange(t->sys_lo, t->sys_hi);
    tn->sys = xrealloc(NULL, (size_t)(tn->sys_len + 1) * sizeof *tn->sys);
    for (int64_t j = 0; j < tn->sys_len; j++) tn->sys[j] = rtoken();
    tn->ns = 0x7e4a000000000000ull + (uint64_t)i;
  }

  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = s->layers;
  d.num_kv_heads = s->kv_heads;
  d.head_dim = s->head_dim;
  d.page_size = s->page;
  d.num_pages = s->num_pages;
  d.dtype = s->dtype;
  d.num_classes = 2;
  d.class_reserved[1] = s->reserve_hi;
  d.num_host_pages = s->host_pages;
  CHECK(s, pkv_cache_create(s->ctx, &d, &s->cache));
  CHECK(s, pkv_batch_create(s->cache, &s->batch));
  if (s->o.events) CHECK(s, pkv_cache_set_event_callback(s->cache, on_event, s));
}

static void progress(const sim *s, int64_t step, double t0, int last) {
  pkv_stats st;
  pkv_stats_init(&st);
  if (pkv_cache_stats(s->cache, &st) != PKV_OK) return;
  double el = tool_now_s() - t0;
  fprintf(stderr,
          "\rpkv-sim: step %lld/%d  running %d  waiting %d  swapped %d  "
          "pool %3.0f%% live  %.0f tok/s   ",
          (long long)step, s->steps, count_state(s, ST_RUNNING),
          count_state(s, ST_WAITING), count_state(s, ST_SWAPPED),
          100.0 * (double)st.pages_live / (double)st.pages_total,
          el > 0 ? (double)(s->prefill_tokens + s->decode_tokens) / el : 0.0);
  if (last) fputc('\n', stderr);
  fflush(stderr);
}

static double pct(double a, double b) { return b > 0 ? 100.0 * a / b : 0.0; }

static const char *dtype_name(pkv_dtype d) {
  static const char *names[] = {"f32", "f16", "bf16", "e4m3", "e5m2", "int8"};
  return (unsigned)d < 6 ? names[d] : "?";
}

static void report(sim *s, int pool_whole, int out_finite) {
  pkv_stats st;
  pkv_stats_init(&st);
  CHECK(s, pkv_cache_stats(s->cache, &st));
  int ver[3];
  pkv_version(&ver[0], &ver[1], &ver[2]);
  printf("pkv-sim: pagedkv %d.%d.%d on %s: %s\n", ver[0], ver[1], ver[2],
         pkv_backend_name(pkv_context_backend(s->ctx)), s->info.name);
  printf("model: %d layers, %d q / %d kv heads, head dim %d, %s K/V; "
         "pool %lld pages x %d tokens, class-1 reserve %lld pages, host tier %lld pages\n",
         s->layers, s->q_heads, s->kv_heads, s->head_dim,
         dtype_name(s->dtype), (long long)s->num_pages, s->page,
         (long long)s->reserve_hi, (long long)s->host_pages);
  if (s->dtype != s->default_dtype && !s->o.pages)
    printf("capacity: %s pool of the same bytes as %lld %s pages holds %lld "
           "pages: %.2fx the tokens, so %.2fx the concurrent sequences of a "
           "given length\n",
           dtype_name(s->dtype), (long long)s->default_pages,
           dtype_name(s->default_dtype), (long long)s->num_pages,
           (double)s->num_pages / (double)s->default_pages,
           (double)s->num_pages / (double)s->default_pages);
  if (s->dtype != PKV_DTYPE_F16 && s->default_dtype != PKV_DTYPE_F16 && !s->o.pages) {
    /* the gain an f16 deployment would see (the default here is f32) */
    const double f16_pages = (double)s->default_pages *
                             (double)pkv_dtype_size(s->default_dtype) /
                             (double)pkv_dtype_size(PKV_DTYPE_F16);
    printf("capacity vs f16: the same bytes hold %.0f f16 pages: %s gives "
           "%.2fx the tokens and concurrent sequences of f16\n",
           f16_pages, dtype_name(s->dtype), (double)s->num_pages / f16_pages);
  }
  printf("trace: seed %llu, %d tenants, %d sessions, %d requests, burst x4 at "
         "steps %d-%d; %lld steps in %.2f s (kernels %.2f s)\n\n",
         (unsigned long long)s->o.seed, s->tc.tenants, s->nsessions, s->nreqs,
         s->tc.burst_start, s->tc.burst_end, (long long)s->nsteps_run, s->wall_s,
         s->kernel_s);
  double ls = (double)(s->load_steps ? s->load_steps : 1);
  double cls = (double)(s->contig_load_steps ? s->contig_load_steps : 1);
  double ns = (double)(s->nsteps_run ? s->nsteps_run : 1);
  double cs = (double)(s->contig_steps ? s->contig_steps : 1);
  printf("%-58s %s\n", "metric", "value");
  printf("%-58s %.1f%% (all steps %.1f%%)\n",
         "memory utilisation, paged: K/V-holding slots / pool",
         100.0 * s->util_load_sum / ls, 100.0 * s->util_sum / ns);
  printf("%-58s live %.1f%% + cached %.1f%%; last-page waste %.1f%%\n",
         "  of which (pool-limited steps)", 100.0 * s->live_load_sum / ls,
         100.0 * s->cached_load_sum / ls, 100.0 * s->waste_load_sum / ls);
  printf("%-58s %.1f%% (all steps %.1f%%)\n",
         "memory utilisation, contiguous: tokens / reserved",
         100.0 * s->contig_load_sum / cls, 100.0 * s->contig_sum / cs);
  printf("%-58s %.1f%%\n", "  logical tokens / pool (shared pages count per user)",
         100.0 * s->logical_sum / ns);
  printf("%-58s %lld of %lld steps\n", "  pool-limited steps (an allocation met NO_PAGES)",
         (long long)s->load_steps, (long long)s->nsteps_run);
  printf("%-58s %lld / %lld (%.1f%%)\n", "prefix + session hit tokens / trace maximum",
         (long long)(s->hit_tokens + s->session_tokens), (long long)s->hit_max,
         pct((double)(s->hit_tokens + s->session_tokens), (double)s->hit_max));
  printf("%-58s %lld prefix, %lld session, %lld on recompute\n", "  of which",
         (long long)s->hit_tokens, (long long)s->session_tokens,
         (long long)s->recompute_hit_tokens);
  printf("%-58s %lld (requests %lld) of %lld admitted\n",
         "high-class admissions refused (target 0)", (long long)s->refused[1],
         (long long)s->refused_reqs[1], (long long)s->admitted_new[1]);
  printf("%-58s %lld (requests %lld) of %lld admitted\n",
         "low-class admissions refused (attempts)", (long long)s->refused[0],
         (long long)s->refused_reqs[0], (long long)s->admitted_new[0]);
  printf("%-58s %lld (swap %lld, recompute %lld, of itself %lld)\n", "preemptions",
         (long long)(s->preempt_swap + s->preempt_recompute), (long long)s->preempt_swap,
         (long long)s->preempt_recompute, (long long)s->self_preempt);
  printf("%-58s %lld out, %lld in; %lld refused (PKV_ERR_STATE)\n",
         "swaps (library counters)", (long long)st.swaps_out,
         (long long)st.swaps_in, (long long)s->swap_shared);
  printf("%-58s %lld evictions, %lld copy-on-write, %lld preemptions suggested\n",
         "library counters", (long long)st.evictions, (long long)st.cow_copies,
         (long long)st.preemptions_suggested);
  printf("%-58s %lld\n", "second answers forked (parallel sampling, n = 2)",
         (long long)s->forks);
  printf("%-58s %.0f tokens/s (%lld prefill + %lld decode tokens)\n", "throughput",
         s->wall_s > 0 ? (double)(s->prefill_tokens + s->decode_tokens) / s->wall_s : 0,
         (long long)s->prefill_tokens, (long long)s->decode_tokens);
  printf("%-58s %.0f tokens/s, %lld requests completed\n", "  generated",
         s->wall_s > 0 ? (double)s->generated / s->wall_s : 0, (long long)s->completed);
  printf("%-58s %s\n", "pool whole after releasing everything (free+cached=total)",
         pool_whole ? "yes" : "NO");
  printf("%-58s %s\n", "attention output finite", out_finite ? "yes" : "NO");
  if (s->o.events) {
    int64_t indexed = s->ev_indexed;
    int64_t net = s->ev_count[PKV_EVENT_PAGE_STORED] - s->ev_count[PKV_EVENT_PAGE_EVICTED];
    printf("%-58s %lld stored, %lld evicted, %lld namespace drops\n",
           "KV events (--events)", (long long)s->ev_count[PKV_EVENT_PAGE_STORED],
           (long long)s->ev_count[PKV_EVENT_PAGE_EVICTED],
           (long long)s->ev_count[PKV_EVENT_NAMESPACE_DROPPED]);
    printf("%-58s %s (%lld indexed, stored - evicted = %lld; seqnos %s)\n",
           "  a router replaying them holds the cache's index",
           net == indexed && !s->ev_gap ? "yes" : "NO", (long long)indexed,
           (long long)net, s->ev_gap ? "have a gap" : "contiguous");
  }
}

static int output_finite(sim *s) {
  if (!s->out || !s->nplan) return 1;
  size_t esz = pkv_dtype_size(s->io);
  size_t n = (size_t)s->q_heads * (size_t)s->head_dim;
  unsigned char *h = malloc(n * esz);
  if (!h) return 0;
  CHECK(s, pkv_buffer_download(s->out, 0, h, n * esz));
  int okay = 1;
  for (size_t i = 0; i < n; i++) {
    if (esz == 4) {
      float f;
      memcpy(&f, h + 4 * i, 4);
      okay &= isfinite(f) != 0;
    } else {
      uint16_t b;
      memcpy(&b, h + 2 * i, 2);
      /* all-ones exponent: inf or NaN in both f16 and bf16 */
      okay &= esz == 2 && (s->io == PKV_DTYPE_F16 ? (b & 0x7c00u) != 0x7c00u
                                                     : (b & 0x7f80u) != 0x7f80u);
    }
  }
  free(h);
  return okay;
}

int main(int argc, char **argv) {
  static sim s;
  if (!parse_options(argc, argv, &s.o)) return 2;
  rs = s.o.seed * 0x2545f4914f6cdd1dull + 1;
  setup(&s);
  if (s.o.csv) {
    s.csv = fopen(s.o.csv, "w");
    if (!s.csv) {
      fprintf(stderr, "pkv-sim: cannot write %s: %s\n", s.o.csv, strerror(errno));
      return 1;
    }
    fprintf(s.csv, "step,batch_seqs,waiting,swapped,prefill_tokens,decode_tokens,"
                   "pages_free,pages_live,pages_cached,host_pages_used,tokens_stored,"
                   "waste_slots,util,logical_util,contig_util,hit_tokens,preemptions,"
                   "swaps_out,swaps_in,refused_high,refused_low,evictions,completed\n");
  }
  int tty = isatty(2);
  double t0 = tool_now_s(), last = 0;
  int64_t step;
  for (step = 0; step < s.steps; step++) {
    step_once(&s, step);
    if (tty && tool_now_s() - last > 0.2) {
      progress(&s, step + 1, t0, 0);
      last = tool_now_s();
    }
    if (step >= s.tc.arrivals_end && count_state(&s, ST_RUNNING) == 0 &&
        count_state(&s, ST_WAITING) == 0 && count_state(&s, ST_SWAPPED) == 0 &&
        count_state(&s, ST_PENDING) == 0)
      break;
  }
  s.wall_s = tool_now_s() - t0;
  if (tty) progress(&s, step < s.steps ? step + 1 : step, t0, 1);
  int out_ok = output_finite(&s);

  /* release everything that is left; the pool must then be whole */
  for (int i = 0; i < s.nreqs; i++) {
    req *r = s.reqs[i];
    if (r->state == ST_RUNNING || r->state == ST_SWAPPED)
      CHECK(&s, pkv_seq_release(s.cache, r->seq));
  }
  pkv_stats st;
  pkv_stats_init(&st);
  CHECK(&s, pkv_cache_stats(s.cache, &st));
  int whole = st.pages_free + st.pages_cached == st.pages_total &&
              st.pages_live == 0 && st.host_pages_used == 0;
  if (s.o.events) {
    /* Every page still indexed was stored once and not evicted since: a
     * router that applied the events holds exactly the cache's index. */
    for (int64_t p = 0; p < st.pages_total; p++) {
      pkv_page_info pi;
      pkv_page_info_init(&pi);
      if (pkv_page_get_info(s.cache, (int32_t)p, &pi) == PKV_OK && pi.indexed)
        s.ev_indexed++;
    }
    if (s.ev_gap || s.ev_indexed != s.ev_count[PKV_EVENT_PAGE_STORED] -
                                        s.ev_count[PKV_EVENT_PAGE_EVICTED])
      whole = 0; /* exit status 1, as for a pool that is not whole */
  }
  report(&s, whole, out_ok);
  if (s.csv) {
    fclose(s.csv);
    printf("per-step time series written to %s\n", s.o.csv);
  }

  for (int i = 0; i < s.nreqs; i++) {
    free(s.reqs[i]->toks);
    free(s.reqs[i]);
  }
  for (int i = 0; i < s.nsessions; i++) free(s.sessions[i].hist);
  for (int i = 0; i < s.tc.tenants; i++) free(s.tenants[i].sys);
  free(s.reqs); free(s.sessions); free(s.tenants);
  free(s.plan); free(s.qlen); free(s.pseq); free(s.tmp);
  pkv_buffer_destroy(s.kin); pkv_buffer_destroy(s.vin);
  pkv_buffer_destroy(s.qin); pkv_buffer_destroy(s.out);
  pkv_batch_destroy(s.batch);
  pkv_cache_destroy(s.cache);
  pkv_context_destroy(s.ctx);
  return whole && out_ok ? 0 : 1;
}
