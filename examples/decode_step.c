/* SPDX-License-Identifier: Apache-2.0 */
/* One decode step through pagedkv's public API, as an engine outside the
 * library would write it:
 *
 *   cc decode_step.c $(pkg-config --cflags --libs pagedkv) -o decode_step
 *
 * It creates a CPU context, a cache, one sequence; appends a prompt and one
 * new token; writes their K/V; builds the step's batch descriptor; runs
 * decode attention and checks that the output is finite. Exits 0 on success
 * and prints the failing call's status and message otherwise. */
#include <pagedkv.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { LAYERS = 2, KV_HEADS = 2, Q_HEADS = 8, HEAD_DIM = 64, PAGE = 16,
       PROMPT = 37 };

#define CHECK(ctx, call)                                                      \
  do {                                                                        \
    pkv_status st_ = (call);                                                  \
    if (st_ != PKV_OK) {                                                      \
      fprintf(stderr, "%s failed: %s: %s\n", #call, pkv_status_name(st_),     \
              pkv_last_error(ctx));                                           \
      goto fail;                                                              \
    }                                                                         \
  } while (0)

static void fill(float *x, size_t n, unsigned *state) {
  for (size_t i = 0; i < n; i++) {
    *state = *state * 1664525u + 1013904223u;
    x[i] = (float)((*state >> 8) & 0xffff) / 65536.0f - 0.5f;
  }
}

int main(void) {
  int rc = 1;
  pkv_context *ctx = NULL;
  pkv_cache *cache = NULL;
  pkv_batch *batch = NULL;
  pkv_buffer *k = NULL, *v = NULL, *q = NULL, *out = NULL;
  float *host = NULL;
  unsigned rng = 12345;

  /* 1. A context on the CPU reference backend (PKV_BACKEND_AUTO picks the
   *    best device instead). */
  pkv_context_desc cd;
  pkv_context_desc_init(&cd);
  cd.backend = PKV_BACKEND_CPU;
  CHECK(NULL, pkv_context_create(&cd, &ctx));

  /* 2. A cache: f32 K/V, 64 pages of 16 tokens per layer. */
  pkv_cache_desc desc;
  pkv_cache_desc_init(&desc);
  desc.num_layers = LAYERS;
  desc.num_kv_heads = KV_HEADS;
  desc.head_dim = HEAD_DIM;
  desc.page_size = PAGE;
  desc.num_pages = 64;
  desc.dtype = PKV_DTYPE_F32;
  CHECK(ctx, pkv_cache_create(ctx, &desc, &cache));

  /* 3. A sequence whose prompt is already in the cache: append it and
   *    write its K/V (a prefill step would also run attention). */
  pkv_seq_id seq;
  CHECK(ctx, pkv_seq_open(cache, NULL, &seq));
  CHECK(ctx, pkv_seq_append(cache, seq, PROMPT, NULL, NULL));
  CHECK(ctx, pkv_batch_create(cache, &batch));

  size_t kv_n = (size_t)PROMPT * KV_HEADS * HEAD_DIM;
  size_t q_n = (size_t)Q_HEADS * HEAD_DIM;
  host = malloc(kv_n * sizeof *host);
  if (!host) goto fail;
  CHECK(ctx, pkv_buffer_create(ctx, kv_n * sizeof(float), &k));
  CHECK(ctx, pkv_buffer_create(ctx, kv_n * sizeof(float), &v));
  CHECK(ctx, pkv_buffer_create(ctx, q_n * sizeof(float), &q));
  CHECK(ctx, pkv_buffer_create(ctx, q_n * sizeof(float), &out));

  int32_t q_len = PROMPT;
  CHECK(ctx, pkv_batch_build(batch, &seq, 1, &q_len));
  for (int32_t layer = 0; layer < LAYERS; layer++) {
    fill(host, kv_n, &rng);
    CHECK(ctx, pkv_buffer_upload(k, 0, host, kv_n * sizeof(float)));
    fill(host, kv_n, &rng);
    CHECK(ctx, pkv_buffer_upload(v, 0, host, kv_n * sizeof(float)));
    CHECK(ctx, pkv_write_kv(batch, layer, k, v));
  }

  /* 4. One decode step: append the new token, build the descriptor
   *    (q_lens NULL = one query token per sequence), write its K/V and
   *    attend over the whole sequence, layer by layer. */
  CHECK(ctx, pkv_seq_append(cache, seq, 1, NULL, NULL));
  CHECK(ctx, pkv_batch_build(batch, &seq, 1, NULL));
  pkv_attn_params params;
  pkv_attn_params_init(&params, Q_HEADS);
  for (int32_t layer = 0; layer < LAYERS; layer++) {
    size_t one = (size_t)KV_HEADS * HEAD_DIM * sizeof(float);
    fill(host, kv_n, &rng);
    CHECK(ctx, pkv_buffer_upload(k, 0, host, one));
    CHECK(ctx, pkv_buffer_upload(v, 0, host + KV_HEADS * HEAD_DIM, one));
    CHECK(ctx, pkv_write_kv(batch, layer, k, v));
    fill(host, q_n, &rng);
    CHECK(ctx, pkv_buffer_upload(q, 0, host, q_n * sizeof(float)));
    CHECK(ctx, pkv_attention(batch, layer, &params, q, out, NULL));
  }
  CHECK(ctx, pkv_context_synchronize(ctx));

  /* 5. The output of the last layer: [1 token][Q_HEADS][HEAD_DIM]. */
  CHECK(ctx, pkv_buffer_download(out, 0, host, q_n * sizeof(float)));
  for (size_t i = 0; i < q_n; i++)
    if (!isfinite(host[i])) {
      fprintf(stderr, "output element %zu is not finite\n", i);
      goto fail;
    }
  int64_t len = 0;
  CHECK(ctx, pkv_seq_length(cache, seq, &len));
  pkv_stats stats;
  pkv_stats_init(&stats);
  CHECK(ctx, pkv_cache_stats(cache, &stats));
  printf("decode step ok: pagedkv %s, sequence of %lld tokens in %lld pages, "
         "out[0] = %.6f\n",
         pkv_version_string(), (long long)len, (long long)stats.pages_live,
         (double)host[0]);
  CHECK(ctx, pkv_seq_release(cache, seq));
  rc = 0;

fail:
  free(host);
  pkv_buffer_destroy(k);
  pkv_buffer_destroy(v);
  pkv_buffer_destroy(q);
  pkv_buffer_destroy(out);
  pkv_batch_destroy(batch);
  pkv_cache_destroy(cache);
  pkv_context_destroy(ctx);
  return rc;
}
