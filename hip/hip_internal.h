/* Shared by the HIP backend's host side (hip_backend.hip) and its kernel
 * launchers (hip_kernels.hip). Plain values only: the launchers see device
 * pointers and sizes, never pagedkv handles, so the kernels translation
 * unit does not depend on the library's internals. */
#ifndef PKV_HIP_INTERNAL_H
#define PKV_HIP_INTERNAL_H

#include "pkv_hip_runtime.h"

#include <stdint.h>

/* Threads of the generic kernels: a multiple of every wave size (32, 64). */
#define PKV_HIP_BLOCK 128
/* Largest head dim the API accepts (pkv_cache_desc.head_dim). */
#define PKV_HIP_MAX_HEAD_DIM 256

/* Paged attention over one layer, in the terms of the kernels. */
struct pkv_hip_attn {
  int dtype;                 /* pkv_dtype */
  int head_dim, page_size, num_kv_heads, num_q_heads;
  long long page_stride, head_stride, token_stride; /* elements */
  const void *k, *v;         /* pools */
  const void *q;             /* [num_tokens][num_q_heads][head_dim] */
  void *out;                 /* same shape */
  float *lse;                /* [num_tokens][num_q_heads] or NULL */
  const int32_t *block_table, *seq_lens, *q_indptr;
  int num_seqs, max_pages;
  long long num_tokens;
  float scale, softcap;
  int causal, window_left;
  const float *alibi;        /* [num_q_heads] or NULL */
  /* split-K: keys of a query are cut into num_splits runs of split_len;
   * with num_splits > 1 the partial results (m, l, acc[head_dim]) go to
   * partial and a merge kernel combines them by log-sum-exp. */
  int num_splits, split_len;
  float *partial;            /* [num_tokens][num_q_heads][num_splits][head_dim+2] */
};

/* Each launcher queues its kernels on `stream` and returns the launch
 * status (hipGetLastError), so the host side can name the failing step. */
hipError_t pkv_hip_launch_write_kv(hipStream_t stream, int elem_bytes,
                                   int head_dim, int num_kv_heads,
                                   int page_size, long long page_stride,
                                   long long head_stride,
                                   long long token_stride, void *k_pool,
                                   void *v_pool, const void *k, const void *v,
                                   const int64_t *slots, long long n);

hipError_t pkv_hip_launch_attention(hipStream_t stream,
                                    const pkv_hip_attn *a);

/* Copies page src -> dst of every pool; pools: device array of num_pools
 * base pointers; pairs: device int32 [n][2]. */
hipError_t pkv_hip_launch_copy_pages(hipStream_t stream, void *const *pools,
                                     int num_pools, const int32_t *pairs,
                                     long long n, size_t page_bytes);

/* Gathers device pages pages[i] of every pool into
 * stage + (i * num_pools + b) * page_bytes (to_stage), or scatters back
 * (!to_stage). */
hipError_t pkv_hip_launch_stage_pages(hipStream_t stream, void *const *pools,
                                      int num_pools, const int32_t *pages,
                                      long long n, size_t page_bytes,
                                      void *stage, int to_stage);

#endif
