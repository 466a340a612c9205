/* SPDX-License-Identifier: Apache-2.0 */
/* The growable-struct rule (doc/ABI.md) through the public API only:
 *  - an "old program" passes structs of the 1.0 size (the fields up to the
 *    last one of 1.0): every call works, absent fields take defaults;
 *  - a "newer program" passes structs larger than this library's: trailing
 *    zeros are accepted, a non-zero unknown field is PKV_ERR_UNSUPPORTED,
 *    and output calls leave the unknown tail as it was;
 *  - a struct_size below the 1.0 fields is PKV_ERR_INVALID naming the
 *    argument, with nothing changed;
 *  - canary bytes right after the caller's struct_size bytes are never
 *    written, by an initialiser or by any call that fills a struct. */
#include "pagedkv.h"
#include "tap.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define THROUGH(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))
/* The 1.0 sizes, as an old program's header had them. */
#define V1_DEVICE_INFO THROUGH(pkv_device_info, wave_size)
#define V1_CONTEXT_DESC THROUGH(pkv_context_desc, cache_dir)
#define V1_CACHE_DESC THROUGH(pkv_cache_desc, num_host_pages)
#define V1_GEOMETRY THROUGH(pkv_cache_geometry, layer_bytes)
#define V1_SEQ_DESC THROUGH(pkv_seq_desc, namespace_id)
#define V1_STATS THROUGH(pkv_stats, classes)
#define V1_PAGE_INFO THROUGH(pkv_page_info, indexed)
#define V1_VIEW THROUGH(pkv_batch_view, slot_mapping)
#define V1_DEVICE THROUGH(pkv_batch_device, slot_mapping)
#define V1_PARAMS THROUGH(pkv_attn_params, alibi_slopes)

#define CANARY 0xC5
#define CANARY_LEN 64
#define GROW 48 /* bytes a "newer program" appends */

/* A caller's struct of `size` bytes followed by canary bytes, in memory
 * aligned for any of the structs. */
typedef struct slot {
  unsigned char *p;
  size_t size;
} slot;

static slot slot_new(size_t size) {
  slot s = {aligned_alloc(64, (size + CANARY_LEN + 63) / 64 * 64), size};
  if (!s.p) {
    printf("Bail out! allocation\n");
    exit(1);
  }
  memset(s.p, 0xEE, size);
  memset(s.p + size, CANARY, CANARY_LEN);
  return s;
}

static int canary_ok(slot s) {
  for (size_t i = 0; i < CANARY_LEN; i++)
    if (s.p[s.size + i] != CANARY) return 0;
  return 1;
}

static int all_byte(const unsigned char *p, size_t n, unsigned char b) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != b) return 0;
  return 1;
}

static size_t size_field(slot s) {
  size_t n;
  memcpy(&n, s.p, sizeof n);
  return n;
}

static int msg_has(const pkv_context *ctx, const char *a, const char *b) {
  const char *m = pkv_last_error(ctx);
  return strstr(m, a) && (!b || strstr(m, b));
}

/* Every initialiser, at the old size, the library's size and a newer one:
 * struct_size records the size, defaults are in place, a newer tail is
 * zeroed, and nothing past the struct is written. */
static void test_initialisers(void) {
  const size_t sizes[3][10] = {
      {V1_DEVICE_INFO, V1_CONTEXT_DESC, V1_CACHE_DESC, V1_GEOMETRY, V1_SEQ_DESC,
       V1_STATS, V1_PAGE_INFO, V1_VIEW, V1_DEVICE, V1_PARAMS},
      {sizeof(pkv_device_info), sizeof(pkv_context_desc),
       sizeof(pkv_cache_desc), sizeof(pkv_cache_geometry), sizeof(pkv_seq_desc),
       sizeof(pkv_stats), sizeof(pkv_page_info), sizeof(pkv_batch_view),
       sizeof(pkv_batch_device), sizeof(pkv_attn_params)},
      {0}};
  static const char *const names[10] = {
      "device_info", "context_desc", "cache_desc", "cache_geometry", "seq_desc",
      "stats",       "page_info",    "batch_view", "batch_device", "attn_params"};
  for (int v = 0; v < 3; v++) {
    static const char *const who[3] = {"old (1.0)", "this", "newer"};
    int good = 1;
    for (int t = 0; t < 10; t++) {
      size_t lib = sizes[1][t];
      size_t size = v == 2 ? lib + GROW : sizes[v][t];
      slot s = slot_new(size);
      switch (t) {
      case 0: pkv_device_info_init_sized((void *)s.p, size); break;
      case 1: pkv_context_desc_init_sized((void *)s.p, size); break;
      case 2: pkv_cache_desc_init_sized((void *)s.p, size); break;
      case 3: pkv_cache_geometry_init_sized((void *)s.p, size); break;
      case 4: pkv_seq_desc_init_sized((void *)s.p, size); break;
      case 5: pkv_stats_init_sized((void *)s.p, size); break;
      case 6: pkv_page_info_init_sized((void *)s.p, size); break;
      case 7: pkv_batch_view_init_sized((void *)s.p, size); break;
      case 8: pkv_batch_device_init_sized((void *)s.p, size); break;
      case 9: pkv_attn_params_init_sized((void *)s.p, size, 8); break;
      }
      int tail_zero = size <= lib || all_byte(s.p + lib, size - lib, 0);
      if (size_field(s) != size || !canary_ok(s) || !tail_zero) {
        diag("%s init at %zu bytes: struct_size %zu, canary %s, tail %s",
             names[t], size, size_field(s), canary_ok(s) ? "kept" : "WRITTEN",
             tail_zero ? "zero" : "NOT ZERO");
        good = 0;
      }
      free(s.p);
    }
    ok(good, "%s-size initialisers: struct_size set, tail zeroed, canary kept",
       who[v]);
  }
  /* Defaults survive an old-size init. */
  slot s = slot_new(V1_PARAMS);
  pkv_attn_params_init_sized((void *)s.p, V1_PARAMS, 4);
  pkv_attn_params *p = (void *)s.p;
  ok(p->num_q_heads == 4 && p->causal == 1 && p->window_left == -1 &&
         p->scale == 0.0f && !p->alibi_slopes && canary_ok(s),
     "attn_params defaults at the 1.0 size");
  free(s.p);
  /* A size that cannot hold struct_size is not written at all. */
  unsigned char tiny[sizeof(size_t) + CANARY_LEN];
  memset(tiny, CANARY, sizeof tiny);
  pkv_stats_init_sized((void *)tiny, sizeof(size_t) - 1);
  ok(all_byte(tiny, sizeof tiny, CANARY),
     "an initialiser given fewer bytes than struct_size writes nothing");
}

static pkv_context *make_ctx(size_t size, pkv_status *st) {
  slot s = slot_new(size);
  pkv_context_desc_init_sized((void *)s.p, size);
  ((pkv_context_desc *)s.p)->backend = PKV_BACKEND_CPU;
  pkv_context *ctx = NULL;
  *st = pkv_context_create((void *)s.p, &ctx);
  free(s.p);
  return ctx;
}

static void test_context(void) {
  pkv_status st;
  pkv_context *ctx = make_ctx(V1_CONTEXT_DESC, &st);
  ok(st == PKV_OK && ctx && pkv_context_backend(ctx) == PKV_BACKEND_CPU,
     "context from an old program's context_desc");
  pkv_context_destroy(ctx);
  ctx = make_ctx(sizeof(pkv_context_desc) + GROW, &st);
  ok(st == PKV_OK && ctx, "context from a newer program's zero-tailed desc");
  pkv_context_destroy(ctx);

  /* A newer program that sets a field this library does not know. */
  slot s = slot_new(sizeof(pkv_context_desc) + GROW);
  pkv_context_desc_init_sized((void *)s.p, s.size);
  s.p[sizeof(pkv_context_desc) + 3] = 1;
  ctx = NULL;
  st = pkv_context_create((void *)s.p, &ctx);
  ok(st == PKV_ERR_UNSUPPORTED && !ctx && msg_has(NULL, "desc", "older"),
     "an unknown non-zero field is refused, not ignored: %s",
     pkv_last_error(NULL));
  free(s.p);

  s = slot_new(V1_CONTEXT_DESC);
  pkv_context_desc_init_sized((void *)s.p, V1_CONTEXT_DESC - 1);
  st = pkv_context_create((void *)s.p, &ctx);
  ok(st == PKV_ERR_INVALID && msg_has(NULL, "desc->struct_size", NULL),
     "a context_desc smaller than 1.0 is refused, naming it: %s",
     pkv_last_error(NULL));
  free(s.p);

  /* Device listing: the stride is out[0].struct_size. */
  size_t stride = sizeof(pkv_device_info) + GROW;
  unsigned char *arr = malloc(2 * stride + CANARY_LEN);
  memset(arr, 0x5A, 2 * stride + CANARY_LEN);
  pkv_device_info_init_sized((void *)arr, stride);
  memset(arr + sizeof(pkv_device_info), 0x5A, GROW); /* the newer tail */
  int n = 0;
  st = pkv_list_devices(PKV_BACKEND_CPU, (void *)arr, 2, &n);
  const pkv_device_info *d0 = (const void *)arr;
  ok(st == PKV_OK && n == 1 && d0->struct_size == stride &&
         d0->type == PKV_DEVICE_CPU &&
         all_byte(arr + sizeof(pkv_device_info), GROW, 0x5A) &&
         all_byte(arr + stride, stride + CANARY_LEN, 0x5A),
     "list_devices writes at the caller's stride, never its unknown tail");
  free(arr);
  slot small = slot_new(V1_DEVICE_INFO);
  pkv_device_info_init_sized((void *)small.p, 16);
  ok(pkv_list_devices(PKV_BACKEND_CPU, (void *)small.p, 1, &n) ==
             PKV_ERR_INVALID &&
         msg_has(NULL, "out[0]->struct_size", NULL) && canary_ok(small),
     "list_devices refuses a too-small out[0]: %s", pkv_last_error(NULL));
  free(small.p);
}

/* One output call at a given struct size: fills, keeps canary. */
typedef pkv_status (*fill_fn)(void *ud, void *out);

static int check_out(const char *what, size_t lib, size_t v1,
                     void (*init)(void *, size_t), fill_fn fill, void *ud,
                     const pkv_context *ctx) {
  int good = 1;
  /* old program */
  slot s = slot_new(v1);
  init(s.p, v1);
  if (fill(ud, s.p) != PKV_OK || !canary_ok(s) || size_field(s) != v1) {
    diag("%s at the 1.0 size: %s", what, pkv_last_error(ctx));
    good = 0;
  }
  free(s.p);
  /* newer program: its tail stays as it was */
  s = slot_new(lib + GROW);
  init(s.p, lib + GROW);
  memset(s.p + lib, 0x5A, GROW);
  if (fill(ud, s.p) != PKV_OK || !canary_ok(s) ||
      !all_byte(s.p + lib, GROW, 0x5A) || size_field(s) != lib + GROW) {
    diag("%s at a newer size: tail or canary written", what);
    good = 0;
  }
  free(s.p);
  /* too small: refused, naming the argument, nothing written */
  s = slot_new(v1);
  init(s.p, v1);
  memcpy(s.p, &(size_t){v1 - 1}, sizeof(size_t));
  unsigned char *copy = malloc(v1);
  memcpy(copy, s.p, v1);
  pkv_status st = fill(ud, s.p);
  if (st != PKV_ERR_INVALID || !msg_has(ctx, "out->struct_size", NULL) ||
      memcmp(copy, s.p, v1) || !canary_ok(s)) {
    diag("%s too small: %s (%s)", what, pkv_status_name(st),
         pkv_last_error(ctx));
    good = 0;
  }
  free(copy);
  free(s.p);
  return good;
}

typedef struct env {
  pkv_context *ctx;
  pkv_cache *cache;
  pkv_batch *batch;
} env;

static pkv_status f_devinfo(void *ud, void *o) {
  return pkv_context_device_info(((env *)ud)->ctx, o);
}
static pkv_status f_geom(void *ud, void *o) {
  return pkv_cache_get_geometry(((env *)ud)->cache, o);
}
static pkv_status f_stats(void *ud, void *o) {
  return pkv_cache_stats(((env *)ud)->cache, o);
}
static pkv_status f_page(void *ud, void *o) {
  return pkv_page_get_info(((env *)ud)->cache, 0, o);
}
static pkv_status f_view(void *ud, void *o) {
  return pkv_batch_get_view(((env *)ud)->batch, o);
}
static pkv_status f_dev(void *ud, void *o) {
  return pkv_batch_get_device(((env *)ud)->batch, o);
}
static void i_devinfo(void *p, size_t n) { pkv_device_info_init_sized(p, n); }
static void i_geom(void *p, size_t n) { pkv_cache_geometry_init_sized(p, n); }
static void i_stats(void *p, size_t n) { pkv_stats_init_sized(p, n); }
static void i_page(void *p, size_t n) { pkv_page_info_init_sized(p, n); }
static void i_view(void *p, size_t n) { pkv_batch_view_init_sized(p, n); }
static void i_dev(void *p, size_t n) { pkv_batch_device_init_sized(p, n); }

int main(void) {
  test_initialisers();
  test_context();

  pkv_status st;
  env e = {make_ctx(sizeof(pkv_context_desc), &st), NULL, NULL};
  if (!e.ctx) {
    printf("Bail out! CPU context: %s\n", pkv_last_error(NULL));
    return 1;
  }

  /* A cache from an old program's desc: the fields it set are honoured. */
  slot cd = slot_new(V1_CACHE_DESC);
  pkv_cache_desc_init_sized((void *)cd.p, V1_CACHE_DESC);
  pkv_cache_desc *d = (void *)cd.p;
  d->head_dim = 64;
  d->page_size = 4;
  d->num_pages = 32;
  d->dtype = PKV_DTYPE_F32;
  ok(pkv_cache_create(e.ctx, d, &e.cache) == PKV_OK && canary_ok(cd),
     "cache from an old program's cache_desc: %s", pkv_last_error(e.ctx));
  if (!e.cache) {
    printf("Bail out! no cache\n");
    return 1;
  }
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  ok(pkv_cache_get_geometry(e.cache, &g) == PKV_OK && g.head_dim == 64 &&
         g.page_size == 4 && g.num_pages == 32 && g.dtype == PKV_DTYPE_F32,
     "its geometry is the one the old desc asked for");
  /* too small / unknown field */
  memcpy(cd.p, &(size_t){V1_CACHE_DESC - 8}, sizeof(size_t));
  pkv_cache *c2 = NULL;
  ok(pkv_cache_create(e.ctx, d, &c2) == PKV_ERR_INVALID && !c2 &&
         msg_has(e.ctx, "desc->struct_size", NULL),
     "a too-small cache_desc is refused: %s", pkv_last_error(e.ctx));
  free(cd.p);
  cd = slot_new(sizeof(pkv_cache_desc) + GROW);
  pkv_cache_desc_init_sized((void *)cd.p, cd.size);
  ((pkv_cache_desc *)cd.p)->head_dim = 64;
  ((pkv_cache_desc *)cd.p)->num_pages = 8;
  cd.p[sizeof(pkv_cache_desc) + GROW - 1] = 7;
  ok(pkv_cache_create(e.ctx, (void *)cd.p, &c2) == PKV_ERR_UNSUPPORTED && !c2,
     "a cache_desc setting an unknown field is refused");
  cd.p[sizeof(pkv_cache_desc) + GROW - 1] = 0;
  ok(pkv_cache_create(e.ctx, (void *)cd.p, &c2) == PKV_OK && c2,
     "the same newer desc with its new field at the default works");
  pkv_cache_destroy(c2);
  free(cd.p);

  /* Sequences from old and newer seq_desc. */
  pkv_seq_id a = 0, b = 0;
  slot sd = slot_new(V1_SEQ_DESC);
  pkv_seq_desc_init_sized((void *)sd.p, V1_SEQ_DESC);
  ((pkv_seq_desc *)sd.p)->namespace_id = 9;
  ok(pkv_seq_open(e.cache, (void *)sd.p, &a) == PKV_OK && canary_ok(sd),
     "seq_open with an old program's seq_desc");
  free(sd.p);
  sd = slot_new(sizeof(pkv_seq_desc) + GROW);
  pkv_seq_desc_init_sized((void *)sd.p, sd.size);
  ok(pkv_seq_open(e.cache, (void *)sd.p, &b) == PKV_OK,
     "seq_open with a newer program's seq_desc");
  sd.p[sizeof(pkv_seq_desc)] = 1;
  pkv_seq_id x = 0;
  ok(pkv_seq_open(e.cache, (void *)sd.p, &x) == PKV_ERR_UNSUPPORTED && !x &&
         msg_has(e.ctx, "desc", NULL),
     "seq_open refuses an unknown field: %s", pkv_last_error(e.ctx));
  memcpy(sd.p, &(size_t){4}, sizeof(size_t));
  ok(pkv_seq_open(e.cache, (void *)sd.p, &x) == PKV_ERR_INVALID && !x,
     "seq_open refuses a too-small seq_desc");
  pkv_stats before, after;
  pkv_stats_init(&before);
  pkv_stats_init(&after);
  pkv_cache_stats(e.cache, &before);
  pkv_seq_close_session(e.cache, b, 77);
  pkv_cache_stats(e.cache, &before);
  ok(pkv_session_open(e.cache, 77, (void *)sd.p, &x, &(int64_t){0}) ==
             PKV_ERR_INVALID &&
         pkv_cache_stats(e.cache, &after) == PKV_OK &&
         !memcmp(&before, &after, sizeof before),
     "session_open refuses a too-small seq_desc, state unchanged");
  free(sd.p);

  int64_t slots[3];
  pkv_seq_append(e.cache, a, 3, NULL, slots);
  pkv_batch_create(e.cache, &e.batch);
  if (pkv_batch_build(e.batch, &a, 1, (const int32_t[]){3}) != PKV_OK) {
    printf("Bail out! batch build: %s\n", pkv_last_error(e.ctx));
    return 1;
  }

  ok(check_out("context_device_info", sizeof(pkv_device_info), V1_DEVICE_INFO,
               i_devinfo, f_devinfo, &e, e.ctx),
     "context_device_info: old, newer and too-small structs");
  ok(check_out("cache_get_geometry", sizeof(pkv_cache_geometry), V1_GEOMETRY,
               i_geom, f_geom, &e, e.ctx),
     "cache_get_geometry: old, newer and too-small structs");
  ok(check_out("cache_stats", sizeof(pkv_stats), V1_STATS, i_stats, f_stats,
               &e, e.ctx),
     "cache_stats: old, newer and too-small structs");
  ok(check_out("page_get_info", sizeof(pkv_page_info), V1_PAGE_INFO, i_page,
               f_page, &e, e.ctx),
     "page_get_info: old, newer and too-small structs");
  ok(check_out("batch_get_view", sizeof(pkv_batch_view), V1_VIEW, i_view,
               f_view, &e, e.ctx),
     "batch_get_view: old, newer and too-small structs");
  ok(check_out("batch_get_device", sizeof(pkv_batch_device), V1_DEVICE, i_dev,
               f_dev, &e, e.ctx),
     "batch_get_device: old, newer and too-small structs");

  /* What an old-size stats struct reads is what the full one reads. */
  slot ss = slot_new(V1_STATS);
  pkv_stats_init_sized((void *)ss.p, V1_STATS);
  pkv_cache_stats(e.cache, &after);
  pkv_cache_stats(e.cache, (void *)ss.p);
  ok(!memcmp(ss.p + sizeof(size_t), (unsigned char *)&after + sizeof(size_t),
             V1_STATS - sizeof(size_t)),
     "an old-size stats struct gets the same 1.0 fields");
  free(ss.p);

  /* Attention with params of each size. */
  pkv_buffer *kb = NULL, *vb = NULL, *q = NULL, *out = NULL;
  size_t rows = 3 * 64 * sizeof(float);
  pkv_buffer_create(e.ctx, rows, &kb);
  pkv_buffer_create(e.ctx, rows, &vb);
  pkv_buffer_create(e.ctx, rows, &q);
  pkv_buffer_create(e.ctx, rows, &out);
  float *host = calloc(3 * 64, sizeof(float));
  for (int i = 0; i < 3 * 64; i++) host[i] = (float)(i % 7) * 0.25f;
  pkv_buffer_upload(kb, 0, host, rows);
  pkv_buffer_upload(vb, 0, host, rows);
  pkv_buffer_upload(q, 0, host, rows);
  pkv_write_kv(e.batch, 0, kb, vb);
  slot ap = slot_new(V1_PARAMS);
  pkv_attn_params_init_sized((void *)ap.p, V1_PARAMS, 1);
  st = pkv_attention(e.batch, 0, (void *)ap.p, q, out, NULL);
  float *r1 = calloc(3 * 64, sizeof(float));
  pkv_buffer_download(out, 0, r1, rows);
  ok(st == PKV_OK && canary_ok(ap), "attention with an old program's params");
  free(ap.p);
  ap = slot_new(sizeof(pkv_attn_params) + GROW);
  pkv_attn_params_init_sized((void *)ap.p, ap.size, 1);
  st = pkv_attention(e.batch, 0, (void *)ap.p, q, out, NULL);
  float *r2 = calloc(3 * 64, sizeof(float));
  pkv_buffer_download(out, 0, r2, rows);
  ok(st == PKV_OK && !memcmp(r1, r2, rows),
     "attention with a newer program's params gives the same result");
  ap.p[sizeof(pkv_attn_params) + 1] = 1;
  ok(pkv_attention(e.batch, 0, (void *)ap.p, q, out, NULL) ==
             PKV_ERR_UNSUPPORTED &&
         msg_has(e.ctx, "params", NULL),
     "attention refuses params setting an unknown field");
  memcpy(ap.p, &(size_t){V1_PARAMS - 4}, sizeof(size_t));
  ok(pkv_attention(e.batch, 0, (void *)ap.p, q, out, NULL) == PKV_ERR_INVALID &&
         msg_has(e.ctx, "params->struct_size", NULL),
     "attention refuses too-small params: %s", pkv_last_error(e.ctx));
  free(ap.p);
  free(r1);
  free(r2);
  free(host);
  pkv_buffer_destroy(kb);
  pkv_buffer_destroy(vb);
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(out);
  pkv_batch_destroy(e.batch);
  pkv_cache_destroy(e.cache);
  pkv_context_destroy(e.ctx);
  done_testing();
  return tap_failed != 0;
}
