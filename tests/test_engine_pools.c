/* SPDX-License-Identifier: Apache-2.0 */
/* Engine-allocated pools and DLPack export. The "engine" allocates the K/V
 * pools itself, wraps them and creates a cache over them; writes land in
 * its memory, attention equals that of a cache that allocated its own
 * pools with the same content, and the DLPack views alias the engine's
 * memory with the geometry's shape and strides. OpenCL buffers are not
 * DLPack-able: a distinct status. */
#include "pagedkv.h"
#include "pkv_dlpack.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LAYERS 2
#define NKV 2
#define NQ 4
#define D 64
#define PS 16
#define NPAGES 8

static void desc_of(pkv_cache_desc *d, pkv_layout layout) {
  pkv_cache_desc_init(d);
  d->num_layers = LAYERS;
  d->num_kv_heads = NKV;
  d->head_dim = D;
  d->page_size = PS;
  d->num_pages = NPAGES;
  d->dtype = PKV_DTYPE_F32;
  d->layout = layout;
}

/* One step on a cache: two sequences, append, build, write the same K/V
 * to both layers, attention on layer 1. */
static pkv_status step(pkv_cache *c, pkv_batch *b, const float *kv,
                       const float *q, float *out) {
  pkv_context *ctx = pkv_cache_context(c);
  pkv_seq_id s[2];
  int32_t ql[2] = {20, 5};
  pkv_status st = PKV_OK;
  for (int i = 0; i < 2 && st == PKV_OK; i++) {
    st = pkv_seq_open(c, NULL, &s[i]);
    if (st == PKV_OK) st = pkv_seq_append(c, s[i], ql[i], NULL, NULL);
  }
  if (st == PKV_OK) st = pkv_batch_build(b, s, 2, ql);
  size_t kvb = (size_t)25 * NKV * D * 4, qb = (size_t)25 * NQ * D * 4;
  pkv_buffer *k = NULL, *v = NULL, *qq = NULL, *o = NULL;
  if (st == PKV_OK) st = pkv_buffer_create(ctx, kvb, &k);
  if (st == PKV_OK) st = pkv_buffer_create(ctx, kvb, &v);
  if (st == PKV_OK) st = pkv_buffer_create(ctx, qb, &qq);
  if (st == PKV_OK) st = pkv_buffer_create(ctx, qb, &o);
  if (st == PKV_OK) st = pkv_buffer_upload(k, 0, kv, kvb);
  if (st == PKV_OK) st = pkv_buffer_upload(v, 0, kv + 25 * NKV * D, kvb);
  if (st == PKV_OK) st = pkv_buffer_upload(qq, 0, q, qb);
  for (int l = 0; l < LAYERS && st == PKV_OK; l++) st = pkv_write_kv(b, l, k, v);
  pkv_attn_params p;
  pkv_attn_params_init(&p, NQ);
  if (st == PKV_OK) st = pkv_attention(b, 1, &p, qq, o, NULL);
  if (st == PKV_OK) st = pkv_buffer_download(o, 0, out, qb);
  pkv_buffer_destroy(k);
  pkv_buffer_destroy(v);
  pkv_buffer_destroy(qq);
  pkv_buffer_destroy(o);
  return st;
}

static int has_opencl(void) {
  int n = 0;
  return pkv_backend_available(PKV_BACKEND_OPENCL) &&
         pkv_list_devices(PKV_BACKEND_OPENCL, NULL, 0, &n) == PKV_OK && n > 0;
}

int main(void) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  if (pkv_context_create(&cd, &ctx) != PKV_OK) plan_skip_all("no CPU context");
  plan(18);

  pkv_cache_desc desc;
  desc_of(&desc, PKV_LAYOUT_NHD);
  const size_t layer_bytes = (size_t)NPAGES * PS * NKV * D * 4;
  float *mem[2 * LAYERS];
  pkv_buffer *kb[LAYERS], *vb[LAYERS];
  for (int i = 0; i < 2 * LAYERS; i++) {
    mem[i] = aligned_alloc(64, layer_bytes);
    memset(mem[i], 0, layer_bytes);
  }
  for (int l = 0; l < LAYERS; l++) {
    pkv_buffer_wrap(ctx, mem[2 * l], layer_bytes, &kb[l]);
    pkv_buffer_wrap(ctx, mem[2 * l + 1], layer_bytes, &vb[l]);
  }

  /* bad input first: nothing is created */
  pkv_cache *c = NULL;
  ok(pkv_cache_create_over(ctx, &desc, NULL, vb, &c) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "k_bufs") && !c,
     "create_over: NULL k_bufs is PKV_ERR_NULL naming it: %s",
     pkv_last_error(ctx));
  pkv_buffer *small = NULL;
  pkv_buffer_wrap(ctx, mem[3], layer_bytes - 4, &small);
  pkv_buffer *vb_bad[LAYERS] = {vb[0], small};
  ok(pkv_cache_create_over(ctx, &desc, kb, vb_bad, &c) == PKV_ERR_SIZE &&
         strstr(pkv_last_error(ctx), "v_bufs[1]") && !c,
     "create_over: a pool one element short is PKV_ERR_SIZE naming v_bufs[1]: "
     "%s",
     pkv_last_error(ctx));
  pkv_buffer *odd = NULL;
  pkv_buffer_wrap(ctx, (char *)mem[0] + 4, layer_bytes - 64, &odd);
  desc.num_pages = NPAGES - 1;
  pkv_buffer *kb_odd[LAYERS] = {odd, kb[1]};
  ok(pkv_cache_create_over(ctx, &desc, kb_odd, vb, &c) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "k_bufs[0]") &&
         strstr(pkv_last_error(ctx), "aligned") && !c,
     "create_over: a pool not 16-byte aligned is PKV_ERR_INVALID naming "
     "k_bufs[0]: %s",
     pkv_last_error(ctx));
  desc.num_pages = NPAGES;
  pkv_buffer_destroy(small);
  pkv_buffer_destroy(odd);

  pkv_status st = pkv_cache_create_over(ctx, &desc, kb, vb, &c);
  ok(st == PKV_OK, "create_over on engine-allocated pools: %s",
     pkv_last_error(ctx));
  if (st != PKV_OK) return 1;
  pkv_cache *own = NULL;
  pkv_cache_create(ctx, &desc, &own);

  float kv[2 * 25 * NKV * D], q[25 * NQ * D], o1[25 * NQ * D], o2[25 * NQ * D];
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    kv[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
    q[i] = (float)((i * 40503u) % 1000) / 500.0f - 1.0f;
  pkv_batch *b1 = NULL, *b2 = NULL;
  pkv_batch_create(c, &b1);
  pkv_batch_create(own, &b2);
  pkv_status s1 = step(c, b1, kv, q, o1), s2 = step(own, b2, kv, q, o2);
  ok(s1 == PKV_OK && s2 == PKV_OK && memcmp(o1, o2, sizeof o1) == 0,
     "attention over engine pools equals attention over the cache's own "
     "(%s)",
     pkv_last_error(ctx));

  /* One path to the kernels: pkv_attention of the batch (with sinks) and
   * pkv_kv_attention over the cache's view and the batch's CSR table give
   * the same bits. */
  {
    float sk[NQ] = {0.5f, -1.0f, 2.0f, 0.0f}, oa[25 * NQ * D], ob[25 * NQ * D];
    pkv_buffer *qq = NULL, *o = NULL;
    pkv_buffer_create(ctx, sizeof q, &qq);
    pkv_buffer_create(ctx, sizeof oa, &o);
    pkv_buffer_upload(qq, 0, q, sizeof q);
    pkv_attn_params p;
    pkv_attn_params_init(&p, NQ);
    p.sinks = sk;
    pkv_status sa = pkv_attention(b1, 1, &p, qq, o, NULL);
    pkv_buffer_download(o, 0, oa, sizeof oa);
    pkv_kv_view view;
    pkv_kv_table table;
    pkv_tensor qt, ot;
    pkv_kv_view_init(&view);
    pkv_kv_table_init(&table);
    pkv_tensor_init(&qt);
    pkv_tensor_init(&ot);
    qt.buf = qq;
    ot.buf = o;
    pkv_status sb = pkv_cache_kv_view(c, 1, &view);
    if (sb == PKV_OK) sb = pkv_batch_get_table(b1, PKV_TABLE_CSR, &table);
    if (sb == PKV_OK) sb = pkv_kv_attention(ctx, &view, &table, &p, &qt, &ot, NULL);
    pkv_buffer_download(o, 0, ob, sizeof ob);
    ok(sa == PKV_OK && sb == PKV_OK && memcmp(oa, ob, sizeof oa) == 0 &&
           memcmp(oa, o1, sizeof oa) != 0,
       "pkv_attention with sinks equals pkv_kv_attention over the cache's "
       "view and the batch's CSR table, bitwise (and the sinks change it)");
    pkv_buffer_destroy(qq);
    pkv_buffer_destroy(o);
  }

  /* the write landed in the engine's memory, where the geometry says */
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(c, &g);
  pkv_batch_view bv;
  pkv_batch_view_init(&bv);
  pkv_batch_get_view(b1, &bv);
  int64_t slot = bv.slot_mapping[21]; /* token 1 of the second sequence */
  const float *row = mem[2 * 1 + 1] + (slot / PS) * g.page_stride +
                     1 * g.head_stride + (slot % PS) * g.token_stride;
  ok(memcmp(row, kv + 25 * NKV * D + (21 * NKV + 1) * D, D * 4) == 0,
     "pkv_write_kv wrote V of layer 1 into the engine's buffer at the "
     "geometry's offset");
  pkv_buffer *k1 = NULL;
  pkv_cache_kv(c, 1, &k1, NULL);
  ok(k1 && pkv_buffer_native(k1) == mem[2],
     "pkv_cache_kv returns a view of the engine's buffer");

  /* DLPack of the pools */
  DLManagedTensor *t = NULL;
  st = pkv_cache_export_dlpack(c, 1, PKV_POOL_V, &t);
  ok(st == PKV_OK && t && t->dl_tensor.data == mem[3] &&
         t->dl_tensor.device.device_type == kDLCPU && t->dl_tensor.ndim == 4 &&
         t->dl_tensor.dtype.code == kDLFloat && t->dl_tensor.dtype.bits == 32,
     "pool export: the engine's pointer, kDLCPU, f32, 4 dims");
  ok(t && t->dl_tensor.shape[0] == NPAGES && t->dl_tensor.shape[1] == PS &&
         t->dl_tensor.shape[2] == NKV && t->dl_tensor.shape[3] == D &&
         t->dl_tensor.strides[0] == g.page_stride &&
         t->dl_tensor.strides[1] == g.token_stride &&
         t->dl_tensor.strides[2] == g.head_stride &&
         t->dl_tensor.strides[3] == 1,
     "NHD pool export: shape [pages][page_size][kv heads][dim], the "
     "geometry's strides");
  if (t) {
    const float *p = t->dl_tensor.data;
    int64_t pg = slot / PS, off = slot % PS;
    const int64_t *sd = t->dl_tensor.strides;
    ok(memcmp(p + pg * sd[0] + off * sd[1] + 1 * sd[2],
              kv + 25 * NKV * D + (21 * NKV + 1) * D, D * 4) == 0,
       "the DLPack view addresses the written row through its strides");
    t->deleter(t);
  } else {
    ok(0, "the DLPack view addresses the written row through its strides");
  }
  ok(pkv_cache_export_dlpack(c, 1, 2, &t) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "which"),
     "pool export: which = 2 is PKV_ERR_INVALID naming it");
  ok(pkv_cache_export_dlpack(c, LAYERS, PKV_POOL_K, &t) == PKV_ERR_RANGE,
     "pool export: layer past the cache is PKV_ERR_RANGE");

  /* DLPack of the batch arrays */
  DLManagedTensor *bt = NULL, *kvi = NULL, *sm = NULL;
  pkv_batch_device dev;
  pkv_batch_device_init(&dev);
  pkv_batch_get_device(b1, &dev);
  st = pkv_batch_export_dlpack(b1, PKV_BATCH_BLOCK_TABLE, &bt);
  ok(st == PKV_OK && bt->dl_tensor.ndim == 2 && bt->dl_tensor.shape[0] == 2 &&
         bt->dl_tensor.shape[1] == bv.max_pages &&
         bt->dl_tensor.data == pkv_buffer_native(dev.block_table) &&
         !memcmp(bt->dl_tensor.data, bv.block_table,
                 sizeof(int32_t) * 2 * (size_t)bv.max_pages),
     "block-table export: int32 [num_seqs][max_pages], the device copy, same "
     "content as the view");
  st = pkv_batch_export_dlpack(b1, PKV_BATCH_KV_INDICES, &kvi);
  ok(st == PKV_OK && kvi->dl_tensor.shape[0] == bv.kv_indptr[2] &&
         !memcmp(kvi->dl_tensor.data, bv.kv_indices,
                 sizeof(int32_t) * (size_t)bv.kv_indptr[2]),
     "kv_indices export: kv_indptr[num_seqs] entries, same content");
  st = pkv_batch_export_dlpack(b1, PKV_BATCH_SLOT_MAPPING, &sm);
  ok(st == PKV_OK && sm->dl_tensor.dtype.bits == 64 &&
         sm->dl_tensor.shape[0] == bv.num_tokens,
     "slot-mapping export: int64 [num_tokens]");
  if (bt) bt->deleter(bt);
  if (kvi) kvi->deleter(kvi);
  if (sm) sm->deleter(sm);
  pkv_batch *unbuilt = NULL;
  pkv_batch_create(c, &unbuilt);
  ok(pkv_batch_export_dlpack(unbuilt, PKV_BATCH_SEQ_LENS, &bt) == PKV_ERR_STATE,
     "batch export before a build is PKV_ERR_STATE");
  pkv_batch_destroy(unbuilt);

  /* OpenCL: no DLPack device */
  if (has_opencl()) {
    pkv_context *ocl = NULL;
    cd.backend = PKV_BACKEND_OPENCL;
    pkv_cache *oc = NULL;
    desc_of(&desc, PKV_LAYOUT_HND);
    if (pkv_context_create(&cd, &ocl) == PKV_OK &&
        pkv_cache_create(ocl, &desc, &oc) == PKV_OK) {
      t = NULL;
      st = pkv_cache_export_dlpack(oc, 0, PKV_POOL_K, &t);
      ok(st == PKV_ERR_NOT_EXPORTABLE && !t &&
             strstr(pkv_last_error(ocl), "opencl"),
         "OpenCL pool export is PKV_ERR_NOT_EXPORTABLE: %s",
         pkv_last_error(ocl));
    } else {
      ok(0, "OpenCL cache for the export check");
    }
    pkv_cache_destroy(oc);
    pkv_context_destroy(ocl);
  } else {
    printf("ok %d - # SKIP no OpenCL device\n", ++tap_n);
  }

  pkv_batch_destroy(b1);
  pkv_batch_destroy(b2);
  pkv_cache_destroy(c);
  pkv_cache_destroy(own);
  /* the engine's memory is the engine's to free (valgrind sees a double
   * free if the cache freed it) */
  for (int l = 0; l < LAYERS; l++) {
    pkv_buffer_destroy(kb[l]);
    pkv_buffer_destroy(vb[l]);
  }
  for (int i = 0; i < 2 * LAYERS; i++) free(mem[i]);
  pkv_context_destroy(ctx);
  return tap_failed ? 1 : 0;
}
