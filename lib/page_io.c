/* SPDX-License-Identifier: Apache-2.0 */
/* Page keys and page export/import (doc/kv-events.md). */
#include "cache.h"
#include "struct_size.h"

pkv_status pkv_seq_page_keys(pkv_cache *c, pkv_seq_id seq, int64_t first_page,
                             int64_t max, pkv_page_key *keys, int64_t *n_out) {
  (void)seq; (void)first_page; (void)max; (void)keys; (void)n_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_cache_page_wire_bytes(const pkv_cache *c, size_t *bytes_out) {
  (void)bytes_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_pages_hold(pkv_cache *c, uint64_t ns, const pkv_page_key *keys,
                          int64_t n, pkv_page_hold **hold_out) {
  (void)ns; (void)keys; (void)n; (void)hold_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

int64_t pkv_page_hold_count(const pkv_page_hold *h) {
  (void)h;
  return 0;
}

pkv_status pkv_page_hold_pages(const pkv_page_hold *h, int32_t *pages,
                               int64_t capacity, int64_t *count) {
  (void)h; (void)pages; (void)capacity; (void)count;
  return pkv__fail(NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_pages_read(pkv_cache *c, const pkv_page_hold *h,
                          pkv_layout layout, void *dst, size_t dst_bytes,
                          int32_t *tokens) {
  (void)h; (void)layout; (void)dst; (void)dst_bytes; (void)tokens;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

void pkv_page_hold_release(pkv_cache *c, pkv_page_hold *h) {
  (void)c; (void)h;
}

pkv_status pkv_pages_import(pkv_cache *c, uint64_t ns, const pkv_page_key *parent,
                            const pkv_page_key *keys, const int32_t *tokens,
                            int64_t n, pkv_layout layout, const void *src,
                            size_t src_bytes, int64_t *n_imported,
                            int64_t *n_skipped) {
  (void)ns; (void)parent; (void)keys; (void)tokens; (void)n; (void)layout;
  (void)src; (void)src_bytes; (void)n_imported; (void)n_skipped;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_seq_export(pkv_cache *c, pkv_seq_id seq, pkv_layout layout,
                          void *dst, size_t dst_bytes, int32_t *tokens,
                          int64_t *n_tokens_out) {
  (void)seq; (void)layout; (void)dst; (void)dst_bytes; (void)tokens;
  (void)n_tokens_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}

pkv_status pkv_seq_import(pkv_cache *c, const pkv_seq_desc *desc,
                          const int32_t *tokens, int64_t n_tokens,
                          pkv_layout layout, const void *src, size_t src_bytes,
                          pkv_seq_id *seq_out) {
  (void)desc; (void)tokens; (void)n_tokens; (void)layout; (void)src;
  (void)src_bytes; (void)seq_out;
  return pkv__fail(c ? c->ctx : NULL, PKV_ERR_UNSUPPORTED, "not yet");
}
