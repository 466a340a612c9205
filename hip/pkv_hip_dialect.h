/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP side of the portable kernel dialect (kernels/dialect.h): what
 * the dialect leaves to the backend (the f16 storage type and its
 * conversions, the kernel-name suffix of an instantiation) and the
 * backend's fast paths behind its own macros.
 *
 * The portable kernels are compiled several times into one translation
 * unit, once per (dtype, head dim); PKV_KNAME appends both, so that
 * pkv_decode for f16 and head dim 128 becomes pkv_decode_t1_d128. */
#ifndef PKV_HIP_DIALECT_H
#define PKV_HIP_DIALECT_H

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

#include "dialect.h"
#include "tile.h"

#endif
