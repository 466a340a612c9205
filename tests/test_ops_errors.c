/* SPDX-License-Identifier: Apache-2.0 */
/* Bad input to the operations: every check of pkv_write_kv,
 * pkv_write_kv_slots and pkv_attention answers with its own status, a
 * message naming the argument (and the limit), and writes nothing: the
 * pools of every layer, the output and the lse are compared byte for byte
 * before and after. */
#include "pagedkv.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { LAYERS = 2, NKV = 2, DIM = 64, PS = 16, NQ = 4, QLEN = 3 };
#define ESZ 2 /* f16 */

static pkv_context *ctx, *other;
static pkv_cache *cache;
static unsigned char *snap[2 * LAYERS + 2];
static size_t snap_len[2 * LAYERS + 2];
static pkv_buffer *watched[2 * LAYERS + 2];
static int nwatched;

static void watch(pkv_buffer *b) { watched[nwatched++] = b; }

static void take_snapshot(void) {
  for (int i = 0; i < nwatched; i++) {
    free(snap[i]);
    snap_len[i] = pkv_buffer_size(watched[i]);
    snap[i] = malloc(snap_len[i]);
    pkv_buffer_download(watched[i], 0, snap[i], snap_len[i]);
  }
}

static int unchanged(void) {
  int same = 1;
  for (int i = 0; i < nwatched; i++) {
    unsigned char *now = malloc(snap_len[i]);
    pkv_buffer_download(watched[i], 0, now, snap_len[i]);
    if (memcmp(now, snap[i], snap_len[i])) same = 0;
    free(now);
  }
  return same;
}

/* One bad call: its status, its message (from ctx, or the thread when
 * ctx_msg is NULL) containing every listed word, and no byte changed. */
static void expect(pkv_status got, pkv_status want, const pkv_context *c,
                   const char *what, const char *w1, const char *w2) {
  const char *msg = pkv_last_error(c);
  int named = (!w1 || strstr(msg, w1)) && (!w2 || strstr(msg, w2));
  ok(got == want && named && unchanged(), "%s -> %s, names '%s'%s%s: %s",
     what, pkv_status_name(want), w1 ? w1 : "", w2 ? " and " : "",
     w2 ? w2 : "", msg);
  if (got != want) diag("  got %s", pkv_status_name(got));
}

static pkv_buffer *buf(pkv_context *c, size_t bytes, unsigned char fillb) {
  pkv_buffer *b = NULL;
  if (pkv_buffer_create(c, bytes, &b) != PKV_OK) abort();
  unsigned char *tmp = malloc(bytes);
  memset(tmp, fillb, bytes);
  pkv_buffer_upload(b, 0, tmp, bytes);
  free(tmp);
  return b;
}

int main(void) {
  pkv_context_desc d;
  pkv_context_desc_init(&d);
  d.backend = PKV_BACKEND_CPU;
  if (pkv_context_create(&d, &ctx) != PKV_OK ||
      pkv_context_create(&d, &other) != PKV_OK)
    plan_skip_all("no CPU context");
  pkv_cache_desc cd;
  pkv_cache_desc_init(&cd);
  cd.num_layers = LAYERS;
  cd.num_kv_heads = NKV;
  cd.head_dim = DIM;
  cd.page_size = PS;
  cd.num_pages = 8;
  cd.dtype = PKV_DTYPE_F16;
  if (pkv_cache_create(ctx, &cd, &cache) != PKV_OK)
    plan_skip_all("cache creation failed");
  for (int l = 0; l < LAYERS; l++) {
    pkv_buffer *k, *v;
    pkv_cache_kv(cache, l, &k, &v);
    unsigned char *tmp = malloc(pkv_buffer_size(k));
    for (size_t i = 0; i < pkv_buffer_size(k); i++) tmp[i] = (unsigned char)(i * 7 + l);
    pkv_buffer_upload(k, 0, tmp, pkv_buffer_size(k));
    pkv_buffer_upload(v, 0, tmp, pkv_buffer_size(v));
    free(tmp);
    watch(k);
    watch(v);
  }
  pkv_seq_id seq;
  pkv_seq_open(cache, NULL, &seq);
  pkv_seq_append(cache, seq, 20, NULL, NULL);
  pkv_batch *unbuilt = NULL, *batch = NULL;
  pkv_batch_create(cache, &unbuilt);
  pkv_batch_create(cache, &batch);
  int32_t ql = QLEN;
  ok(pkv_batch_build(batch, &seq, 1, &ql) == PKV_OK, "batch built");

  const size_t qbytes = (size_t)QLEN * NQ * DIM * ESZ;
  const size_t kvbytes = (size_t)QLEN * NKV * DIM * ESZ;
  pkv_buffer *q = buf(ctx, qbytes, 0x11), *out = buf(ctx, qbytes, 0xee);
  pkv_buffer *lse = buf(ctx, (size_t)QLEN * NQ * 4, 0xdd);
  pkv_buffer *k = buf(ctx, kvbytes, 0x22), *v = buf(ctx, kvbytes, 0x33);
  pkv_buffer *q_small = buf(ctx, qbytes - 1, 0x11);
  pkv_buffer *out_small = buf(ctx, qbytes - ESZ, 0xee);
  pkv_buffer *lse_small = buf(ctx, (size_t)QLEN * NQ * 4 - 4, 0xdd);
  pkv_buffer *k_small = buf(ctx, kvbytes - 1, 0x22);
  pkv_buffer *q_other = buf(other, qbytes, 0x11);
  pkv_buffer *out_other = buf(other, qbytes, 0xee);
  pkv_buffer *lse_other = buf(other, (size_t)QLEN * NQ * 4, 0xdd);
  pkv_buffer *k_other = buf(other, kvbytes, 0x22);
  watch(out);
  watch(lse);
  take_snapshot();

  pkv_attn_params p;
  pkv_attn_params_init_sized(NULL, sizeof(pkv_attn_params), 4); /* no crash */
  pkv_attn_params_init(&p, NQ);
  ok(p.num_q_heads == NQ && p.causal == 1 && p.window_left == -1 &&
         p.scale == 0.0f && p.softcap == 0.0f && !p.alibi_slopes,
     "pkv_attn_params_init sets the documented defaults");

  /* ---- pkv_attention ---- */
  char numbuf[64];
  expect(pkv_attention(NULL, 0, &p, q, out, lse), PKV_ERR_NULL, NULL,
         "attention: NULL batch", "batch", NULL);
  expect(pkv_attention(batch, 0, NULL, q, out, lse), PKV_ERR_NULL, ctx,
         "attention: NULL params", "params", NULL);
  expect(pkv_attention(batch, 0, &p, NULL, out, lse), PKV_ERR_NULL, ctx,
         "attention: NULL q", "q is NULL", NULL);
  expect(pkv_attention(batch, 0, &p, q, NULL, lse), PKV_ERR_NULL, ctx,
         "attention: NULL out", "out is NULL", NULL);
  expect(pkv_attention(batch, -1, &p, q, out, lse), PKV_ERR_RANGE, ctx,
         "attention: layer -1", "layer -1", "2 layers");
  expect(pkv_attention(batch, LAYERS, &p, q, out, lse), PKV_ERR_RANGE, ctx,
         "attention: layer == num_layers", "layer 2", "2 layers");
  int32_t bad_heads[] = {0, -2, 3, 5};
  for (int i = 0; i < 4; i++) {
    pkv_attn_params b = p;
    b.num_q_heads = bad_heads[i];
    snprintf(numbuf, sizeof numbuf, "num_q_heads = %d", bad_heads[i]);
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: bad num_q_heads", numbuf, "num_kv_heads = 2");
  }
  {
    pkv_attn_params b = p;
    b.window_left = -2;
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: window_left -2", "window_left = -2", ">= -1");
  }
  float bad_f[] = {-1.0f, NAN, INFINITY};
  for (int i = 0; i < 3; i++) {
    pkv_attn_params b = p;
    b.softcap = bad_f[i];
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: bad softcap", "softcap", ">= 0");
    b = p;
    b.scale = bad_f[i];
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: bad scale", "scale", ">= 0");
  }
  {
    pkv_attn_params b = p;
    b.causal = 2;
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: causal 2", "causal = 2", "0 or 1");
    float slopes[NQ] = {0.5f, NAN, 0.125f, 0.0625f};
    b = p;
    b.alibi_slopes = slopes;
    expect(pkv_attention(batch, 0, &b, q, out, lse), PKV_ERR_INVALID, ctx,
           "attention: NaN ALiBi slope", "alibi_slopes[1]", NULL);
  }
  expect(pkv_attention(batch, 0, &p, q_other, out, lse), PKV_ERR_INVALID, ctx,
         "attention: q of another context", "q belongs", "context");
  expect(pkv_attention(batch, 0, &p, q, out_other, lse), PKV_ERR_INVALID, ctx,
         "attention: out of another context", "out belongs", "context");
  expect(pkv_attention(batch, 0, &p, q, out, lse_other), PKV_ERR_INVALID, ctx,
         "attention: lse of another context", "lse belongs", "context");
  snprintf(numbuf, sizeof numbuf, "%zu bytes", qbytes);
  char have[64];
  snprintf(have, sizeof have, "q holds %zu bytes", qbytes - 1);
  expect(pkv_attention(batch, 0, &p, q_small, out, lse), PKV_ERR_SIZE, ctx,
         "attention: q one byte short", have, numbuf);
  snprintf(have, sizeof have, "out holds %zu bytes", qbytes - ESZ);
  expect(pkv_attention(batch, 0, &p, q, out_small, lse), PKV_ERR_SIZE, ctx,
         "attention: out one element short", have, numbuf);
  snprintf(have, sizeof have, "lse holds %zu bytes", (size_t)QLEN * NQ * 4 - 4);
  snprintf(numbuf, sizeof numbuf, "%zu bytes", (size_t)QLEN * NQ * 4);
  expect(pkv_attention(batch, 0, &p, q, out, lse_small), PKV_ERR_SIZE, ctx,
         "attention: lse one row short", have, numbuf);
  expect(pkv_attention(unbuilt, 0, &p, q, out, lse), PKV_ERR_STATE, ctx,
         "attention: batch never built", "batch", "pkv_batch_build");

  /* ---- pkv_write_kv ---- */
  expect(pkv_write_kv(NULL, 0, k, v), PKV_ERR_NULL, NULL,
         "write_kv: NULL batch", "batch", NULL);
  expect(pkv_write_kv(batch, 0, NULL, v), PKV_ERR_NULL, ctx,
         "write_kv: NULL k", "k is NULL", NULL);
  expect(pkv_write_kv(batch, 0, k, NULL), PKV_ERR_NULL, ctx,
         "write_kv: NULL v", "v is NULL", NULL);
  expect(pkv_write_kv(batch, 7, k, v), PKV_ERR_RANGE, ctx,
         "write_kv: layer 7", "layer 7", "2 layers");
  snprintf(have, sizeof have, "k holds %zu bytes", kvbytes - 1);
  snprintf(numbuf, sizeof numbuf, "%zu bytes", kvbytes);
  expect(pkv_write_kv(batch, 0, k_small, v), PKV_ERR_SIZE, ctx,
         "write_kv: k one byte short", have, numbuf);
  snprintf(have, sizeof have, "v holds %zu bytes", kvbytes - 1);
  expect(pkv_write_kv(batch, 0, k, k_small), PKV_ERR_SIZE, ctx,
         "write_kv: v one byte short", have, numbuf);
  expect(pkv_write_kv(batch, 0, k_other, v), PKV_ERR_INVALID, ctx,
         "write_kv: k of another context", "k belongs", "context");
  expect(pkv_write_kv(batch, 0, k, k_other), PKV_ERR_INVALID, ctx,
         "write_kv: v of another context", "v belongs", "context");
  expect(pkv_write_kv(unbuilt, 0, k, v), PKV_ERR_STATE, ctx,
         "write_kv: batch never built", "batch", "pkv_batch_build");

  /* ---- pkv_write_kv_slots ---- */
  int64_t sl[QLEN] = {3, -1, 8 * PS - 1};
  pkv_buffer *slots = buf(ctx, sizeof sl, 0);
  pkv_buffer_upload(slots, 0, sl, sizeof sl);
  pkv_buffer *slots_small = buf(ctx, sizeof sl - 8, 0);
  pkv_buffer *slots_other = buf(other, sizeof sl, 0);
  int64_t past[QLEN] = {3, 8 * PS, 5};
  pkv_buffer *slots_past = buf(ctx, sizeof past, 0);
  pkv_buffer_upload(slots_past, 0, past, sizeof past);
  expect(pkv_write_kv_slots(NULL, 0, k, v, slots, QLEN), PKV_ERR_NULL, NULL,
         "write_kv_slots: NULL cache", "cache", NULL);
  expect(pkv_write_kv_slots(cache, 0, NULL, v, slots, QLEN), PKV_ERR_NULL, ctx,
         "write_kv_slots: NULL k", "k is NULL", NULL);
  expect(pkv_write_kv_slots(cache, 0, k, NULL, slots, QLEN), PKV_ERR_NULL, ctx,
         "write_kv_slots: NULL v", "v is NULL", NULL);
  expect(pkv_write_kv_slots(cache, 0, k, v, NULL, QLEN), PKV_ERR_NULL, ctx,
         "write_kv_slots: NULL slots", "slots is NULL", NULL);
  expect(pkv_write_kv_slots(cache, -3, k, v, slots, QLEN), PKV_ERR_RANGE, ctx,
         "write_kv_slots: layer -3", "layer -3", "2 layers");
  expect(pkv_write_kv_slots(cache, 0, k, v, slots, -1), PKV_ERR_INVALID, ctx,
         "write_kv_slots: n -1", "n = -1", NULL);
  expect(pkv_write_kv_slots(cache, 0, k, v, slots, INT64_MAX / 4),
         PKV_ERR_OVERFLOW, ctx, "write_kv_slots: n overflowing the byte count",
         "n = 2305843009213693951", "overflows");
  expect(pkv_write_kv_slots(cache, 0, k, v, slots, QLEN + 1), PKV_ERR_SIZE, ctx,
         "write_kv_slots: n larger than k holds", "k holds", NULL);
  expect(pkv_write_kv_slots(cache, 0, k, v, slots_small, QLEN), PKV_ERR_SIZE,
         ctx, "write_kv_slots: slots one entry short", "slots holds 16 bytes",
         "24 bytes");
  expect(pkv_write_kv_slots(cache, 0, k, v, slots_other, QLEN),
         PKV_ERR_INVALID, ctx, "write_kv_slots: slots of another context",
         "slots belongs", "context");
  expect(pkv_write_kv_slots(cache, 0, k, v, slots_past, QLEN), PKV_ERR_RANGE,
         ctx, "write_kv_slots: a slot == num_pages*page_size", "slots[1] = 128",
         "128 token slots");

  /* The same calls, well-formed, do work (so the checks above are not
   * refusing everything). */
  ok(pkv_write_kv_slots(cache, 0, k, v, slots, QLEN) == PKV_OK && !unchanged(),
     "write_kv_slots with valid slots (one skipped) writes");
  take_snapshot();
  ok(pkv_write_kv(batch, 1, k, v) == PKV_OK && !unchanged(),
     "write_kv through the batch writes");
  take_snapshot();
  ok(pkv_attention(batch, 1, &p, q, out, lse) == PKV_OK && !unchanged(),
     "attention with valid arguments writes out and lse");
  ok(pkv_write_kv_slots(cache, 0, k, v, slots, 0) == PKV_OK,
     "write_kv_slots with n = 0 is a no-op success");

  pkv_buffer *all[] = {q, out, lse, k, v, q_small, out_small, lse_small,
                       k_small, q_other, out_other, lse_other, k_other,
                       slots, slots_small, slots_other, slots_past};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    pkv_buffer_destroy(all[i]);
  for (int i = 0; i < nwatched; i++) free(snap[i]);
  pkv_batch_destroy(batch);
  pkv_batch_destroy(unbuilt);
  pkv_cache_destroy(cache);
  pkv_context_destroy(ctx);
  pkv_context_destroy(other);
  return done_testing();
}
