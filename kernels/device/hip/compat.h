/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP/CUDA side of the plain kernel dialect (kernels/dialect.h): the
 * language's qualifiers, ids and math, what the dialect leaves to the
 * backend (the f16 storage type and its
 * conversions, the kernel-name suffix of an instantiation) and the
 * backend's fast paths behind its own macros.
 *
 * The portable kernels are compiled several times into one translation
 * unit, once per (dtype, head dim); PKV_KNAME appends both, so that
 * pkv_decode for f16 and head dim 128 becomes pkv_decode_t1_d128. */
#ifndef PKV_DEVICE_HIP_COMPAT_H
#define PKV_DEVICE_HIP_COMPAT_H

#include "pkv_hip_runtime.h"

#include <stdint.h>

/* f16 elements are seen as __half in kernel signatures; every access goes
 * through pkv_load_f16/pkv_store_f16 (pkv_hip_runtime.h). */
typedef __half pkv_half;

#define PKV_HIP_CAT3_(a, b, c) a##_t##b##_d##c
#define PKV_HIP_CAT3(a, b, c) PKV_HIP_CAT3_(a, b, c)
#ifndef PKV_KNAME
#define PKV_KNAME(name) PKV_HIP_CAT3(name, PKV_DTYPE, PKV_HEAD_DIM)
#endif

/* Fast path: 8 consecutive elements in one 16-byte load (two for f32).
 * The kernels call these at multiples of 8 elements of a row, so the
 * address is 16-byte aligned whenever the buffer base is; an engine's
 * wrapped tensor need not be, hence the run-time check (uniform across a
 * wave in practice, so it costs no divergence). */
#ifndef PKV_HIP_NO_LD8
#define PKV_HAVE_LD8 1

__device__ __forceinline__ bool pkv_hip_aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

__device__ __forceinline__ void pkv_hip_ld8_f32(const float *p, float *o) {
  if (pkv_hip_aligned16(p)) {
    const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
    o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
  } else {
    for (int e = 0; e < 8; e++) o[e] = p[e];
  }
}

__device__ __forceinline__ void pkv_hip_unpack_f16(uint4 u, float *o) {
  const unsigned int w[4] = {u.x, u.y, u.z, u.w};
  for (int e = 0; e < 4; e++) {
    o[2 * e] = pkv_hip_h2f((unsigned short)(w[e] & 0xffffu));
    o[2 * e + 1] = pkv_hip_h2f((unsigned short)(w[e] >> 16));
  }
}

__device__ __forceinline__ void pkv_hip_unpack_bf16(uint4 u, float *o) {
  const unsigned int w[4] = {u.x, u.y, u.z, u.w};
  for (int e = 0; e < 4; e++) {
    o[2 * e] = __uint_as_float(w[e] << 16);
    o[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
  }
}

__device__ __forceinline__ void pkv_hip_ld8_f16(const void *p, float *o) {
  const unsigned short *h = (const unsigned short *)p;
  if (pkv_hip_aligned16(p)) {
    pkv_hip_unpack_f16(*(const uint4 *)p, o);
  } else {
    for (int e = 0; e < 8; e++) o[e] = pkv_hip_h2f(h[e]);
  }
}

__device__ __forceinline__ void pkv_hip_ld8_bf16(const void *p, float *o) {
  const unsigned short *h = (const unsigned short *)p;
  if (pkv_hip_aligned16(p)) {
    pkv_hip_unpack_bf16(*(const uint4 *)p, o);
  } else {
    for (int e = 0; e < 8; e++) o[e] = __uint_as_float((unsigned int)h[e] << 16);
  }
}

#define pkv_ld8_f32(p, o) pkv_hip_ld8_f32((p), (o))
#define pkv_ld8_f16(p, o) pkv_hip_ld8_f16((p), (o))
#define pkv_ld8_bf16(p, o) pkv_hip_ld8_bf16((p), (o))
#endif

/* ------------------------------------------------------------ language */
#define PKV_KERNEL extern "C" __global__
#define PKV_GLOBAL
#define PKV_LOCAL
#define PKV_LOCAL_DECL __shared__
#define PKV_BARRIER() __syncthreads()
#define PKV_DIM_(v, d) ((d) == 0 ? (int)v.x : (d) == 1 ? (int)v.y : (int)v.z)
#define PKV_LID(d) PKV_DIM_(threadIdx, d)
#define PKV_GROUP(d) PKV_DIM_(blockIdx, d)
#define PKV_LSIZE(d) PKV_DIM_(blockDim, d)
#define PKV_NGROUPS(d) PKV_DIM_(gridDim, d)
#define PKV_GID(d) (PKV_GROUP(d) * PKV_LSIZE(d) + PKV_LID(d))
#define PKV_INLINE __device__ __forceinline__
typedef long long pkv_i64;
typedef int pkv_i32;
typedef unsigned int pkv_u32;
typedef unsigned short pkv_u16;
/* half/bf16 conversions come from the backend header (hip/ or the CUDA
 * mapping), which defines pkv_load_f16 / pkv_store_f16 before including
 * the portable kernels. */
#define pkv_as_float(u) __uint_as_float(u)
#define pkv_as_uint(f) __float_as_uint(f)
#define pkv_expf(x) __expf(x)
#define pkv_logf(x) __logf(x)
#define pkv_tanhf(x) tanhf(x)
#define pkv_fmaxf(a, b) fmaxf((a), (b))
#define pkv_sqrtf(x) sqrtf(x)
#define PKV_INFINITY __int_as_float(0x7f800000)
/* The backend header may provide vector versions (PKV_HAVE_LD8); the
 * scalar fallback (macros, so pkv_load_f16 may be defined later) lets the
 * compiler merge the loads where it can. pkv_half (e.g. __half) comes from
 * the backend header with pkv_load_f16. */
/* pkv_f8 as a struct; the backend may supply its own (PKV_HAVE_F8). */
#ifndef PKV_HAVE_F8
typedef struct pkv_f8 {
  float v[8];
} pkv_f8;
PKV_INLINE pkv_f8 pkv_f8_zero(void) {
  pkv_f8 r;
  for (int e = 0; e < 8; e++) r.v[e] = 0.0f;
  return r;
}
PKV_INLINE pkv_f8 pkv_f8_fma(pkv_f8 a, pkv_f8 b, pkv_f8 c) {
  for (int e = 0; e < 8; e++) c.v[e] = a.v[e] * b.v[e] + c.v[e];
  return c;
}
PKV_INLINE pkv_f8 pkv_f8_add(pkv_f8 a, pkv_f8 b) {
  for (int e = 0; e < 8; e++) a.v[e] += b.v[e];
  return a;
}
PKV_INLINE pkv_f8 pkv_f8_axpy(float s, pkv_f8 x, pkv_f8 y) {
  for (int e = 0; e < 8; e++) y.v[e] = s * x.v[e] + y.v[e];
  return y;
}
PKV_INLINE float pkv_f8_hsum(pkv_f8 a) {
  return ((a.v[0] + a.v[4]) + (a.v[2] + a.v[6])) +
         ((a.v[1] + a.v[5]) + (a.v[3] + a.v[7]));
}
/* Statement macros, expanded where used, so pkv_ld8_* may come later. */
#define pkv_ld8v_f32(dst, p) pkv_ld8_f32((p), (dst).v)
#define pkv_ld8v_f16(dst, p) pkv_ld8_f16((p), (dst).v)
#define pkv_ld8v_bf16(dst, p) pkv_ld8_bf16((p), (dst).v)
#define pkv_f8_ldl(dst, p) \
  do { for (int e_ = 0; e_ < 8; e_++) (dst).v[e_] = (p)[e_]; } while (0)
#define pkv_f8_stl(x, p) \
  do { for (int e_ = 0; e_ < 8; e_++) (p)[e_] = (x).v[e_]; } while (0)
#define pkv_f8_stp(x, p) pkv_f8_stl(x, p)
#endif
#ifndef PKV_HAVE_LD8
#define pkv_ld8_f32(p, o)                                                     \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = (p)[e_]; } while (0)
#define pkv_ld8_f16(p, o)                                                     \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = pkv_load_f16((p), e_); } while (0)
#define pkv_ld8_bf16(p, o)                                                    \
  do { for (int e_ = 0; e_ < 8; e_++) (o)[e_] = pkv_bf16_to_f32((p)[e_]); } while (0)
#endif

#endif
