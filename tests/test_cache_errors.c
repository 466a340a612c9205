/* SPDX-License-Identifier: Apache-2.0 */
/* Cache creation: validation, geometry, sizes, overflow, bad input. */
#include "cp_util.h"

#include <math.h>

static pkv_status make(pkv_context *ctx, pkv_cache_desc *d) {
  pkv_cache *c = NULL;
  pkv_status s = pkv_cache_create(ctx, d, &c);
  if (s == PKV_OK) pkv_cache_destroy(c);
  else if (c) return (pkv_status)-1; /* out must stay untouched on failure */
  return s;
}

int main(void) {
  pkv_context *ctx = cp_ctx();
  pkv_cache_desc d, base;
  pkv_cache_desc_init(&base);
  base.head_dim = 64;
  base.page_size = 16;
  base.num_pages = 8;

  static const int32_t dims[] = {64, 80, 96, 112, 128, 192, 256};
  int all = 1;
  for (int i = 0; i < 7; i++) {
    d = base;
    d.head_dim = dims[i];
    all &= make(ctx, &d) == PKV_OK;
  }
  ok(all, "every supported head_dim is accepted");
  static const int32_t bad_dims[] = {0, -64, 1, 63, 65, 100, 160, 512};
  all = 1;
  for (int i = 0; i < 8; i++) {
    d = base;
    d.head_dim = bad_dims[i];
    all &= make(ctx, &d) == PKV_ERR_INVALID &&
           strstr(pkv_last_error(ctx), "head_dim") != NULL;
  }
  ok(all, "other head dims are refused naming head_dim: %s", pkv_last_error(ctx));
  d = base; d.page_size = 0;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "page_size"),
     "page_size 0 refused: %s", pkv_last_error(ctx));
  d = base; d.page_size = 1025;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "1..1024"),
     "page_size 1025 refused, naming the limit");
  d = base; d.page_size = 1;
  ok(make(ctx, &d) == PKV_OK, "page_size 1 accepted");
  d = base; d.page_size = 1024;
  ok(make(ctx, &d) == PKV_OK, "page_size 1024 accepted");
  d = base; d.num_layers = 0;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "num_layers"),
     "num_layers 0 refused");
  d = base; d.num_kv_heads = -1;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "num_kv_heads"),
     "num_kv_heads -1 refused");
  d = base; d.dtype = (pkv_dtype)9;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "dtype"),
     "unknown dtype refused");
  d = base; d.layout = (pkv_layout)2;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "layout"),
     "unknown layout refused");
  d = base; d.num_pages = -3;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "num_pages"),
     "negative num_pages refused");
  d = base; d.num_pages = 0; d.pool_bytes = 100;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "pool_bytes"),
     "a byte budget below one page refused: %s", pkv_last_error(ctx));
  d = base; d.num_pages = (int64_t)INT32_MAX + 1;
  ok(make(ctx, &d) == PKV_ERR_OVERFLOW && strstr(pkv_last_error(ctx), "int32"),
     "num_pages beyond int32 refused: %s", pkv_last_error(ctx));
  d = base; d.num_pages = INT32_MAX; d.num_layers = PKV_MAX_LAYERS;
  d.num_kv_heads = PKV_MAX_KV_HEADS; d.head_dim = PKV_MAX_HEAD_DIM;
  d.page_size = PKV_MAX_PAGE_SIZE;
  ok(make(ctx, &d) == PKV_ERR_OVERFLOW && strstr(pkv_last_error(ctx), "overflow"),
     "a byte size that overflows is refused naming values: %s",
     pkv_last_error(ctx));
  d = base; d.num_pages = 0; d.pool_bytes = UINT64_MAX;
  d.num_layers = PKV_MAX_LAYERS;
  pkv_status s = make(ctx, &d);
  ok(s == PKV_ERR_OVERFLOW || s == PKV_ERR_NO_MEMORY,
     "a huge byte budget is refused cleanly (%s)", pkv_status_name(s));
  d = base; d.num_classes = PKV_MAX_CLASSES + 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE && strstr(pkv_last_error(ctx), "num_classes"),
     "too many classes refused");
  d = base; d.num_classes = 2; d.class_reserved[1] = 8;
  ok(make(ctx, &d) == PKV_ERR_INVALID && strstr(pkv_last_error(ctx), "cap"),
     "reserving the whole pool is over the 0.9 cap: %s", pkv_last_error(ctx));
  d = base; d.num_classes = 2; d.class_reserved[2] = 1;
  ok(make(ctx, &d) == PKV_ERR_RANGE, "a reservation for a missing class refused");
  d = base; d.max_reserved_fraction = 1.5;
  ok(make(ctx, &d) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "max_reserved_fraction"),
     "reserved fraction above 1 refused");
  d = base; d.max_reserved_fraction = NAN;
  ok(make(ctx, &d) == PKV_ERR_INVALID, "NaN reserved fraction refused");
  d = base; d.num_host_pages = -1;
  ok(make(ctx, &d) == PKV_ERR_INVALID &&
         strstr(pkv_last_error(ctx), "num_host_pages"),
     "negative host pages refused");
  pkv_cache *c = NULL;
  ok(pkv_cache_create(NULL, &base, &c) == PKV_ERR_NULL, "NULL ctx refused");
  ok(pkv_cache_create(ctx, NULL, &c) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "desc"),
     "NULL desc refused");
  ok(pkv_cache_create(ctx, &base, NULL) == PKV_ERR_NULL &&
         strstr(pkv_last_error(ctx), "out"),
     "NULL out refused");

  /* Geometry and strides. */
  d = base;
  d.num_layers = 2; d.num_kv_heads = 4; d.head_dim = 128; d.page_size = 16;
  d.dtype = PKV_DTYPE_BF16; d.layout = PKV_LAYOUT_HND;
  ok(pkv_cache_create(ctx, &d, &c) == PKV_OK, "HND cache");
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  ok(pkv_cache_get_geometry(c, &g) == PKV_OK, "geometry");
  ok(g.page_stride == 4 * 16 * 128 && g.head_stride == 16 * 128 &&
         g.token_stride == 128,
     "HND strides");
  ok(g.page_bytes == 4 * 16 * 128 * 2 && g.layer_bytes == 8 * g.page_bytes,
     "HND sizes");
  pkv_buffer *k = NULL, *v = NULL;
  ok(pkv_cache_kv(c, 1, &k, &v) == PKV_OK && k && v && k != v &&
         pkv_buffer_size(k) == g.layer_bytes,
     "layer 1 K and V pools");
  pkv_buffer_destroy(k); /* a view: no-op */
  pkv_buffer *k2 = NULL;
  ok(pkv_cache_kv(c, 1, &k2, NULL) == PKV_OK && k2 == k,
     "destroying a pool view is a no-op");
  ok(pkv_cache_kv(c, 2, &k, &v) == PKV_ERR_RANGE &&
         strstr(pkv_last_error(ctx), "layer"),
     "layer out of range refused");
  ok(pkv_cache_kv(c, -1, &k, &v) == PKV_ERR_RANGE, "negative layer refused");
  ok(pkv_cache_kv(NULL, 0, &k, &v) == PKV_ERR_NULL, "kv: NULL cache");
  ok(pkv_cache_get_geometry(c, NULL) == PKV_ERR_NULL, "geometry: NULL out");
  ok(pkv_cache_get_geometry(NULL, &g) == PKV_ERR_NULL, "geometry: NULL cache");
  ok(pkv_cache_context(c) == ctx && pkv_cache_context(NULL) == NULL,
     "cache context");
  pkv_stats st;
  pkv_stats_init(&st);
  ok(pkv_cache_stats(c, NULL) == PKV_ERR_NULL && pkv_cache_stats(NULL, &st) ==
                                                     PKV_ERR_NULL,
     "stats: NULL arguments");
  pkv_cache_destroy(c);
  d.layout = PKV_LAYOUT_NHD;
  ok(pkv_cache_create(ctx, &d, &c) == PKV_OK, "NHD cache");
  pkv_cache_get_geometry(c, &g);
  ok(g.page_stride == 16 * 4 * 128 && g.head_stride == 128 &&
         g.token_stride == 4 * 128,
     "NHD strides");
  pkv_cache_destroy(c);
  /* Derived from a byte budget: 2 layers * K+V * page bytes. */
  d = base;
  d.num_layers = 2; d.num_pages = 0;
  size_t pb = (size_t)d.num_kv_heads * 16 * 64 * 2;
  d.pool_bytes = pb * 4 * 10 + pb; /* 10 pages and a bit */
  ok(pkv_cache_create(ctx, &d, &c) == PKV_OK, "cache from a byte budget");
  pkv_cache_get_geometry(c, &g);
  is_int(g.num_pages, 10, "pool_bytes gives 10 pages");
  pkv_cache_stats(c, &st);
  is_int(st.pages_total, 10, "stats agree");
  pkv_cache_destroy(c);
  pkv_cache_destroy(NULL);
  pkv_context_destroy(ctx);
  return done_testing();
}
