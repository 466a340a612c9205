/* SPDX-License-Identifier: Apache-2.0 */
/* The tile dialect: the primitives of GPU-shaped kernels, on top of the
 * plain dialect (dialect.h), each with one definition per device language
 * in kernels/device/<language>/tile.h:
 *
 *   PKV_WAVE                  lanes per wave (32 or 64; never assumed)
 *   PKV_LAUNCH_BOUNDS(nt)     the block size the kernel is built for
 *   PKV_SG_ATTR               sub-group size requirement (native OpenCL)
 *   PKV_TILE_SCRATCH(s, nt)   kernel-scope scratch of the shuffle emulation
 *   PKV_SHFL_XOR(x, m, s)     lane l gets lane l^m's x (m < PKV_WAVE)
 *   pkv_tile_sum/max(x, w, s) fixed xor-butterfly over aligned groups of w
 *                             lanes (w a power of two <= PKV_WAVE); every
 *                             lane gets the same bits, on every device
 *   pkv_async, pkv_cp16, pkv_async_commit, pkv_async_wait(keep)
 *                             16-byte global->local copies in commit
 *                             groups; wait retires all but the newest
 *                             `keep` groups (a barrier must follow before
 *                             other lanes read the data)
 *   pkv_fastdiv(n, mul, shift) n / d with the host's magic (lib/fastdiv.h)
 *   pkv_lds8_f32/f16/bf16(dst, p)  8 elements of a local row as a pkv_f8
 *   pkv_ldg8_f32/f16/bf16(dst, p)  the same from a 16-byte aligned global row
 *
 * Both reductions are the same tree on every device: lane l adds its
 * partner's value at distances w/2, w/4, ..., 1, and since x + y == y + x
 * bitwise, all lanes of a group hold identical results. The OpenCL
 * emulation runs the same tree through local memory, so PoCL computes the
 * bits a GPU computes. */
#ifndef PKV_TILE_H
#define PKV_TILE_H

#if !(defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__))
#include "device/hip/launch_bounds.h"
#include "device/hip/tile.h"
#endif

#if PKV_WAVE != 32 && PKV_WAVE != 64
#error "PKV_WAVE must be 32 or 64"
#endif

PKV_INLINE float pkv_tile_sum_(float x, int w, PKV_LOCAL float *scr) {
  for (int m = w >> 1; m > 0; m >>= 1) x = x + PKV_SHFL_XOR(x, m, scr);
  return x;
}
PKV_INLINE float pkv_tile_max_(float x, int w, PKV_LOCAL float *scr) {
  for (int m = w >> 1; m > 0; m >>= 1) x = pkv_fmaxf(x, PKV_SHFL_XOR(x, m, scr));
  return x;
}
#define pkv_tile_sum(x, w, scr) pkv_tile_sum_((x), (w), (scr))
#define pkv_tile_max(x, w, scr) pkv_tile_max_((x), (w), (scr))

/* pkv_f8 helpers the tile kernels add to the plain dialect's. */
#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define pkv_f8_scale(a, s) ((s) * (a))
#define pkv_f8_from(dst, arr) ((dst) = vload8(0, (arr)))
#else
PKV_INLINE pkv_f8 pkv_f8_scale(pkv_f8 a, float s) {
  for (int e = 0; e < 8; e++) a.v[e] *= s;
  return a;
}
#define pkv_f8_from(dst, arr) \
  do { for (int e_ = 0; e_ < 8; e_++) (dst).v[e_] = (arr)[e_]; } while (0)
#endif

/* n / d for 0 <= n < 2^31, with mul and shift from pkv__fastdiv_make(d). */
PKV_INLINE int pkv_fastdiv(int n, pkv_u32 mul, int shift) {
  const pkv_u32 hi = pkv_mulhi_u32((pkv_u32)n, mul);
  return (int)(((pkv_i64)hi + (pkv_i64)n) >> shift);
}

#endif
