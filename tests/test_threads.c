/* SPDX-License-Identifier: Apache-2.0 */
/* The thread-safety promise of doc/api.md ("Threads"), exactly:
 * - calls without a context (names, listing, context creation) from any
 *   threads at once, each thread keeping its own last message;
 * - the first OpenCL contexts of a process created by four threads at once;
 * - one context per thread, and one context shared by threads, each thread
 *   with its own caches: results equal a single-threaded run, and each
 *   thread reads its own error messages on the shared context;
 * - one cache driven from several threads, one call at a time (the
 *   caller's lock): nothing in the library is tied to a thread.
 * The CI runs it under ThreadSanitizer (.ci/run), which checks that no two
 * of these calls race; here the results are checked. OpenCL parts skip
 * with the reason when there is no OpenCL device. */
#include "pagedkv.h"
#include "tap.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PoCL compiles kernels with LLVM in the calling thread, and LLVM gives
 * that thread an alternate signal stack from malloc. AddressSanitizer's
 * thread teardown unmaps the alternate stack as if it were its own and
 * dies ("unable to unmap"). This test's threads do compile (a context per
 * thread), so under ASan it keeps ASan away from signal stacks; the
 * environment's ASAN_OPTIONS still apply on top. */
#if defined(__SANITIZE_ADDRESS__)
#define PKV_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PKV_TEST_ASAN 1
#endif
#endif
#ifdef PKV_TEST_ASAN
__attribute__((visibility("default"))) const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void) {
  return "use_sigaltstack=0";
}
#endif

#define NT 4
#define LAYERS 2
#define KVH 2
#define QH 4
#define DIM 64
#define NSEQ 3

static pthread_barrier_t barrier;

/* ------------------------------------------------------------ workload */
static uint32_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (uint32_t)(*s >> 11);
}
static float frand(uint64_t *s) {
  return (float)(next_rand(s) / 2097152.0 - 1.0);
}

/* Outputs of one workload: a prefill of NSEQ sequences and a decode step,
 * attention over every layer. */
#define PF_MAX 40
#define OUT_FLOATS ((NSEQ * PF_MAX + NSEQ) * QH * DIM * LAYERS)

typedef struct result {
  pkv_status st;
  char where[96];
  float out[OUT_FLOATS];
  int nout;
} result;

static int upload_rand(pkv_context *ctx, size_t floats, uint64_t *s,
                       pkv_buffer **b) {
  float *h = malloc(floats * sizeof *h);
  if (!h) return -1;
  for (size_t i = 0; i < floats; i++) h[i] = frand(s);
  int r = pkv_buffer_create(ctx, floats * sizeof *h, b) == PKV_OK &&
                  pkv_buffer_upload(*b, 0, h, floats * sizeof *h) == PKV_OK
              ? 0
              : -1;
  free(h);
  return r;
}

#define TRY(what, call)                                                        \
  do {                                                                         \
    pkv_status st_ = (call);                                                   \
    if (st_ != PKV_OK) {                                                       \
      r->st = st_;                                                             \
      snprintf(r->where, sizeof r->where, "%s: %.60s", what,                   \
               pkv_last_error(ctx));                                           \
      goto done;                                                               \
    }                                                                          \
  } while (0)

/* One step (build, then per layer write K/V and attend); outputs appended. */
static pkv_status step(pkv_context *ctx, pkv_cache *c, pkv_batch *b,
                       const pkv_seq_id *seqs, const int32_t *q_lens,
                       uint64_t *s, result *r) {
  pkv_buffer *k = NULL, *v = NULL, *q = NULL, *o = NULL;
  (void)c;
  TRY("build", pkv_batch_build(b, seqs, NSEQ, q_lens));
  pkv_batch_view view;
  pkv_batch_view_init(&view);
  TRY("view", pkv_batch_get_view(b, &view));
  size_t nt = (size_t)view.num_tokens;
  pkv_attn_params p;
  pkv_attn_params_init(&p, QH);
  TRY("o", pkv_buffer_create(ctx, nt * QH * DIM * sizeof(float), &o));
  for (int32_t l = 0; l < LAYERS; l++) {
    if (upload_rand(ctx, nt * KVH * DIM, s, &k) || upload_rand(ctx, nt * KVH * DIM, s, &v) ||
        upload_rand(ctx, nt * QH * DIM, s, &q)) {
      r->st = PKV_ERR_NO_MEMORY;
      snprintf(r->where, sizeof r->where, "upload");
      goto done;
    }
    TRY("write_kv", pkv_write_kv(b, l, k, v));
    TRY("attention", pkv_attention(b, l, &p, q, o, NULL));
    if ((size_t)r->nout + nt * QH * DIM > OUT_FLOATS) {
      r->st = PKV_ERR_SIZE;
      snprintf(r->where, sizeof r->where, "output overflow");
      goto done;
    }
    TRY("download",
        pkv_buffer_download(o, 0, r->out + r->nout, nt * QH * DIM * sizeof(float)));
    r->nout += (int)(nt * QH * DIM);
    pkv_buffer_destroy(k);
    pkv_buffer_destroy(v);
    pkv_buffer_destroy(q);
    k = v = q = NULL;
  }
done:
  pkv_buffer_destroy(k);
  pkv_buffer_destroy(v);
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(o);
  return r->st;
}

/* The workload on its own cache of ctx; deterministic in seed. */
static void workload(pkv_context *ctx, uint64_t seed, result *r) {
  memset(r, 0, sizeof *r);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  pkv_cache *c = NULL;
  pkv_batch *b = NULL;
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = LAYERS;
  d.num_kv_heads = KVH;
  d.head_dim = DIM;
  d.page_size = 16;
  d.num_pages = 64;
  d.dtype = PKV_DTYPE_F32;
  TRY("cache", pkv_cache_create(ctx, &d, &c));
  TRY("batch", pkv_batch_create(c, &b));
  pkv_seq_id seqs[NSEQ];
  int32_t q_lens[NSEQ];
  for (int i = 0; i < NSEQ; i++) {
    TRY("open", pkv_seq_open(c, NULL, &seqs[i]));
    q_lens[i] = 1 + (int32_t)(next_rand(&s) % PF_MAX);
    TRY("append", pkv_seq_append(c, seqs[i], q_lens[i], NULL, NULL));
  }
  if (step(ctx, c, b, seqs, q_lens, &s, r) != PKV_OK) goto done;
  for (int i = 0; i < NSEQ; i++)
    TRY("append 1", pkv_seq_append(c, seqs[i], 1, NULL, NULL));
  step(ctx, c, b, seqs, NULL, &s, r);
done:
  pkv_batch_destroy(b);
  pkv_cache_destroy(c);
}

static int same(const result *a, const result *b) {
  return a->st == PKV_OK && b->st == PKV_OK && a->nout == b->nout &&
         memcmp(a->out, b->out, (size_t)a->nout * sizeof(float)) == 0;
}

/* ------------------------------------------------------------ threads */
typedef struct job {
  int tid;
  pkv_backend_kind backend;
  pkv_context *shared;   /* NULL: the thread makes its own context */
  const result *expect;  /* [NT] per-thread expected results */
  int rounds;
  int good;              /* rounds whose output equalled the expectation */
  int own_msgs;          /* error checks that read this thread's message */
  int err_checks;
  pkv_status first_err;
  char msg[160];
} job;

static pkv_context *make_ctx(pkv_backend_kind kind, pkv_status *st) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = kind;
  cd.cpu_threads = 2; /* the CPU reference's own workers run too */
  pkv_context *ctx = NULL;
  *st = pkv_context_create(&cd, &ctx);
  return ctx;
}

static void *run_workloads(void *arg) {
  job *j = arg;
  pkv_status st = PKV_OK;
  pkv_context *ctx = j->shared ? j->shared : make_ctx(j->backend, &st);
  pthread_barrier_wait(&barrier);
  if (!ctx) {
    j->first_err = st;
    snprintf(j->msg, sizeof j->msg, "%.150s", pkv_last_error(NULL));
    return NULL;
  }
  result *r = malloc(sizeof *r);
  for (int round = 0; r && round < j->rounds; round++) {
    workload(ctx, (uint64_t)j->tid, r);
    if (same(r, &j->expect[j->tid]))
      j->good++;
    else if (!j->msg[0])
      snprintf(j->msg, sizeof j->msg, "round %d: %s %s", round,
               pkv_status_name(r->st), r->where);
  }
  free(r);
  if (!j->shared) pkv_context_destroy(ctx);
  return NULL;
}

static int run_jobs(job *jobs, void *(*fn)(void *)) {
  pthread_t t[NT];
  pthread_barrier_init(&barrier, NULL, NT);
  for (int i = 0; i < NT; i++)
    if (pthread_create(&t[i], NULL, fn, &jobs[i]) != 0) return -1;
  for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  return 0;
}

static void workloads(const char *what, pkv_backend_kind kind, pkv_context *shared,
                      const result *expect, int rounds) {
  job jobs[NT];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < NT; i++) {
    jobs[i].tid = i;
    jobs[i].backend = kind;
    jobs[i].shared = shared;
    jobs[i].expect = expect;
    jobs[i].rounds = rounds;
  }
  run_jobs(jobs, run_workloads);
  int all = 1;
  for (int i = 0; i < NT; i++) {
    if (jobs[i].good != rounds) {
      all = 0;
      diag("%s, thread %d: %d of %d rounds right; %s", what, i, jobs[i].good,
           rounds, jobs[i].msg);
    }
  }
  ok(all, "%s: %d threads x %d rounds equal the single-threaded results", what,
     NT, rounds);
}

/* Per-thread messages on a shared context: each thread fails with its own
 * layer number and must read back exactly its own message. */
static void *run_errors(void *arg) {
  job *j = arg;
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.num_pages = 4;
  pkv_cache *c = NULL;
  pkv_status st = pkv_cache_create(j->shared, &d, &c);
  pthread_barrier_wait(&barrier);
  if (st != PKV_OK) return NULL;
  char want[32];
  for (int i = 0; i < 2000; i++) {
    int32_t layer = 1000 + j->tid * 100000 + i;
    snprintf(want, sizeof want, "layer %d ", layer);
    pkv_buffer *k;
    pkv_status s = pkv_cache_kv(c, layer, &k, NULL);
    j->err_checks++;
    if (s == PKV_ERR_RANGE && strstr(pkv_last_error(j->shared), want)) j->own_msgs++;
    /* Context-less calls keep their own per-thread message too. */
    char name[32];
    snprintf(name, sizeof name, "nosuch%d-%d", j->tid, i);
    pkv_backend_kind kind;
    j->err_checks++;
    if (pkv_backend_from_name(name, &kind) == PKV_ERR_INVALID &&
        strstr(pkv_last_error(NULL), name))
      j->own_msgs++;
  }
  pkv_cache_destroy(c);
  return NULL;
}

static void per_thread_errors(const char *what, pkv_context *shared) {
  job jobs[NT];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < NT; i++) {
    jobs[i].tid = i;
    jobs[i].shared = shared;
  }
  run_jobs(jobs, run_errors);
  int own = 0, checks = 0;
  for (int i = 0; i < NT; i++) {
    own += jobs[i].own_msgs;
    checks += jobs[i].err_checks;
  }
  ok(checks == NT * 4000 && own == checks,
     "%s: each thread reads its own messages (%d of %d)", what, own, checks);
}

/* One cache, several threads, one call at a time under the caller's lock. */
typedef struct turn_state {
  pthread_mutex_t lock;
  pkv_cache *cache;
  pkv_seq_id seq[NT];
  int failures;
} turn_state;

static turn_state turns;

static void *run_turns(void *arg) {
  job *j = arg;
  pthread_barrier_wait(&barrier);
  for (int i = 0; i < 200; i++) {
    pthread_mutex_lock(&turns.lock);
    pkv_cache *c = turns.cache;
    pkv_seq_id child;
    if (pkv_seq_append(c, turns.seq[j->tid], 1, NULL, NULL) != PKV_OK ||
        pkv_seq_fork(c, turns.seq[j->tid], &child) != PKV_OK ||
        pkv_seq_release(c, child) != PKV_OK)
      turns.failures++;
    pthread_mutex_unlock(&turns.lock);
  }
  return NULL;
}

static void one_cache_in_turns(pkv_context *ctx) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.head_dim = 64;
  d.page_size = 16;
  d.num_pages = 256;
  pthread_mutex_init(&turns.lock, NULL);
  if (pkv_cache_create(ctx, &d, &turns.cache) != PKV_OK) {
    ok(0, "cache for the turns: %s", pkv_last_error(ctx));
    return;
  }
  for (int i = 0; i < NT; i++) pkv_seq_open(turns.cache, NULL, &turns.seq[i]);
  job jobs[NT];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < NT; i++) jobs[i].tid = i;
  run_jobs(jobs, run_turns);
  int lens_ok = 1;
  for (int i = 0; i < NT; i++) {
    int64_t len = -1;
    pkv_seq_length(turns.cache, turns.seq[i], &len);
    lens_ok &= len == 200;
  }
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(turns.cache, &st);
  ok(turns.failures == 0 && lens_ok && st.num_seqs == NT,
     "one cache from %d threads in turns: %d failures, lengths %s", NT,
     turns.failures, lens_ok ? "right" : "wrong");
  pkv_cache_destroy(turns.cache);
  pthread_mutex_destroy(&turns.lock);
}

/* ------------------------------------------------------------ OpenCL */
typedef struct startup_job {
  pkv_status st;
  char msg[200];
} startup_job;

static void *run_startup(void *arg) {
  startup_job *j = arg;
  pkv_status st = PKV_OK;
  pthread_barrier_wait(&barrier);
  pkv_context *ctx = make_ctx(PKV_BACKEND_OPENCL, &st);
  if (ctx) {
    pkv_buffer *b = NULL;
    float x[256] = {1}, y[256] = {0};
    st = pkv_buffer_create(ctx, sizeof x, &b);
    if (st == PKV_OK) st = pkv_buffer_upload(b, 0, x, sizeof x);
    if (st == PKV_OK) st = pkv_buffer_download(b, 0, y, sizeof y);
    if (st == PKV_OK && memcmp(x, y, sizeof x) != 0) st = PKV_ERR_DEVICE;
    if (st != PKV_OK) snprintf(j->msg, sizeof j->msg, "%.190s", pkv_last_error(ctx));
    pkv_buffer_destroy(b);
    pkv_context_destroy(ctx);
  } else {
    snprintf(j->msg, sizeof j->msg, "%.190s", pkv_last_error(NULL));
  }
  j->st = st;
  return NULL;
}

/* Must run before anything else touches OpenCL in this process. Returns
 * the number of devices (0: the OpenCL parts skip). */
static int opencl_startup_race(void) {
  if (!pkv_backend_available(PKV_BACKEND_OPENCL)) {
    skip(1, "OpenCL backend not built");
    return 0;
  }
  startup_job jobs[NT];
  memset(jobs, 0, sizeof jobs);
  pthread_t t[NT];
  pthread_barrier_init(&barrier, NULL, NT);
  for (int i = 0; i < NT; i++) pthread_create(&t[i], NULL, run_startup, &jobs[i]);
  for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  int n = 0;
  if (pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &n) != PKV_OK || n == 0) {
    skip(1, "no OpenCL device");
    return 0;
  }
  int good = 0;
  for (int i = 0; i < NT; i++) {
    if (jobs[i].st == PKV_OK)
      good++;
    else
      diag("thread %d: %s: %s", i, pkv_status_name(jobs[i].st), jobs[i].msg);
  }
  ok(good == NT, "%d threads creating the process's first OpenCL contexts at "
     "once: %d succeed", NT, good);
  return n;
}

static char cache_dir[64];

static void cleanup_cache_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
  if (cache_dir[0] && system(cmd) != 0) diag("could not remove %s", cache_dir);
}

int main(void) {
  /* The OpenCL program cache of this run, private to it. */
  snprintf(cache_dir, sizeof cache_dir, "/tmp/pkv-test-threads-XXXXXX");
  if (!mkdtemp(cache_dir)) plan_skip_all("cannot create a temporary directory");
  setenv("PKV_CACHE_DIR", cache_dir, 1);
  atexit(cleanup_cache_dir);
  int ocl_devices = opencl_startup_race();

  /* Expected results: every workload once, on the main thread. */
  static result cpu_expect[NT], ocl_expect[NT];
  pkv_status st;
  pkv_context *cpu = make_ctx(PKV_BACKEND_CPU, &st);
  if (!cpu) {
    printf("Bail out! CPU context: %s\n", pkv_last_error(NULL));
    return 1;
  }
  int ref_ok = 1;
  for (int i = 0; i < NT; i++) {
    workload(cpu, (uint64_t)i, &cpu_expect[i]);
    if (cpu_expect[i].st != PKV_OK) {
      ref_ok = 0;
      diag("reference %d: %s", i, cpu_expect[i].where);
    }
  }
  ok(ref_ok, "single-threaded CPU reference runs");

  workloads("CPU, a context per thread", PKV_BACKEND_CPU, NULL, cpu_expect, 3);
  workloads("CPU, one shared context", PKV_BACKEND_CPU, cpu, cpu_expect, 3);
  per_thread_errors("CPU, one shared context", cpu);
  per_thread_errors("CPU, one shared context, again", cpu);
  one_cache_in_turns(cpu);

  if (ocl_devices > 0) {
    pkv_context *ocl = make_ctx(PKV_BACKEND_OPENCL, &st);
    ok(ocl != NULL, "shared OpenCL context: %s", ocl ? "" : pkv_last_error(NULL));
    if (ocl) {
      int oref = 1;
      for (int i = 0; i < NT; i++) {
        workload(ocl, (uint64_t)i, &ocl_expect[i]);
        oref &= ocl_expect[i].st == PKV_OK;
      }
      ok(oref, "single-threaded OpenCL reference runs");
      workloads("OpenCL, one shared context", PKV_BACKEND_OPENCL, ocl, ocl_expect, 2);
      workloads("OpenCL, a context per thread", PKV_BACKEND_OPENCL, NULL, ocl_expect, 1);
      per_thread_errors("OpenCL, one shared context", ocl);
      pkv_context_destroy(ocl);
    }
  } else {
    skip(5, "no OpenCL device");
  }
  pkv_context_destroy(cpu);
  return done_testing();
}
