/* SPDX-License-Identifier: Apache-2.0 */
/* Page export/import (doc/kv-events.md): pages read from cache A in one
 * layout and imported into cache B of the other give B the same bytes,
 * B's prefix match reuses them and B's attention equals A's bit for bit
 * (CPU); the same into an OpenCL cache (PoCL in CI). Holds keep pages from
 * eviction; a key mismatch, an unknown parent, an exhausted pool and each
 * bad argument answer their own status with nothing changed; whole
 * sequences round-trip through seq_export/seq_import. */
#include "cp_util.h"

#include <math.h>

enum { L = 2, H = 2, D = 64, PS = 4, QH = 4 };

static int32_t T[64];

static pkv_cache *mk(pkv_context *ctx, pkv_layout layout, int64_t pages) {
  pkv_cache_desc d;
  pkv_cache_desc_init(&d);
  d.num_layers = L;
  d.num_kv_heads = H;
  d.head_dim = D;
  d.page_size = PS;
  d.num_pages = pages;
  d.dtype = PKV_DTYPE_F32;
  d.layout = layout;
  return cp_cache_desc(ctx, &d);
}

static float val(int layer, int kv, int64_t pos, int h, int d) {
  return sinf((float)pos * 0.37f + (float)h * 1.3f + (float)d * 0.05f +
              (float)layer * 2.1f + (float)kv * 0.7f);
}

#define MUST(x)                                                                \
  do {                                                                         \
    pkv_status s_ = (x);                                                       \
    if (s_ != PKV_OK) {                                                        \
      printf("Bail out! %s: %s\n", #x, pkv_status_name(s_));                  \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* Appends n tokens (ids T[pos0..], or none) and writes their K/V. */
static void put(pkv_cache *c, pkv_seq_id s, int64_t pos0, int64_t n, int ids) {
  pkv_context *ctx = pkv_cache_context(c);
  int64_t slots[64];
  MUST(pkv_seq_append(c, s, n, ids ? T + pos0 : NULL, slots));
  float *k = malloc((size_t)n * H * D * 4), *v = malloc((size_t)n * H * D * 4);
  pkv_buffer *kb, *vb, *sb;
  MUST(pkv_buffer_create(ctx, (size_t)n * H * D * 4, &kb));
  MUST(pkv_buffer_create(ctx, (size_t)n * H * D * 4, &vb));
  MUST(pkv_buffer_create(ctx, (size_t)n * 8, &sb));
  MUST(pkv_buffer_upload(sb, 0, slots, (size_t)n * 8));
  for (int l = 0; l < L; l++) {
    for (int64_t t = 0; t < n; t++)
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
          k[(t * H + h) * D + d] = val(l, 0, pos0 + t, h, d);
          v[(t * H + h) * D + d] = val(l, 1, pos0 + t, h, d);
        }
    MUST(pkv_buffer_upload(kb, 0, k, (size_t)n * H * D * 4));
    MUST(pkv_buffer_upload(vb, 0, v, (size_t)n * H * D * 4));
    MUST(pkv_write_kv_slots(c, l, kb, vb, sb, n));
  }
  pkv_buffer_destroy(kb);
  pkv_buffer_destroy(vb);
  pkv_buffer_destroy(sb);
  free(k);
  free(v);
}

/* Attention of the sequence's last q tokens, every layer: out[L][q][QH][D]. */
static void attend(pkv_cache *c, pkv_seq_id s, int32_t q, float *out) {
  pkv_context *ctx = pkv_cache_context(c);
  pkv_batch *b;
  MUST(pkv_batch_create(c, &b));
  MUST(pkv_batch_build(b, &s, 1, &q));
  size_t bytes = (size_t)q * QH * D * 4;
  float *qh = malloc(bytes);
  for (size_t i = 0; i < (size_t)q * QH * D; i++) qh[i] = cosf((float)i * 0.11f);
  pkv_buffer *qb, *ob;
  MUST(pkv_buffer_create(ctx, bytes, &qb));
  MUST(pkv_buffer_create(ctx, bytes, &ob));
  MUST(pkv_buffer_upload(qb, 0, qh, bytes));
  pkv_attn_params p;
  pkv_attn_params_init(&p, QH);
  for (int l = 0; l < L; l++) {
    MUST(pkv_attention(b, l, &p, qb, ob, NULL));
    MUST(pkv_buffer_download(ob, 0, out + (size_t)l * q * QH * D, bytes));
  }
  pkv_buffer_destroy(qb);
  pkv_buffer_destroy(ob);
  pkv_batch_destroy(b);
  free(qh);
}

/* The held pages of keys, read in `layout`: wire bytes, tokens. */
static pkv_status read_keys(pkv_cache *c, uint64_t ns, const pkv_page_key *keys,
                            int64_t n, pkv_layout layout, void *dst,
                            int32_t *tokens) {
  pkv_page_hold *h = NULL;
  size_t wb = 0;
  pkv_cache_page_wire_bytes(c, &wb);
  pkv_status st = pkv_pages_hold(c, ns, keys, n, &h);
  if (st == PKV_OK) st = pkv_pages_read(c, h, layout, dst, (size_t)n * wb, tokens);
  pkv_page_hold_release(c, h);
  return st;
}

typedef struct snap {
  cp_snap s;
  pkv_page_info *pi;
  int64_t npages;
} snap;

static void take(pkv_cache *c, const pkv_seq_id *ids, int n, snap *s) {
  cp_take(c, ids, n, &s->s);
  s->s.st.alloc_failures = 0; /* counts every NO_PAGES answer by design */
  s->pi = cp_all_pages(c);
  s->npages = s->s.st.pages_total;
}

static int same(const snap *a, const snap *b) {
  int r = cp_same(&a->s, &b->s) &&
          !memcmp(a->pi, b->pi, (size_t)a->npages * sizeof *a->pi);
  return r;
}

static int unchanged(pkv_cache *c, const pkv_seq_id *ids, int n, const snap *a) {
  snap b;
  take(c, ids, n, &b);
  int r = same(a, &b);
  free(b.pi);
  return r;
}

static int64_t events(pkv_cache *c, int kind) {
  pkv_kv_event ev[64];
  pkv_kv_event_init(&ev[0]);
  int64_t n = 0, m = 0;
  pkv_cache_poll_events(c, ev, 64, &n, NULL);
  for (int64_t i = 0; i < n; i++) m += ev[i].kind == kind;
  return m;
}

/* HND page -> NHD page, for checking the conversion independently. */
static int is_transpose(const float *hnd, const float *nhd) {
  for (int h = 0; h < H; h++)
    for (int t = 0; t < PS; t++)
      if (memcmp(hnd + (h * PS + t) * D, nhd + (t * H + h) * D, D * 4)) return 0;
  return 1;
}

static int big_roundtrip(pkv_context *src_ctx, pkv_context *dst_ctx);

/* The same pages into a device cache (OpenCL: PoCL in CI; HIP/CUDA where
 * built and a GPU is present): the device pools are reached through the
 * backend's buffer reads and writes, so the bytes must come back equal. */
static void device_part(pkv_backend_kind kind, const unsigned char *bufN,
                        const unsigned char *bufH, const pkv_page_key *keys,
                        size_t wb, const unsigned char *seqN, size_t seq_bytes) {
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = kind;
  pkv_context *ctx = NULL;
  const char *name = pkv_backend_name(kind);
  if (!pkv_backend_available(kind) || pkv_context_create(&cd, &ctx) != PKV_OK) {
    char why[128];
    snprintf(why, sizeof why, "no %s device (%s)", name,
             kind == PKV_BACKEND_OPENCL ? "PoCL runs this in CI"
                                        : "needs a GPU and the HIP/CUDA build");
    skip(6, why);
    return;
  }
  pkv_cache *o = mk(ctx, PKV_LAYOUT_NHD, 16);
  int64_t ni = -1, nsk = -1;
  ok(pkv_pages_import(o, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb,
                      &ni, &nsk) == PKV_OK && ni == 3,
     "%s: 3 pages imported (%s)", name, pkv_last_error(ctx));
  unsigned char *back = malloc(3 * wb);
  int32_t tk[12];
  ok(read_keys(o, 5, keys, 3, PKV_LAYOUT_HND, back, tk) == PKV_OK &&
         !memcmp(back, bufH, 3 * wb) && !memcmp(tk, T, sizeof tk),
     "%s: read back in HND, bitwise the CPU cache's pages and tokens", name);
  pkv_seq_id x = cp_open(o, 0, 5);
  int64_t reused = 0;
  ok(pkv_seq_match_prefix(o, x, T, 14, &reused) == PKV_OK && reused == 12,
     "%s: the prefix match reuses the imported pages", name);
  pkv_seq_id y = -1;
  unsigned char *seq_back = malloc(seq_bytes);
  int64_t nt = 0;
  ok(pkv_seq_import(o, NULL, T, 14, PKV_LAYOUT_NHD, seqN, seq_bytes, &y) == PKV_OK &&
         pkv_seq_export(o, y, PKV_LAYOUT_NHD, seq_back, seq_bytes, NULL, &nt) ==
             PKV_OK &&
         nt == 14 && !memcmp(seq_back, seqN, seq_bytes),
     "%s: a sequence imported and exported again is bitwise the same", name);
  ok(cp_conserved(o), "%s: pages conserved", name);
  pkv_context *cpu = cp_ctx();
  ok(big_roundtrip(cpu, ctx), "%s: a 70-page sequence from a CPU cache and "
     "back, across layouts, bitwise", name);
  pkv_context_destroy(cpu);
  free(seq_back);
  free(back);
  pkv_cache_destroy(o);
  pkv_context_destroy(ctx);
}

/* More pages than one batched move (32): a 70-page sequence exported from
 * an HND cache in NHD, imported into an NHD cache on `dst` and exported
 * again in HND, equals the source's HND export; token ids kept. */
static int big_roundtrip(pkv_context *src_ctx, pkv_context *dst_ctx) {
  enum { NP = 70, NT = NP * PS - 1 };
  pkv_cache *a = mk(src_ctx, PKV_LAYOUT_HND, 80), *b = mk(dst_ctx, PKV_LAYOUT_NHD, 80);
  size_t wb = 0;
  pkv_cache_page_wire_bytes(a, &wb);
  int32_t *ids = malloc(NT * sizeof *ids), *ids2 = malloc(NT * sizeof *ids2);
  for (int i = 0; i < NT; i++) ids[i] = 77 + 3 * i;
  unsigned char *w = malloc(NP * wb), *h1 = malloc(NP * wb), *h2 = malloc(NP * wb);
  for (size_t i = 0; i < NP * wb; i++) w[i] = (unsigned char)(i * 131 + 7);
  pkv_seq_id s = -1, t = -1;
  int64_t n = 0;
  int good = pkv_seq_import(a, NULL, ids, NT, PKV_LAYOUT_NHD, w, NP * wb, &s) == PKV_OK &&
             pkv_seq_export(a, s, PKV_LAYOUT_HND, h1, NP * wb, NULL, &n) == PKV_OK &&
             pkv_seq_export(a, s, PKV_LAYOUT_NHD, h2, NP * wb, ids2, &n) == PKV_OK &&
             !memcmp(h2, w, NP * wb) &&
             pkv_seq_import(b, NULL, ids2, NT, PKV_LAYOUT_NHD, h2, NP * wb, &t) == PKV_OK &&
             pkv_seq_export(b, t, PKV_LAYOUT_HND, h2, NP * wb, ids2, &n) == PKV_OK &&
             n == NT && !memcmp(h1, h2, NP * wb) && !memcmp(ids, ids2, NT * sizeof *ids);
  if (!good) diag("big round trip: %s / %s", pkv_last_error(src_ctx), pkv_last_error(dst_ctx));
  free(ids);
  free(ids2);
  free(w);
  free(h1);
  free(h2);
  pkv_cache_destroy(a);
  pkv_cache_destroy(b);
  return good;
}

/* Every storage dtype: random wire bytes through an NHD and an HND cache
 * and back are the same bytes, the HND form is the NHD one transposed row
 * by row, and an int8 page's scale block is carried unchanged. */
static void dtypes_part(pkv_context *ctx) {
  static const pkv_dtype dts[] = {PKV_DTYPE_F16, PKV_DTYPE_BF16,
                                  PKV_DTYPE_FP8_E4M3, PKV_DTYPE_INT8};
  static const char *names[] = {"f16", "bf16", "fp8 e4m3", "int8"};
  for (int k = 0; k < 4; k++) {
    pkv_cache *c[2];
    for (int l = 0; l < 2; l++) {
      pkv_cache_desc d;
      pkv_cache_desc_init(&d);
      d.num_layers = L;
      d.num_kv_heads = H;
      d.head_dim = D;
      d.page_size = PS;
      d.num_pages = 8;
      d.dtype = dts[k];
      d.layout = l ? PKV_LAYOUT_NHD : PKV_LAYOUT_HND;
      c[l] = cp_cache_desc(ctx, &d);
    }
    size_t wb = 0;
    pkv_cache_page_wire_bytes(c[0], &wb);
    pkv_cache_geometry g;
    pkv_cache_geometry_init(&g);
    pkv_cache_get_geometry(c[0], &g);
    size_t n = 2 * wb, row = (size_t)D * pkv_dtype_size(dts[k]);
    unsigned char *r = malloc(n), *x = malloc(n), *y = malloc(n);
    for (size_t i = 0; i < n; i++) r[i] = (unsigned char)((i * 2654435761u) >> 13);
    pkv_seq_id a = -1, b = -1;
    int64_t nt = 0;
    int good = pkv_seq_import(c[1], NULL, NULL, 8, PKV_LAYOUT_NHD, r, n, &a) == PKV_OK &&
               pkv_seq_export(c[1], a, PKV_LAYOUT_NHD, y, n, NULL, &nt) == PKV_OK &&
               !memcmp(y, r, n) &&
               pkv_seq_export(c[1], a, PKV_LAYOUT_HND, x, n, NULL, &nt) == PKV_OK &&
               pkv_seq_import(c[0], NULL, NULL, 8, PKV_LAYOUT_HND, x, n, &b) == PKV_OK &&
               pkv_seq_export(c[0], b, PKV_LAYOUT_NHD, y, n, NULL, &nt) == PKV_OK &&
               !memcmp(y, r, n);
    int tr = 1;
    for (size_t p = 0; p < n / g.page_bytes; p++) {
      const unsigned char *hp = x + p * g.page_bytes, *np_ = r + p * g.page_bytes;
      for (int h = 0; h < H; h++)
        for (int t = 0; t < PS; t++)
          tr &= !memcmp(hp + ((size_t)h * PS + t) * row, np_ + ((size_t)t * H + h) * row, row);
      if (g.scale_offset)
        tr &= !memcmp(hp + g.scale_offset, np_ + g.scale_offset,
                      g.page_bytes - g.scale_offset);
    }
    ok(good && tr, "%s: NHD -> HND -> NHD through two caches is bitwise, HND "
       "is the transpose%s", names[k], g.scale_offset ? ", scales carried" : "");
    free(r);
    free(x);
    free(y);
    pkv_cache_destroy(c[0]);
    pkv_cache_destroy(c[1]);
  }
}

int main(void) {
  for (int i = 0; i < 64; i++) T[i] = 5000 + 13 * i;
  pkv_context *ctx = cp_ctx();
  pkv_cache *A = mk(ctx, PKV_LAYOUT_HND, 16);
  size_t wb = 0;
  ok(pkv_cache_page_wire_bytes(A, &wb) == PKV_OK &&
         wb == (size_t)2 * L * H * PS * D * 4,
     "wire bytes: every layer's K and V page (%zu)", wb);

  pkv_seq_id sa = cp_open(A, 0, 5);
  put(A, sa, 0, 14, 1);
  MUST(pkv_seq_commit(A, sa, 14));
  pkv_page_key keys[4];
  int64_t n = 0;
  MUST(pkv_seq_page_keys(A, sa, 0, 4, keys, &n));
  ok(n == 3, "A: 3 keyed pages of 14 tokens");

  /* ---- hold and read ---- */
  pkv_page_hold *hold = NULL;
  ok(pkv_pages_hold(A, 5, keys, 3, &hold) == PKV_OK && pkv_page_hold_count(hold) == 3,
     "hold of 3 keys");
  int32_t hp[3], sp[4];
  cp_pages(A, sa, sp, 4);
  ok(pkv_page_hold_pages(hold, hp, 3, &n) == PKV_OK && n == 3 && hp[0] == sp[0] &&
         hp[2] == sp[2],
     "the hold's pages are the sequence's");
  ok(cp_ref(A, sp[0]) == 2, "a held page is referenced");
  ok(pkv_page_hold_pages(hold, NULL, 0, &n) == PKV_OK && n == 3,
     "capacity 0 gives the count");
  unsigned char *bufN = malloc(3 * wb), *bufH = malloc(3 * wb), *raw = malloc(wb);
  int32_t tk[12];
  ok(pkv_pages_read(A, hold, PKV_LAYOUT_NHD, bufN, 3 * wb, tk) == PKV_OK &&
         !memcmp(tk, T, sizeof tk),
     "read in NHD, with token ids");
  ok(pkv_pages_read(A, hold, PKV_LAYOUT_HND, bufH, 3 * wb, NULL) == PKV_OK,
     "read in HND (the cache's layout)");
  /* The HND wire form is the pool's bytes: layer 0's K page of page 1. */
  pkv_buffer *k0 = NULL;
  pkv_cache_kv(A, 0, &k0, NULL);
  pkv_cache_geometry g;
  pkv_cache_geometry_init(&g);
  pkv_cache_get_geometry(A, &g);
  pkv_buffer_download(k0, (size_t)sp[1] * g.page_bytes, raw, g.page_bytes);
  ok(!memcmp(raw, bufH + wb, g.page_bytes), "HND wire = the pool's page bytes");
  int tr = 1;
  for (int i = 0; i < 3 * 2 * L; i++)
    tr &= is_transpose((float *)(bufH + (size_t)i * g.page_bytes),
                       (float *)(bufN + (size_t)i * g.page_bytes));
  ok(tr, "NHD wire is the HND wire transposed, page by page");
  snap s0;
  take(A, &sa, 1, &s0);
  ok(pkv_pages_read(A, hold, PKV_LAYOUT_HND, bufH, 3 * wb - 1, NULL) == PKV_ERR_SIZE &&
         strstr(pkv_last_error(ctx), "dst_bytes"),
     "read: dst_bytes one short is PKV_ERR_SIZE");
  ok(pkv_pages_read(A, hold, (pkv_layout)7, bufH, 3 * wb, NULL) == PKV_ERR_INVALID,
     "read: unknown layout");
  ok(pkv_pages_read(A, NULL, PKV_LAYOUT_HND, bufH, 3 * wb, NULL) == PKV_ERR_NULL,
     "read: NULL hold");
  ok(pkv_pages_read(A, hold, PKV_LAYOUT_HND, NULL, 3 * wb, NULL) == PKV_ERR_NULL,
     "read: NULL dst");
  pkv_page_hold_release(A, hold);
  ok(cp_ref(A, sp[0]) == 1, "release gives the reference back");
  pkv_page_key bad[3] = {keys[0], {1, 2}, keys[2]};
  hold = (pkv_page_hold *)1;
  free(s0.pi);
  take(A, &sa, 1, &s0);
  ok(pkv_pages_hold(A, 5, bad, 3, &hold) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "keys[1]") && unchanged(A, &sa, 1, &s0),
     "hold: a key not indexed is NOT_FOUND naming it, nothing held");
  ok(pkv_pages_hold(A, 6, keys, 1, &hold) == PKV_ERR_NOT_FOUND,
     "hold: another namespace");
  ok(pkv_pages_hold(A, 5, keys, -1, &hold) == PKV_ERR_INVALID, "hold: n < 0");
  ok(pkv_pages_hold(A, 5, NULL, 1, &hold) == PKV_ERR_NULL, "hold: NULL keys");
  ok(pkv_pages_hold(A, 5, keys, 1, NULL) == PKV_ERR_NULL, "hold: NULL out");
  ok(pkv_pages_hold(NULL, 5, keys, 1, &hold) == PKV_ERR_NULL, "hold: NULL cache");
  free(s0.pi);

  /* ---- import into B (NHD), match, attention ---- */
  pkv_cache *B = mk(ctx, PKV_LAYOUT_NHD, 16);
  pkv_cache_set_event_queue(B, 64);
  int64_t ni = -1, nsk = -1;
  ok(pkv_pages_import(B, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, &ni,
                      &nsk) == PKV_OK &&
         ni == 3 && nsk == 0,
     "B: 3 pages imported (%s)", pkv_last_error(ctx));
  ok(events(B, PKV_EVENT_PAGE_STORED) == 3, "B: 3 PAGE_STORED events");
  pkv_stats st;
  pkv_stats_init(&st);
  pkv_cache_stats(B, &st);
  ok(st.pages_cached == 3 && st.pages_live == 0, "B: imported pages are cached "
                                                 "(refcount 0)");
  unsigned char *back = malloc(3 * wb);
  ok(read_keys(B, 5, keys, 3, PKV_LAYOUT_HND, back, tk) == PKV_OK &&
         !memcmp(back, bufH, 3 * wb),
     "B (NHD) read in HND: bitwise A's pages");
  ok(pkv_pages_import(B, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, &ni,
                      &nsk) == PKV_OK &&
         ni == 0 && nsk == 3 && events(B, PKV_EVENT_PAGE_STORED) == 0,
     "B: a second import skips all 3, no event");
  /* Same pages given in HND into another NHD cache: converted on import. */
  pkv_cache *B2 = mk(ctx, PKV_LAYOUT_NHD, 16);
  ok(pkv_pages_import(B2, 5, NULL, keys, T, 3, PKV_LAYOUT_HND, bufH, 3 * wb, &ni,
                      NULL) == PKV_OK &&
         read_keys(B2, 5, keys, 3, PKV_LAYOUT_NHD, back, NULL) == PKV_OK &&
         !memcmp(back, bufN, 3 * wb),
     "HND wire into an NHD cache: converted, bitwise");
  pkv_cache_destroy(B2);

  pkv_seq_id xa = cp_open(A, 0, 5), xb = cp_open(B, 0, 5);
  int64_t ra = 0, rb = 0;
  ok(pkv_seq_match_prefix(A, xa, T, 14, &ra) == PKV_OK &&
         pkv_seq_match_prefix(B, xb, T, 14, &rb) == PKV_OK && ra == 12 && rb == 12,
     "A and B both reuse 12 tokens");
  put(A, xa, 12, 2, 1);
  put(B, xb, 12, 2, 1);
  float *oa = malloc((size_t)L * 2 * QH * D * 4), *ob = malloc((size_t)L * 2 * QH * D * 4);
  attend(A, xa, 2, oa);
  attend(B, xb, 2, ob);
  ok(!memcmp(oa, ob, (size_t)L * 2 * QH * D * 4),
     "attention over the imported prefix (NHD) is bitwise A's (HND), both "
     "layers");
  pkv_seq_release(A, xa);
  pkv_seq_release(B, xb);

  /* ---- a parent key; unknown parent; mismatch ---- */
  pkv_cache *C = mk(ctx, PKV_LAYOUT_HND, 16);
  ok(pkv_pages_import(C, 5, NULL, keys, T, 1, PKV_LAYOUT_NHD, bufN, wb, &ni, NULL) ==
             PKV_OK &&
         pkv_pages_import(C, 5, &keys[0], keys + 1, T + PS, 2, PKV_LAYOUT_NHD,
                          bufN + wb, 2 * wb, &ni, NULL) == PKV_OK &&
         ni == 2,
     "C: page 0, then pages 1-2 under parent key 0");
  pkv_seq_id xc = cp_open(C, 0, 5);
  ok(pkv_seq_match_prefix(C, xc, T, 12, &ra) == PKV_OK && ra == 12,
     "C: the chain matches whole");
  pkv_seq_release(C, xc);
  pkv_cache *E = mk(ctx, PKV_LAYOUT_HND, 4);
  pkv_seq_id none[1] = {0};
  snap s1;
  take(E, none, 0, &s1);
  ok(pkv_pages_import(E, 5, &keys[0], keys + 1, T + PS, 2, PKV_LAYOUT_NHD,
                      bufN + wb, 2 * wb, &ni, NULL) == PKV_ERR_NOT_FOUND &&
         strstr(pkv_last_error(ctx), "parent") && unchanged(E, none, 0, &s1),
     "a parent key not indexed here: NOT_FOUND, nothing changed");
  int32_t T2[12];
  memcpy(T2, T, sizeof T2);
  T2[5] ^= 1;
  ok(pkv_pages_import(E, 5, NULL, keys, T2, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, &ni,
                      NULL) == PKV_ERR_KEY_MISMATCH &&
         strstr(pkv_last_error(ctx), "keys[1]") && unchanged(E, none, 0, &s1),
     "a token changed in page 1: KEY_MISMATCH naming keys[1], nothing changed");
  ok(pkv_pages_import(E, 6, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, &ni,
                      NULL) == PKV_ERR_KEY_MISMATCH &&
         strstr(pkv_last_error(ctx), "keys[0]"),
     "another namespace: KEY_MISMATCH");
  ok(pkv_pages_import(E, 5, NULL, keys + 1, T + PS, 2, PKV_LAYOUT_NHD, bufN + wb,
                      2 * wb, &ni, NULL) == PKV_ERR_KEY_MISMATCH,
     "a chain's middle without its parent: KEY_MISMATCH");
  ok(strcmp(pkv_status_name(PKV_ERR_KEY_MISMATCH), "PKV_ERR_KEY_MISMATCH") == 0,
     "status name");

  /* ---- pool exhaustion, all or nothing ---- */
  pkv_seq_id live = cp_open(E, 0, 9);
  put(E, live, 0, 8, 0); /* 2 of E's 4 pages live */
  free(s1.pi);
  take(E, &live, 1, &s1);
  pkv_cache_set_event_queue(E, 16);
  ok(pkv_pages_import(E, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, &ni,
                      NULL) == PKV_ERR_NO_PAGES &&
         unchanged(E, &live, 1, &s1) && events(E, PKV_EVENT_PAGE_STORED) == 0,
     "3 pages into 2 free: NO_PAGES, statistics and every page as before");
  /* The parent is protected: with page 0 cached and one page free, pages
   * 1-2 need two and must not evict their own parent. */
  MUST(pkv_pages_import(E, 5, NULL, keys, T, 1, PKV_LAYOUT_NHD, bufN, wb, &ni, NULL));
  free(s1.pi);
  take(E, &live, 1, &s1);
  ok(pkv_pages_import(E, 5, &keys[0], keys + 1, T + PS, 2, PKV_LAYOUT_NHD,
                      bufN + wb, 2 * wb, &ni, NULL) == PKV_ERR_NO_PAGES &&
         unchanged(E, &live, 1, &s1),
     "2 pages with 1 free and only the parent cached: NO_PAGES, the parent "
     "kept");
  pkv_seq_release(E, live);
  events(E, 0);
  ok(pkv_pages_import(E, 5, &keys[0], keys + 1, T + PS, 2, PKV_LAYOUT_NHD,
                      bufN + wb, 2 * wb, &ni, NULL) == PKV_OK &&
         ni == 2 && events(E, PKV_EVENT_PAGE_STORED) == 2,
     "after a release: imported");
  /* Eviction may take other cached pages: they are reported. */
  pkv_seq_id o9 = cp_open(E, 0, 5);
  ok(pkv_seq_match_prefix(E, o9, T, 12, &ra) == PKV_OK && ra == 12,
     "E: the chain matches");
  pkv_seq_release(E, o9);
  pkv_page_key k7[3];
  pkv_cache *F = mk(ctx, PKV_LAYOUT_HND, 16);
  pkv_seq_id f7 = cp_open(F, 0, 7);
  put(F, f7, 0, 12, 1);
  pkv_seq_page_keys(F, f7, 0, 3, k7, &n);
  unsigned char *buf7 = malloc(3 * wb);
  MUST(pkv_seq_commit(F, f7, 12));
  ok(read_keys(F, 7, k7, 3, PKV_LAYOUT_HND, buf7, NULL) == PKV_OK, "F: 3 pages "
                                                                  "of ns 7 read");
  ok(pkv_pages_import(E, 7, NULL, k7, T, 3, PKV_LAYOUT_HND, buf7, 3 * wb, &ni,
                      NULL) == PKV_OK &&
         ni == 3 && events(E, PKV_EVENT_PAGE_EVICTED) == 2,
     "3 pages into 1 free + 3 cached: 2 evicted and reported");
  pkv_cache_destroy(F);
  free(buf7);

  /* ---- bad arguments: each its own status, nothing changed ---- */
  free(s1.pi);
  take(B, none, 0, &s1);
  struct {
    pkv_status want;
    pkv_status got;
    const char *what;
  } cases[] = {
      {PKV_ERR_NULL, pkv_pages_import(NULL, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, NULL, NULL), "NULL cache"},
      {PKV_ERR_NULL, pkv_pages_import(B, 5, NULL, NULL, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, NULL, NULL), "NULL keys"},
      {PKV_ERR_NULL, pkv_pages_import(B, 5, NULL, keys, NULL, 3, PKV_LAYOUT_NHD, bufN, 3 * wb, NULL, NULL), "NULL tokens"},
      {PKV_ERR_NULL, pkv_pages_import(B, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, NULL, 3 * wb, NULL, NULL), "NULL src"},
      {PKV_ERR_INVALID, pkv_pages_import(B, 5, NULL, keys, T, -1, PKV_LAYOUT_NHD, bufN, 3 * wb, NULL, NULL), "n < 0"},
      {PKV_ERR_RANGE, pkv_pages_import(B, 5, NULL, keys, T, 17, PKV_LAYOUT_NHD, bufN, 3 * wb, NULL, NULL), "n > num_pages"},
      {PKV_ERR_INVALID, pkv_pages_import(B, 5, NULL, keys, T, 3, (pkv_layout)2, bufN, 3 * wb, NULL, NULL), "unknown layout"},
      {PKV_ERR_SIZE, pkv_pages_import(B, 5, NULL, keys, T, 3, PKV_LAYOUT_NHD, bufN, 3 * wb - 1, NULL, NULL), "src_bytes one short"},
  };
  int all = 1;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (cases[i].got != cases[i].want) {
      diag("import with %s: %s, want %s", cases[i].what,
           pkv_status_name(cases[i].got), pkv_status_name(cases[i].want));
      all = 0;
    }
  ok(all && unchanged(B, none, 0, &s1),
     "import: NULL cache/keys/tokens/src, n < 0, n > pages, layout, short "
     "src each refused with its status, nothing changed");
  ok(pkv_pages_import(B, 5, NULL, NULL, NULL, 0, PKV_LAYOUT_NHD, NULL, 0, &ni, &nsk) ==
             PKV_OK && ni == 0 && nsk == 0,
     "import of 0 pages: OK, nothing");
  free(s1.pi);

  /* ---- holds against eviction and namespace drop ---- */
  ok(pkv_pages_hold(B, 5, keys, 3, &hold) == PKV_OK, "B: hold the 3 imported "
                                                    "pages");
  pkv_seq_id big = cp_open(B, 0, 1);
  ok(pkv_seq_append(B, big, 14 * PS, NULL, NULL) == PKV_ERR_NO_PAGES,
     "14 pages with 13 free and 3 held: NO_PAGES (held pages are not "
     "evicted)");
  ok(pkv_namespace_drop(B, 5) == PKV_OK, "drop namespace 5 while held");
  pkv_page_info pi;
  pkv_page_info_init(&pi);
  pkv_page_hold_pages(hold, hp, 3, &n);
  pkv_page_get_info(B, hp[0], &pi);
  ok(pi.state == PKV_PAGE_LIVE && !pi.indexed, "the held page is unindexed but "
                                               "kept");
  ok(pkv_pages_read(B, hold, PKV_LAYOUT_HND, back, 3 * wb, NULL) == PKV_OK &&
         !memcmp(back, bufH, 3 * wb),
     "a read of the hold after the drop still gives the pages");
  pkv_page_hold_release(B, hold);
  pkv_page_get_info(B, hp[0], &pi);
  ok(pi.state == PKV_PAGE_FREE, "released: the page is free");
  ok(pkv_seq_append(B, big, 14 * PS, NULL, NULL) == PKV_OK, "now 14 pages fit");
  pkv_seq_release(B, big);
  pkv_page_hold_release(B, NULL);

  /* ---- whole sequences ---- */
  int64_t nt = -1;
  ok(pkv_seq_export(A, sa, PKV_LAYOUT_NHD, NULL, 0, NULL, &nt) == PKV_OK && nt == 14,
     "seq_export with no buffer: the length");
  size_t sbytes = 4 * wb;
  unsigned char *seqN = malloc(sbytes), *seqH = malloc(sbytes), *seqH2 = malloc(sbytes);
  int32_t st_ids[14], st_ids2[14];
  ok(pkv_seq_export(A, sa, PKV_LAYOUT_NHD, seqN, sbytes, st_ids, &nt) == PKV_OK &&
         nt == 14 && !memcmp(st_ids, T, sizeof st_ids),
     "seq_export: 4 pages (partial last) and 14 token ids");
  MUST(pkv_seq_export(A, sa, PKV_LAYOUT_HND, seqH, sbytes, NULL, &nt));
  ok(pkv_seq_export(A, sa, PKV_LAYOUT_NHD, seqN, sbytes - 1, NULL, &nt) ==
         PKV_ERR_SIZE,
     "seq_export: short dst is PKV_ERR_SIZE");
  ok(pkv_seq_export(A, 999, PKV_LAYOUT_NHD, seqN, sbytes, NULL, &nt) ==
         PKV_ERR_NOT_FOUND,
     "seq_export: unknown sequence");
  pkv_cache_set_event_queue(B, 64);
  pkv_seq_id sb = -1;
  ok(pkv_seq_import(B, NULL, T, 14, PKV_LAYOUT_NHD, seqN, sbytes, &sb) == PKV_OK,
     "seq_import into B (NHD) from the NHD wire");
  ok(pkv_seq_length(B, sb, &nt) == PKV_OK && nt == 14, "B: length 14");
  ok(pkv_seq_export(B, sb, PKV_LAYOUT_HND, seqH2, sbytes, st_ids2, &nt) == PKV_OK &&
         !memcmp(seqH, seqH2, sbytes) && !memcmp(st_ids2, T, sizeof st_ids2),
     "exported again in HND: bitwise A's export, same ids");
  ok(events(B, PKV_EVENT_PAGE_STORED) == 3, "its 3 full pages were committed "
                                            "(3 STORED)");
  put(A, sa, 14, 1, 1);
  put(B, sb, 14, 1, 1);
  attend(A, sa, 1, oa);
  attend(B, sb, 1, ob);
  ok(!memcmp(oa, ob, (size_t)L * QH * D * 4),
     "decode after the handover: bitwise the prefill cache's attention");
  /* Without ids: no keys; with unknown ids the export refuses tokens. */
  pkv_seq_id su = -1;
  ok(pkv_seq_import(B, NULL, NULL, 14, PKV_LAYOUT_NHD, seqN, sbytes, &su) == PKV_OK &&
         pkv_seq_page_keys(B, su, 0, 4, keys + 3, &n) == PKV_OK && n == 0,
     "seq_import without ids: no keys");
  ok(pkv_seq_export(B, su, PKV_LAYOUT_NHD, seqN, sbytes, st_ids2, &nt) ==
         PKV_ERR_STATE,
     "seq_export of unknown ids with tokens asked: PKV_ERR_STATE");
  pkv_seq_id sd = -1;
  int64_t dropped = 0;
  MUST(pkv_seq_import(B, NULL, T, 14, PKV_LAYOUT_NHD, seqN, sbytes, &sd));
  MUST(pkv_seq_truncate_front(B, sd, 8, &dropped));
  ok(pkv_seq_export(B, sd, PKV_LAYOUT_NHD, seqH2, sbytes, st_ids2, &nt) ==
             PKV_ERR_STATE &&
         strstr(pkv_last_error(ctx), "truncated") &&
         pkv_seq_export(B, sd, PKV_LAYOUT_NHD, seqH2, sbytes, NULL, &nt) == PKV_OK &&
         nt == 14 - dropped,
     "seq_export of a sequence truncated from the front: ids refused, K/V "
     "given");
  pkv_seq_release(B, sd);
  pkv_seq_id tiny_ids[1];
  pkv_cache *Tc = mk(ctx, PKV_LAYOUT_HND, 3);
  pkv_seq_id t1 = cp_open(Tc, 0, 0), t2 = -1;
  tiny_ids[0] = t1;
  take(Tc, tiny_ids, 1, &s1);
  ok(pkv_seq_import(Tc, NULL, T, 14, PKV_LAYOUT_NHD, seqN, sbytes, &t2) ==
             PKV_ERR_NO_PAGES &&
         unchanged(Tc, tiny_ids, 1, &s1),
     "seq_import of 4 pages into 3: NO_PAGES, nothing changed");
  free(s1.pi);
  pkv_seq_id t3 = cp_open(Tc, 0, 0);
  ok(t3 == t1 + 1, "a failed seq_import used no sequence id");
  ok(pkv_seq_import(Tc, NULL, T, 14, PKV_LAYOUT_NHD, seqN, sbytes - 1, &t2) ==
             PKV_ERR_SIZE &&
         pkv_seq_import(Tc, NULL, T, -1, PKV_LAYOUT_NHD, seqN, sbytes, &t2) ==
             PKV_ERR_INVALID &&
         pkv_seq_import(Tc, NULL, T, 4, PKV_LAYOUT_NHD, seqN, sbytes, NULL) ==
             PKV_ERR_NULL &&
         pkv_seq_import(Tc, NULL, T, 4, (pkv_layout)3, seqN, sbytes, &t2) ==
             PKV_ERR_INVALID,
     "seq_import: short src, n < 0, NULL out, bad layout");
  pkv_cache_destroy(Tc);

  dtypes_part(ctx);
  ok(big_roundtrip(ctx, ctx), "a 70-page sequence (3 batched moves each "
     "way) across layouts and back, bitwise");
  device_part(PKV_BACKEND_OPENCL, bufN, bufH, keys, wb, seqN, sbytes);
  device_part(PKV_BACKEND_HIP, bufN, bufH, keys, wb, seqN, sbytes);

  free(seqN);
  free(seqH);
  free(seqH2);
  free(oa);
  free(ob);
  free(back);
  free(bufN);
  free(bufH);
  free(raw);
  pkv_cache_destroy(E);
  pkv_cache_destroy(C);
  pkv_cache_destroy(B);
  pkv_cache_destroy(A);
  pkv_context_destroy(ctx);
  return done_testing();
}
