/* SPDX-License-Identifier: Apache-2.0 */
/* Batch descriptor of one step, built incrementally: a block-table row is
 * rewritten only when its sequence or page list changed, the CSR tail only
 * from the first row whose page count changed, and the device copy only in
 * the dirty ranges. */
#include "alloc.h"
#include "batch.h"
#include "struct_size.h"

#include <stdlib.h>
#include <string.h>

pkv_status pkv_batch_create(pkv_cache *cache, pkv_batch **out) {
  if (!cache) return pkv__fail(NULL, PKV_ERR_NULL, "cache is NULL");
  if (!out) return pkv__fail(cache->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_batch *b = pkv__calloc(1, sizeof *b);
  if (!b) return pkv__fail(cache->ctx, PKV_ERR_NO_MEMORY, "batch allocation");
  b->cache = cache;
  b->ctx = cache->ctx;
  *out = b;
  return PKV_OK;
}

void pkv_batch_destroy(pkv_batch *b) {
  if (!b) return;
  pkv__free(b->block_table);
  pkv__free(b->seq_lens);
  pkv__free(b->q_indptr);
  pkv__free(b->kv_indptr);
  pkv__free(b->kv_last);
  pkv__free(b->kv_indices);
  pkv__free(b->slots);
  pkv__free(b->row_id);
  pkv__free(b->row_ver);
  pkv__free(b->row_np);
  pkv__free(b->row_seq);
  for (int i = 0; i < PKV_BA_COUNT; i++) pkv_buffer_destroy(b->dev[i]);
  pkv__free(b->alibi_host);
  pkv_buffer_destroy(b->alibi_dev);
  pkv__free(b);
}

pkv_cache *pkv_batch_cache(const pkv_batch *b) { return b ? b->cache : NULL; }

/* realloc that keeps the old block on failure; *cap in elements. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap : 16, bytes;
  while (n < need) {
    if (n > ((size_t)-1) / 2 / elem) {
      n = need;
      break;
    }
    n *= 2;
  }
  if (!pkv__mul_size(n, elem, &bytes)) return false;
  void *q = pkv__realloc(*p, bytes);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}

static bool grow_rows(pkv_batch *b, int32_t rows) {
  if (rows + 1 <= b->rows_cap) return true;
  size_t cap = (size_t)b->rows_cap, need = (size_t)rows + 1;
  size_t c;
#define GROW_ROW(f)                                                            \
  c = cap;                                                                     \
  if (!grow((void **)&b->f, &c, need, sizeof *b->f)) return false;
  GROW_ROW(seq_lens) GROW_ROW(q_indptr) GROW_ROW(kv_indptr) GROW_ROW(kv_last)
  GROW_ROW(row_id) GROW_ROW(row_ver) GROW_ROW(row_np) GROW_ROW(row_seq)
#undef GROW_ROW
  /* Every array now holds c >= need rows (same growth rule for each). */
  b->rows_cap = (int32_t)(c > INT32_MAX ? INT32_MAX : c);
  return true;
}

/* A device buffer of at least `bytes`; a new one when it had to grow (then
 * *fresh is set: its whole content must be uploaded). */
static pkv_status dev_need(pkv_batch *b, pkv_buffer **slot, pkv_buffer **neu,
                           size_t bytes) {
  *neu = NULL;
  if (bytes == 0) bytes = 64;
  if (*slot && pkv_buffer_size(*slot) >= bytes) return PKV_OK;
  size_t want = bytes;
  if (*slot && pkv_buffer_size(*slot) * 2 > want)
    want = pkv_buffer_size(*slot) * 2;
  return pkv_buffer_create(b->ctx, want, neu);
}

pkv_status pkv_batch_build(pkv_batch *b, const pkv_seq_id *seqs,
                           int32_t num_seqs, const int32_t *q_lens) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  pkv_cache *c = b->cache;
  pkv_context *ctx = b->ctx;
  if (!seqs) return pkv__fail(ctx, PKV_ERR_NULL, "seqs is NULL");
  if (num_seqs < 1)
    return pkv__fail(ctx, PKV_ERR_INVALID, "num_seqs %d must be >= 1", num_seqs);
  if (num_seqs > PKV_MAX_BATCH_SEQS)
    return pkv__fail(ctx, PKV_ERR_RANGE,
                    "num_seqs %d exceeds PKV_MAX_BATCH_SEQS %d", num_seqs,
                    PKV_MAX_BATCH_SEQS);
  if (!grow_rows(b, num_seqs))
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "batch rows for num_seqs %d",
                    num_seqs);

  /* Validate every row before touching anything. */
  const int32_t ps = c->geom.page_size;
  uint64_t stamp = ++c->build_stamp;
  int64_t tokens = 0, total_pages = 0, max_np = 0;
  int32_t max_q = 0, max_kv = 0;
  for (int32_t i = 0; i < num_seqs; i++) {
    pkv_seq *s =
        seqs[i] > 0 ? pkv__hmap_get(&c->seqs, (uint64_t)seqs[i]) : NULL;
    if (!s)
      return pkv__fail(ctx, PKV_ERR_NOT_FOUND,
                      "seqs[%d] = %lld is not an open sequence", i,
                      (long long)seqs[i]);
    if (s->mark == stamp)
      return pkv__fail(ctx, PKV_ERR_DUPLICATE,
                      "seqs[%d] and seqs[%d] are both sequence %lld",
                      s->mark_pos, i, (long long)seqs[i]);
    if (s->swapped)
      return pkv__fail(ctx, PKV_ERR_STATE,
                      "seqs[%d] = %lld is swapped out to the host tier", i,
                      (long long)seqs[i]);
    s->mark = stamp;
    s->mark_pos = i;
    int64_t q = q_lens ? q_lens[i] : (s->len > 0 ? 1 : 0);
    if (q_lens && (q < 0 || q > s->len || (q == 0 && s->len > 0)))
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "q_lens[%d] = %lld is outside %d..%lld (the length of "
                      "seq %lld)",
                      i, (long long)q, s->len > 0 ? 1 : 0, (long long)s->len,
                      (long long)seqs[i]);
    tokens += q;
    total_pages += s->npages;
    if (tokens > PKV_MAX_BATCH_TOKENS)
      return pkv__fail(ctx, PKV_ERR_RANGE,
                      "total query tokens exceed PKV_MAX_BATCH_TOKENS %lld at "
                      "seqs[%d]",
                      (long long)PKV_MAX_BATCH_TOKENS, i);
    if (total_pages > INT32_MAX)
      return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                      "total pages exceed %d at seqs[%d] (kv_indptr is int32)",
                      INT32_MAX, i);
    if (s->npages > max_np) max_np = s->npages;
    if (q > max_q) max_q = (int32_t)q;
    if (s->len > max_kv) max_kv = (int32_t)s->len;
    b->row_seq[i] = s;
  }

  /* Block-table row length: grown geometrically so that decode steps that
   * add a page do not force every row to be rewritten. */
  int32_t stride = b->stride;
  int64_t need = max_np > 0 ? max_np : 1;
  if (stride < need) {
    int64_t ns = (int64_t)stride * 2 > need ? (int64_t)stride * 2 : need;
    stride = (int32_t)(ns > INT32_MAX ? INT32_MAX : ns);
  } else if (stride > 4 * need + 16) {
    stride = (int32_t)need;
  }
  size_t bt_elems;
  if (!pkv__mul_size((size_t)num_seqs, (size_t)stride, &bt_elems))
    return pkv__fail(ctx, PKV_ERR_OVERFLOW,
                    "block table num_seqs %d * max_pages %d overflows",
                    num_seqs, stride);
  if (!grow((void **)&b->block_table, &b->bt_cap, bt_elems, sizeof(int32_t)) ||
      !grow((void **)&b->kv_indices, &b->kvi_cap, (size_t)total_pages,
            sizeof(int32_t)) ||
      !grow((void **)&b->slots, &b->slots_cap, (size_t)tokens,
            sizeof(int64_t)))
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY,
                    "batch arrays for %d rows, %lld pages, %lld tokens",
                    num_seqs, (long long)total_pages, (long long)tokens);
  size_t bytes[PKV_BA_COUNT] = {
      bt_elems * 4,
      (size_t)num_seqs * 4,
      ((size_t)num_seqs + 1) * 4,
      ((size_t)num_seqs + 1) * 4,
      (size_t)total_pages * 4,
      (size_t)num_seqs * 4,
      (size_t)tokens * 8};
  pkv_buffer *neu[PKV_BA_COUNT] = {0};
  for (int a = 0; a < PKV_BA_COUNT; a++) {
    pkv_status st = dev_need(b, &b->dev[a], &neu[a], bytes[a]);
    if (st != PKV_OK) {
      for (int j = 0; j < a; j++) pkv_buffer_destroy(neu[j]);
      return st;
    }
  }
  /* Copy-on-write copies must land before this step writes K/V. */
  pkv_status st = pkv__cache_flush_copies(c);
  if (st != PKV_OK) {
    for (int a = 0; a < PKV_BA_COUNT; a++) pkv_buffer_destroy(neu[a]);
    return st;
  }
  bool fresh[PKV_BA_COUNT];
  for (int a = 0; a < PKV_BA_COUNT; a++) {
    fresh[a] = neu[a] != NULL || !b->valid;
    if (neu[a]) {
      pkv_buffer_destroy(b->dev[a]);
      b->dev[a] = neu[a];
    }
  }

  /* From here on nothing fails but the upload. */
  bool full = !b->valid || stride != b->stride;
  int32_t old_n = b->valid ? b->n : 0;
  int32_t bt_lo = num_seqs, bt_hi = -1, r0 = num_seqs;
  int32_t qacc = 0;
  int64_t t = 0;
  b->q_indptr[0] = 0;
  for (int32_t i = 0; i < num_seqs; i++) {
    pkv_seq *s = b->row_seq[i];
    int32_t *row = b->block_table + (size_t)i * (size_t)stride;
    bool same = !full && i < old_n && b->row_id[i] == s->id &&
                b->row_ver[i] == s->version && b->row_np[i] <= s->npages;
    int64_t from = same ? b->row_np[i] : 0;
    if (from < s->npages || !same) {
      if (s->npages > from)
        memcpy(row + from, s->pages + from,
               (size_t)(s->npages - from) * sizeof(int32_t));
      if (!same)
        memset(row + s->npages, 0,
               (size_t)(stride - s->npages) * sizeof(int32_t));
      if (i < bt_lo) bt_lo = i;
      bt_hi = i;
    }
    if ((!same || b->row_np[i] != s->npages) && i < r0) r0 = i;
    b->row_id[i] = s->id;
    b->row_ver[i] = s->version;
    b->row_np[i] = s->npages;
    b->seq_lens[i] = (int32_t)s->len;
    b->kv_last[i] =
        s->npages ? (int32_t)(s->len - (s->npages - 1) * (int64_t)ps) : 0;
    int32_t q = q_lens ? q_lens[i] : (s->len > 0 ? 1 : 0);
    qacc += q;
    b->q_indptr[i + 1] = qacc;
    for (int64_t pos = s->len - q; pos < s->len; pos++)
      b->slots[t++] = (int64_t)s->pages[pos / ps] * ps + pos % ps;
  }
  if (full) r0 = 0;
  if (r0 == 0) b->kv_indptr[0] = 0;
  /* Rows before r0 kept their page counts, so their CSR part stands. */
  int32_t kvi_from = b->kv_indptr[r0];
  for (int32_t i = r0; i < num_seqs; i++) {
    pkv_seq *s = b->row_seq[i];
    if (s->npages > 0)
      memcpy(b->kv_indices + b->kv_indptr[i], s->pages,
             (size_t)s->npages * sizeof(int32_t));
    b->kv_indptr[i + 1] = b->kv_indptr[i] + (int32_t)s->npages;
  }
  b->n = num_seqs;
  b->stride = stride;
  b->num_tokens = tokens;
  b->max_q_len = max_q;
  b->max_kv_len = max_kv;

  /* One upload per array, dirty ranges only. */
  b->valid = false;
  const void *host[PKV_BA_COUNT] = {b->block_table, b->seq_lens, b->q_indptr,
                                    b->kv_indptr,   b->kv_indices, b->kv_last,
                                    b->slots};
  for (int a = 0; a < PKV_BA_COUNT; a++) {
    size_t off = 0, len = bytes[a];
    if (!fresh[a] && a == PKV_BA_BLOCK_TABLE) {
      if (bt_hi < bt_lo) continue;
      off = (size_t)bt_lo * (size_t)stride * 4;
      len = (size_t)(bt_hi - bt_lo + 1) * (size_t)stride * 4;
    } else if (!fresh[a] && a == PKV_BA_KV_INDICES) {
      off = (size_t)kvi_from * 4;
      len = bytes[a] - off;
    }
    if (len == 0) continue;
    st = pkv_buffer_upload(b->dev[a], off, (const char *)host[a] + off, len);
    if (st != PKV_OK) return st; /* the batch stays invalid until rebuilt */
  }
  b->valid = true;
  b->map_gen = c->map_gen;
  return PKV_OK;
}

pkv_status pkv__batch_check_current(pkv_batch *b) {
  pkv_cache *c = b->cache;
  if (b->map_gen == c->map_gen) return PKV_OK;
  for (int32_t i = 0; i < b->n; i++) {
    pkv_seq *s = pkv__hmap_get(&c->seqs, (uint64_t)b->row_id[i]);
    const char *why = !s ? "was released or closed"
                      : s->swapped ? "is swapped out"
                      : s->version != b->row_ver[i]
                          ? "had pages replaced (copy-on-write, truncation "
                            "or swap)"
                          : NULL;
    if (why)
      return pkv__fail(b->ctx, PKV_ERR_STATE,
                      "batch row %d: seq %lld %s since the batch was built: "
                      "call pkv_batch_build again",
                      i, (long long)b->row_id[i], why);
  }
  /* Every row checked: later calls take the O(1) path again. */
  b->map_gen = c->map_gen;
  return PKV_OK;
}

pkv_status pkv_batch_get_view(const pkv_batch *b, pkv_batch_view *user_out) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  if (!user_out) return pkv__fail(b->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st =
      pkv__struct_out_check(b->ctx, "out", user_out, PKV__V1_BATCH_VIEW);
  if (st != PKV_OK) return st;
  if (!b->valid)
    return pkv__fail(b->ctx, PKV_ERR_STATE,
                    "batch has no successful build to view");
  pkv_batch_view full;
  pkv_batch_view *out = &full;
  pkv_batch_view_init(out);
  out->num_seqs = b->n;
  out->max_pages = b->stride;
  out->num_tokens = b->num_tokens;
  out->max_q_len = b->max_q_len;
  out->max_kv_len = b->max_kv_len;
  out->block_table = b->block_table;
  out->seq_lens = b->seq_lens;
  out->q_indptr = b->q_indptr;
  out->kv_indptr = b->kv_indptr;
  out->kv_indices = b->kv_indices;
  out->kv_last_page_len = b->kv_last;
  out->slot_mapping = b->slots;
  pkv__struct_out(user_out, &full, sizeof full);
  return PKV_OK;
}

pkv_status pkv_batch_get_device(const pkv_batch *b,
                                pkv_batch_device *user_out) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  if (!user_out) return pkv__fail(b->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_status st =
      pkv__struct_out_check(b->ctx, "out", user_out, PKV__V1_BATCH_DEVICE);
  if (st != PKV_OK) return st;
  if (!b->valid)
    return pkv__fail(b->ctx, PKV_ERR_STATE,
                    "batch has no successful build on the device");
  pkv_batch_device full;
  pkv_batch_device *out = &full;
  pkv_batch_device_init(out);
  out->block_table = b->dev[PKV_BA_BLOCK_TABLE];
  out->seq_lens = b->dev[PKV_BA_SEQ_LENS];
  out->q_indptr = b->dev[PKV_BA_Q_INDPTR];
  out->kv_indptr = b->dev[PKV_BA_KV_INDPTR];
  out->kv_indices = b->dev[PKV_BA_KV_INDICES];
  out->kv_last_page_len = b->dev[PKV_BA_KV_LAST];
  out->slot_mapping = b->dev[PKV_BA_SLOTS];
  pkv__struct_out(user_out, &full, sizeof full);
  return PKV_OK;
}

pkv_status pkv__batch_alibi_buffer(pkv_batch *b, const float *slopes, int32_t n,
                                  pkv_buffer **out) {
  if (!b) return pkv__fail(NULL, PKV_ERR_NULL, "batch is NULL");
  if (!slopes) return pkv__fail(b->ctx, PKV_ERR_NULL, "alibi_slopes is NULL");
  if (!out) return pkv__fail(b->ctx, PKV_ERR_NULL, "out is NULL");
  if (n < 1)
    return pkv__fail(b->ctx, PKV_ERR_INVALID, "alibi slope count %d must be >= 1",
                    n);
  size_t bytes = (size_t)n * sizeof(float);
  if (b->alibi_dev && b->alibi_n == n && !memcmp(b->alibi_host, slopes, bytes)) {
    *out = b->alibi_dev;
    return PKV_OK;
  }
  float *h = b->alibi_host;
  if (n > b->alibi_n || !h) {
    h = pkv__malloc(bytes);
    if (!h) return pkv__fail(b->ctx, PKV_ERR_NO_MEMORY, "alibi slopes copy");
  }
  pkv_buffer *d = b->alibi_dev;
  if (!d || pkv_buffer_size(d) < bytes) {
    d = NULL;
    pkv_status st = pkv_buffer_create(b->ctx, bytes, &d);
    if (st != PKV_OK) {
      if (h != b->alibi_host) pkv__free(h);
      return st;
    }
  }
  pkv_status st = pkv_buffer_upload(d, 0, slopes, bytes);
  if (st != PKV_OK) {
    if (h != b->alibi_host) pkv__free(h);
    if (d != b->alibi_dev) pkv_buffer_destroy(d);
    /* The old device copy may be stale now: forget it. */
    b->alibi_n = 0;
    return st;
  }
  if (h != b->alibi_host) pkv__free(b->alibi_host);
  if (d != b->alibi_dev) pkv_buffer_destroy(b->alibi_dev);
  memcpy(h, slopes, bytes);
  b->alibi_host = h;
  b->alibi_dev = d;
  b->alibi_n = n;
  *out = d;
  return PKV_OK;
}
