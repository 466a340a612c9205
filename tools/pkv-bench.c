/* SPDX-License-Identifier: Apache-2.0 */
/* pkv-bench — decode, prefill and control-plane timings of pagedkv on one
 * backend, each against a baseline measured in the same run: the bandwidth
 * of a plain device buffer copy, the same decode over a contiguous cache,
 * and (for a device backend) the CPU reference. Uses the public API only.
 * See doc/benchmark.md for what each row means. */
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

/* ------------------------------------------------------------------ */
/* options                                                              */
/* ------------------------------------------------------------------ */

typedef struct options {
  pkv_backend_kind backend;
  int device;
  int csv, quick;
  pkv_dtype dtype;
  int head_dim, q_heads, kv_heads;
  int page_size, batch;       /* 0 = default */
  int64_t ctx_len;            /* 0 = default */
  int iters;                  /* 0 = default */
  int explicit_shape;         /* --batch/--ctx-len/--page-size given */
  int64_t first_len;          /* --first-len: decode sequence 0's length */
  pkv_dtype dtypes[8];        /* --dtypes: the rows timed against f16 */
  int ndtypes;                /* 0 = e4m3, e5m2, int8 */
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: pkv-bench [--backend auto|cpu|opencl|hip] [--device N] [--csv]\n"
          "                 [--quick] [--dtype f16|bf16|f32|e4m3|e5m2|int8] [--head-dim D]\n"
          "                 [--q-heads H] [--kv-heads H] [--page-size P]\n"
          "                 [--batch B] [--ctx-len L] [--first-len L] [--iters N]\n"
          "                 [--dtypes LIST (default e4m3,e5m2,int8)]\n"
          "Times, on one backend and in one run: a device buffer copy (the\n"
          "bandwidth baseline), paged decode and the same decode over a\n"
          "contiguous cache, prefill, the CPU reference's decode (device\n"
          "backends), and control-plane costs (appends, batch builds).\n");
}

static int parse_options(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->backend = PKV_BACKEND_AUTO;
  o->device = -1;
  o->dtype = PKV_DTYPE_F16;
  o->head_dim = 128;
  o->q_heads = 32;
  o->kv_heads = 8;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    long long v = 0;
    if (!strcmp(a, "--csv")) { o->csv = 1; continue; }
    if (!strcmp(a, "--quick")) { o->quick = 1; continue; }
    if (tool_std_option("pkv-bench", a, usage)) exit(0);
    if (i + 1 >= argc) {
      fprintf(stderr, "pkv-bench: unknown option or missing value: %s\n", a);
      usage(stderr);
      return 0;
    }
    val = argv[++i];
    if (!strcmp(a, "--backend")) {
      if (!tool_parse_backend("pkv-bench", val, &o->backend)) return 0;
    } else if (!strcmp(a, "--dtypes")) {
      /* comma-separated; f16 (the baseline) may be listed, it is timed once */
      char buf[128], *save = NULL;
      snprintf(buf, sizeof buf, "%s", val);
      o->ndtypes = 0;
      for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        pkv_dtype dt;
        if (!tool_parse_dtype(t, &dt) || o->ndtypes == 8) {
          fprintf(stderr, "pkv-bench: --dtypes %s: '%s' is not f16, bf16, f32, e4m3, e5m2 or int8 (at most 8)\n", val, t);
          return 0;
        }
        if (dt != PKV_DTYPE_F16) o->dtypes[o->ndtypes++] = dt;
      }
    } else if (!strcmp(a, "--dtype")) {
      if (!tool_parse_dtype(val, &o->dtype)) {
        fprintf(stderr, "pkv-bench: --dtype %s is not f16, bf16, f32, e4m3, e5m2 or int8\n", val);
        return 0;
      }
    } else {
      struct { const char *name; long long lo, hi; } lim[] = {
          {"--device", 0, 1024}, {"--head-dim", 1, 1024}, {"--q-heads", 1, 1024},
          {"--kv-heads", 1, 1024}, {"--page-size", 1, 1024},
          {"--batch", 1, 1 << 20}, {"--ctx-len", 1, 1LL << 30},
          {"--iters", 1, 100000}, {"--first-len", 1, 1LL << 30}};
      int k = -1;
      for (int j = 0; j < (int)(sizeof lim / sizeof lim[0]); j++)
        if (!strcmp(a, lim[j].name)) k = j;
      if (k < 0) {
        fprintf(stderr, "pkv-bench: unknown option %s\n", a);
        usage(stderr);
        return 0;
      }
      if (!tool_parse_ll(val, lim[k].lo, lim[k].hi, &v)) {
        fprintf(stderr, "pkv-bench: %s %s: expected an integer in %lld..%lld\n",
                a, val, lim[k].lo, lim[k].hi);
        return 0;
      }
      switch (k) {
      case 0: o->device = (int)v; break;
      case 1: o->head_dim = (int)v; break;
      case 2: o->q_heads = (int)v; break;
      case 3: o->kv_heads = (int)v; break;
      case 4: o->page_size = (int)v; o->explicit_shape = 1; break;
      case 5: o->batch = (int)v; o->explicit_shape = 1; break;
      case 6: o->ctx_len = v; o->explicit_shape = 1; break;
      case 7: o->iters = (int)v; break;
      case 8: o->first_len = v; o->explicit_shape = 1; break;
      }
    }
  }
  if (o->q_heads % o->kv_heads) {
    fprintf(stderr, "pkv-bench: --q-heads %d is not a multiple of --kv-heads %d\n",
            o->q_heads, o->kv_heads);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* n random elements of dtype into dst (scaled to keep logits moderate). */
static void fill_random(void *dst, size_t n, pkv_dtype dt, float scale) {
  /* int8 pools: codes and their f32 scales share the buffer; bytes in
   * 1..63 are small codes, and as f32 scales finite values below 1 */
  if (dt == PKV_DTYPE_INT8) {
    for (size_t i = 0; i < n; i++)
      ((unsigned char *)dst)[i] = (unsigned char)(1 + (unsigned)((frand() + 1.0f) * 31.0f));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float f = frand() * scale;
    pkv_convert_from_f32(dt, &f, (char *)dst + i * pkv_dtype_size(dt), 1);
  }
}

static const char *dtype_name(pkv_dtype d) {
  switch (d) {
  case PKV_DTYPE_F32: return "f32";
  case PKV_DTYPE_F16: return "f16";
  case PKV_DTYPE_BF16: return "bf16";
  case PKV_DTYPE_FP8_E4M3: return "e4m3";
  case PKV_DTYPE_FP8_E5M2: return "e5m2";
  case PKV_DTYPE_INT8: return "int8";
  }
  return "?";
}

/* Quantized pools take q/out (and new K/V) in f16 through the kernel-level
 * layer; the others in their own dtype through pkv_attention. */
static int quantized(pkv_dtype d) {
  return d == PKV_DTYPE_FP8_E4M3 || d == PKV_DTYPE_FP8_E5M2 ||
         d == PKV_DTYPE_INT8;
}
static pkv_dtype io_dtype(pkv_dtype d) { return quantized(d) ? PKV_DTYPE_F16 : d; }

/* Bytes of K+V of one token in one layer: int8 adds a f32 scale per head
 * row (stored in the page). */
static double token_kv_bytes(pkv_dtype d, int kv_heads, int head_dim) {
  return 2.0 * kv_heads *
         ((double)head_dim * (double)pkv_dtype_size(d) + (d == PKV_DTYPE_INT8 ? 4.0 : 0.0));
}

static char errbuf[1024];
static int seterr(pkv_context *ctx, pkv_status st, const char *what) {
  snprintf(errbuf, sizeof errbuf, "%s: %s (%s)", what, pkv_last_error(ctx),
           pkv_status_name(st));
  return 0;
}
#define TRY(ctx, call)                                                        \
  do {                                                                        \
    pkv_status st_ = (call);                                                  \
    if (st_ != PKV_OK) return seterr((ctx), st_, #call);                      \
  } while (0)

/* Uploads random data of dtype over a whole buffer in bounded chunks. */
static int fill_buffer(pkv_context *ctx, pkv_buffer *b, pkv_dtype dt) {
  size_t esz = pkv_dtype_size(dt), total = pkv_buffer_size(b);
  size_t chunk = (size_t)16 << 20;
  if (chunk > total) chunk = total;
  chunk -= chunk % esz;
  if (!chunk) return 1;
  void *h = malloc(chunk);
  if (!h) {
    snprintf(errbuf, sizeof errbuf, "host allocation of %zu bytes", chunk);
    return 0;
  }
  fill_random(h, chunk / esz, dt, 1.0f);
  for (size_t off = 0; off < total; off += chunk) {
    size_t n = total - off < chunk ? total - off : chunk;
    pkv_status st = pkv_buffer_upload(b, off, h, n);
    if (st != PKV_OK) {
      free(h);
      return seterr(ctx, st, "pkv_buffer_upload");
    }
  }
  free(h);
  return 1;
}

/* ------------------------------------------------------------------ */
/* results                                                              */
/* ------------------------------------------------------------------ */

typedef struct row {
  char test[32];
  char config[80];
  double ms;            /* median per step; < 0: n/a */
  double bytes;         /* bytes read+written per step; 0: n/a */
  double gbps;          /* bytes / time; < 0: n/a */
  double of_copy;       /* gbps / copy gbps; < 0: n/a */
  double rate;          /* tokens/s, appends/s; < 0: n/a */
  char rate_unit[16];
  double ratio;         /* against the baseline named in ratio_label */
  char ratio_label[32];
  char note[160];
} row;

#define MAX_ROWS 64
static row rows[MAX_ROWS];
static int nrows, nfailed;

static row *add_row(const char *test, const char *fmt, ...) {
  if (nrows == MAX_ROWS) nrows--; /* never happens with the fixed plan */
  row *r = &rows[nrows++];
  memset(r, 0, sizeof *r);
  snprintf(r->test, sizeof r->test, "%s", test);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->config, sizeof r->config, fmt, ap);
  va_end(ap);
  r->ms = r->gbps = r->of_copy = r->rate = r->ratio = -1;
  return r;
}

static void row_failed(row *r) {
  snprintf(r->note, sizeof r->note, "FAILED: %.150s", errbuf);
  fprintf(stderr, "pkv-bench: %s [%s] failed: %s\n", r->test, r->config, errbuf);
  nfailed++;
}

/* ------------------------------------------------------------------ */
/* (a) copy bandwidth                                                   */
/* ------------------------------------------------------------------ */

static int bench_copy(pkv_context *ctx, size_t bytes, int iters, double *gbps,
                      double *ms) {
  pkv_buffer *a = NULL, *b = NULL;
  int ok = 0;
  double *t = calloc((size_t)iters, sizeof *t);
  pkv_status st;
  if (!t) return 0;
  if ((st = pkv_buffer_create(ctx, bytes, &a)) != PKV_OK ||
      (st = pkv_buffer_create(ctx, bytes, &b)) != PKV_OK) {
    seterr(ctx, st, "pkv_buffer_create");
    goto out;
  }
  if (!fill_buffer(ctx, a, PKV_DTYPE_F32)) goto out;
  /* warm-up: also faults in b's pages on a host backend */
  if ((st = pkv_buffer_copy(b, 0, a, 0, bytes)) != PKV_OK ||
      (st = pkv_context_synchronize(ctx)) != PKV_OK) {
    seterr(ctx, st, "pkv_buffer_copy");
    goto out;
  }
  for (int i = 0; i < iters; i++) {
    double t0 = tool_now_s();
    st = pkv_buffer_copy(b, 0, a, 0, bytes);
    if (st == PKV_OK) st = pkv_context_synchronize(ctx);
    if (st != PKV_OK) {
      seterr(ctx, st, "pkv_buffer_copy");
      goto out;
    }
    t[i] = tool_now_s() - t0;
  }
  double m = median(t, iters);
  *ms = m * 1e3;
  *gbps = 2.0 * (double)bytes / m / 1e9; /* read + write */
  ok = 1;
out:
  pkv_buffer_destroy(a);
  pkv_buffer_destroy(b);
  free(t);
  return ok;
}

/* ------------------------------------------------------------------ */
/* decode / prefill rigs                                                */
/* ------------------------------------------------------------------ */

/* --first-len: the first decode sequence has this many tokens instead of
 * --ctx-len (a skewed batch: one long request among short ones). */
static int64_t g_first_len;

typedef struct shape {
  pkv_dtype dtype;
  int head_dim, q_heads, kv_heads;
} shape;

typedef struct rig {
  pkv_context *ctx;
  pkv_cache *cache;
  pkv_batch *batch;
  pkv_buffer *q, *out, *k_new, *v_new;
  pkv_seq_id *seqs;
  int32_t *q_lens;
  int nseqs;
  int contiguous_pages; /* 1 when each sequence's pages are consecutive */
} rig;

static void rig_destroy(rig *r) {
  pkv_buffer_destroy(r->q);
  pkv_buffer_destroy(r->out);
  pkv_buffer_destroy(r->k_new);
  pkv_buffer_destroy(r->v_new);
  pkv_batch_destroy(r->batch);
  pkv_cache_destroy(r->cache);
  free(r->seqs);
  free(r->q_lens);
  memset(r, 0, sizeof *r);
}

/* Checks whether each sequence's pages run consecutively. */
static int pages_in_order(rig *r) {
  int in_order = 1;
  for (int s = 0; s < r->nseqs && in_order; s++) {
    int64_t n = 0;
    if (pkv_seq_pages(r->cache, r->seqs[s], NULL, 0, &n) != PKV_OK) return 0;
    int32_t *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p) return 0;
    if (pkv_seq_pages(r->cache, r->seqs[s], p, n, &n) == PKV_OK) {
      for (int64_t i = 1; i < n; i++)
        if (p[i] != p[i - 1] + 1) in_order = 0;
    } else {
      in_order = 0;
    }
    free(p);
  }
  return in_order;
}

/* A cache holding nseqs sequences of prior+q_len tokens each, with random
 * K/V, and a batch built for a step whose queries are the last q_len tokens.
 * contiguous: one sequence after the other (pages in order); otherwise the
 * sequences grow page by page in turn, so their pages interleave as under
 * continuous batching. */
static int rig_create(rig *r, pkv_context *ctx, const shape *sh, int page_size,
                      int nseqs, int64_t prior, int32_t q_len, int contiguous) {
  memset(r, 0, sizeof *r);
  r->ctx = ctx;
  r->nseqs = nseqs;
  int64_t len = prior + q_len;
  int64_t len0 = g_first_len > 0 && q_len == 1 ? g_first_len : len;
  int64_t pages_per_seq = (len + page_size - 1) / page_size;
  int64_t pages0 = (len0 + page_size - 1) / page_size;
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = 1;
  d.num_kv_heads = sh->kv_heads;
  d.head_dim = sh->head_dim;
  d.page_size = page_size;
  d.num_pages = pages_per_seq * (nseqs - 1) + pages0 + (contiguous ? 0 : nseqs);
  d.dtype = sh->dtype;
  TRY(ctx, pkv_cache_create(ctx, &d, &r->cache));
  r->seqs = calloc((size_t)nseqs, sizeof *r->seqs);
  r->q_lens = calloc((size_t)nseqs, sizeof *r->q_lens);
  if (!r->seqs || !r->q_lens) {
    snprintf(errbuf, sizeof errbuf, "host allocation");
    return 0;
  }
  for (int s = 0; s < nseqs; s++) {
    TRY(ctx, pkv_seq_open(r->cache, NULL, &r->seqs[s]));
    r->q_lens[s] = q_len;
  }
  if (contiguous) {
    for (int s = 0; s < nseqs; s++)
      TRY(ctx, pkv_seq_append(r->cache, r->seqs[s], s ? len : len0, NULL, NULL));
  } else {
    /* grow in turns of whole pages (at least 256 tokens per call keeps the
     * set-up of page-size-1 caches quick while still interleaving) */
    int64_t step = page_size < 256 ? page_size * ((256 + page_size - 1) / page_size)
                                   : page_size;
    if (nseqs == 1) step = len0;
    int64_t most = len0 > len ? len0 : len;
    for (int64_t done = 0; done < most; done += step)
      for (int s = 0; s < nseqs; s++) {
        int64_t ls = s ? len : len0;
        int64_t n = ls - done < step ? ls - done : step;
        if (n > 0) TRY(ctx, pkv_seq_append(r->cache, r->seqs[s], n, NULL, NULL));
      }
  }
  r->contiguous_pages = pages_in_order(r);
  pkv_buffer *k, *v;
  TRY(ctx, pkv_cache_kv(r->cache, 0, &k, &v));
  if (!fill_buffer(ctx, k, sh->dtype) || !fill_buffer(ctx, v, sh->dtype))
    return 0;
  const pkv_dtype io = io_dtype(sh->dtype);
  size_t esz = pkv_dtype_size(io);
  size_t ntok = (size_t)nseqs * (size_t)q_len;
  size_t qbytes = ntok * (size_t)sh->q_heads * (size_t)sh->head_dim * esz;
  size_t kvbytes = ntok * (size_t)sh->kv_heads * (size_t)sh->head_dim * esz;
  TRY(ctx, pkv_buffer_create(ctx, qbytes, &r->q));
  TRY(ctx, pkv_buffer_create(ctx, qbytes, &r->out));
  TRY(ctx, pkv_buffer_create(ctx, kvbytes, &r->k_new));
  TRY(ctx, pkv_buffer_create(ctx, kvbytes, &r->v_new));
  if (!fill_buffer(ctx, r->q, io) || !fill_buffer(ctx, r->k_new, io) ||
      !fill_buffer(ctx, r->v_new, io))
    return 0;
  TRY(ctx, pkv_batch_create(r->cache, &r->batch));
  TRY(ctx, pkv_batch_build(r->batch, r->seqs, nseqs, q_len == 1 ? NULL : r->q_lens));
  TRY(ctx, pkv_context_synchronize(ctx));
  return 1;
}

/* Median seconds of one step: attention only (decode) or K/V write plus
 * attention (prefill). One warm-up first. */
static int rig_time(rig *r, const shape *sh, int iters, int with_write,
                    double *sec) {
  pkv_attn_params p;
  pkv_attn_params_init(&p, sh->q_heads);
  double *t = calloc((size_t)iters, sizeof *t);
  if (!t) return 0;
  /* quantized pools: the kernel-level layer with f16 q/out/new K/V */
  const int kvl = quantized(sh->dtype);
  pkv_kv_view view;
  pkv_kv_table table;
  pkv_tensor qt, ot, kt, vt;
  pkv_batch_device dev;
  pkv_batch_device_init(&dev);
  pkv_kv_view_init(&view);
  pkv_kv_table_init(&table);
  pkv_tensor_init(&qt);
  pkv_tensor_init(&ot);
  pkv_tensor_init(&kt);
  pkv_tensor_init(&vt);
  qt.buf = r->q, ot.buf = r->out, kt.buf = r->k_new, vt.buf = r->v_new;
  qt.dtype = ot.dtype = kt.dtype = vt.dtype = PKV_DTYPE_F16;
  if (kvl) {
    pkv_status st = pkv_cache_kv_view(r->cache, 0, &view);
    if (st == PKV_OK) st = pkv_batch_get_table(r->batch, PKV_TABLE_DENSE, &table);
    if (st == PKV_OK) st = pkv_batch_get_device(r->batch, &dev);
    if (st != PKV_OK) {
      free(t);
      return seterr(r->ctx, st, "kernel-level view of the quantized cache");
    }
  }
  for (int i = -1; i < iters; i++) {
    double t0 = tool_now_s();
    pkv_status st = PKV_OK;
    if (with_write)
      st = kvl ? pkv_kv_write(r->ctx, &view, dev.slot_mapping, NULL,
                              table.num_tokens, &kt, &vt)
               : pkv_write_kv(r->batch, 0, r->k_new, r->v_new);
    if (st == PKV_OK)
      st = kvl ? pkv_kv_attention(r->ctx, &view, &table, &p, &qt, &ot, NULL)
               : pkv_attention(r->batch, 0, &p, r->q, r->out, NULL);
    if (st == PKV_OK) st = pkv_context_synchronize(r->ctx);
    if (st != PKV_OK) {
      free(t);
      return seterr(r->ctx, st, "pkv_attention");
    }
    if (i >= 0) t[i] = tool_now_s() - t0;
  }
  *sec = median(t, iters);
  free(t);
  return 1;
}

static double kv_bytes(const shape *sh, int nseqs, int64_t len) {
  double tokens = (double)nseqs * (double)len;
  if (g_first_len > 0) tokens += (double)(g_first_len - len);
  return tokens * token_kv_bytes(sh->dtype, sh->kv_heads, sh->head_dim);
}

static int decode_once(pkv_context *ctx, const shape *sh, int page_size,
                       int nseqs, int64_t len, int contiguous, int iters,
                       double *sec, int *in_order) {
  rig r;
  int ok = rig_create(&r, ctx, sh, page_size, nseqs, len - 1, 1, contiguous) &&
           rig_time(&r, sh, iters, 0, sec);
  if (ok && in_order) *in_order = r.contiguous_pages;
  rig_destroy(&r);
  return ok;
}

/* The page size of the contiguous baseline: the whole sequence in one page,
 * or, beyond the API's 1024-token page limit, the largest divisor of the
 * length up to 1024 with the sequence's pages allocated in order. */
static int contiguous_page_size(int64_t len) {
  if (len <= 1024) return (int)len;
  for (int p = 1024; p > 1; p--)
    if (len % p == 0) return p;
  return 1024;
}

/* ------------------------------------------------------------------ */
/* control plane                                                        */
/* ------------------------------------------------------------------ */

/* One decode-step batch build, synchronized, in seconds; 0 on failure. */
static int timed_build(pkv_context *ctx, pkv_batch *batch,
                       const pkv_seq_id *seqs, int nseqs, double *seconds) {
  double t0 = tool_now_s();
  pkv_status st = pkv_batch_build(batch, seqs, nseqs, NULL);
  if (st == PKV_OK) st = pkv_context_synchronize(ctx);
  if (st != PKV_OK) return seterr(ctx, st, "pkv_batch_build");
  *seconds = tool_now_s() - t0;
  return 1;
}

static int bench_control(pkv_context *ctx, int nseqs, int64_t len, int iters,
                         double *appends_per_s, int64_t *appends,
                         double *first_ms, double *incr_ms) {
  pkv_cache *cache = NULL;
  pkv_batch *batch = NULL;
  pkv_seq_id *seqs = calloc((size_t)nseqs, sizeof *seqs);
  double *t = calloc((size_t)iters, sizeof *t);
  int ok = 0;
  pkv_status st;
  if (!seqs || !t) goto out;
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  /* the smallest K/V footprint: the control plane does not depend on it */
  d.num_layers = 1;
  d.num_kv_heads = 1;
  d.head_dim = 64;
  d.page_size = 16;
  d.dtype = PKV_DTYPE_F16;
  d.num_pages = (int64_t)nseqs * ((len + iters + 1 + 15) / 16 + 1);
  if ((st = pkv_cache_create(ctx, &d, &cache)) != PKV_OK) {
    seterr(ctx, st, "pkv_cache_create");
    goto out;
  }
  for (int s = 0; s < nseqs; s++)
    if ((st = pkv_seq_open(cache, NULL, &seqs[s])) != PKV_OK) {
      seterr(ctx, st, "pkv_seq_open");
      goto out;
    }
  /* 1-token appends in turn across the sequences, as decode steps do */
  int64_t rounds = len < 1024 ? len : 1024;
  uint32_t lcg = 1;
  int32_t tok;
  int64_t slot;
  double t0 = tool_now_s();
  for (int64_t r = 0; r < rounds; r++)
    for (int s = 0; s < nseqs; s++) {
      lcg = lcg * 1103515245u + 12345u;
      tok = (int32_t)(lcg >> 1);
      if ((st = pkv_seq_append(cache, seqs[s], 1, &tok, &slot)) != PKV_OK) {
        seterr(ctx, st, "pkv_seq_append");
        goto out;
      }
    }
  double dt = tool_now_s() - t0;
  *appends = rounds * nseqs;
  *appends_per_s = (double)*appends / dt;
  for (int s = 0; s < nseqs && len > rounds; s++)
    if ((st = pkv_seq_append(cache, seqs[s], len - rounds, NULL, NULL)) != PKV_OK) {
      seterr(ctx, st, "pkv_seq_append");
      goto out;
    }
  if ((st = pkv_batch_create(cache, &batch)) != PKV_OK) {
    seterr(ctx, st, "pkv_batch_create");
    goto out;
  }
  double first_s;
  if (!timed_build(ctx, batch, seqs, nseqs, &first_s)) goto out;
  *first_ms = first_s * 1e3;
  /* decode steps: every sequence grows by one token, then the rebuild */
  for (int i = 0; i < iters; i++) {
    for (int s = 0; s < nseqs; s++)
      if ((st = pkv_seq_append(cache, seqs[s], 1, NULL, NULL)) != PKV_OK) {
        seterr(ctx, st, "pkv_seq_append");
        goto out;
      }
    if (!timed_build(ctx, batch, seqs, nseqs, &t[i])) goto out;
  }
  *incr_ms = median(t, iters) * 1e3;
  ok = 1;
out:
  pkv_batch_destroy(batch);
  pkv_cache_destroy(cache);
  free(seqs);
  free(t);
  return ok;
}

/* ------------------------------------------------------------------ */
/* output                                                               */
/* ------------------------------------------------------------------ */

static void print_table(FILE *f) {
  fprintf(f, "%-18s %-40s %10s %9s %7s %14s  %s\n", "test", "config",
          "median ms", "GB/s", "%copy", "rate", "comparison");
  for (int i = 0; i < nrows; i++) {
    const row *r = &rows[i];
    char ms[32] = "-", gb[32] = "-", pc[32] = "-", rate[48] = "-", cmp[64] = "";
    if (r->ms >= 0) snprintf(ms, sizeof ms, "%.3f", r->ms);
    if (r->gbps >= 0) snprintf(gb, sizeof gb, "%.1f", r->gbps);
    if (r->of_copy >= 0) snprintf(pc, sizeof pc, "%.0f%%", 100.0 * r->of_copy);
    if (r->rate >= 0) {
      if (r->rate >= 1e6) snprintf(rate, sizeof rate, "%.2fM %s", r->rate / 1e6, r->rate_unit);
      else if (r->rate >= 1e3) snprintf(rate, sizeof rate, "%.1fk %s", r->rate / 1e3, r->rate_unit);
      else snprintf(rate, sizeof rate, "%.1f %s", r->rate, r->rate_unit);
    }
    if (r->ratio >= 0) snprintf(cmp, sizeof cmp, "%.3fx %s", r->ratio, r->ratio_label);
    fprintf(f, "%-18s %-40s %10s %9s %7s %14s  %s%s%s\n", r->test, r->config, ms,
            gb, pc, rate, cmp, (*cmp && *r->note) ? "; " : "", r->note);
  }
}

static void csv_field(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static void print_csv(FILE *f, const char *backend, const char *device) {
  fprintf(f, "backend,device,test,config,median_ms,bytes_per_step,gbps,"
             "copy_ratio,rate,rate_unit,ratio,ratio_label,note\n");
  for (int i = 0; i < nrows; i++) {
    const row *r = &rows[i];
    csv_field(f, backend); fputc(',', f);
    csv_field(f, device); fputc(',', f);
    csv_field(f, r->test); fputc(',', f);
    csv_field(f, r->config); fputc(',', f);
#define NUM(x) do { if ((x) >= 0) fprintf(f, "%.6g", (x)); fputc(',', f); } while (0)
    NUM(r->ms);
    if (r->bytes > 0) fprintf(f, "%.0f", r->bytes);
    fputc(',', f);
    NUM(r->gbps);
    NUM(r->of_copy);
    NUM(r->rate);
#undef NUM
    csv_field(f, r->rate >= 0 ? r->rate_unit : ""); fputc(',', f);
    if (r->ratio >= 0) fprintf(f, "%.6g", r->ratio);
    fputc(',', f);
    csv_field(f, r->ratio >= 0 ? r->ratio_label : ""); fputc(',', f);
    csv_field(f, r->note);
    fputc('\n', f);
  }
}

/* ------------------------------------------------------------------ */
/* main                                                                 */
/* ------------------------------------------------------------------ */

typedef struct decode_cfg {
  int page, batch;
  int64_t len;
} decode_cfg;

int main(int argc, char **argv) {
  options o;
  if (!parse_options(argc, argv, &o)) return 2;

  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = o.backend;
  cd.device = o.device;
  pkv_context *ctx = NULL;
  pkv_status st = pkv_context_create(&cd, &ctx);
  if (st != PKV_OK) {
    fprintf(stderr, "pkv-bench: cannot create a context: %s\n", pkv_last_error(NULL));
    return 1;
  }
  pkv_device_info info;
  pkv_device_info_init(&info);
  pkv_context_device_info(ctx, &info);
  pkv_backend_kind kind = pkv_context_backend(ctx);
  const char *bname = pkv_backend_name(kind);
  int gpu = info.type == PKV_DEVICE_GPU;
  int ver[3];
  pkv_version(&ver[0], &ver[1], &ver[2]);

  shape sh = {o.dtype, o.head_dim, o.q_heads, o.kv_heads};
  g_first_len = o.first_len;
  int iters = o.iters ? o.iters : (gpu && !o.quick ? 20 : 3);
  size_t copy_bytes = o.quick ? (size_t)64 << 20 : gpu ? (size_t)1 << 30 : (size_t)256 << 20;
  if (info.global_mem_bytes && copy_bytes > info.global_mem_bytes / 8)
    copy_bytes = (size_t)(info.global_mem_bytes / 8);
  copy_bytes &= ~(size_t)4095;

  /* the primary decode shape: the f16 d128 32q/8kv p16 16x4096 */
  decode_cfg main_cfg = {o.page_size ? o.page_size : 16,
                         o.batch ? o.batch : (o.quick ? 4 : 16),
                         o.ctx_len ? o.ctx_len : (o.quick ? 1024 : 4096)};
  decode_cfg extra[8];
  int nextra = 0;
  if (gpu && !o.quick && !o.explicit_shape) {
    extra[nextra++] = (decode_cfg){1, 64, 4096};
    extra[nextra++] = (decode_cfg){16, 64, 4096};
    extra[nextra++] = (decode_cfg){128, 64, 4096};
    extra[nextra++] = (decode_cfg){16, 1, 131072};
  }
  /* the CPU reference's prefill cost grows with new x cached tokens */
  int64_t pf_tokens = o.quick ? 64 : gpu ? 4096 : 128;
  int64_t pf_prior = o.quick ? 256 : gpu ? 16384 : 512;
  int pf_iters = gpu || iters < 3 ? iters : 3;
  int cp_seqs = 256;
  int64_t cp_len = o.quick ? 2048 : 32768;

  if (!o.csv) {
    printf("pkv-bench: pagedkv %d.%d.%d, backend %s, device %d: %s (%s%s%s), %s\n",
           ver[0], ver[1], ver[2], bname, info.index, info.name, info.vendor,
           *info.driver ? ", " : "", info.driver,
           gpu ? "GPU" : info.type == PKV_DEVICE_CPU ? "CPU" : "other");
    printf("shape: %s K/V, head dim %d, %d q / %d kv heads; median of %d runs after one warm-up\n\n",
           dtype_name(sh.dtype), sh.head_dim, sh.q_heads, sh.kv_heads, iters);
    fflush(stdout);
  }

  /* (a) copy bandwidth */
  double copy_gbps = -1, copy_ms = 0;
  {
    row *r = add_row("copy", "pkv_buffer_copy %zu MiB", copy_bytes >> 20);
    if (bench_copy(ctx, copy_bytes, iters, &copy_gbps, &copy_ms)) {
      r->ms = copy_ms;
      r->bytes = 2.0 * (double)copy_bytes;
      r->gbps = copy_gbps;
      r->of_copy = 1.0;
      snprintf(r->note, sizeof r->note, "baseline: bytes read + written");
    } else {
      row_failed(r);
    }
  }

  /* (b) + (c) decode, paged and contiguous */
  decode_cfg all[9];
  int nall = 0;
  all[nall++] = main_cfg;
  for (int i = 0; i < nextra; i++) all[nall++] = extra[i];
  double main_paged_s = -1;
  double contig_of[9];
  for (int i = 0; i < nall; i++) {
    contig_of[i] = -1;
    decode_cfg c = all[i];
    double need = kv_bytes(&sh, c.batch, c.len) * 1.1;
    if (info.global_mem_bytes && need > 0.6 * (double)info.global_mem_bytes) {
      row *r = add_row("decode paged", "%s p%d %dx%lld", dtype_name(sh.dtype),
                       c.page, c.batch, (long long)c.len);
      snprintf(r->note, sizeof r->note, "skipped: needs %.1f GB of %.1f GB",
               need / 1e9, (double)info.global_mem_bytes / 1e9);
      continue;
    }
    /* the contiguous baseline is shared by configs of equal batch x len */
    double contig_s = -1;
    int contig_done = 0;
    for (int j = 0; j < i; j++)
      if (all[j].batch == c.batch && all[j].len == c.len) {
        contig_done = 1;
        contig_s = contig_of[j];
      }
    double bytes = kv_bytes(&sh, c.batch, c.len);
    double paged_s = -1;
    int in_order = 0;
    row *r = g_first_len > 0
                 ? add_row("decode paged", "%s p%d 1x%lld+%dx%lld", dtype_name(sh.dtype),
                           c.page, (long long)g_first_len, c.batch - 1,
                           (long long)c.len)
                 : add_row("decode paged", "%s p%d %dx%lld", dtype_name(sh.dtype),
                           c.page, c.batch, (long long)c.len);
    if (decode_once(ctx, &sh, c.page, c.batch, c.len, 0, iters, &paged_s,
                    &in_order)) {
      r->ms = paged_s * 1e3;
      r->bytes = bytes;
      r->gbps = bytes / paged_s / 1e9;
      if (copy_gbps > 0) r->of_copy = r->gbps / copy_gbps;
      r->rate = c.batch / paged_s;
      snprintf(r->rate_unit, sizeof r->rate_unit, "tok/s");
      snprintf(r->note, sizeof r->note, "K/V read %.1f MB/step", bytes / 1e6);
      if (i == 0) main_paged_s = paged_s;
    } else {
      row_failed(r);
    }
    if (!contig_done) {
      int cp = contiguous_page_size(c.len);
      row *rc = add_row("decode contiguous", "%s p%d %dx%lld", dtype_name(sh.dtype),
                        cp, c.batch, (long long)c.len);
      if (decode_once(ctx, &sh, cp, c.batch, c.len, 1, iters, &contig_s,
                      &in_order)) {
        rc->ms = contig_s * 1e3;
        rc->bytes = bytes;
        rc->gbps = bytes / contig_s / 1e9;
        if (copy_gbps > 0) rc->of_copy = rc->gbps / copy_gbps;
        rc->rate = c.batch / contig_s;
        snprintf(rc->rate_unit, sizeof rc->rate_unit, "tok/s");
        snprintf(rc->note, sizeof rc->note, "%s",
                 in_order ? "pages of each sequence in order"
                          : "WARNING: pages not in order");
      } else {
        row_failed(rc);
        contig_s = -1;
      }
    }
    contig_of[i] = contig_s;
    if (paged_s > 0 && contig_s > 0) {
      r->ratio = paged_s / contig_s;
      snprintf(r->ratio_label, sizeof r->ratio_label, "paged/contig time");
    }
  }

  /* (d) prefill over an empty and a filled cache */
  for (int pass = 0; pass < 2; pass++) {
    int64_t prior = pass ? pf_prior : 0;
    row *r = add_row("prefill", "%s p16 %lld new over %lld cached",
                     dtype_name(sh.dtype), (long long)pf_tokens, (long long)prior);
    rig rg;
    double s = -1;
    if (rig_create(&rg, ctx, &sh, 16, 1, prior, (int32_t)pf_tokens, 0) &&
        rig_time(&rg, &sh, pf_iters, 1, &s)) {
      r->ms = s * 1e3;
      r->rate = (double)pf_tokens / s;
      snprintf(r->rate_unit, sizeof r->rate_unit, "tok/s");
      snprintf(r->note, sizeof r->note, "K/V write + causal attention");
    } else {
      row_failed(r);
    }
    rig_destroy(&rg);
  }

  /* (e) the CPU reference on the same decode */
  if (kind != PKV_BACKEND_CPU) {
    row *r = add_row("decode cpu ref", "%s p%d %dx%lld", dtype_name(sh.dtype),
                     main_cfg.page, main_cfg.batch, (long long)main_cfg.len);
    pkv_context_desc cpud;
    pkv_context_desc_init(&cpud);
    cpud.backend = PKV_BACKEND_CPU;
    pkv_context *cpu = NULL;
    double s = -1;
    int cpu_iters = iters < 3 ? iters : 3;
    st = pkv_context_create(&cpud, &cpu);
    if (st != PKV_OK) {
      seterr(NULL, st, "pkv_context_create(cpu)");
      row_failed(r);
    } else if (decode_once(cpu, &sh, main_cfg.page, main_cfg.batch,
                           main_cfg.len, 0, cpu_iters, &s, NULL)) {
      double bytes = kv_bytes(&sh, main_cfg.batch, main_cfg.len);
      r->ms = s * 1e3;
      r->bytes = bytes;
      r->gbps = bytes / s / 1e9;
      r->rate = main_cfg.batch / s;
      snprintf(r->rate_unit, sizeof r->rate_unit, "tok/s");
      if (main_paged_s > 0) {
        r->ratio = s / main_paged_s;
        snprintf(r->ratio_label, sizeof r->ratio_label, "%s speedup", bname);
      }
      snprintf(r->note, sizeof r->note, "median of %d", cpu_iters);
    } else {
      row_failed(r);
    }
    pkv_context_destroy(cpu);
  }

  /* (g) quantized K/V against f16, same decode shape, same run */
  {
    shape f16 = sh;
    f16.dtype = PKV_DTYPE_F16;
    double base_s = -1;
    if (sh.dtype == PKV_DTYPE_F16) {
      base_s = main_paged_s;
    } else {
      row *r = add_row("decode dtype", "%s p%d %dx%lld", "f16", main_cfg.page,
                       main_cfg.batch, (long long)main_cfg.len);
      if (decode_once(ctx, &f16, main_cfg.page, main_cfg.batch, main_cfg.len, 0,
                      iters, &base_s, NULL)) {
        r->ms = base_s * 1e3;
        r->bytes = kv_bytes(&f16, main_cfg.batch, main_cfg.len);
        r->gbps = r->bytes / base_s / 1e9;
        snprintf(r->note, sizeof r->note, "baseline of the quantized rows");
      } else {
        row_failed(r);
        base_s = -1;
      }
    }
    const pkv_dtype defaults[3] = {PKV_DTYPE_FP8_E4M3, PKV_DTYPE_FP8_E5M2, PKV_DTYPE_INT8};
    const pkv_dtype *qd = o.ndtypes ? o.dtypes : defaults;
    const int nqd = o.ndtypes ? o.ndtypes : 3;
    for (int i = 0; i < nqd; i++) {
      shape q = sh;
      q.dtype = qd[i];
      row *r = add_row("decode dtype", "%s p%d %dx%lld", dtype_name(q.dtype),
                       main_cfg.page, main_cfg.batch, (long long)main_cfg.len);
      const double btok = token_kv_bytes(q.dtype, q.kv_heads, q.head_dim),
                   bf16tok = token_kv_bytes(PKV_DTYPE_F16, q.kv_heads, q.head_dim);
      double s = -1;
      if (decode_once(ctx, &q, main_cfg.page, main_cfg.batch, main_cfg.len, 0,
                      iters, &s, NULL)) {
        r->ms = s * 1e3;
        r->bytes = kv_bytes(&q, main_cfg.batch, main_cfg.len);
        r->gbps = r->bytes / s / 1e9;
        r->rate = main_cfg.batch / s;
        snprintf(r->rate_unit, sizeof r->rate_unit, "tok/s");
        if (base_s > 0) {
          r->ratio = s / base_s;
          snprintf(r->ratio_label, sizeof r->ratio_label, "time of f16");
        }
        snprintf(r->note, sizeof r->note,
                 "%.0f B/token/layer K+V (f16 %.0f: %.2fx)", btok, bf16tok,
                 btok / bf16tok);
      } else if (strstr(errbuf, "PKV_ERR_UNSUPPORTED")) {
        snprintf(r->note, sizeof r->note, "skipped: the %s backend has no %s",
                 bname, dtype_name(q.dtype));
      } else {
        row_failed(r);
      }
    }
  }

  /* (f) control plane */
  {
    double aps = -1, first = -1, incr = -1;
    int64_t napp = 0;
    row *ra = add_row("appends", "1-token appends over %d seqs", cp_seqs);
    row *rf = add_row("batch build first", "%d seqs x %lld tok, p16", cp_seqs,
                      (long long)cp_len);
    row *ri = add_row("batch build step", "%d seqs x %lld tok, p16, +1 tok",
                      cp_seqs, (long long)cp_len);
    /* The pool of this test (head dim 64, 1 kv head, f16, page 16) may pass
     * a device's largest single allocation (PoCL: a fraction of RAM): then
     * the control plane, which is host code, is timed on the CPU backend. */
    pkv_context *cpctx = ctx, *cpuctx = NULL;
    double pool_bytes = (double)cp_seqs * (double)(cp_len + iters + 17) * 64 * 2;
    if (kind != PKV_BACKEND_CPU && info.max_alloc_bytes &&
        pool_bytes > 0.9 * (double)info.max_alloc_bytes) {
      pkv_context_desc cpud;
      pkv_context_desc_init(&cpud);
      cpud.backend = PKV_BACKEND_CPU;
      if (pkv_context_create(&cpud, &cpuctx) == PKV_OK) cpctx = cpuctx;
    }
    int cp_ok = bench_control(cpctx, cp_seqs, cp_len, iters, &aps, &napp,
                              &first, &incr);
    if (cpuctx) {
      pkv_context_destroy(cpuctx);
      if (cp_ok)
        for (row *x = ra; x <= ri; x++)
          snprintf(x->config + strlen(x->config), sizeof x->config - strlen(x->config),
                   " (cpu: pool > max alloc)");
    }
    if (cp_ok) {
      ra->rate = aps;
      snprintf(ra->rate_unit, sizeof ra->rate_unit, "app/s");
      snprintf(ra->note, sizeof ra->note, "%lld appends, %.3f us each",
               (long long)napp, 1e6 / aps);
      rf->ms = first;
      snprintf(rf->note, sizeof rf->note, "every row copied and uploaded");
      ri->ms = incr;
      ri->ratio = first / incr;
      snprintf(ri->ratio_label, sizeof ri->ratio_label, "cheaper than first");
      snprintf(ri->note, sizeof ri->note, "decode step: only changed rows");
    } else {
      row_failed(ra);
      row_failed(rf);
      row_failed(ri);
    }
  }

  if (o.csv) print_csv(stdout, bname, info.name);
  else print_table(stdout);
  pkv_context_destroy(ctx);
  return nfailed ? 1 : 0;
}
