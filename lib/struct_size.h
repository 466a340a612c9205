/* SPDX-License-Identifier: Apache-2.0 */
/* The growable-struct rule of the public API (doc/ABI.md): every struct the
 * caller allocates begins with size_t struct_size, and the library touches
 * only that many bytes of it. These helpers are the one place that applies
 * the rule, so no public function reads or writes sizeof(*caller_struct). */
#ifndef PKV_STRUCT_SIZE_H
#define PKV_STRUCT_SIZE_H

#include "internal.h"

#include <stddef.h>

/* Bytes of a struct up to and including its field `last`. */
#define PKV__SIZE_THROUGH(type, last) \
  (offsetof(type, last) + sizeof(((type *)0)->last))

/* The 1.0 size of each public struct: what a caller must at least pass.
 * Fields appended later lie beyond these and default to 0; never change
 * these values within soname 1. */
#define PKV__V1_DEVICE_INFO PKV__SIZE_THROUGH(pkv_device_info, wave_size)
#define PKV__V1_CONTEXT_DESC PKV__SIZE_THROUGH(pkv_context_desc, cache_dir)
#define PKV__V1_CACHE_DESC PKV__SIZE_THROUGH(pkv_cache_desc, num_host_pages)
#define PKV__V1_CACHE_GEOMETRY PKV__SIZE_THROUGH(pkv_cache_geometry, layer_bytes)
#define PKV__V1_SEQ_DESC PKV__SIZE_THROUGH(pkv_seq_desc, namespace_id)
#define PKV__V1_STATS PKV__SIZE_THROUGH(pkv_stats, classes)
#define PKV__V1_PAGE_INFO PKV__SIZE_THROUGH(pkv_page_info, indexed)
#define PKV__V1_BATCH_VIEW PKV__SIZE_THROUGH(pkv_batch_view, slot_mapping)
#define PKV__V1_BATCH_DEVICE PKV__SIZE_THROUGH(pkv_batch_device, slot_mapping)
#define PKV__V1_ATTN_PARAMS PKV__SIZE_THROUGH(pkv_attn_params, alibi_slopes)

/* The struct_size a caller's struct declares. */
size_t pkv__struct_size_of(const void *s);

/* An input struct: checks that src's struct_size is at least min and that
 * any bytes it carries beyond full_size (fields of a newer header) are 0,
 * then copies its first min(struct_size, full_size) bytes over *full, which
 * holds the defaults, and sets full's struct_size to full_size. `name` is
 * the argument's name for the error message. */
pkv_status pkv__struct_in(const pkv_context *ctx, const char *name,
                          const void *src, size_t min, void *full,
                          size_t full_size);

/* An output struct: checks that dst's struct_size is at least min. */
pkv_status pkv__struct_out_check(const pkv_context *ctx, const char *name,
                                 const void *dst, size_t min);

/* Writes the filled *full into the caller's struct: its first
 * min(struct_size, full_size) bytes, struct_size itself kept. */
void pkv__struct_out(void *dst, const void *full, size_t full_size);

/* Defaults into a caller's struct of `size` bytes: `full` holds them at the
 * library's size; bytes beyond it are zeroed; nothing is written when size
 * cannot even hold struct_size. */
void pkv__struct_init(void *dst, size_t size, void *full, size_t full_size);

#endif
