/* SPDX-License-Identifier: Apache-2.0 */
/* OpenCL backend: device selection, error messages, the program binary
 * cache, and the kernels (driven through the backend struct) against a
 * small double-precision reference (tests/ocl_ref.h). The full grid
 * against the CPU reference backend is pkv-conformance's job. */
#include "ocl.h"
#include "ocl_ref.h"
#include "rm_tree.h"
#include "tap.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char cache_dir[256];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pkv_context *make_ctx(unsigned flags, const char *dir) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  d.flags = flags;
  d.cache_dir = dir;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&d, &ctx) != PKV_OK) {
    diag("context: %s", pkv_last_error(NULL));
    return NULL;
  }
  return ctx;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* ------------------------------------------------------------ selection */
static void test_selection(const pkv_device_info *dev) {
  pkv_context_desc d;
  pkv_context *ctx = NULL;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;

  setenv("PKV_OPENCL_DEVICE", "0", 1);
  is_int(pkv_context_create(&d, &ctx), PKV_OK, "PKV_OPENCL_DEVICE=0 opens a device");
  if (ctx) ok(strcmp(ctx->info.name, dev[0].name) == 0, "device 0 is the first listed");
  pkv_context_destroy(ctx);
  ctx = NULL;

  setenv("PKV_OPENCL_DEVICE", "99", 1);
  is_int(pkv_context_create(&d, &ctx), PKV_ERR_RANGE, "PKV_OPENCL_DEVICE=99 is out of range");
  ok(contains(pkv_last_error(NULL), "PKV_OPENCL_DEVICE"), "message names the variable: %s",
     pkv_last_error(NULL));

  /* A name substring, in other case: the first 5 letters, upper-cased. */
  char sub[8] = {0};
  for (int i = 0; i < 5 && dev[0].name[i]; i++)
    sub[i] = (char)((dev[0].name[i] >= 'a' && dev[0].name[i] <= 'z') ? dev[0].name[i] - 32
                                                                         : dev[0].name[i]);
  setenv("PKV_OPENCL_DEVICE", sub, 1);
  is_int(pkv_context_create(&d, &ctx), PKV_OK, "PKV_OPENCL_DEVICE='%s' matches by name", sub);
  pkv_context_destroy(ctx);
  ctx = NULL;

  setenv("PKV_OPENCL_DEVICE", "no-such-device-xyz", 1);
  is_int(pkv_context_create(&d, &ctx), PKV_ERR_NOT_FOUND, "unknown device name is NOT_FOUND");
  unsetenv("PKV_OPENCL_DEVICE");

  setenv("PKV_OPENCL_PLATFORM", "no-such-platform", 1);
  is_int(pkv_context_create(&d, &ctx), PKV_ERR_NOT_FOUND, "unknown platform name is NOT_FOUND");
  char psub[8] = {0};
  memcpy(psub, dev[0].platform, 4);
  setenv("PKV_OPENCL_PLATFORM", psub, 1);
  is_int(pkv_context_create(&d, &ctx), PKV_OK, "PKV_OPENCL_PLATFORM='%s' matches", psub);
  pkv_context_destroy(ctx);
  ctx = NULL;
  unsetenv("PKV_OPENCL_PLATFORM");

  d.device_name = "no-such-device-xyz";
  is_int(pkv_context_create(&d, &ctx), PKV_ERR_NOT_FOUND, "desc.device_name is honoured");
  d.device_name = NULL;
  d.device = 1000;
  is_int(pkv_context_create(&d, &ctx), PKV_ERR_RANGE, "desc.device 1000 is out of range");
}

/* --------------------------------------------------- native objects, errors */
static void test_native_and_errors(void) {
  cl_platform_id plat;
  cl_device_id dev;
  cl_int err = clGetPlatformIDs(1, &plat, NULL);
  if (err == CL_SUCCESS) err = clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL);
  cl_context c = err == CL_SUCCESS ? clCreateContext(NULL, 1, &dev, NULL, NULL, &err) : NULL;
  cl_command_queue q = c ? clCreateCommandQueue(c, dev, 0, &err) : NULL;
  if (!q) {
    skip(6, "could not create an engine-side OpenCL context");
    return;
  }
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_OPENCL;
  d.native_context = c;
  d.native_queue = q;
  pkv_context *ctx = NULL;
  cl_mem engine = clCreateBuffer(c, CL_MEM_READ_WRITE, 256, NULL, &err);
  cl_uint refs0 = 0, refs = 0;
  clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof refs0, &refs0, NULL);
  is_int(pkv_context_create(&d, &ctx), PKV_OK, "engine cl_context + queue accepted");
  pkv_buffer *b = NULL;
  int32_t in[64], out[64];
  for (int i = 0; i < 64; i++) in[i] = i * 7 - 3;
  int good = ctx && pkv_buffer_wrap(ctx, engine, 256, &b) == PKV_OK &&
             pkv_buffer_upload(b, 0, in, sizeof in) == PKV_OK &&
             pkv_buffer_download(b, 0, out, sizeof out) == PKV_OK &&
             memcmp(in, out, sizeof in) == 0;
  ok(good, "wrapped engine cl_mem round-trips data");

  /* An allocation beyond the device limit fails with the CL call and name. */
  pkv_buffer *huge = NULL;
  pkv_status st = ctx ? pkv_buffer_create(ctx, (size_t)1 << 52, &huge) : PKV_ERR_NULL;
  is_int(st, PKV_ERR_DEVICE, "oversized buffer is PKV_ERR_DEVICE");
  ok(ctx && contains(pkv_last_error(ctx), "clCreateBuffer: CL_"),
     "message names the call and the CL error: %s", ctx ? pkv_last_error(ctx) : "");

  pkv_buffer_destroy(b);
  pkv_context_destroy(ctx);
  clGetContextInfo(c, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL);
  is_int(refs, refs0, "engine context is retained, not owned (refcount restored)");
  ok(clReleaseMemObject(engine) == CL_SUCCESS && clReleaseCommandQueue(q) == CL_SUCCESS,
     "engine objects still valid after the context is destroyed");
  clReleaseContext(c);
}

static void test_error_names(pkv_context *ctx) {
  ok(strcmp(pkv__ocl_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES") == 0,
     "CL error -5 is named CL_OUT_OF_RESOURCES");
  ok(strcmp(pkv__ocl_error_name(CL_INVALID_KERNEL_ARGS), "CL_INVALID_KERNEL_ARGS") == 0,
     "CL error -52 is named CL_INVALID_KERNEL_ARGS");
  /* A head dim the kernels reject at compile time: the build log comes back. */
  pkv_ocl_program *p = NULL;
  is_int(pkv__ocl_program_get(ctx, 72, 0, &p), PKV_ERR_BUILD, "bad build is PKV_ERR_BUILD");
  ok(contains(pkv_last_error(ctx), "multiple of 16"), "message carries the build log: %.300s",
     pkv_last_error(ctx));
}

/* ------------------------------------------------------------ binary cache */
static int count_entries(const char *dir, char *first, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 6 && strcmp(e->d_name + l - 6, ".clbin") == 0) {
      if (n == 0 && first) snprintf(first, cap, "%s/%s", dir, e->d_name);
      n++;
    }
  }
  closedir(d);
  return n;
}

/* Context creation plus program build, as an engine's start-up sees it. */
static double start(const char *dir, unsigned flags, int *from_cache) {
  double t0 = now_s();
  pkv_context *ctx = make_ctx(flags, dir);
  pkv_ocl_program *p = NULL;
  *from_cache = -1;
  if (ctx && pkv__ocl_program_get(ctx, 128, PKV_DTYPE_F16, &p) == PKV_OK)
    *from_cache = p->from_binary_cache;
  else if (ctx)
    diag("build: %s", pkv_last_error(ctx));
  double t = now_s() - t0;
  pkv_context_destroy(ctx);
  return t;
}

static void test_binary_cache(void) {
  char dir[300], entry[600];
  snprintf(dir, sizeof dir, "%s/bincache", cache_dir);
  int fc;
  double t1 = start(dir, 0, &fc);
  is_int(fc, 0, "first start builds from source");
  is_int(count_entries(dir, entry, sizeof entry), 1, "one cache entry written");
  double t2 = start(dir, 0, &fc);
  is_int(fc, 1, "second start loads the binary");
  ok(t2 < t1, "second start is faster: first %.3f s, second %.3f s", t1, t2);
  diag("program start-up: first (compile) %.3f s, second (binary cache) %.3f s", t1, t2);

  /* Corrupt the payload: detected by the checksum, rebuilt, rewritten. */
  FILE *f = fopen(entry, "r+b");
  if (f) {
    fseek(f, 100, SEEK_SET);
    fputc(0x5a, f);
    fputc(0xa5, f);
    fclose(f);
  }
  start(dir, 0, &fc);
  is_int(fc, 0, "corrupt entry is rebuilt, not trusted");
  start(dir, 0, &fc);
  is_int(fc, 1, "rebuilt entry is valid again");
  /* Truncated file (a crash mid-write elsewhere) and a foreign one. */
  f = fopen(entry, "wb");
  if (f) {
    fputs("PKVCLB01 garbage", f);
    fclose(f);
  }
  start(dir, 0, &fc);
  is_int(fc, 0, "truncated/foreign entry is rebuilt");

  char off[300];
  snprintf(off, sizeof off, "%s/off", cache_dir);
  start(off, PKV_CTX_NO_BINARY_CACHE, &fc);
  is_int(count_entries(off, NULL, 0), 0, "PKV_CTX_NO_BINARY_CACHE writes nothing");
  setenv("PKV_NO_BINARY_CACHE", "1", 1);
  start(off, 0, &fc);
  is_int(count_entries(off, NULL, 0), 0, "PKV_NO_BINARY_CACHE=1 writes nothing");
  unsetenv("PKV_NO_BINARY_CACHE");
}

/* ------------------------------------------------------------ kernels */
typedef struct kcase {
  int dim, page_size, heads, group;
  pkv_dtype dtype;
  pkv_layout layout;
  int nseq;
  int kv_lens[4], q_lens[4];
  int causal, window;
  float softcap;
  int alibi;
} kcase;

static pkv_buffer *dev_buf(pkv_context *ctx, const void *src, size_t bytes) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(ctx, bytes ? bytes : 16, &b) != PKV_OK) return NULL;
  if (src && bytes) pkv_buffer_upload(b, 0, src, bytes);
  return b;
}

static void fill_nan(void *raw, pkv_dtype dt, size_t n) {
  for (size_t i = 0; i < n; i++) ref_put(raw, dt, i, NAN);
}

static void run_case(pkv_context *ctx, const kcase *kc) {
  const size_t es = pkv_dtype_size(kc->dtype);
  const int qheads = kc->heads * kc->group;
  int max_pages = 1, total_pages = 2, ntok = 0, nq = 0, max_q = 0, max_kv = 0;
  for (int s = 0; s < kc->nseq; s++) {
    int np = (kc->kv_lens[s] + kc->page_size - 1) / kc->page_size;
    if (np > max_pages) max_pages = np;
    total_pages += np;
    ntok += kc->kv_lens[s];
    nq += kc->q_lens[s];
    if (kc->q_lens[s] > max_q) max_q = kc->q_lens[s];
    if (kc->kv_lens[s] > max_kv) max_kv = kc->kv_lens[s];
  }
  ref_geom g = ref_make_geom(kc->heads, kc->dim, kc->page_size, total_pages, kc->dtype,
                             kc->layout);
  pkv_cache_geometry geom = {sizeof geom, 1, kc->heads, kc->dim, kc->page_size, total_pages,
                             kc->dtype, kc->layout, g.page_stride, g.head_stride,
                             g.token_stride, (size_t)g.page_stride * es,
                             (size_t)g.page_stride * es * (size_t)total_pages, 0};
  size_t pool_elems = (size_t)g.page_stride * (size_t)total_pages;
  /* Pages in shuffled order; the two spare pages stay NaN. */
  int32_t *perm = malloc(sizeof(int32_t) * (size_t)total_pages);
  for (int i = 0; i < total_pages; i++) perm[i] = i;
  for (int i = total_pages - 1; i > 0; i--) {
    int j = (int)((ref_uniform() + 1) * 0.5 * (i + 1)) % (i + 1);
    int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  int32_t *bt = calloc((size_t)kc->nseq * (size_t)max_pages, sizeof(int32_t));
  int32_t seq_lens[4], q_indptr[5] = {0};
  int used = 0;
  for (int s = 0; s < kc->nseq; s++) {
    int np = (kc->kv_lens[s] + kc->page_size - 1) / kc->page_size;
    for (int p = 0; p < np; p++) bt[s * max_pages + p] = perm[used++];
    seq_lens[s] = kc->kv_lens[s];
    q_indptr[s + 1] = q_indptr[s] + kc->q_lens[s];
  }
  /* Tokens to write, with padding entries (slot -1) of poisoned data. */
  int nw = ntok + ntok / 6 + 2; /* one padding entry per 7 */
  size_t row = (size_t)kc->heads * kc->dim;
  void *ksrc = malloc((size_t)nw * row * es), *vsrc = malloc((size_t)nw * row * es);
  int64_t *slots = malloc(sizeof(int64_t) * (size_t)nw);
  void *kexp = malloc(pool_elems * es), *vexp = malloc(pool_elems * es);
  fill_nan(kexp, kc->dtype, pool_elems);
  fill_nan(vexp, kc->dtype, pool_elems);
  int w = 0;
  for (int s = 0; s < kc->nseq; s++)
    for (int j = 0; j < kc->kv_lens[s]; j++) {
      if (w % 7 == 3) {
        slots[w] = -1;
        for (size_t e = 0; e < row; e++) {
          ref_put(ksrc, kc->dtype, (size_t)w * row + e, 1000.0f);
          ref_put(vsrc, kc->dtype, (size_t)w * row + e, 1000.0f);
        }
        w++;
      }
      int page = bt[s * max_pages + j / kc->page_size], off = j % kc->page_size;
      slots[w] = (int64_t)page * kc->page_size + off;
      for (int h = 0; h < kc->heads; h++)
        for (int d = 0; d < kc->dim; d++) {
          float kv = (float)ref_uniform(), vv = (float)ref_uniform();
          size_t si = (size_t)w * row + (size_t)h * kc->dim + d;
          size_t di = (size_t)((int64_t)page * g.page_stride + h * g.head_stride +
                               off * g.token_stride + d);
          ref_put(ksrc, kc->dtype, si, kv);
          ref_put(vsrc, kc->dtype, si, vv);
          ref_put(kexp, kc->dtype, di, kv);
          ref_put(vexp, kc->dtype, di, vv);
        }
      w++;
    }
  nw = w;
  void *qh = malloc((size_t)(nq ? nq : 1) * qheads * kc->dim * es);
  for (size_t i = 0; i < (size_t)nq * qheads * kc->dim; i++)
    ref_put(qh, kc->dtype, i, (float)ref_uniform());
  float alibi[64];
  for (int i = 0; i < qheads; i++) alibi[i] = 0.5f / (float)(i + 1);

  pkv_buffer *kp = dev_buf(ctx, kexp, pool_elems * es); /* NaN first */
  pkv_buffer *vp = dev_buf(ctx, vexp, pool_elems * es);
  void *nanpool = malloc(pool_elems * es);
  fill_nan(nanpool, kc->dtype, pool_elems);
  pkv_buffer_upload(kp, 0, nanpool, pool_elems * es);
  pkv_buffer_upload(vp, 0, nanpool, pool_elems * es);
  pkv_buffer *kb = dev_buf(ctx, ksrc, (size_t)nw * row * es),
             *vb = dev_buf(ctx, vsrc, (size_t)nw * row * es),
             *sb = dev_buf(ctx, slots, sizeof(int64_t) * (size_t)nw);
  pkv_write_args wa = {&geom, kp, vp, kb, vb, sb, slots, nw, 0, 0, 0, 0, 0, 0, 0, PKV_DTYPE_F32, NULL, NULL};
  pkv_status st = ctx->ops->write_kv(ctx, &wa);
  void *kgot = malloc(pool_elems * es), *vgot = malloc(pool_elems * es);
  pkv_buffer_download(kp, 0, kgot, pool_elems * es);
  pkv_buffer_download(vp, 0, vgot, pool_elems * es);
  char name[200];
  snprintf(name, sizeof name, "D%d ps%d H%d G%d %s %s seqs %d causal %d win %d cap %g alibi %d",
           kc->dim, kc->page_size, kc->heads, kc->group,
           kc->dtype == PKV_DTYPE_F32 ? "f32" : kc->dtype == PKV_DTYPE_F16 ? "f16" : "bf16",
           kc->layout == PKV_LAYOUT_HND ? "HND" : "NHD", kc->nseq, kc->causal, kc->window,
           (double)kc->softcap, kc->alibi);
  ok(st == PKV_OK && memcmp(kgot, kexp, pool_elems * es) == 0 &&
         memcmp(vgot, vexp, pool_elems * es) == 0,
     "write_kv bitwise, padding skipped: %s", name);

  /* Attention into NaN-filled outputs. */
  size_t on = (size_t)nq * qheads * kc->dim;
  pkv_buffer *qb = dev_buf(ctx, qh, on * es), *ob = dev_buf(ctx, NULL, on * es + 16),
             *lb = dev_buf(ctx, NULL, sizeof(float) * ((size_t)nq * qheads + 1)),
             *btb = dev_buf(ctx, bt, sizeof(int32_t) * (size_t)kc->nseq * max_pages),
             *slb = dev_buf(ctx, seq_lens, sizeof(int32_t) * (size_t)kc->nseq),
             *qib = dev_buf(ctx, q_indptr, sizeof(int32_t) * (size_t)(kc->nseq + 1));
  void *onan = malloc(on * es + 16);
  fill_nan(onan, kc->dtype, on + 16 / es);
  pkv_buffer_upload(ob, 0, onan, on * es + 16);
  float scale = 1.0f / sqrtf((float)kc->dim);
  pkv_attn_args aa;
  memset(&aa, 0, sizeof aa);
  aa.geom = &geom;
  aa.k_pool = kp;
  aa.v_pool = vp;
  aa.num_seqs = kc->nseq;
  aa.max_pages = max_pages;
  aa.num_tokens = nq;
  aa.max_q_len = max_q;
  aa.max_kv_len = max_kv;
  aa.h_block_table = bt;
  aa.h_seq_lens = seq_lens;
  aa.h_q_indptr = q_indptr;
  aa.block_table = btb;
  aa.seq_lens = slb;
  aa.q_indptr = qib;
  aa.q = qb;
  aa.out = ob;
  aa.lse = lb;
  aa.q_dtype = aa.o_dtype = kc->dtype;
  aa.num_q_heads = qheads;
  aa.scale = scale;
  aa.softcap = kc->softcap;
  aa.causal = kc->causal;
  aa.window_left = kc->window;
  aa.h_alibi = kc->alibi ? alibi : NULL;
  st = ctx->ops->attention(ctx, &aa);
  if (st != PKV_OK) diag("attention: %s", pkv_last_error(ctx));
  void *ogot = malloc(on * es + 16);
  float *lgot = malloc(sizeof(float) * ((size_t)nq * qheads + 1));
  pkv_buffer_download(ob, 0, ogot, on * es);
  pkv_buffer_download(lb, 0, lgot, sizeof(float) * (size_t)nq * qheads);
  float *oref = malloc(sizeof(float) * (on + 1)), *lref = malloc(sizeof(float) * ((size_t)nq * qheads + 1));
  ref_attn_cfg rc = {kc->nseq, qheads, max_pages, bt, seq_lens, q_indptr, scale,
                     kc->softcap, kc->causal, kc->window, kc->alibi ? alibi : NULL};
  ref_attention(&g, kexp, vexp, qh, &rc, oref, lref);
  double worst = 0, lworst = 0;
  int bad = 0;
  double atol = kc->dtype == PKV_DTYPE_F32 ? 1e-4 : 1.5e-2,
         rtol = kc->dtype == PKV_DTYPE_F32 ? 0 : 1e-2;
  for (size_t i = 0; i < on; i++) {
    double got = ref_get(ogot, kc->dtype, i), err = fabs(got - oref[i]);
    if (!(err <= atol + rtol * fabs(oref[i]))) bad++;
    if (!(err <= worst)) worst = err;
  }
  for (size_t i = 0; i < (size_t)nq * qheads; i++) {
    if (isinf(lref[i]) && lref[i] < 0) {
      if (!(isinf(lgot[i]) && lgot[i] < 0)) bad++;
      continue;
    }
    double err = fabs(lgot[i] - lref[i]);
    if (!(err <= 1e-3 + 1e-4 * fabs(lref[i]))) bad++;
    if (!(err <= lworst)) lworst = err;
  }
  ok(st == PKV_OK && bad == 0, "attention (%s, max q %d, max kv %d): max err %.3g, lse %.3g",
     name, max_q, max_kv, worst, lworst);

  pkv_buffer *bufs[] = {kp, vp, kb, vb, sb, qb, ob, lb, btb, slb, qib};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) pkv_buffer_destroy(bufs[i]);
  void *mem[] = {perm, bt, ksrc, vsrc, slots, kexp, vexp, qh, nanpool, kgot, vgot, onan, ogot,
                 lgot, oref, lref};
  for (size_t i = 0; i < sizeof mem / sizeof mem[0]; i++) free(mem[i]);
}

static void test_kernels(pkv_context *ctx) {
  /* Three programs only (each costs a compile): D128 f16, D64 f32, D80 bf16. */
  const kcase cases[] = {
      /* decode, one partition */
      {128, 16, 2, 4, PKV_DTYPE_F16, PKV_LAYOUT_HND, 3, {17, 1, 64}, {1, 1, 1}, 1, -1, 0, 0},
      {64, 8, 2, 1, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 2, {33, 7}, {1, 1}, 1, -1, 0, 0},
      {80, 1, 1, 5, PKV_DTYPE_BF16, PKV_LAYOUT_HND, 2, {9, 40}, {1, 1}, 1, -1, 0, 1},
      /* decode, partitions + merge (2048 keys each on CPU devices, 512 on
       * GPUs), window, softcap, a zero-length sequence */
      {128, 32, 2, 8, PKV_DTYPE_F16, PKV_LAYOUT_NHD, 3, {4500, 0, 513}, {1, 0, 1}, 1, -1, 0, 0},
      {64, 16, 1, 4, PKV_DTYPE_F32, PKV_LAYOUT_HND, 2, {2600, 600}, {1, 1}, 1, 700, 30.0f, 1},
      {80, 128, 1, 12, PKV_DTYPE_BF16, PKV_LAYOUT_NHD, 1, {1025}, {1}, 0, -1, 0, 0},
      /* prefill / extend */
      {64, 16, 2, 4, PKV_DTYPE_F32, PKV_LAYOUT_HND, 2, {40, 17}, {17, 17}, 1, -1, 0, 0},
      {128, 8, 1, 1, PKV_DTYPE_F16, PKV_LAYOUT_NHD, 3, {5, 129, 30}, {5, 100, 1}, 1, 8, 0, 1},
      {80, 32, 2, 5, PKV_DTYPE_BF16, PKV_LAYOUT_HND, 2, {77, 3}, {20, 3}, 0, -1, 20.0f, 0},
      {64, 1, 1, 2, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 2, {70, 6}, {33, 6}, 1, 3, 0, 1},
      /* rows that see no key (more queries than keys; a query over no
       * keys): zeros and an LSE of -inf, never NaN */
      {64, 8, 1, 2, PKV_DTYPE_F32, PKV_LAYOUT_HND, 2, {3, 10}, {5, 2}, 1, -1, 0, 0},
      {64, 8, 1, 2, PKV_DTYPE_F32, PKV_LAYOUT_NHD, 2, {0, 5}, {1, 1}, 1, -1, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(ctx, &cases[i]);
}

static void test_pages(pkv_context *ctx) {
  /* Two pool buffers of 6 pages: copy-on-write pairs, then a round trip
   * through the host tier in one batched move. */
  ref_geom g = ref_make_geom(2, 64, 8, 6, PKV_DTYPE_F16, PKV_LAYOUT_HND);
  pkv_cache_geometry geom = {sizeof geom, 1, 2, 64, 8, 6, PKV_DTYPE_F16, PKV_LAYOUT_HND, g.page_stride,
                             g.head_stride, g.token_stride, (size_t)g.page_stride * 2,
                             (size_t)g.page_stride * 12, 0};
  size_t pb = geom.page_bytes, n16 = pb / 2 * 6;
  uint16_t *a = malloc(pb * 6), *b = malloc(pb * 6), *ga = malloc(pb * 6), *gb = malloc(pb * 6);
  for (size_t i = 0; i < n16; i++) {
    a[i] = (uint16_t)(i * 31 + 7);
    b[i] = (uint16_t)(i * 17 + 3);
  }
  pkv_buffer *pa = dev_buf(ctx, a, pb * 6), *pbuf = dev_buf(ctx, b, pb * 6);
  pkv_buffer *pools[2] = {pa, pbuf};
  int32_t pairs[4] = {1, 4, 2, 5};
  pkv_copy_args ca = {&geom, pools, 2, pairs, NULL, 2};
  pkv_status st = ctx->ops->copy_pages(ctx, &ca);
  memcpy((char *)a + 4 * pb, (char *)a + 1 * pb, pb);
  memcpy((char *)a + 5 * pb, (char *)a + 2 * pb, pb);
  memcpy((char *)b + 4 * pb, (char *)b + 1 * pb, pb);
  memcpy((char *)b + 5 * pb, (char *)b + 2 * pb, pb);
  pkv_buffer_download(pa, 0, ga, pb * 6);
  pkv_buffer_download(pbuf, 0, gb, pb * 6);
  ok(st == PKV_OK && !memcmp(a, ga, pb * 6) && !memcmp(b, gb, pb * 6),
     "copy_pages applies every pair to every pool buffer");

  unsigned char *host = calloc(4 * 2, pb);
  int32_t dev_pages[3] = {0, 3, 5};
  int64_t host_pages[3] = {2, 0, 3};
  pkv_host_move_args ma = {&geom, pools, 2, dev_pages, host_pages, 3, host};
  st = ctx->ops->pages_to_host(ctx, &ma);
  int good = st == PKV_OK;
  for (int i = 0; i < 3; i++) {
    good &= !memcmp(host + ((size_t)host_pages[i] * 2 + 0) * pb, (char *)a + dev_pages[i] * pb, pb);
    good &= !memcmp(host + ((size_t)host_pages[i] * 2 + 1) * pb, (char *)b + dev_pages[i] * pb, pb);
  }
  ok(good, "pages_to_host puts each page's rows at the host tier's place");
  int32_t back[3] = {1, 2, 4};
  ma.h_dev_pages = back;
  st = ctx->ops->pages_from_host(ctx, &ma);
  for (int i = 0; i < 3; i++) {
    memcpy((char *)a + back[i] * pb, host + ((size_t)host_pages[i] * 2 + 0) * pb, pb);
    memcpy((char *)b + back[i] * pb, host + ((size_t)host_pages[i] * 2 + 1) * pb, pb);
  }
  pkv_buffer_download(pa, 0, ga, pb * 6);
  pkv_buffer_download(pbuf, 0, gb, pb * 6);
  ok(st == PKV_OK && !memcmp(a, ga, pb * 6) && !memcmp(b, gb, pb * 6),
     "pages_from_host restores the pages into new device pages");
  pkv_buffer_destroy(pa);
  pkv_buffer_destroy(pbuf);
  free(a); free(b); free(ga); free(gb); free(host);
}

int main(void) {
  /* PoCL keeps its own kernel cache too (POCL_KERNEL_CACHE=0 turns it off
   * to see the cold compile); the start-up test holds either way. */
  snprintf(cache_dir, sizeof cache_dir, "/tmp/pkv-test-opencl-XXXXXX");
  if (!mkdtemp(cache_dir)) plan_skip_all("cannot create a temporary directory");
  setenv("PKV_CACHE_DIR", cache_dir, 1);
  unsetenv("PKV_OPENCL_DEVICE");
  unsetenv("PKV_OPENCL_PLATFORM");

  pkv_device_info dev[16];
  for (size_t i_ = 0; i_ < sizeof dev / sizeof dev[0]; i_++)
    pkv_device_info_init(&dev[i_]);
  int n = 0;
  if (pkv_list_devices(PKV_BACKEND_OPENCL, dev, 16, &n) != PKV_OK || n == 0) {
    cleanup_dir(cache_dir);
    plan_skip_all("no OpenCL device");
  }
  diag("OpenCL device 0: %s (%s, %s), wave %d", dev[0].name, dev[0].platform, dev[0].driver,
       dev[0].wave_size);
  ok(dev[0].backend == PKV_BACKEND_OPENCL && dev[0].index == 0 && dev[0].name[0] &&
         dev[0].global_mem_bytes > 0 && dev[0].wave_size >= 1,
     "device info is filled");

  test_selection(dev);
  test_native_and_errors();
  test_binary_cache();
  pkv_context *ctx = make_ctx(0, NULL);
  ok(ctx != NULL, "default OpenCL context");
  if (ctx) {
    test_error_names(ctx);
    test_kernels(ctx);
    test_pages(ctx);
  }
  pkv_context_destroy(ctx);
  cleanup_dir(cache_dir);
  return done_testing();
}
