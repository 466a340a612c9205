/* SPDX-License-Identifier: Apache-2.0 */
/* Plan/run: the chunking of the planner as pure host code (the skewed
 * batch, a lone 4k request on 132 compute units, exact coverage of every
 * key), then the API on the CPU backend: a run under a plan with forced
 * small chunks (so that requests are split and merged) against
 * pkv_kv_attention of the same inputs, over several layers of one plan,
 * and the bad-input rules (unbuilt plan, another geometry, small or
 * missing workspace): each a distinct status, nothing written. */
#include "alloc.h"
#include "plan.h"
#include "plan_launch.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every key of every request is in exactly one item, items of a request
 * are contiguous and in order, and partial rows of split requests are
 * disjoint and cover [0, partial_rows). */
static int covers(const int64_t *len, const int32_t *ql, int32_t n,
                  int64_t chunk, int64_t *items_out, int64_t *rows_out) {
  int64_t ni, rows;
  pkv__plan_fill(len, ql, n, chunk, NULL, &ni, &rows);
  pkv__plan_item *it = calloc((size_t)ni, sizeof *it);
  pkv__plan_fill(len, ql, n, chunk, it, &ni, &rows);
  unsigned char *row_seen = calloc((size_t)rows + 1, 1);
  int good = 1;
  int64_t k = 0;
  for (int32_t s = 0; s < n && good; s++) {
    int64_t next = 0, first = k;
    while (k < ni && it[k].seq == s) {
      good &= it[k].kv_begin == next && it[k].kv_end > it[k].kv_begin -
              (len[s] == 0) && it[k].kv_end - it[k].kv_begin <= chunk;
      next = it[k].kv_end;
      k++;
    }
    int64_t nc = k - first;
    good &= next == len[s] && nc >= 1;
    for (int64_t c = first; c < k; c++) {
      if (nc == 1) {
        good &= it[c].partial == -1;
        continue;
      }
      for (int32_t r = 0; r < ql[s]; r++) {
        int64_t row = it[c].partial + r;
        good &= row >= 0 && row < rows && !row_seen[row];
        if (row >= 0 && row < rows) row_seen[row] = 1;
      }
    }
  }
  good &= k == ni;
  for (int64_t r = 0; r < rows; r++) good &= row_seen[r];
  free(it);
  free(row_seen);
  *items_out = ni;
  *rows_out = rows;
  return good;
}

static void host_cases(void) {
  /* The skewed batch: 1 x 128k + 63 x 1k, 8 kv heads, 132 SMs x 4. */
  enum { N = 64 };
  int64_t len[N];
  int32_t ql[N];
  int64_t total = 0;
  for (int i = 0; i < N; i++) {
    len[i] = i == 0 ? 131072 : 1024;
    ql[i] = 1;
    total += len[i];
  }
  int64_t budget;
  int64_t chunk = pkv__plan_choose(len, N, 16, pkv__plan_device_items(132, 4, 8),
                                   PKV_PLAN_MIN_CHUNK, &budget);
  int64_t ni, rows;
  ok(covers(len, ql, N, chunk, &ni, &rows),
     "skewed: every key in exactly one chunk, partial rows disjoint");
  /* Today's fixed partitions: 64 requests x (128k / 512) blocks. */
  int64_t fixed = (int64_t)N * (131072 / 512);
  ok(ni <= budget && ni * chunk <= 2 * (total + N * chunk),
     "skewed: %lld items of %lld keys (budget %lld) cover %lld keys, "
     "proportional to the keys", (long long)ni, (long long)chunk,
     (long long)budget, (long long)total);
  ok(ni * 20 < fixed, "skewed: %lld items, not %lld fixed partitions",
     (long long)ni, (long long)fixed);
  ok(ni > N && rows == ni - (N - 1),
     "skewed: only the long request is split (%lld partial rows)",
     (long long)rows);

  /* 1 x 4k on 132 SMs: split to fill the device. */
  int64_t one = 4096;
  int32_t q1 = 1;
  chunk = pkv__plan_choose(&one, 1, 16, pkv__plan_device_items(132, 4, 8),
                           PKV_PLAN_MIN_CHUNK, &budget);
  int cov = covers(&one, &q1, 1, chunk, &ni, &rows);
  ok(cov && ni > 1 && chunk % 16 == 0 &&
         chunk >= PKV_PLAN_MIN_CHUNK,
     "1 x 4k on 132 SMs: split into %lld chunks of %lld keys", (long long)ni,
     (long long)chunk);
  /* A full device: nothing split, the chunk is the longest request. */
  int64_t many[200];
  int32_t qm[200];
  for (int i = 0; i < 200; i++) many[i] = 100 + i, qm[i] = 1;
  chunk = pkv__plan_choose(many, 200, 16, pkv__plan_device_items(4, 1, 8),
                           PKV_PLAN_MIN_CHUNK, &budget);
  ok(covers(many, qm, 200, chunk, &ni, &rows) && ni == 200 && rows == 0,
     "a batch that fills the device is not split (chunk %lld)",
     (long long)chunk);
  /* Prefill rows, empty requests, chunk 1 and page 1: still exact. */
  int64_t mix[5] = {0, 1, 33, 7, 1000};
  int32_t qx[5] = {0, 1, 5, 7, 3};
  int good = 1;
  for (int64_t c = 1; c <= 40; c += 3) good &= covers(mix, qx, 5, c, &ni, &rows);
  ok(good, "mixed lengths and query runs: exact coverage at chunks 1..40");
  /* The search returns the smallest fitting chunk of whole pages. */
  int64_t b2 = 9;
  chunk = pkv__plan_chunk_keys(mix, 5, 4, b2, 1);
  int64_t n_at, n_below, r;
  pkv__plan_fill(mix, qx, 5, chunk, NULL, &n_at, &r);
  pkv__plan_fill(mix, qx, 5, chunk - 4, NULL, &n_below, &r);
  ok(chunk % 4 == 0 && n_at <= b2 && n_below > b2,
     "binary search: chunk %lld fits the budget of %lld, one page less does "
     "not", (long long)chunk, (long long)b2);
}

/* The merge array and the launch shape of the device runs. */
static void launch_cases(void) {
  int64_t len[6] = {0, 1, 33, 7, 1000, 64};
  int32_t ql[6] = {1, 1, 1, 0, 1, 1};
  int64_t ni, rows;
  pkv__plan_fill(len, ql, 6, 16, NULL, &ni, &rows);
  pkv__plan_item *it = calloc((size_t)ni, sizeof *it);
  pkv__plan_fill(len, ql, 6, 16, it, &ni, &rows);
  const int64_t slots = ni / 2;
  int32_t *m = calloc((size_t)slots * 4, sizeof *m);
  int64_t nm = pkv__plan_merges(it, ni, ql, m, slots);
  /* split: 33 (3 chunks), 7 (1: whole), 1000 (63), 64 (4) */
  int good = nm == 3 && m[0] == 2 && m[1] == 0 && m[2] == 3 && m[3] == 1 &&
             m[4] == 4 && m[5] == 3 && m[6] == 63 && m[8] == 5 &&
             m[9] == 66 && m[10] == 4 && m[11] == 1;
  for (int64_t i = nm; i < slots; i++) good &= m[4 * i] == -1;
  /* every merge's rows are its request's chunks' partial rows */
  for (int64_t i = 0; i < nm; i++)
    for (int64_t k = 0; k < ni; k++)
      if (it[k].seq == m[4 * i])
        good &= it[k].partial >= m[4 * i + 1] &&
                it[k].partial < m[4 * i + 1] + m[4 * i + 2] * m[4 * i + 3];
  ok(good && rows == 70,
     "merges: %lld split requests, (request, first row, chunks, q_len) "
     "each, padded with request -1", (long long)nm);
  free(m);
  free(it);

  pkv__plan_exec pe;
  memset(&pe, 0, sizeof pe);
  pe.grid_items = 1056;
  pe.merge_slots = 528;
  pe.lse_off = 12345;
  pkv__plan_launch l;
  int fits = pkv__plan_launch_of(&pe, 8, 12, 8, &l);
  ok(fits && l.items == 1056 && l.head_blocks == 16 && l.merge_slots == 528 &&
         l.lse_off == 12345,
     "launch: grid_items x (kv heads x group chunks), merge slots from the "
     "plan alone");
  pe.grid_items = 0;
  int empty = pkv__plan_launch_of(&pe, 8, 12, 8, &l);
  pe.grid_items = 4;
  int wide = pkv__plan_launch_of(&pe, 40000, 16, 8, &l);
  ok(!empty && !wide, "launch: an empty grid or one past 65535 head blocks "
     "is refused");
}

/* ---------------------------------------------------------------- CPU API */

#define D 64
#define NKV 2
#define NQ 4
#define PS 4
#define NPAGES 64
#define NSEQ 3
#define MAXP 16
#define LAYERS 2

static const int32_t seq_len[NSEQ] = {53, 0, 9};
static const int32_t q_len[NSEQ] = {3, 1, 1};

static uint64_t rng = 0x243f6a8885a308d3ull;
static float urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) / 4503599627370496.0 - 1.0);
}

/* A buffer of `bytes`: random floats (the same sequence on every
 * backend, the generator is reset per backend), or zeros. */
static pkv_buffer *mk(pkv_context *c, size_t bytes, int fill) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(c, bytes, &b) != PKV_OK) return NULL;
  float *p = calloc(bytes / 4 + 1, 4);
  for (size_t i = 0; fill && i < bytes / 4; i++) p[i] = urand();
  pkv_buffer_upload(b, 0, p, bytes);
  free(p);
  return b;
}

static pkv_buffer *mk_int(pkv_context *c, const int32_t *h, size_t n) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(c, n * 4, &b) != PKV_OK) return NULL;
  pkv_buffer_upload(b, 0, h, n * 4);
  return b;
}

static float *down(pkv_buffer *b, size_t bytes) {
  float *p = malloc(bytes);
  pkv_buffer_download(b, 0, p, bytes);
  return p;
}

/* Outputs of the CPU backend's runs, the reference of the others. */
static float *cpu_out[LAYERS];

static double diff(pkv_buffer *x, pkv_buffer *y, size_t bytes) {
  float *a = down(x, bytes), *b = down(y, bytes);
  double err = 0;
  for (size_t i = 0; i < bytes / 4; i++)
    err = fmax(err, isinf(a[i]) && isinf(b[i]) && a[i] == b[i]
                        ? 0
                        : fabs(a[i] - b[i]));
  free(a);
  free(b);
  return err;
}

static void api_cases(pkv_context *c, const char *name) {
  rng = 0x243f6a8885a308d3ull;
  const size_t pool = (size_t)NPAGES * PS * NKV * D * 4;
  pkv_buffer *k[LAYERS], *v[LAYERS];
  for (int l = 0; l < LAYERS; l++) k[l] = mk(c, pool, 1), v[l] = mk(c, pool, 1);
  int32_t ntok = 0;
  for (int s = 0; s < NSEQ; s++) ntok += q_len[s];
  int32_t hbt[NSEQ * MAXP], hsl[NSEQ], hqi[NSEQ + 1];
  hqi[0] = 0;
  for (int s = 0; s < NSEQ; s++) {
    hsl[s] = seq_len[s];
    hqi[s + 1] = hqi[s] + q_len[s];
    for (int p = 0; p < MAXP; p++) hbt[s * MAXP + p] = (s * 17 + p * 3) % NPAGES;
  }
  pkv_buffer *bt = mk_int(c, hbt, NSEQ * MAXP), *sl = mk_int(c, hsl, NSEQ),
             *qi = mk_int(c, hqi, NSEQ + 1);
  const size_t rowsz = (size_t)ntok * NQ * D * 4;
  pkv_buffer *q = mk(c, rowsz, 1), *o1 = mk(c, rowsz, 0), *o2 = mk(c, rowsz, 0),
             *l1 = mk(c, (size_t)ntok * NQ * 4, 0),
             *l2 = mk(c, (size_t)ntok * NQ * 4, 0);

  pkv_kv_view view;
  pkv_kv_view_init(&view);
  view.k = k[0];
  view.v = v[0];
  view.page_size = PS;
  view.num_kv_heads = NKV;
  view.head_dim = D;
  view.num_pages = NPAGES;
  view.dtype = PKV_DTYPE_F32;
  pkv_kv_table t;
  pkv_kv_table_init(&t);
  t.kind = PKV_TABLE_DENSE;
  t.num_seqs = NSEQ;
  t.num_tokens = ntok;
  t.max_q_len = 3;
  t.max_kv_len = 53;
  t.q_indptr = qi;
  t.block_table = bt;
  t.seq_lens = sl;
  t.max_pages = MAXP;
  t.host_q_indptr = hqi;
  t.host_block_table = hbt;
  t.host_seq_lens = hsl;
  pkv_attn_params prm;
  pkv_attn_params_init(&prm, NQ);
  float slopes[NQ] = {0.5f, 0.25f, 0.125f, 0.0625f};
  prm.alibi_slopes = slopes;
  pkv_tensor qt, ot1, ot2;
  pkv_tensor_init(&qt);
  qt.buf = q;
  pkv_tensor_init(&ot1);
  ot1.buf = o1;
  pkv_tensor_init(&ot2);
  ot2.buf = o2;

  pkv_plan *pl = NULL;
  ok(pkv_plan_create(c, &pl) == PKV_OK && pl, "%s: pkv_plan_create", name);
  size_t ws = 0;
  ok(pkv_plan_workspace_size(pl, &ws) == PKV_ERR_STATE,
     "workspace size of an unbuilt plan: PKV_ERR_STATE");
  pkv_plan_options po;
  pkv_plan_options_init(&po);
  po.chunk_keys = 8; /* the 53-key request in 7 chunks, the 9-key in 2 */
  pkv_status bst = pkv_plan_build(pl, &view, &t, &prm, &po);
  ok(bst == PKV_OK, "%s: plan build: %s", name, pkv_status_name(bst));
  slopes[0] = 99.0f; /* the plan holds its own copy */
  prm.alibi_slopes = NULL;
  pkv_plan_info info;
  pkv_plan_info_init(&info);
  pkv_status ist = pkv_plan_get_info(pl, &info);
  ok(ist == PKV_OK && info.chunk_keys == 8 &&
         info.num_items == 7 + 1 + 2 && info.num_split == 2 &&
         info.partial_rows == 7 * 3 + 2 * 1 && info.grid_items >= info.num_items,
     "plan info: %lld items, %d split, %lld partial rows",
     (long long)info.num_items, info.num_split, (long long)info.partial_rows);
  pkv_status wst = pkv_plan_workspace_size(pl, &ws);
  ok(wst == PKV_OK && ws == info.workspace_bytes &&
         ws >= (size_t)info.partial_rows * NQ * (D + 1) * 4,
     "workspace of %zu bytes holds the partial rows", ws);
  pkv_buffer *w = mk(c, ws, 0), *wsmall = mk(c, ws - 4, 0);

  /* Bad input first: nothing may be written. */
  {
    unsigned char *fill = malloc(rowsz);
    memset(fill, 0x7f, rowsz);
    pkv_buffer_upload(o1, 0, fill, rowsz);
    free(fill);
  }
  pkv_kv_view other = view;
  other.page_size = 8;
  other.num_pages = NPAGES / 2;
  ok(pkv_attention_run(pl, &other, &qt, &ot1, l1, w, NULL) == PKV_ERR_STATE,
     "run with a view of another geometry: PKV_ERR_STATE");
  ok(pkv_attention_run(pl, &view, &qt, &ot1, l1, wsmall, NULL) == PKV_ERR_SIZE &&
         strstr(pkv_last_error(c), "workspace"),
     "run with a workspace too small: PKV_ERR_SIZE naming it");
  ok(pkv_attention_run(pl, &view, &qt, &ot1, l1, NULL, NULL) == PKV_ERR_NULL,
     "run without the workspace it needs: PKV_ERR_NULL");
  pkv_context_synchronize(c);
  unsigned char *ob = (unsigned char *)down(o1, rowsz);
  int untouched = 1;
  for (size_t i = 0; i < rowsz; i++) untouched &= ob[i] == 0x7f;
  free(ob);
  ok(untouched, "%s: failed runs wrote nothing", name);

  /* Each layer under the one plan against the unplanned attention. */
  prm.alibi_slopes = slopes;
  slopes[0] = 0.5f;
  for (int l = 0; l < LAYERS; l++) {
    view.k = k[l];
    view.v = v[l];
    pkv_status s1 = pkv_attention_run(pl, &view, &qt, &ot1, l1, w, NULL);
    pkv_status s2 = pkv_kv_attention(c, &view, &t, &prm, &qt, &ot2, l2);
    double err = fmax(diff(o1, o2, rowsz), diff(l1, l2, (size_t)ntok * NQ * 4));
    ok(s1 == PKV_OK && s2 == PKV_OK && err < 1e-5,
       "%s layer %d: run under the plan = pkv_kv_attention (max |diff| %.2g)",
       name, l, err);
    float *got = down(o1, rowsz);
    if (!cpu_out[l]) {
      cpu_out[l] = got;
    } else {
      double e2 = 0;
      for (size_t i = 0; i < rowsz / 4; i++)
        e2 = fmax(e2, fabs(got[i] - cpu_out[l][i]));
      ok(e2 < 1e-4, "%s layer %d: run = the CPU backend's run (max |diff| "
         "%.2g)", name, l, e2);
      free(got);
    }
  }
  /* Sinks (merged as one more denominator term) and a sliding window
   * (chunks that see no key), chunks of one page. */
  float sk[NQ] = {0.5f, -1.0f, 2.0f, 0.0f};
  prm.sinks = sk;
  prm.window_left = 6;
  po.chunk_keys = PS;
  {
    pkv_status s0 = pkv_plan_build(pl, &view, &t, &prm, &po);
    size_t need = 0;
    pkv_plan_workspace_size(pl, &need);
    pkv_buffer *w2 = mk(c, need, 0);
    pkv_status s1 = pkv_attention_run(pl, &view, &qt, &ot1, l1, w2, NULL);
    pkv_status s2 = pkv_kv_attention(c, &view, &t, &prm, &qt, &ot2, l2);
    double err = fmax(diff(o1, o2, rowsz), diff(l1, l2, (size_t)ntok * NQ * 4));
    ok(s0 == PKV_OK && s1 == PKV_OK && s2 == PKV_OK && err < 1e-5,
       "%s: sinks and a window, chunks of one page: run = pkv_kv_attention "
       "(max |diff| %.2g)", name, err);
    pkv_buffer_destroy(w2);
  }
  prm.sinks = NULL;
  prm.window_left = -1;
  /* A rebuild for another batch: the old workspace may be too small. */
  t.num_seqs = 1;
  t.num_tokens = 3;
  po.chunk_keys = 4;
  ok(pkv_plan_build(pl, &view, &t, &prm, &po) == PKV_OK &&
         pkv_plan_workspace_size(pl, &ws) == PKV_OK && ws > info.workspace_bytes &&
         pkv_attention_run(pl, &view, &qt, &ot1, l1, w, NULL) == PKV_ERR_SIZE,
     "a rebuilt plan refuses the old, smaller workspace");
  t.max_kv_len = 1; /* seq_lens[0] = 53 > 1: the build fails */
  ok(pkv_plan_build(pl, &view, &t, &prm, &po) == PKV_ERR_INVALID &&
         pkv_attention_run(pl, &view, &qt, &ot1, l1, w, NULL) == PKV_ERR_STATE,
     "a failed build leaves the plan unbuilt: runs refuse it");
  pkv_plan_destroy(pl);
  pkv_buffer *all[] = {bt, sl, qi, q, o1, o2, l1, l2, w, wsmall};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pkv_buffer_destroy(all[i]);
  for (int l = 0; l < LAYERS; l++) pkv_buffer_destroy(k[l]), pkv_buffer_destroy(v[l]);
}

int main(void) {
  host_cases();
  launch_cases();
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context *c = NULL;
  if (pkv_context_create(&cd, &c) != PKV_OK) {
    ok(0, "CPU context: %s", pkv_last_error(NULL));
    return done_testing();
  }
  api_cases(c, "cpu");
  pkv_context_destroy(c);
  /* OpenCL: the same run; it goes through today's kernels behind the
   * plan's checks (doc/plan-run.md), against the CPU backend's chunks. */
  int n = 0;
  c = NULL;
  cd.backend = PKV_BACKEND_OPENCL;
  if (pkv_backend_available(PKV_BACKEND_OPENCL) &&
      pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &n) == PKV_OK && n > 0 &&
      pkv_context_create(&cd, &c) == PKV_OK) {
    api_cases(c, "opencl");
    pkv_context_destroy(c);
  } else {
    skip(1, "no OpenCL device");
  }
  for (int l = 0; l < LAYERS; l++) free(cpu_out[l]);
  return done_testing();
}
