/* SPDX-License-Identifier: Apache-2.0 */
/* Growable public structs: the size checks and the initialisers (the
 * defaults) of every struct the caller allocates. doc/ABI.md states the
 * rule; lib/struct_size.h explains each helper. */
#include "struct_size.h"

#include <string.h>

size_t pkv__struct_size_of(const void *s) {
  size_t n;
  memcpy(&n, s, sizeof n); /* the caller's struct may be of any alignment */
  return n;
}

static pkv_status too_small(const pkv_context *ctx, const char *name,
                            size_t have, size_t min) {
  return pkv__fail(ctx, PKV_ERR_INVALID,
                   "%s->struct_size %zu is smaller than the %zu bytes of its "
                   "1.0 fields: initialise it with its _init() macro",
                   name, have, min);
}

pkv_status pkv__struct_in(const pkv_context *ctx, const char *name,
                          const void *src, size_t min, void *full,
                          size_t full_size) {
  size_t have = pkv__struct_size_of(src);
  if (have < min) return too_small(ctx, name, have, min);
  const unsigned char *p = src;
  for (size_t i = full_size; i < have; i++)
    if (p[i])
      return pkv__fail(ctx, PKV_ERR_UNSUPPORTED,
                       "%s sets a field at byte %zu that this library (struct "
                       "of %zu bytes) does not know: it is older than the "
                       "header the program was built with",
                       name, i, full_size);
  memcpy(full, src, have < full_size ? have : full_size);
  memcpy(full, &full_size, sizeof full_size);
  return PKV_OK;
}

pkv_status pkv__struct_out_check(const pkv_context *ctx, const char *name,
                                 const void *dst, size_t min) {
  size_t have = pkv__struct_size_of(dst);
  return have < min ? too_small(ctx, name, have, min) : PKV_OK;
}

void pkv__struct_out(void *dst, const void *full, size_t full_size) {
  size_t have = pkv__struct_size_of(dst);
  size_t n = have < full_size ? have : full_size;
  const size_t skip = sizeof(size_t);
  if (n > skip)
    memcpy((char *)dst + skip, (const char *)full + skip, n - skip);
}

void pkv__struct_init(void *dst, size_t size, void *full, size_t full_size) {
  if (!dst || size < sizeof(size_t)) return;
  memcpy(full, &size, sizeof size);
  memcpy(dst, full, size < full_size ? size : full_size);
  if (size > full_size) memset((char *)dst + full_size, 0, size - full_size);
}

/* ---- the initialisers: each builds its defaults at the library's size --- */

void pkv_device_info_init_sized(pkv_device_info *info, size_t size) {
  pkv_device_info d;
  memset(&d, 0, sizeof d);
  d.index = -1;
  d.wave_size = 1;
  pkv__struct_init(info, size, &d, sizeof d);
}

void pkv_context_desc_init_sized(pkv_context_desc *desc, size_t size) {
  pkv_context_desc d;
  memset(&d, 0, sizeof d);
  d.backend = PKV_BACKEND_AUTO;
  d.device = -1;
  d.platform = -1;
  pkv__struct_init(desc, size, &d, sizeof d);
}

void pkv_cache_desc_init_sized(pkv_cache_desc *desc, size_t size) {
  pkv_cache_desc d;
  memset(&d, 0, sizeof d);
  d.num_layers = 1;
  d.num_kv_heads = 1;
  d.head_dim = 128;
  d.page_size = 16;
  d.num_pages = 0;
  d.dtype = PKV_DTYPE_F16;
  d.layout = PKV_LAYOUT_HND;
  d.num_classes = 1;
  d.max_reserved_fraction = 0.9;
  pkv__struct_init(desc, size, &d, sizeof d);
}

void pkv_cache_geometry_init_sized(pkv_cache_geometry *g, size_t size) {
  pkv_cache_geometry d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(g, size, &d, sizeof d);
}

void pkv_seq_desc_init_sized(pkv_seq_desc *desc, size_t size) {
  pkv_seq_desc d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(desc, size, &d, sizeof d);
}

void pkv_stats_init_sized(pkv_stats *stats, size_t size) {
  pkv_stats d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(stats, size, &d, sizeof d);
}

void pkv_page_info_init_sized(pkv_page_info *info, size_t size) {
  pkv_page_info d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(info, size, &d, sizeof d);
}

void pkv_batch_view_init_sized(pkv_batch_view *view, size_t size) {
  pkv_batch_view d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(view, size, &d, sizeof d);
}

void pkv_batch_device_init_sized(pkv_batch_device *dev, size_t size) {
  pkv_batch_device d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(dev, size, &d, sizeof d);
}

void pkv_attn_params_init_sized(pkv_attn_params *p, size_t size,
                                int32_t num_q_heads) {
  pkv_attn_params d;
  memset(&d, 0, sizeof d);
  d.num_q_heads = num_q_heads;
  d.scale = 0.0f;
  d.causal = 1;
  d.window_left = -1;
  d.softcap = 0.0f;
  d.alibi_slopes = NULL;
  pkv__struct_init(p, size, &d, sizeof d);
}
