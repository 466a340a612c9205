/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the HIP backend's host side (hip_backend.hip) and its kernel
 * launchers (hip_kernels.hip). Plain values only: the launchers see device
 * pointers and sizes, never pagedkv handles, so the kernels translation
 * unit does not depend on the library's internals. */
#ifndef PKV_HIP_INTERNAL_H
#define PKV_HIP_INTERNAL_H

#include "pkv_hip_runtime.h"

#include <stdint.h>

/* The host compile of a translation unit (HIP and CUDA compile each one
 * once for the host and once per device target). */
#if !defined(__HIP_DEVICE_COMPILE__) && !defined(__CUDA_ARCH__)
#define PKV_HIP_HOST_PASS 1
#endif

/* The wave width the host pass sizes launches for (kernels/device/hip/
 * launch_bounds.h without a device target's macros): 32 under nvcc, 64
 * under hipcc. */
#if defined(__CUDACC__) && !defined(__HIP__)
#define PKV_HIP_HOST_WAVE 32
#else
#define PKV_HIP_HOST_WAVE 64
#endif

/* Everything a portable kernel launch needs, as plain values. */
struct pkv_hip_launch {
  hipStream_t stream;
  /* geometry (elements of the storage dtype) */
  int num_kv_heads, page_size;
  long long page_stride, head_stride, token_stride;
  void *k_pool, *v_pool;
  /* K/V write */
  const void *k, *v;
  const int64_t *slots;
  long long n;
  long long k_off, k_ts, k_hs, v_off, v_ts, v_hs; /* elements */
  long long num_pages;
  int src_dtype;              /* dtype of k and v (the pool's: bit copy) */
  /* attention */
  const void *q;
  void *out;
  float *lse;                 /* NULL: not written */
  /* pages = block_table (dense) or kv_indices (CSR, csr = 1) */
  const int32_t *pages, *seq_lens, *kv_indptr, *kv_last, *q_indptr;
  int csr;
  long long num_kv_indices;
  const float *alibi;         /* NULL: off */
  const float *sinks;         /* NULL: off */
  int q_dtype, o_dtype;
  long long q_off, q_ts, q_hs, o_off, o_ts, o_hs; /* elements of q / out */
  int num_tokens;
  float *part_o, *part_ml;    /* decode partitions, when num_parts > 1 */
  int num_seqs, max_pages, num_q_heads, max_q_len, max_kv_len;
  float scale, softcap;
  int causal, window_left, num_parts;
  /* fp8 scales [K][V] per kv head (device, kept by the backend), with
   * has_scales 1; NULL / 0: every scale 1 */
  const float *kv_scales;
  int has_scales;
  long long scale_offset;     /* int8: bytes from a page to its scale block */
  /* GPU-shaped decode (kernels/decode_gpu.cl) */
  int gpu_decode;             /* 0: the CPU-shaped pkv_decode */
  int aligned;                /* rows 16-byte aligned: the vector variant */
  unsigned pdiv_mul;          /* fast divmod by page_size (lib/fastdiv.h) */
  int pdiv_shift;
  int part_len;               /* keys per partition */
  /* matrix-unit prefill (kernels/prefill_mma.cl): prefill, extend, spec
   * decode and GQA >= 4 decode of f16/bf16 caches with 16-bit q/out */
  int mma;
  /* plan-driven decode (hip/hip_plan_inst.h): the plan's device arrays
   * and the caller's workspace (outputs, then LSE lse_off floats in) */
  const int32_t *plan_items, *plan_merges;
  long long grid_items, merge_slots, lse_off;
  float *ws;
};


/* The kernels of one (dtype, head dim) instantiation. */
struct pkv_hip_kset {
  int part; /* keys per decode partition (PKV_PART) */
  int gpu_tile; /* keys per tile of the GPU decode kernel (PKV_G_T) */
  hipError_t (*write_kv)(const pkv_hip_launch *a);
  /* decode (+ merge when num_parts > 1) if max_q_len <= 1, else prefill */
  hipError_t (*attention)(const pkv_hip_launch *a);
};

/* NULL when the build has no kernels for that pair. */
const pkv_hip_kset *pkv__hip_kset_for(int dtype, int head_dim);

/* Head dims instantiated, in the order of the per-dtype tables. */
#define PKV_HIP_HEAD_DIMS {64, 80, 96, 112, 128, 192, 256}
#define PKV_HIP_NUM_HEAD_DIMS 7
extern const pkv_hip_kset pkv_hip_ksets_t0[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_kset pkv_hip_ksets_t1[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_kset pkv_hip_ksets_t2[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_kset pkv_hip_ksets_t3[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_kset pkv_hip_ksets_t4[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_kset pkv_hip_ksets_t5[PKV_HIP_NUM_HEAD_DIMS];

/* The plan-driven decode of one (dtype, head dim) instantiation
 * (hip/hip_plan_inst.h), in a table beside pkv_hip_kset's. */
struct pkv_hip_plan_kset {
  /* items grid, then the merge grid; gpu_decode/aligned pick the kernel */
  hipError_t (*decode)(const pkv_hip_launch *a);
  /* hipOccupancyMaxActiveBlocksPerMultiprocessor of the kernel decode
   * launches for (gpu_decode, aligned) */
  hipError_t (*occupancy)(int mma, int gpu_decode, int aligned, int *blocks);
};
const pkv_hip_plan_kset *pkv__hip_plan_kset_for(int dtype, int head_dim);
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t0[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t1[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t2[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t3[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t4[PKV_HIP_NUM_HEAD_DIMS];
extern const pkv_hip_plan_kset pkv_hip_plan_ksets_t5[PKV_HIP_NUM_HEAD_DIMS];

/* Largest grid extent in y and z on every vendor. */
#define PKV_HIP_MAX_GRID_YZ 65535
/* Largest grid extent in x (blocks) on every vendor. */
#define PKV_HIP_MAX_GRID_X 2147483647

/* Page moves of one pool buffer, in 16-byte words (kernels/pages.cl):
 * copy pairs[i] = {src, dst}; gather pages[i] into staging row
 * i * num_pools + b (to_stage) or scatter back. n <= PKV_HIP_MAX_GRID_YZ. */
hipError_t pkv__hip_launch_copy_pages(hipStream_t stream, void *pool,
                                     const int32_t *pairs, long long n,
                                     long long words_per_page);
hipError_t pkv__hip_launch_move_pages(hipStream_t stream, void *pool,
                                     void *staging, const int32_t *pages,
                                     long long n, long long words_per_page,
                                     int num_pools, int b, int to_stage);

#endif
