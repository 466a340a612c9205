/* SPDX-License-Identifier: Apache-2.0 */
/* pkv-disagg: prefill/decode disaggregation on one machine, over UCX.
 *
 * Forks a prefill process P and a decode process D (CPU backend each).
 * The parent relays D's connection blob to P over socketpairs (the
 * engine's control channel), then replays a synthetic trace of pkv-sim's
 * shape (a shared system prompt, per-request prompts of varied length, a
 * fixed number of decode steps): P writes each prompt's K/V and hands the
 * sequence to D with pkv_xfer_push_seq; D decodes it, each step's token
 * chosen from the bits of the previous step's attention output, so one
 * wrong bit anywhere changes everything after it. The parent then runs
 * the same trace in one process (prefill and decode on one cache) and
 * checks that every request's decode outputs are bitwise equal.
 *
 * Also measured in the same run: a raw ucp_put_nbx of the same bytes from
 * P into a registered buffer of D (the transport's ceiling), and the time
 * to first decode token with prefill remote (P's prefill start to D's
 * first output) against local. Every process is bounded by --timeout. */
#include "tool_common.h"

#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#define TOOL "pkv-disagg"
enum { LAYERS = 4, KV_HEADS = 4, Q_HEADS = 16, DIM = 128, PS = 16,
       SYS_PROMPT = 64, VOCAB = 32000 };

static int n_requests = 12, decode_steps = 16, min_prompt = 96,
           max_prompt = 480, timeout_s = 90;

static void usage(FILE *f) {
  fprintf(f,
          "usage: " TOOL " [OPTIONS]\n"
          "Prefill and decode in two processes over UCX (loopback): K/V pages\n"
          "pushed from prefill to decode, decode outputs checked bitwise\n"
          "against a single-process run; prints pages and bytes moved, the\n"
          "bandwidth against a raw ucp_put_nbx, and the time to first token.\n\n"
          "  -n, --requests N     requests in the trace (default 12)\n"
          "  -d, --decode N       decode steps per request (default 16)\n"
          "  --max-prompt N       longest prompt in tokens (default 480)\n"
          "  --quick              4 requests, 4 decode steps, prompts <= 160\n"
          "  --timeout S          kill everything after S seconds (default 90)\n"
          "UCX_TLS chooses the transport (default here: tcp; shm: posix,self).\n");
}

static double now_ms(void) { return tool_now_s() * 1e3; }
static void stop_all(int code);

/* ---------------------------------------------------------------- trace */

static int prompt_len(int i) {
  int span = max_prompt - min_prompt;
  return min_prompt + (int)(((uint32_t)i * 2654435761u >> 7) % (uint32_t)(span + 1));
}

static int32_t prompt_token(int req, int pos) {
  if (pos < SYS_PROMPT) return 1 + pos; /* shared system prompt */
  return 1000 + (int32_t)(((uint32_t)req * 7919u + (uint32_t)pos * 104729u) % 30000u);
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* The "model": K, V and q of a token are functions of (token, position,
 * layer), in [-0.5, 0.5). */
static void gen(float *x, size_t n, int32_t tok, int64_t pos, int layer,
                int which) {
  uint64_t s = mix(((uint64_t)(uint32_t)tok << 32) ^ (uint64_t)pos * 31 ^
                   (uint64_t)layer * 1000003 ^ (uint64_t)which << 60);
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((s >> 40) & 0xffff) / 65536.0f - 0.5f;
  }
}

/* ---------------------------------------------------------------- engine */

typedef struct engine {
  pkv_context *ctx;
  pkv_cache *cache;
  pkv_batch *batch;
  pkv_buffer *k, *v, *q, *out;
  float *host;
  size_t host_n;
} engine;

#define CK(e, call)                                                           \
  do {                                                                        \
    pkv_status st_ = (call);                                                  \
    if (st_ != PKV_OK) {                                                      \
      fprintf(stderr, TOOL ": %s: %s\n", #call, pkv_last_error((e)->ctx));     \
      stop_all(3);                                                            \
    }                                                                         \
  } while (0)

static void engine_init(engine *e, int64_t pages) {
  memset(e, 0, sizeof *e);
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  CK(e, pkv_context_create(&cd, &e->ctx));
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = LAYERS;
  d.num_kv_heads = KV_HEADS;
  d.head_dim = DIM;
  d.page_size = PS;
  d.num_pages = pages;
  d.dtype = PKV_DTYPE_F32;
  CK(e, pkv_cache_create(e->ctx, &d, &e->cache));
  CK(e, pkv_batch_create(e->cache, &e->batch));
  e->host_n = (size_t)(max_prompt + decode_steps + Q_HEADS) * KV_HEADS * DIM;
  e->host = malloc(e->host_n * sizeof(float));
  if (!e->host) exit(3);
  size_t bytes = e->host_n * sizeof(float);
  CK(e, pkv_buffer_create(e->ctx, bytes, &e->k));
  CK(e, pkv_buffer_create(e->ctx, bytes, &e->v));
  CK(e, pkv_buffer_create(e->ctx, (size_t)Q_HEADS * DIM * sizeof(float), &e->q));
  CK(e, pkv_buffer_create(e->ctx, (size_t)Q_HEADS * DIM * sizeof(float), &e->out));
}

static void engine_fini(engine *e) {
  pkv_buffer_destroy(e->k);
  pkv_buffer_destroy(e->v);
  pkv_buffer_destroy(e->q);
  pkv_buffer_destroy(e->out);
  pkv_batch_destroy(e->batch);
  pkv_cache_destroy(e->cache);
  pkv_context_destroy(e->ctx);
  free(e->host);
}

/* Writes the K/V of tokens [pos0, pos0+n) of seq, already appended. */
static void write_kv(engine *e, pkv_seq_id seq, const int32_t *toks,
                     int64_t pos0, int32_t n) {
  size_t tok_n = (size_t)KV_HEADS * DIM;
  CK(e, pkv_batch_build(e->batch, &seq, 1, &n));
  for (int layer = 0; layer < LAYERS; layer++) {
    for (int which = 0; which < 2; which++) {
      for (int32_t t = 0; t < n; t++)
        gen(e->host + (size_t)t * tok_n, tok_n, toks[t], pos0 + t, layer, which);
      CK(e, pkv_buffer_upload(which ? e->v : e->k, 0, e->host,
                              (size_t)n * tok_n * sizeof(float)));
    }
    CK(e, pkv_write_kv(e->batch, layer, e->k, e->v));
  }
}

/* Prefill of request i: a sequence with the prompt's K/V. */
static pkv_seq_id prefill(engine *e, int i) {
  int n = prompt_len(i);
  int32_t *toks = malloc((size_t)n * sizeof *toks);
  for (int p = 0; p < n; p++) toks[p] = prompt_token(i, p);
  pkv_seq_id s;
  CK(e, pkv_seq_open(e->cache, NULL, &s));
  CK(e, pkv_seq_append(e->cache, s, n, toks, NULL));
  write_kv(e, s, toks, 0, n);
  CK(e, pkv_seq_commit(e->cache, s, n));
  free(toks);
  return s;
}

/* Decode: each step appends a token, writes its K/V, attends every layer;
 * the next token comes from the last layer's output bits. Returns the
 * chained hash of every output; *t_first = when the first was ready. */
static uint64_t decode(engine *e, pkv_seq_id s, int i, double *t_first,
                       pkv_xfer_endpoint *ep) {
  int64_t len = 0;
  CK(e, pkv_seq_length(e->cache, s, &len));
  int32_t tok = prompt_token(i, (int)len - 1) ^ 0x55;
  uint64_t h = 0x9e3779b97f4a7c15ull;
  pkv_attn_params params;
  pkv_attn_params_init(&params, Q_HEADS);
  size_t qn = (size_t)Q_HEADS * DIM;
  float *o = malloc(qn * sizeof *o);
  for (int step = 0; step < decode_steps; step++) {
    CK(e, pkv_seq_append(e->cache, s, 1, &tok, NULL));
    write_kv(e, s, &tok, len, 1);
    CK(e, pkv_batch_build(e->batch, &s, 1, NULL));
    for (int layer = 0; layer < LAYERS; layer++) {
      gen(e->host, qn, tok, len, layer, 2);
      CK(e, pkv_buffer_upload(e->q, 0, e->host, qn * sizeof(float)));
      CK(e, pkv_attention(e->batch, layer, &params, e->q, e->out, NULL));
      CK(e, pkv_buffer_download(e->out, 0, o, qn * sizeof(float)));
      for (size_t j = 0; j < qn; j++) {
        uint32_t bits;
        memcpy(&bits, &o[j], 4);
        h = mix(h ^ bits);
      }
    }
    if (step == 0) *t_first = now_ms();
    /* serve the prefill side's next push between steps, as an engine
     * would between batches */
    if (ep) CK(e, pkv_xfer_progress(ep));
    tok = (int32_t)(h % VOCAB);
    len++;
  }
  free(o);
  return h;
}

/* ---------------------------------------------------------------- pipes */

static pid_t children[2];

/* A failure anywhere ends the whole run, not just this process. */
static void stop_all(int code) {
  for (int i = 0; i < 2; i++)
    if (children[i] > 0 && children[i] != getpid()) kill(children[i], SIGKILL);
  exit(code);
}

static void put(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w <= 0) {
      perror(TOOL ": write");
      stop_all(4);
    }
    c += w;
    n -= (size_t)w;
  }
}

static void get(int fd, void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r <= 0) {
      fprintf(stderr, TOOL ": a process ended early\n");
      stop_all(4);
    }
    c += r;
    n -= (size_t)r;
  }
}

static void put_blob(int fd, const void *b, uint64_t n) {
  put(fd, &n, sizeof n);
  put(fd, b, n);
}

static void *get_blob(int fd, uint64_t *n) {
  get(fd, n, sizeof *n);
  void *b = malloc(*n ? *n : 1);
  get(fd, b, *n);
  return b;
}

typedef struct p_rec { /* prefill -> parent, per request */
  int32_t id, pages, retries, pad;
  double t_start, t_pushed, push_ms;
  uint64_t bytes;
} p_rec;

typedef struct d_rec { /* decode -> parent, per request */
  int32_t id, pad;
  double t_first;
  uint64_t hash;
} d_rec;

/* ---------------------------------------------------------------- raw UCX */

/* The baseline: a bare UCP worker per side, D's buffer registered, P puts
 * with ucp_put_nbx and flushes. */
typedef struct raw {
  ucp_context_h ctx;
  ucp_worker_h worker;
  ucp_mem_h memh;
  void *buf;
  size_t len;
} raw;

static void raw_init(raw *r, size_t len) {
  ucp_params_t p;
  memset(&p, 0, sizeof p);
  p.field_mask = UCP_PARAM_FIELD_FEATURES;
  p.features = UCP_FEATURE_RMA;
  ucp_config_t *cfg;
  ucp_worker_params_t wp;
  memset(&wp, 0, sizeof wp);
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (ucp_config_read(NULL, NULL, &cfg) != UCS_OK ||
      ucp_init(&p, cfg, &r->ctx) != UCS_OK ||
      ucp_worker_create(r->ctx, &wp, &r->worker) != UCS_OK) {
    fprintf(stderr, TOOL ": raw UCX setup failed\n");
    exit(5);
  }
  ucp_config_release(cfg);
  r->len = len;
  r->buf = calloc(1, len);
  ucp_mem_map_params_t mp;
  memset(&mp, 0, sizeof mp);
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = r->buf;
  mp.length = len;
  if (!r->buf || ucp_mem_map(r->ctx, &mp, &r->memh) != UCS_OK) {
    fprintf(stderr, TOOL ": raw UCX registration failed\n");
    exit(5);
  }
}

static void raw_wait(raw *r, void *req) {
  if (req == NULL) return;
  if (UCS_PTR_IS_ERR(req)) {
    fprintf(stderr, TOOL ": raw UCX: %s\n",
            ucs_status_string(UCS_PTR_STATUS(req)));
    exit(5);
  }
  while (ucp_request_check_status(req) == UCS_INPROGRESS)
    ucp_worker_progress(r->worker);
  ucp_request_free(req);
}

/* ---------------------------------------------------------------- processes */

static size_t max_seq_bytes(size_t wire) {
  return (size_t)((max_prompt + PS - 1) / PS) * wire;
}

static void decode_main(int fd) {
  engine e;
  int64_t pages_per_req = (max_prompt + decode_steps) / PS + 2;
  engine_init(&e, pages_per_req * 2 + 8);
  size_t wire = 0;
  CK(&e, pkv_cache_page_wire_bytes(e.cache, &wire));
  pkv_xfer_endpoint *ep;
  pkv_xfer_options o;
  pkv_xfer_options_init(&o);
  o.staging_pages = 2; /* it only receives */
  CK(&e, pkv_xfer_endpoint_create(e.cache, &o, &ep));
  size_t blen = 0;
  pkv_xfer_endpoint_blob(ep, NULL, 0, &blen);
  void *blob = malloc(blen);
  CK(&e, pkv_xfer_endpoint_blob(ep, blob, blen, &blen));
  put_blob(fd, blob, blen);
  /* the raw baseline's target */
  raw r;
  raw_init(&r, max_seq_bytes(wire));
  ucp_address_t *ra;
  size_t ralen;
  void *rk;
  size_t rklen;
  if (ucp_worker_get_address(r.worker, &ra, &ralen) != UCS_OK ||
      ucp_rkey_pack(r.ctx, r.memh, &rk, &rklen) != UCS_OK)
    exit(5);
  uint64_t raddr = (uint64_t)(uintptr_t)r.buf;
  put_blob(fd, ra, ralen);
  put_blob(fd, rk, rklen);
  put(fd, &raddr, sizeof raddr);
  int done = 0;
  for (;;) {
    CK(&e, pkv_xfer_progress(ep));
    ucp_worker_progress(r.worker); /* TCP puts need the target's progress */
    uint64_t tags[8];
    pkv_seq_id seqs[8];
    int64_t n = 0;
    CK(&e, pkv_xfer_poll_arrivals(ep, tags, seqs, 8, &n));
    for (int64_t k = 0; k < n; k++) {
      d_rec rec = {.id = (int32_t)tags[k]};
      rec.hash = decode(&e, seqs[k], (int)tags[k], &rec.t_first, ep);
      CK(&e, pkv_seq_release(e.cache, seqs[k]));
      put(fd, &rec, sizeof rec);
      done++;
    }
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, 0) > 0) {
      char c; /* the parent's quit, or its end */
      if (read(fd, &c, 1) != 1 || done < n_requests) _exit(4);
      break;
    }
  }
  ucp_rkey_buffer_release(rk);
  ucp_worker_release_address(r.worker, ra);
  pkv_xfer_endpoint_destroy(ep);
  engine_fini(&e);
  _exit(0);
}

static void prefill_main(int fd) {
  engine e;
  int64_t pages_per_req = max_prompt / PS + 2;
  engine_init(&e, pages_per_req * 4 + 8);
  size_t wire = 0;
  CK(&e, pkv_cache_page_wire_bytes(e.cache, &wire));
  pkv_xfer_endpoint *ep;
  pkv_xfer_options o;
  pkv_xfer_options_init(&o);
  o.staging_pages = pages_per_req;
  CK(&e, pkv_xfer_endpoint_create(e.cache, &o, &ep));
  uint64_t blen, ralen, rklen, raddr;
  void *blob = get_blob(fd, &blen);
  void *ra = get_blob(fd, &ralen);
  void *rk = get_blob(fd, &rklen);
  get(fd, &raddr, sizeof raddr);
  pkv_xfer_peer *peer;
  CK(&e, pkv_xfer_connect(ep, blob, blen, &peer));
  uint64_t total = 0;
  for (int i = 0; i < n_requests; i++) {
    p_rec rec = {.id = i};
    rec.t_start = now_ms();
    pkv_seq_id s = prefill(&e, i);
    double t0 = now_ms();
    /* The decode side's pool full: back off and retry (backpressure). */
    for (;;) {
      t0 = now_ms();
      pkv_xfer_request *req;
      CK(&e, pkv_xfer_push_seq(ep, peer, s, NULL, (uint64_t)i, &req));
      pkv_status st = pkv_xfer_wait(req, (int64_t)timeout_s * 1000);
      pkv_xfer_request_free(req);
      if (st == PKV_OK) break;
      if (st != PKV_ERR_NO_PAGES) CK(&e, st);
      rec.retries++;
      struct timespec ts = {0, 2000000};
      nanosleep(&ts, NULL);
    }
    rec.t_pushed = now_ms();
    rec.push_ms = rec.t_pushed - t0;
    int64_t len = prompt_len(i);
    rec.pages = (int32_t)((len + PS - 1) / PS);
    rec.bytes = (uint64_t)rec.pages * wire;
    total += rec.bytes;
    CK(&e, pkv_seq_release(e.cache, s));
    put(fd, &rec, sizeof rec);
    /* One request in flight: the next starts when decode has finished
     * this one, so the time to first token has no queueing in it. */
    char go;
    get(fd, &go, 1);
  }
  /* the raw baseline: the same bytes, request by request, put + flush,
   * once the parent says decode is idle (it progresses the target) */
  char c;
  get(fd, &c, 1);
  raw r;
  raw_init(&r, max_seq_bytes(wire));
  ucp_ep_params_t epp;
  memset(&epp, 0, sizeof epp);
  epp.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  epp.address = ra;
  ucp_ep_h uep;
  ucp_rkey_h rkey;
  if (ucp_ep_create(r.worker, &epp, &uep) != UCS_OK ||
      ucp_ep_rkey_unpack(uep, rk, &rkey) != UCS_OK)
    exit(5);
  ucp_request_param_t rp;
  memset(&rp, 0, sizeof rp);
  /* wire up once outside the clock */
  raw_wait(&r, ucp_put_nbx(uep, r.buf, 64, raddr, rkey, &rp));
  raw_wait(&r, ucp_ep_flush_nbx(uep, &rp));
  double t0 = now_ms();
  for (int i = 0; i < n_requests; i++) {
    size_t bytes = (size_t)((prompt_len(i) + PS - 1) / PS) * wire;
    raw_wait(&r, ucp_put_nbx(uep, r.buf, bytes, raddr, rkey, &rp));
    raw_wait(&r, ucp_ep_flush_nbx(uep, &rp));
  }
  double raw_ms = now_ms() - t0;
  /* and one-sided gets, the operation the transfer module uses */
  t0 = now_ms();
  for (int i = 0; i < n_requests; i++) {
    size_t bytes = (size_t)((prompt_len(i) + PS - 1) / PS) * wire;
    raw_wait(&r, ucp_get_nbx(uep, r.buf, bytes, raddr, rkey, &rp));
  }
  double rawget_ms = now_ms() - t0;
  put(fd, &raw_ms, sizeof raw_ms);
  put(fd, &rawget_ms, sizeof rawget_ms);
  put(fd, &total, sizeof total);
  get(fd, &c, 1); /* the parent's word to go */
  ucp_rkey_destroy(rkey);
  pkv_xfer_endpoint_destroy(ep);
  engine_fini(&e);
  _exit(0);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] = TOOL ": timeout: killing both processes\n";
  if (write(2, m, sizeof m - 1) < 0) {
  }
  for (int i = 0; i < 2; i++)
    if (children[i] > 0) kill(children[i], SIGKILL);
  _exit(6);
}

static pid_t spawn(void (*fn)(int), int *fd_out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
    perror(TOOL ": socketpair");
    exit(4);
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror(TOOL ": fork");
    exit(4);
  }
  if (pid == 0) {
    close(sv[0]);
    alarm((unsigned)timeout_s); /* a child of a dead parent ends too */
    fn(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  *fd_out = sv[0];
  return pid;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    long long v;
    if (tool_std_option(TOOL, argv[i], usage)) return 0;
    if (!strcmp(argv[i], "--quick")) {
      n_requests = 4;
      decode_steps = 4;
      max_prompt = 160;
    } else if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "--requests")) &&
               i + 1 < argc && tool_parse_ll(argv[i + 1], 1, 4096, &v)) {
      n_requests = (int)v;
      i++;
    } else if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "--decode")) &&
               i + 1 < argc && tool_parse_ll(argv[i + 1], 1, 4096, &v)) {
      decode_steps = (int)v;
      i++;
    } else if (!strcmp(argv[i], "--max-prompt") && i + 1 < argc &&
               tool_parse_ll(argv[i + 1], min_prompt, 16384, &v)) {
      max_prompt = (int)v;
      i++;
    } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc &&
               tool_parse_ll(argv[i + 1], 1, 86400, &v)) {
      timeout_s = (int)v;
      i++;
    } else {
      fprintf(stderr, TOOL ": bad option '%s' (or its value)\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  setenv("UCX_TLS", "tcp,self", 0);
  signal(SIGALRM, on_alarm);
  alarm((unsigned)timeout_s);

  int dfd, pfd;
  children[1] = spawn(decode_main, &dfd);
  children[0] = spawn(prefill_main, &pfd);
  uint64_t n;
  void *b = get_blob(dfd, &n);
  put_blob(pfd, b, n);
  free(b);
  b = get_blob(dfd, &n);
  put_blob(pfd, b, n);
  free(b);
  b = get_blob(dfd, &n);
  put_blob(pfd, b, n);
  free(b);
  uint64_t raddr;
  get(dfd, &raddr, sizeof raddr);
  put(pfd, &raddr, sizeof raddr);

  p_rec *pr = calloc((size_t)n_requests, sizeof *pr);
  d_rec *dr = calloc((size_t)n_requests, sizeof *dr);
  for (int i = 0; i < n_requests; i++) {
    p_rec r;
    get(pfd, &r, sizeof r);
    if (r.id >= 0 && r.id < n_requests) pr[r.id] = r;
    d_rec q;
    get(dfd, &q, sizeof q);
    if (q.id >= 0 && q.id < n_requests) dr[q.id] = q;
    char next = 'n';
    put(pfd, &next, 1);
  }
  double raw_ms;
  uint64_t total;
  char go = 'r';
  put(pfd, &go, 1);
  get(pfd, &raw_ms, sizeof raw_ms);
  double rawget_ms;
  get(pfd, &rawget_ms, sizeof rawget_ms);
  get(pfd, &total, sizeof total);
  go = 'q';
  put(dfd, &go, 1);
  put(pfd, &go, 1);
  int failed_child = 0;
  for (int i = 0; i < 2; i++) {
    int ws;
    waitpid(children[i], &ws, 0);
    children[i] = 0;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) failed_child = 1;
  }

  /* The single-process reference, after the two are gone (no contention). */
  engine e;
  engine_init(&e, (max_prompt + decode_steps) / PS + 4);
  int equal = 0;
  double ttft_local = 0, ttft_remote = 0, push_ms = 0;
  int64_t pages = 0, retries = 0;
  for (int i = 0; i < n_requests; i++) {
    double t0 = now_ms(), t_first = 0;
    pkv_seq_id s = prefill(&e, i);
    uint64_t h = decode(&e, s, i, &t_first, NULL);
    CK(&e, pkv_seq_release(e.cache, s));
    ttft_local += t_first - t0;
    ttft_remote += dr[i].t_first - pr[i].t_start;
    push_ms += pr[i].push_ms;
    pages += pr[i].pages;
    retries += pr[i].retries;
    if (h == dr[i].hash) equal++;
    else
      fprintf(stderr, TOOL ": request %d: decode outputs differ from the "
              "single-process run\n", i);
  }
  engine_fini(&e);

  double gbs = (double)total / (push_ms * 1e-3) / 1e9;
  double raw_gbs = (double)total / (raw_ms * 1e-3) / 1e9;
  const char *tls = getenv("UCX_TLS");
  printf("pkv-disagg: %d requests (prompts %d..%d tokens, %d decode steps), "
         "f32 K/V, %d layers x %d kv heads x %d, page %d; UCX_TLS=%s\n",
         n_requests, min_prompt, max_prompt, decode_steps, LAYERS, KV_HEADS,
         DIM, PS, tls ? tls : "");
  printf("  %-44s %12lld\n", "pages moved (prefill -> decode)", (long long)pages);
  printf("  %-44s %12.1f MiB\n", "bytes moved", (double)total / 1048576.0);
  printf("  %-44s %12lld\n", "pushes retried (decode pool full)",
         (long long)retries);
  printf("  %-44s %12.1f ms   %8.3f GB/s\n",
         "pkv_xfer_push_seq (export+get+import)", push_ms, gbs);
  printf("  %-44s %12.1f ms   %8.3f GB/s\n", "raw ucp_put_nbx + flush, same bytes",
         raw_ms, raw_gbs);
  double rawget_gbs = (double)total / (rawget_ms * 1e-3) / 1e9;
  printf("  %-44s %12.1f ms   %8.3f GB/s\n", "raw ucp_get_nbx, same bytes",
         rawget_ms, rawget_gbs);
  printf("  %-44s %12.2f\n", "push bandwidth / raw put bandwidth", gbs / raw_gbs);
  printf("  %-44s %12.2f\n", "push bandwidth / raw get bandwidth",
         gbs / rawget_gbs);
  printf("  %-44s %12.2f ms\n", "time to first decode token, prefill remote",
         ttft_remote / n_requests);
  printf("  %-44s %12.2f ms\n", "time to first decode token, local",
         ttft_local / n_requests);
  printf("  %-44s %9d/%d\n", "decode outputs bitwise equal to one process",
         equal, n_requests);
  return equal == n_requests && !failed_child ? 0 : 1;
}
