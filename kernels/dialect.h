/* SPDX-License-Identifier: Apache-2.0 */
/* The portable kernel dialect: a handful of macros under which one kernel
 * source compiles as OpenCL C 1.2 and as HIP/CUDA C++ (the approach of
 * Blender Cycles). Kernels written in this dialect use only:
 *   PKV_KERNEL            kernel entry qualifier (+ extern "C" on HIP)
 *   PKV_GLOBAL            pointer-to-global qualifier
 *   PKV_LOCAL_DECL        static-size local/shared array declaration prefix
 *   PKV_LOCAL             pointer-to-local qualifier (function parameters)
 *   PKV_BARRIER()         work-group barrier over local memory
 *   PKV_LID(d) PKV_GID(d) PKV_GROUP(d) PKV_LSIZE(d) PKV_NGROUPS(d)
 *   PKV_INLINE            device helper function qualifier
 *   pkv_load_f16/pkv_store_f16, pkv_load_bf16/pkv_store_bf16
 *   pkv_expf pkv_logf pkv_tanhf pkv_fmaxf pkv_sqrtf
 *   pkv_ld8_f32/f16/bf16  8 consecutive elements into a private float[8]
 *                         (one 16-byte load for f16/bf16, two for f32)
 *   pkv_f8                8 floats: pkv_f8_zero/fma/add/axpy/hsum, and the
 *                         statement macros pkv_ld8v_f32/f16/bf16(dst, p)
 *                         (global), pkv_f8_ldl/pkv_f8_stl (local) and
 *                         pkv_f8_stp (to a private float[8]); a
 *                         vector type where the language has one
 *   PKV_KNAME(name)       kernel entry name; HIP instantiates the same
 *                         sources several times with suffixed names
 *   pkv_half              storage type of an f16 element (pointers only)
 * Compile-time constants come from the build options: PKV_HEAD_DIM and
 * PKV_DTYPE (0 f32, 1 f16, 2 bf16), tile sizes in kernels/common.cl.
 * Vendor fast paths (sub-groups, warp/wave shuffles, matrix units) live in
 * the backend's own headers behind PKV_HAVE_* macros, never here. */
#ifndef PKV_KERNEL_DIALECT_H
#define PKV_KERNEL_DIALECT_H

/* The definitions per device language live in kernels/device/<language>/
 * compat.h: OpenCL's is concatenated before this file, HIP/CUDA's included. */
#if !(defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__))
#include "device/hip/compat.h"
#endif

#ifndef PKV_KNAME
#define PKV_KNAME(name) name
#endif

/* bf16 is the upper half of an f32: portable through bit operations. */
PKV_INLINE float pkv_bf16_to_f32(pkv_u16 h) {
  return pkv_as_float(((pkv_u32)h) << 16);
}
PKV_INLINE pkv_u16 pkv_f32_to_bf16(float f) {
  pkv_u32 u = pkv_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (pkv_u16)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (pkv_u16)(u >> 16);
}
#define pkv_load_bf16(p, i) pkv_bf16_to_f32((p)[i])
#define pkv_store_bf16(v, p, i) ((p)[i] = pkv_f32_to_bf16(v))

#endif
