/* SPDX-License-Identifier: Apache-2.0 */
/* Page copies and device <-> staging moves (kernels/pages.cl): bitwise,
 * independent of dtype and head dim, so instantiated once; and the lookup
 * of the per-(dtype, head dim) kernel tables. */
#include "hip_internal.h"

#define PKV_KNAME(name) name
#include "dialect.h"

#include "pages.cl"

const pkv_hip_kset *pkv__hip_kset_for(int dtype, int head_dim) {
  static const int dims[PKV_HIP_NUM_HEAD_DIMS] = PKV_HIP_HEAD_DIMS;
  for (int i = 0; i < PKV_HIP_NUM_HEAD_DIMS; i++) {
    if (dims[i] != head_dim) continue;
    switch (dtype) {
    case 0: return &pkv_hip_ksets_t0[i];
    case 1: return &pkv_hip_ksets_t1[i];
    case 2: return &pkv_hip_ksets_t2[i];
    case 3: return &pkv_hip_ksets_t3[i]; /* fp8 e4m3 */
    case 4: return &pkv_hip_ksets_t4[i]; /* fp8 e5m2 */
    case 5: return &pkv_hip_ksets_t5[i]; /* int8 */
    default: return NULL;
    }
  }
  return NULL;
}

hipError_t pkv__hip_launch_copy_pages(hipStream_t stream, void *pool,
                                     const int32_t *pairs, long long n,
                                     long long words_per_page) {
  if (n <= 0) return hipSuccess;
  dim3 grid((unsigned)((words_per_page + 63) / 64), (unsigned)n);
  pkv_copy_pages<<<grid, 64, 0, stream>>>((uint4 *)pool, pairs,
                                          (pkv_i64)words_per_page);
  return hipGetLastError();
}

hipError_t pkv__hip_launch_move_pages(hipStream_t stream, void *pool,
                                     void *staging, const int32_t *pages,
                                     long long n, long long words_per_page,
                                     int num_pools, int b, int to_stage) {
  if (n <= 0) return hipSuccess;
  dim3 grid((unsigned)((words_per_page + 63) / 64), (unsigned)n);
  if (to_stage)
    pkv_gather_pages<<<grid, 64, 0, stream>>>(
        (const uint4 *)pool, (uint4 *)staging, pages, (pkv_i64)words_per_page,
        num_pools, b);
  else
    pkv_scatter_pages<<<grid, 64, 0, stream>>>(
        (uint4 *)pool, (const uint4 *)staging, pages, (pkv_i64)words_per_page,
        num_pools, b);
  return hipGetLastError();
}
