/* SPDX-License-Identifier: Apache-2.0 */
/* The instantiations of one dtype (PKV_DTYPE, set by the including
 * hip_kernels_*.hip) for every head dim the API accepts, and their table.
 * One source file per dtype so that make -j compiles them in parallel. */
#include "hip_internal.h"
#include "dialect.h"
#include "tile.h"
#include "frag.h"

/* Tile sizes shared with the launchers; PKV_PF_BR is a multiple of every
 * wave size (a 32-thread work-group would leave half a CDNA wave idle). */
#define PKV_DEC_WG 64
#define PKV_PART 512
#define PKV_MAXG 8
#define PKV_PF_BR 64
#define PKV_WITH_GPU 1 /* kernels/decode_gpu.cl */

#define PKV_HEAD_DIM 64
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 80
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 96
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 112
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 128
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 192
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM
#define PKV_HEAD_DIM 256
#include "hip_kernels_inst.h"
#undef PKV_HEAD_DIM

#define PKV_HIP_ENTRY_(t, d) \
  {PKV_PART, pkv_hip_gtile_t##t##_d##d, pkv_hip_write_t##t##_d##d, pkv_hip_attn_t##t##_d##d}
#define PKV_HIP_ENTRY(t, d) PKV_HIP_ENTRY_(t, d)
#define PKV_HIP_TABLE_(t) pkv_hip_ksets_t##t
#define PKV_HIP_TABLE(t) PKV_HIP_TABLE_(t)

/* Same order as PKV_HIP_HEAD_DIMS. Host pass only: HIP would make a
 * namespace-scope const table a device constant too. */
#ifdef PKV_HIP_HOST_PASS
const pkv_hip_kset PKV_HIP_TABLE(PKV_DTYPE)[PKV_HIP_NUM_HEAD_DIMS] = {
    PKV_HIP_ENTRY(PKV_DTYPE, 64),  PKV_HIP_ENTRY(PKV_DTYPE, 80),
    PKV_HIP_ENTRY(PKV_DTYPE, 96),  PKV_HIP_ENTRY(PKV_DTYPE, 112),
    PKV_HIP_ENTRY(PKV_DTYPE, 128), PKV_HIP_ENTRY(PKV_DTYPE, 192),
    PKV_HIP_ENTRY(PKV_DTYPE, 256)};
#endif
#include "hip_plan_table.h"
