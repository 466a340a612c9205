/* SPDX-License-Identifier: Apache-2.0 */
/* Bad input of quantized caches on every path, and int8 pages of any
 * geometry through the device page moves (issue 13):
 * - a scale of 0, negative, NaN, +Inf or -Inf, for K and for V: through
 *   pkv_cache_set_kv_scales, a view given to pkv_plan_build and a view
 *   given to pkv_attention_run: PKV_ERR_SCALE, a message naming the array
 *   and index, and nothing changes (the stored scales, the plan, out);
 * - q or out in a quantized dtype (an fp8/int8 cache given its own dtype
 *   as q's, i.e. no separate q dtype) through plan/run:
 *   PKV_ERR_QUANT_DTYPE, out untouched;
 * - int8 pages whose num_kv_heads * page_size is not a multiple of 4
 *   (page bytes padded to 16): copy-on-write and swap move whole pages,
 *   codes and scales, bit for bit.
 * On the CPU backend and OpenCL (SKIP without a device). */
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D 64
#define NKV 2
#define NQ 4
#define PS 4

static const pkv_dtype QD[3] = {PKV_DTYPE_FP8_E4M3, PKV_DTYPE_FP8_E5M2,
                                PKV_DTYPE_INT8};
static const char *qname(pkv_dtype d) {
  return d == PKV_DTYPE_FP8_E4M3 ? "e4m3" : d == PKV_DTYPE_FP8_E5M2 ? "e5m2" : "int8";
}

/* Whether the first n bytes of a buffer are all still 0x5a (the pattern
 * out starts with): a refused call must not have launched anything. */
static int untouched(pkv_buffer *b, size_t n) {
  unsigned char *h = malloc(n);
  int same = pkv_buffer_download(b, 0, h, n) == PKV_OK;
  for (size_t i = 0; same && i < n; i++) same = h[i] == 0x5a;
  free(h);
  return same;
}

#define ERR_TESTS 6

/* One cache (two sequences, written), its plan, and every refusal. */
static void test_errors(pkv_backend_kind be, pkv_dtype dt) {
  const char *bn = be == PKV_BACKEND_CPU ? "CPU" : "OpenCL";
  pkv_context *ctx = NULL;
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = be;
  if (pkv_context_create(&cd, &ctx) != PKV_OK) {
    skip(ERR_TESTS, "no OpenCL device");
    return;
  }
  pkv_cache_desc desc;
  pkv_cache_desc_init(&desc);
  desc.num_layers = 1;
  desc.num_kv_heads = NKV;
  desc.head_dim = D;
  desc.page_size = PS;
  desc.num_pages = 16;
  desc.dtype = dt;
  pkv_cache *c = NULL;
  pkv_batch *b = NULL;
  pkv_plan *plan = NULL;
  pkv_buffer *qb = NULL, *ob = NULL, *ws = NULL;
  pkv_status st = pkv_cache_create(ctx, &desc, &c);
  if (st != PKV_OK) {
    ok(0, "%s %s: cache: %s", bn, qname(dt), pkv_last_error(ctx));
    skip(ERR_TESTS - 1, "no cache");
    pkv_context_destroy(ctx);
    return;
  }
  const int fp8 = dt != PKV_DTYPE_INT8;
  const float good_k[NKV] = {0.5f, 2.0f}, good_v[NKV] = {4.0f, 0.25f};
  if (fp8) pkv_cache_set_kv_scales(c, 0, good_k, good_v);

  /* (1) pkv_cache_set_kv_scales: every bad value, K and V; nothing changes */
  if (fp8) {
    const float bad[5] = {0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    int all = 1;
    char first[256] = "";
    for (int i = 0; i < 5; i++)
      for (int which = 0; which < 2; which++) {
        float s[NKV] = {1.0f, 1.0f};
        s[1] = bad[i];
        st = pkv_cache_set_kv_scales(c, 0, which ? good_k : s, which ? s : good_v);
        const char *msg = pkv_last_error(ctx);
        float gk[NKV], gv[NKV];
        pkv_cache_get_kv_scales(c, 0, gk, gv);
        all &= st == PKV_ERR_SCALE &&
               strstr(msg, which ? "v_scales[1]" : "k_scales[1]") != NULL &&
               memcmp(gk, good_k, sizeof gk) == 0 && memcmp(gv, good_v, sizeof gv) == 0;
        if (!first[0]) snprintf(first, sizeof first, "%s", msg);
      }
    ok(all, "%s %s: set_kv_scales with 0, -1, NaN, +Inf, -Inf in k or v is "
            "PKV_ERR_SCALE naming the array and index, scales unchanged (%s)",
       bn, qname(dt), first);
  } else {
    const float one[NKV] = {1, 1};
    st = pkv_cache_set_kv_scales(c, 0, one, one);
    ok(st == PKV_ERR_INVALID, "%s int8: per-head scales are PKV_ERR_INVALID "
                              "(its scales are per token): %s",
       bn, pkv_last_error(ctx));
  }

  /* Two sequences written from f32 rows (quantized by the backend). */
  pkv_seq_id s[2];
  const int32_t lens[2] = {6, 3};
  for (int i = 0; i < 2; i++) {
    pkv_seq_open(c, NULL, &s[i]);
    pkv_seq_append(c, s[i], lens[i], NULL, NULL);
  }
  pkv_batch_create(c, &b);
  pkv_batch_build(b, s, 2, lens);
  {
    const size_t n = 9 * NKV * D;
    float *rows = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) rows[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    pkv_buffer *kb, *vb;
    pkv_buffer_create(ctx, n * sizeof(float), &kb);
    pkv_buffer_create(ctx, n * sizeof(float), &vb);
    pkv_buffer_upload(kb, 0, rows, n * sizeof(float));
    pkv_buffer_upload(vb, 0, rows, n * sizeof(float));
    pkv_batch_device dev;
    pkv_batch_device_init(&dev);
    pkv_batch_get_device(b, &dev);
    pkv_kv_view wv;
    pkv_tensor kt, vt;
    pkv_kv_view_init(&wv);
    pkv_tensor_init(&kt);
    pkv_tensor_init(&vt);
    kt.buf = kb;
    vt.buf = vb;
    pkv_cache_flush(c);
    pkv_cache_kv_view(c, 0, &wv);
    st = pkv_kv_write(ctx, &wv, dev.slot_mapping, NULL, 9, &kt, &vt);
    if (st != PKV_OK) diag("write: %s", pkv_last_error(ctx));
    pkv_buffer_destroy(kb);
    pkv_buffer_destroy(vb);
    free(rows);
  }
  const size_t io_bytes = (size_t)9 * NQ * D * sizeof(float);
  pkv_buffer_create(ctx, io_bytes, &qb);
  pkv_buffer_create(ctx, io_bytes, &ob);
  {
    unsigned char *pat = malloc(io_bytes);
    memset(pat, 0x5a, io_bytes);
    pkv_buffer_upload(ob, 0, pat, io_bytes);
    for (size_t i = 0; i < io_bytes / 4; i++) ((float *)pat)[i] = 0.25f;
    pkv_buffer_upload(qb, 0, pat, io_bytes);
    free(pat);
  }
  pkv_kv_view view;
  pkv_kv_table table;
  pkv_attn_params p;
  pkv_tensor qt, ot;
  pkv_kv_view_init(&view);
  pkv_kv_table_init(&table);
  pkv_attn_params_init(&p, NQ);
  pkv_tensor_init(&qt);
  pkv_tensor_init(&ot);
  pkv_cache_kv_view(c, 0, &view);
  pkv_batch_get_table(b, PKV_TABLE_DENSE, &table);
  qt.buf = qb;
  ot.buf = ob;
  qt.dtype = ot.dtype = PKV_DTYPE_F32;
  pkv_plan_create(ctx, &plan);

  /* (2) plan_build over a view with a bad scale: refused, plan unbuilt */
  if (fp8) {
    const float nan_v[NKV] = {1.0f, NAN};
    pkv_kv_view bad = view;
    bad.v_scales = nan_v;
    st = pkv_plan_build(plan, &bad, &table, &p, NULL);
    const int named = strstr(pkv_last_error(ctx), "view->v_scales[1]") != NULL;
    pkv_status st2 = pkv_attention_run(plan, &view, &qt, &ot, NULL, NULL, NULL);
    ok(st == PKV_ERR_SCALE && named && st2 != PKV_OK && untouched(ob, io_bytes),
       "%s %s: plan_build over a view with v_scales[1] = NaN is "
       "PKV_ERR_SCALE (%s), the plan stays unbuilt (run: %s), out untouched",
       bn, qname(dt), named ? "named" : "NOT named", pkv_status_name(st2));
  } else {
    pkv_kv_view bad = view;
    bad.scale_offset = 2; /* int8's scales: misaligned */
    st = pkv_plan_build(plan, &bad, &table, &p, NULL);
    ok(st == PKV_ERR_INVALID, "%s int8: plan_build over a view with a "
                              "misaligned scale_offset is PKV_ERR_INVALID: %s",
       bn, pkv_last_error(ctx));
  }

  /* A good plan, then bad runs. */
  st = pkv_plan_build(plan, &view, &table, &p, NULL);
  size_t wsb = 0;
  if (st == PKV_OK) st = pkv_plan_workspace_size(plan, &wsb);
  if (st == PKV_OK && wsb) st = pkv_buffer_create(ctx, wsb, &ws);
  ok(st == PKV_OK, "%s %s: plan built over the cache's view (%s)", bn,
     qname(dt), pkv_status_name(st));

  /* (3) run with a bad scale in the view: refused, nothing launched */
  if (fp8) {
    const float bad_k[5][NKV] = {{1, 0.0f}, {1, -2.0f}, {1, NAN}, {1, INFINITY}, {1, -INFINITY}};
    int all = 1;
    for (int i = 0; i < 5; i++) {
      pkv_kv_view bad = view;
      bad.k_scales = bad_k[i];
      st = pkv_attention_run(plan, &bad, &qt, &ot, NULL, ws, NULL);
      all &= st == PKV_ERR_SCALE && strstr(pkv_last_error(ctx), "view->k_scales[1]") != NULL;
    }
    pkv_context_synchronize(ctx);
    ok(all && untouched(ob, io_bytes),
       "%s %s: attention_run with k_scales[1] = 0, -2, NaN, +Inf, -Inf is "
       "PKV_ERR_SCALE naming it, out untouched", bn, qname(dt));
  } else {
    pkv_kv_view bad = view;
    bad.scale_offset = view.page_stride - 4; /* scales past the page */
    st = pkv_attention_run(plan, &bad, &qt, &ot, NULL, ws, NULL);
    pkv_context_synchronize(ctx);
    ok(st == PKV_ERR_INVALID && untouched(ob, io_bytes),
       "%s int8: attention_run with scales past the page is "
       "PKV_ERR_INVALID, out untouched: %s", bn, pkv_last_error(ctx));
  }

  /* (4) q in the cache's own (quantized) dtype, i.e. no separate q dtype */
  qt.dtype = dt;
  st = pkv_attention_run(plan, &view, &qt, &ot, NULL, ws, NULL);
  pkv_status st_out;
  qt.dtype = PKV_DTYPE_F32;
  ot.dtype = dt;
  st_out = pkv_attention_run(plan, &view, &qt, &ot, NULL, ws, NULL);
  ot.dtype = PKV_DTYPE_F32;
  pkv_context_synchronize(ctx);
  ok(st == PKV_ERR_QUANT_DTYPE && st_out == PKV_ERR_QUANT_DTYPE && untouched(ob, io_bytes),
     "%s %s: attention_run with q or out in the pool dtype is "
     "PKV_ERR_QUANT_DTYPE, out untouched", bn, qname(dt));

  /* (5) and the good run works and writes out */
  st = pkv_attention_run(plan, &view, &qt, &ot, NULL, ws, NULL);
  if (st == PKV_OK) st = pkv_context_synchronize(ctx);
  float *o = malloc(io_bytes);
  pkv_buffer_download(ob, 0, o, io_bytes);
  int finite = 1;
  for (size_t i = 0; i < io_bytes / 4; i++) finite &= isfinite(o[i]);
  free(o);
  ok(st == PKV_OK && finite, "%s %s: the same run with good arguments "
                             "succeeds, outputs finite (%s)",
     bn, qname(dt), pkv_status_name(st));

  pkv_buffer_destroy(ws);
  pkv_buffer_destroy(qb);
  pkv_buffer_destroy(ob);
  pkv_plan_destroy(plan);
  pkv_batch_destroy(b);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
}

/* int8 pages of 1 kv head x 3 tokens: (D + 4) * 3 bytes, padded to 16. */
static void test_odd_pages(pkv_backend_kind be) {
  const char *bn = be == PKV_BACKEND_CPU ? "CPU" : "OpenCL";
  pkv_context *ctx = NULL;
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = be;
  if (pkv_context_create(&cd, &ctx) != PKV_OK) {
    skip(2, "no OpenCL device");
    return;
  }
  pkv_cache_desc desc;
  pkv_cache_desc_init(&desc);
  desc.num_layers = 1;
  desc.num_kv_heads = 1;
  desc.head_dim = D;
  desc.page_size = 3;
  desc.num_pages = 12;
  desc.num_host_pages = 8;
  desc.dtype = PKV_DTYPE_INT8;
  pkv_cache *c = NULL;
  pkv_status st = pkv_cache_create(ctx, &desc, &c);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  if (st == PKV_OK) pkv_cache_get_geometry(c, &g);
  ok(st == PKV_OK && g.page_bytes % 16 == 0 && g.page_bytes >= 3 * (D + 4) &&
         g.page_bytes < 3 * (D + 4) + 16 && g.scale_offset == 3 * D,
     "%s int8 1 head x 3 tokens: page_bytes %zu (%d rounded up to 16), "
     "scale_offset %zu", bn, g.page_bytes, 3 * (D + 4), g.scale_offset);
  if (st != PKV_OK) {
    skip(1, "no cache");
    pkv_context_destroy(ctx);
    return;
  }
  /* a sequence of 5 tokens (pages of 3 + 2), written; every byte of the
   * pool is a pattern first, so the padding and the unwritten tokens
   * must travel too */
  pkv_buffer *kp, *vp;
  pkv_cache_kv(c, 0, &kp, &vp);
  const size_t pool = pkv_buffer_size(kp);
  unsigned char *pat = malloc(pool);
  for (size_t i = 0; i < pool; i++) pat[i] = (unsigned char)(i * 7 + 3);
  pkv_buffer_upload(kp, 0, pat, pool);
  pkv_buffer_upload(vp, 0, pat, pool);
  pkv_seq_id s, child;
  int64_t slots[5];
  pkv_seq_open(c, NULL, &s);
  pkv_seq_append(c, s, 5, NULL, slots);
  float rows[5 * D];
  for (int i = 0; i < 5 * D; i++) rows[i] = (float)(i % 13) - 6.0f;
  pkv_buffer *kb, *sb;
  pkv_buffer_create(ctx, sizeof rows, &kb);
  pkv_buffer_create(ctx, sizeof slots, &sb);
  pkv_buffer_upload(kb, 0, rows, sizeof rows);
  pkv_buffer_upload(sb, 0, slots, sizeof slots);
  pkv_kv_view v;
  pkv_tensor kt;
  pkv_kv_view_init(&v);
  pkv_tensor_init(&kt);
  kt.buf = kb;
  pkv_cache_kv_view(c, 0, &v);
  st = pkv_kv_write(ctx, &v, sb, NULL, 5, &kt, &kt);
  int32_t pp[4], pc[4];
  int64_t np = 0, nc = 0;
  pkv_seq_pages(c, s, pp, 4, &np);
  unsigned char *before = malloc(pool), *after = malloc(pool);
  if (st == PKV_OK) st = pkv_buffer_download(kp, 0, before, pool);
  /* copy-on-write of the last page, then a swap out and in */
  if (st == PKV_OK) st = pkv_seq_fork(c, s, &child);
  if (st == PKV_OK) st = pkv_seq_append(c, child, 1, NULL, NULL);
  if (st == PKV_OK) st = pkv_cache_flush(c);
  pkv_seq_pages(c, child, pc, 4, &nc);
  if (st == PKV_OK) st = pkv_seq_release(c, child);
  if (st == PKV_OK) st = pkv_seq_swap_out(c, &s, 1);
  if (st == PKV_OK) st = pkv_seq_swap_in(c, &s, 1);
  pkv_seq_pages(c, s, pp + 2, 2, &np);
  if (st == PKV_OK) st = pkv_buffer_download(kp, 0, after, pool);
  /* the child's copy of page pp[1] (before the swap) is gone with the
   * child; compare the parent's pages, now wherever swap_in put them */
  int same = st == PKV_OK && nc == 2 && pc[1] != pp[1];
  for (int k = 0; same && k < 2; k++)
    same = memcmp(before + (size_t)pp[k] * g.page_bytes,
                  after + (size_t)pp[2 + k] * g.page_bytes, g.page_bytes) == 0;
  ok(same, "%s int8 1 head x 3 tokens: copy-on-write, swap out and in keep "
           "every byte of the pages (codes, scales, padding) (%s)",
     bn, pkv_status_name(st));
  free(before);
  free(after);
  free(pat);
  pkv_buffer_destroy(kb);
  pkv_buffer_destroy(sb);
  pkv_cache_destroy(c);
  pkv_context_destroy(ctx);
}

int main(void) {
  plan(2 * 3 * ERR_TESTS + 2 * 2);
  const pkv_backend_kind bes[2] = {PKV_BACKEND_CPU, PKV_BACKEND_OPENCL};
  for (int b = 0; b < 2; b++) {
    for (int i = 0; i < 3; i++) test_errors(bes[b], QD[i]);
    test_odd_pages(bes[b]);
  }
  return done_testing();
}
