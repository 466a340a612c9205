/* SPDX-License-Identifier: Apache-2.0 */
/* Plan/run (doc/plan-run.md). A build checks the view, table and
 * parameters once, cuts every request's keys into chunks so that the grid
 * fills the device, and uploads the items to a device buffer owned by the
 * plan; a run per layer checks the view against the plan's geometry and
 * the workspace against its size, then goes the one path of
 * pkv_kv_attention with the plan attached (which checks q, out, lse and,
 * again, the table's host entries: the CPU backend reads the caller's
 * arrays directly, so they are never trusted from an earlier call). */
#include "plan.h"

#include "alloc.h"
#include "backend.h"
#include "kvlayer.h"
#include "struct_size.h"

#include <stdint.h>
#include <string.h>

struct pkv_plan {
  pkv_context *ctx;
  int built;
  pkv_cache_geometry g;    /* the view geometry of the build */
  pkv_kv_table table;      /* resolved, host mirrors included */
  pkv_attn_params params;  /* alibi_slopes/sinks point at the copies below */
  float *alibi, *sinks;
  pkv_buffer *alibi_dev;   /* device copy of the slopes, made at build */
  void *stream;
  int64_t chunk, num_items, grid_items, budget, partial_rows;
  int32_t num_split;
  size_t ws_bytes;
  pkv__plan_item *items;   /* host copy, grid_items entries */
  int64_t items_cap;
  int32_t *merges;         /* host copy, int32 [merge_slots][4] */
  int64_t merge_slots;
  int64_t lse_off;         /* floats from the workspace to its LSE */
  /* Device copies, grown but never moved by a build that fits them, so
   * that a captured graph that reads them stays valid (doc/plan-run.md). */
  pkv_buffer *dev_items;   /* int32 [grid_items][4] */
  pkv_buffer *dev_merges;  /* int32 [merge_slots][4] */
  pkv_buffer *sinks_dev;   /* device copy of the sinks */
};

/* ---------------------------------------------------------------- pure host */

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int64_t items_at(const int64_t *kv_len, int32_t n, int64_t chunk) {
  int64_t k = 0;
  for (int32_t i = 0; i < n; i++) k += kv_len[i] > 0 ? ceil_div(kv_len[i], chunk) : 1;
  return k;
}

int64_t pkv__plan_chunk_keys(const int64_t *kv_len, int32_t n,
                            int32_t page_size, int64_t budget,
                            int64_t min_chunk) {
  int64_t longest = 0;
  for (int32_t i = 0; i < n; i++)
    if (kv_len[i] > longest) longest = kv_len[i];
  if (page_size < 1) page_size = 1;
  /* Chunks are whole pages: a chunk never starts inside a page, so a
   * kernel's page walk needs no per-chunk offset. */
  int64_t lo = ceil_div(min_chunk > 0 ? min_chunk : 1, page_size);
  int64_t hi = ceil_div(longest > 0 ? longest : 1, page_size);
  if (lo > hi) lo = hi;
  if (items_at(kv_len, n, hi * page_size) > budget || lo == hi)
    return hi * page_size; /* the requests alone fill the budget */
  /* Smallest chunk (in pages) whose item count fits the budget; the count
   * does not grow as the chunk grows, so the search is monotone. */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (items_at(kv_len, n, mid * page_size) <= budget)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo * page_size;
}

void pkv__plan_fill(const int64_t *kv_len, const int32_t *q_len, int32_t n,
                    int64_t chunk, pkv__plan_item *items, int64_t *num_items,
                    int64_t *partial_rows) {
  int64_t k = 0, rows = 0;
  for (int32_t i = 0; i < n; i++) {
    int64_t len = kv_len[i], nc = len > 0 ? ceil_div(len, chunk) : 1;
    for (int64_t c = 0; c < nc; c++, k++) {
      if (!items) continue;
      int64_t e = (c + 1) * chunk;
      items[k].seq = i;
      items[k].kv_begin = (int32_t)(c * chunk);
      items[k].kv_end = (int32_t)(e < len ? e : len);
      items[k].partial = nc > 1 ? (int32_t)(rows + c * q_len[i]) : -1;
    }
    if (nc > 1) rows += nc * q_len[i]; /* only split requests are merged */
  }
  *num_items = k;
  *partial_rows = rows;
}

int64_t pkv__plan_merges(const pkv__plan_item *items, int64_t num_items,
                         const int32_t *q_len, int32_t *merges,
                         int64_t slots) {
  int64_t m = 0;
  for (int64_t k = 0; k < num_items;) {
    int64_t e = k + 1;
    while (e < num_items && items[e].seq == items[k].seq) e++;
    if (items[k].partial >= 0 && items[k].seq >= 0) {
      if (m < slots) {
        merges[4 * m] = items[k].seq;
        merges[4 * m + 1] = items[k].partial;
        merges[4 * m + 2] = (int32_t)(e - k);
        merges[4 * m + 3] = q_len[items[k].seq];
      }
      m++;
    }
    k = e;
  }
  for (int64_t i = m; i < slots; i++) {
    merges[4 * i] = -1;
    merges[4 * i + 1] = merges[4 * i + 2] = merges[4 * i + 3] = 0;
  }
  return m;
}

int64_t pkv__plan_device_items(int64_t num_sms, int64_t blocks_per_sm,
                              int32_t num_kv_heads) {
  int64_t b = num_sms * blocks_per_sm / (num_kv_heads > 0 ? num_kv_heads : 1);
  return b > 0 ? b : 1;
}

int64_t pkv__plan_choose(const int64_t *kv_len, int32_t n, int32_t page_size,
                        int64_t device_items, int64_t min_chunk,
                        int64_t *budget) {
  int64_t total = 0;
  for (int32_t i = 0; i < n; i++) total += kv_len[i] > 0 ? kv_len[i] : 0;
  if (device_items < 1) device_items = 1;
  int64_t share = ceil_div(total > 0 ? total : 1, device_items);
  *budget = device_items > 2 * (int64_t)n ? device_items : 2 * (int64_t)n;
  return pkv__plan_chunk_keys(kv_len, n, page_size, *budget,
                              share > min_chunk ? share : min_chunk);
}

/* ---------------------------------------------------------------- API */

void pkv_plan_options_init_sized(pkv_plan_options *o, size_t size) {
  pkv_plan_options d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(o, size, &d, sizeof d);
}

void pkv_plan_info_init_sized(pkv_plan_info *i, size_t size) {
  pkv_plan_info d;
  memset(&d, 0, sizeof d);
  pkv__struct_init(i, size, &d, sizeof d);
}

pkv_status pkv_plan_create(pkv_context *ctx, pkv_plan **out) {
  if (!out) return pkv__fail(ctx, PKV_ERR_NULL, "out is NULL");
  *out = NULL;
  if (!ctx) return pkv__fail(NULL, PKV_ERR_NULL, "ctx is NULL");
  pkv_plan *p = pkv__calloc(1, sizeof *p);
  if (!p) return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "plan: %zu bytes", sizeof *p);
  p->ctx = ctx;
  *out = p;
  return PKV_OK;
}

/* Host state of a build; the device buffers stay for the next build. */
static void unbuild(pkv_plan *p) {
  pkv__free(p->alibi);
  pkv__free(p->sinks);
  pkv__free(p->items);
  pkv__free(p->merges);
  p->alibi = p->sinks = NULL;
  p->items = NULL;
  p->merges = NULL;
  p->items_cap = 0;
  p->built = 0;
}

void pkv_plan_destroy(pkv_plan *plan) {
  if (!plan) return;
  unbuild(plan);
  pkv_buffer_destroy(plan->dev_items);
  pkv_buffer_destroy(plan->dev_merges);
  pkv_buffer_destroy(plan->alibi_dev);
  pkv_buffer_destroy(plan->sinks_dev);
  pkv__free(plan);
}

/* A device buffer of at least `bytes`: kept when it holds them (its
 * address does not change), else replaced. */
static pkv_status ensure(pkv_context *ctx, pkv_buffer **buf, size_t bytes) {
  if (*buf && (*buf)->bytes >= bytes) return PKV_OK;
  pkv_buffer *b = NULL;
  pkv_status st = pkv_buffer_create(ctx, bytes, &b);
  if (st != PKV_OK) return st;
  pkv_buffer_destroy(*buf);
  *buf = b;
  return PKV_OK;
}

/* A plan array to the device: on the plan's stream without a host wait
 * where the backend can (HIP: pinned staging, async copy), else the
 * ordinary upload. */
static pkv_status upload(pkv_plan *p, pkv_buffer **buf, const void *src,
                         size_t bytes, void *stream) {
  pkv_context *ctx = p->ctx;
  pkv_status st = ensure(ctx, buf, bytes);
  if (st != PKV_OK) return st;
  if (ctx->ops->mem_upload_async)
    return ctx->ops->mem_upload_async(ctx, (*buf)->native, 0, src, bytes,
                                      stream);
  return pkv_buffer_upload(*buf, 0, src, bytes);
}

/* Blocks per compute unit when the caller gives none: a CPU thread runs
 * one item at a time; a GPU keeps several resident. The occupancy query of
 * the HIP/CUDA runtime is not wired through the module interface yet, so
 * GPUs get the figure of the decode kernel's launch bounds (4 blocks). */
static int64_t default_blocks_per_sm(const pkv_context *ctx) {
  if (ctx->kind == PKV_BACKEND_CPU) return 1;
  if (ctx->info.type == PKV_DEVICE_CPU) return 1;
  return 4;
}

/* The backend's occupancy answer for the decode kernel of this geometry,
 * else the default above. */
static int64_t blocks_per_sm(pkv_context *ctx, const pkv_cache_geometry *g,
                             int32_t group) {
  if (ctx->ops->decode_blocks_per_cu) {
    int n = ctx->ops->decode_blocks_per_cu(ctx, g->head_dim, g->dtype, group);
    if (n > 0) return n;
  }
  return default_blocks_per_sm(ctx);
}

static pkv_status copy_floats(pkv_context *ctx, const float *src, int32_t n,
                              float **dst, const char *name) {
  *dst = NULL;
  if (!src) return PKV_OK;
  *dst = pkv__malloc((size_t)n * sizeof(float));
  if (!*dst)
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "plan: copy of %s (%d floats)",
                    name, n);
  memcpy(*dst, src, (size_t)n * sizeof(float));
  return PKV_OK;
}

pkv_status pkv_plan_build(pkv_plan *plan, const pkv_kv_view *view_in,
                          const pkv_kv_table *table_in,
                          const pkv_attn_params *params,
                          const pkv_plan_options *opts_in) {
  if (!plan) return pkv__fail(NULL, PKV_ERR_NULL, "plan is NULL");
  pkv_context *ctx = plan->ctx;
  unbuild(plan);
  pkv_kv_view view;
  pkv_cache_geometry g;
  pkv_kv_table t;
  pkv_plan_options o;
  int aligned;
  pkv_status st = pkv__kv_view_resolve(ctx, view_in, &view, &g, &aligned);
  if (st != PKV_OK) return st;
  if (!params) return pkv__fail(ctx, PKV_ERR_NULL, "params is NULL");
  if ((st = pkv__check_attn_params(ctx, g.num_kv_heads, params)) != PKV_OK)
    return st;
  if ((st = pkv__kv_table_resolve(ctx, table_in, &g, &t)) != PKV_OK) return st;
  pkv_plan_options_init(&o);
  if (opts_in &&
      (st = pkv__struct_in(ctx, "opts", opts_in, sizeof(size_t), &o,
                           sizeof o)) != PKV_OK)
    return st;
  if (o.num_sms < 0 || o.blocks_per_sm < 0 || o.min_chunk_keys < 0 ||
      o.chunk_keys < 0)
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "opts: num_sms %d, blocks_per_sm %d, min_chunk_keys %d, "
                    "chunk_keys %d must be >= 0",
                    o.num_sms, o.blocks_per_sm, o.min_chunk_keys, o.chunk_keys);
  const int32_t n = t.num_seqs;
  const int32_t *qi = t.host_q_indptr;
  int have_lens = t.kind == PKV_TABLE_DENSE
                      ? t.host_seq_lens != NULL
                      : t.host_kv_indptr && t.host_kv_last_page_len;
  if (n > 0 && (!qi || !have_lens))
    return pkv__fail(ctx, PKV_ERR_INVALID,
                    "table: a plan needs the host mirrors of q_indptr and of "
                    "the lengths (%s)",
                    t.kind == PKV_TABLE_DENSE ? "seq_lens"
                                              : "kv_indptr, kv_last_page_len");

  int64_t *len = pkv__malloc(((size_t)n + 1) * sizeof *len);
  int32_t *ql = pkv__malloc(((size_t)n + 1) * sizeof *ql);
  if (!len || !ql) {
    pkv__free(len);
    pkv__free(ql);
    return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "plan: lengths of %d requests", n);
  }
  for (int32_t s = 0; s < n; s++) {
    if (t.kind == PKV_TABLE_DENSE) {
      len[s] = t.host_seq_lens[s];
    } else {
      int64_t np = (int64_t)t.host_kv_indptr[s + 1] - t.host_kv_indptr[s];
      len[s] = np > 0 ? (np - 1) * g.page_size + t.host_kv_last_page_len[s] : 0;
    }
    ql[s] = qi[s + 1] - qi[s];
  }
  int64_t sms = o.num_sms > 0 ? o.num_sms : ctx->info.compute_units;
  if (sms < 1) sms = 1;
  int64_t bps = o.blocks_per_sm > 0
                    ? o.blocks_per_sm
                    : blocks_per_sm(ctx, &g, params->num_q_heads / g.num_kv_heads);
  int64_t chunk = pkv__plan_choose(
      len, n, g.page_size, pkv__plan_device_items(sms, bps, g.num_kv_heads),
      o.min_chunk_keys > 0 ? o.min_chunk_keys : PKV_PLAN_MIN_CHUNK,
      &plan->budget);
  plan->chunk = o.chunk_keys > 0 ? o.chunk_keys : chunk;
  if (plan->chunk < 1) plan->chunk = 1;
  pkv__plan_fill(len, ql, n, plan->chunk, NULL, &plan->num_items,
                 &plan->partial_rows);
  /* A fixed grid: padded to the budget, so that a graph captured for one
   * step stays valid for another step whose items fit the same budget. */
  plan->grid_items = plan->num_items > plan->budget ? plan->num_items
                                                    : plan->budget;
  plan->merge_slots = plan->grid_items / 2 > 0 ? plan->grid_items / 2 : 1;
  plan->items = pkv__calloc((size_t)plan->grid_items, sizeof *plan->items);
  plan->merges = pkv__calloc((size_t)plan->merge_slots * 4, sizeof(int32_t));
  st = PKV_OK;
  if (!plan->items || !plan->merges)
    st = pkv__fail(ctx, PKV_ERR_NO_MEMORY, "plan: %lld items",
                  (long long)plan->grid_items);
  if (st == PKV_OK) {
    plan->items_cap = plan->grid_items;
    pkv__plan_fill(len, ql, n, plan->chunk, plan->items, &plan->num_items,
                   &plan->partial_rows);
    plan->num_split = 0;
    for (int32_t s = 0; s < n; s++)
      plan->num_split += len[s] > plan->chunk;
    for (int64_t k = plan->num_items; k < plan->grid_items; k++) {
      plan->items[k].seq = -1;
      plan->items[k].partial = -1;
    }
    pkv__plan_merges(plan->items, plan->num_items, ql, plan->merges,
                     plan->merge_slots);
  }
  pkv__free(len);
  pkv__free(ql);
  if (st != PKV_OK) {
    unbuild(plan);
    return st;
  }
  /* Partial results: f32 out rows [cap][num_q_heads][head_dim], then their
   * LSE [cap][num_q_heads]; 256-byte aligned. cap is the partial rows, but
   * at least grid_items (a decode step has at most one row per item): so
   * the LSE's offset, a kernel argument frozen in a captured graph, is the
   * same for every step of the same grid, whatever its splits. */
  int64_t cap = plan->partial_rows > 0 && plan->partial_rows < plan->grid_items
                    ? plan->grid_items
                    : plan->partial_rows;
  uint64_t rows = (uint64_t)cap * (uint64_t)params->num_q_heads;
  uint64_t ws = rows * ((uint64_t)g.head_dim + 1) * sizeof(float);
  plan->ws_bytes = (size_t)((ws + 255) & ~(uint64_t)255);
  plan->lse_off = (int64_t)(rows * (uint64_t)g.head_dim);

  const int32_t nq = params->num_q_heads;
  plan->params = *params;
  if ((st = copy_floats(ctx, params->alibi_slopes, nq, &plan->alibi,
                        "alibi_slopes")) != PKV_OK ||
      (st = copy_floats(ctx, params->sinks, nq, &plan->sinks, "sinks")) !=
          PKV_OK) {
    unbuild(plan);
    return st;
  }
  plan->params.alibi_slopes = plan->alibi;
  plan->params.sinks = plan->sinks;
  /* Device copies, made once per build: the items and merges (what the
   * plan-driven kernels read), the ALiBi slopes and the sinks (so that no
   * run uploads). */
  size_t ib = (size_t)plan->grid_items * sizeof(pkv__plan_item);
  size_t mb = (size_t)plan->merge_slots * 4 * sizeof(int32_t);
  size_t fb = (size_t)nq * sizeof(float);
  if ((st = upload(plan, &plan->dev_items, plan->items, ib, o.stream)) !=
          PKV_OK ||
      (st = upload(plan, &plan->dev_merges, plan->merges, mb, o.stream)) !=
          PKV_OK ||
      (plan->alibi && (st = upload(plan, &plan->alibi_dev, plan->alibi, fb,
                                   o.stream)) != PKV_OK) ||
      (plan->sinks && (st = upload(plan, &plan->sinks_dev, plan->sinks, fb,
                                   o.stream)) != PKV_OK)) {
    unbuild(plan);
    return st;
  }
  plan->g = g;
  plan->table = t;
  plan->stream = o.stream;
  plan->built = 1;
  return PKV_OK;
}

static pkv_status need_built(const pkv_plan *plan) {
  if (!plan) return pkv__fail(NULL, PKV_ERR_NULL, "plan is NULL");
  if (!plan->built)
    return pkv__fail(plan->ctx, PKV_ERR_STATE,
                    "plan is not built (pkv_plan_build first, or its last "
                    "build failed)");
  return PKV_OK;
}

pkv_status pkv_plan_workspace_size(const pkv_plan *plan, size_t *bytes) {
  pkv_status st = need_built(plan);
  if (st != PKV_OK) return st;
  if (!bytes) return pkv__fail(plan->ctx, PKV_ERR_NULL, "bytes is NULL");
  *bytes = plan->ws_bytes;
  return PKV_OK;
}

pkv_status pkv_plan_get_info(const pkv_plan *plan, pkv_plan_info *out) {
  pkv_status st = need_built(plan);
  if (st != PKV_OK) return st;
  if (!out) return pkv__fail(plan->ctx, PKV_ERR_NULL, "out is NULL");
  pkv_plan_info i;
  pkv_plan_info_init(&i);
  i.chunk_keys = plan->chunk;
  i.num_items = plan->num_items;
  i.grid_items = plan->grid_items;
  i.budget = plan->budget;
  i.num_split = plan->num_split;
  i.partial_rows = plan->partial_rows;
  i.workspace_bytes = plan->ws_bytes;
  return pkv__write_sized(plan->ctx, out, &i, sizeof i, "out");
}

/* The geometry a kernel depends on; the pools themselves change per layer. */
static int same_geometry(const pkv_cache_geometry *a,
                         const pkv_cache_geometry *b) {
  return a->dtype == b->dtype && a->page_size == b->page_size &&
         a->num_kv_heads == b->num_kv_heads && a->head_dim == b->head_dim &&
         a->num_pages == b->num_pages && a->page_stride == b->page_stride &&
         a->head_stride == b->head_stride && a->token_stride == b->token_stride;
}

pkv_status pkv_attention_run(pkv_plan *plan, const pkv_kv_view *view_in,
                             const pkv_tensor *q, const pkv_tensor *out,
                             pkv_buffer *lse, pkv_buffer *workspace,
                             void *stream) {
  pkv_status st = need_built(plan);
  if (st != PKV_OK) return st;
  pkv_context *ctx = plan->ctx;
  pkv_kv_view view;
  pkv_cache_geometry g;
  int aligned;
  if ((st = pkv__kv_view_resolve(ctx, view_in, &view, &g, &aligned)) != PKV_OK)
    return st;
  if (!same_geometry(&g, &plan->g))
    return pkv__fail(ctx, PKV_ERR_STATE,
                    "view geometry (page_size %d, %d kv heads, head_dim %d, "
                    "%lld pages, dtype %d) differs from the plan's (page_size "
                    "%d, %d kv heads, head_dim %d, %lld pages, dtype %d): "
                    "build the plan for this view",
                    g.page_size, g.num_kv_heads, g.head_dim,
                    (long long)g.num_pages, (int)g.dtype, plan->g.page_size,
                    plan->g.num_kv_heads, plan->g.head_dim,
                    (long long)plan->g.num_pages, (int)plan->g.dtype);
  if (plan->ws_bytes > 0) {
    if (!workspace)
      return pkv__fail(ctx, PKV_ERR_NULL,
                      "workspace is NULL but the plan needs %zu bytes",
                      plan->ws_bytes);
    if (workspace->ctx != ctx)
      return pkv__fail(ctx, PKV_ERR_INVALID,
                      "workspace belongs to another context");
    if (workspace->bytes < plan->ws_bytes)
      return pkv__fail(ctx, PKV_ERR_SIZE,
                      "workspace holds %zu bytes but the plan needs %zu "
                      "(pkv_plan_workspace_size)",
                      workspace->bytes, plan->ws_bytes);
  }
  pkv__plan_exec pe;
  memset(&pe, 0, sizeof pe);
  pe.items = plan->items;
  pe.dev_items = plan->dev_items;
  pe.num_items = plan->num_items;
  pe.grid_items = plan->grid_items;
  pe.chunk = plan->chunk;
  pe.partial_rows = plan->partial_rows;
  pe.workspace = plan->ws_bytes > 0 ? workspace : NULL;
  pe.stream = stream ? stream : plan->stream;
  pe.dev_merges = plan->dev_merges;
  pe.merge_slots = plan->merge_slots;
  pe.num_split = plan->num_split;
  pe.lse_off = plan->lse_off;
  pe.sinks = plan->sinks ? plan->sinks_dev : NULL;
  return pkv__kv_attention_planned(ctx, &view, &plan->table, &plan->params, q,
                                  out, lse, plan->alibi_dev, &pe);
}

/* The unplanned calls' plan and workspace on a device backend: kept per
 * context, so that a call allocates only when the workspace or the plan's
 * arrays must grow. */
struct pkv__attn_cache {
  pkv_plan *plan;
  pkv_buffer *ws;
};

void pkv__attn_cache_free(pkv_context *ctx) {
  struct pkv__attn_cache *c = ctx->attn_cache;
  if (!c) return;
  pkv_buffer_destroy(c->ws);
  pkv_plan_destroy(c->plan);
  pkv__free(c);
  ctx->attn_cache = NULL;
}

static pkv_status cached_plan_and_run(pkv_context *ctx,
                                      const pkv_kv_view *view,
                                      const pkv_kv_table *table,
                                      const pkv_attn_params *params,
                                      const pkv_tensor *q,
                                      const pkv_tensor *out, pkv_buffer *lse) {
  struct pkv__attn_cache *c = ctx->attn_cache;
  if (!c) {
    c = pkv__calloc(1, sizeof *c);
    if (!c)
      return pkv__fail(ctx, PKV_ERR_NO_MEMORY, "attention cache: %zu bytes",
                      sizeof *c);
    pkv_status st = pkv_plan_create(ctx, &c->plan);
    if (st != PKV_OK) {
      pkv__free(c);
      return st;
    }
    ctx->attn_cache = c;
  }
  pkv_status st = pkv_plan_build(c->plan, view, table, params, NULL);
  if (st == PKV_OK && c->plan->ws_bytes > 0 &&
      (!c->ws || c->ws->bytes < c->plan->ws_bytes)) {
    /* Grown by half again, so that a batch that grows step by step does
     * not reallocate every step. */
    size_t want = c->plan->ws_bytes + c->plan->ws_bytes / 2;
    pkv_buffer *ws = NULL;
    st = pkv_buffer_create(ctx, want, &ws);
    if (st == PKV_OK) {
      pkv_buffer_destroy(c->ws);
      c->ws = ws;
    }
  }
  if (st == PKV_OK) st = pkv_attention_run(c->plan, view, q, out, lse, c->ws, NULL);
  return st;
}

/* pkv_kv_attention and pkv_attention: a plan of the default options and a
 * workspace, then the run, so that the unplanned API and plan/run are one
 * path. Device backends keep both per context (under the context's lock,
 * which serialises their operations anyway); the CPU backend, which runs
 * calls on one context concurrently, makes them per call (host memory). */
pkv_status pkv__plan_and_run(pkv_context *ctx, const pkv_kv_view *view,
                            const pkv_kv_table *table,
                            const pkv_attn_params *params, const pkv_tensor *q,
                            const pkv_tensor *out, pkv_buffer *lse) {
  if (ctx->kind != PKV_BACKEND_CPU) {
    pthread_mutex_lock(&ctx->lock);
    pkv_status st = cached_plan_and_run(ctx, view, table, params, q, out, lse);
    pthread_mutex_unlock(&ctx->lock);
    return st;
  }
  pkv_plan *p = NULL;
  pkv_buffer *ws = NULL;
  pkv_status st = pkv_plan_create(ctx, &p);
  if (st == PKV_OK) st = pkv_plan_build(p, view, table, params, NULL);
  if (st == PKV_OK && p->ws_bytes > 0)
    st = pkv_buffer_create(ctx, p->ws_bytes, &ws);
  if (st == PKV_OK) st = pkv_attention_run(p, view, q, out, lse, ws, NULL);
  pkv_buffer_destroy(ws);
  pkv_plan_destroy(p);
  return st;
}
