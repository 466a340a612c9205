/* SPDX-License-Identifier: Apache-2.0 */
/* The table of plan-driven decode launchers of one dtype (PKV_DTYPE),
 * included at the end of hip_kernels_dtype.h; same order as
 * PKV_HIP_HEAD_DIMS. Host pass only, as the kernel table. */
#define PKV_HIP_PLAN_ENTRY_(t, d) \
  {pkv_hip_plan_t##t##_d##d, pkv_hip_plan_occ_t##t##_d##d}
#define PKV_HIP_PLAN_ENTRY(t, d) PKV_HIP_PLAN_ENTRY_(t, d)
#define PKV_HIP_PLAN_TABLE_(t) pkv_hip_plan_ksets_t##t
#define PKV_HIP_PLAN_TABLE(t) PKV_HIP_PLAN_TABLE_(t)
#ifdef PKV_HIP_HOST_PASS
const pkv_hip_plan_kset PKV_HIP_PLAN_TABLE(PKV_DTYPE)[PKV_HIP_NUM_HEAD_DIMS] = {
    PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 64),  PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 80),
    PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 96),  PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 112),
    PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 128), PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 192),
    PKV_HIP_PLAN_ENTRY(PKV_DTYPE, 256)};
#endif
